"""Admission under real concurrency: 40 threads, each its own database connection, released together."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from pipelines.models import PipelineRun
from pipelines.services import run_claim, run_finish
from tenants.models import TenantUsage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

THREADS = 40


@pytest.fixture
def no_broker(monkeypatch):
    """Admission is under test, not delivery: runs stay PENDING until the test finishes them."""
    monkeypatch.setattr("pipelines.services.run_enqueue", lambda run_id: None)


def _wave(raw_key: str, tenant_id: str) -> Counter:
    barrier = threading.Barrier(THREADS)

    def attempt(_index: int) -> str:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=raw_key)
        barrier.wait()
        try:
            response = client.post(
                f"/api/v1/pipelines/run/{tenant_id}/test/engine/ok", {"date": "2025-11-19"}, format="json"
            )
            if response.status_code == 202:
                return "admitted"
            assert response.status_code == 429, response.content
            assert int(response["Retry-After"]) >= 1
            return response.json()["error"]["code"]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return Counter(pool.map(attempt, range(THREADS)))


def _finish_all(tenant_id: str) -> None:
    """What workers do: claim each pending run and finish it (which frees its concurrency slot)."""
    pending = PipelineRun.objects.filter(tenant_id=tenant_id, status="PENDING").values_list("pk", flat=True)
    for run_id in pending:
        claim = run_claim(run_id=str(run_id))
        assert claim is not None
        assert run_finish(claim=claim, status="COMPLETED")


@pytest.mark.parametrize("plan,concurrent,daily", [("STARTER", 1, 6), ("PROFESSIONAL", 3, 25)])
def test_concurrent_triggers_admit_exactly_the_plan(
    make_tenant, test_pipelines, no_broker, plan, concurrent, daily
) -> None:
    _tenant, raw = make_tenant("racer", plan=plan)
    admitted_total = 0
    waves = 0
    while admitted_total < daily:
        outcome = _wave(raw, "racer")
        expected = min(concurrent, daily - admitted_total)
        assert outcome["admitted"] == expected, outcome
        # Refused while the admitted run is in flight; once the day's last slot is taken, the daily
        # limit is what the latecomers hit first.
        refused = outcome["concurrent_limit_exceeded"] + outcome["daily_quota_exceeded"]
        assert refused == THREADS - expected, outcome
        if admitted_total + expected < daily:
            assert outcome["daily_quota_exceeded"] == 0, outcome
        assert PipelineRun.objects.filter(tenant_id="racer", status="PENDING").count() == expected
        admitted_total += expected
        _finish_all("racer")
        waves += 1
    final = _wave(raw, "racer")
    assert final == Counter({"daily_quota_exceeded": THREADS})
    usage = TenantUsage.objects.get(tenant_id="racer")
    assert PipelineRun.objects.filter(tenant_id="racer").count() == daily == admitted_total
    assert usage.runs_today == daily
    assert usage.runs_this_period == daily
    assert usage.running == 0
    assert waves == -(-daily // concurrent)
