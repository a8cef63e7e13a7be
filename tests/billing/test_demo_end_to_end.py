"""Acceptance: 30 generated days of GCP, AWS and Azure exports for one tenant, read from its ``file://``
sources by the three cost pipelines through the run services, reconcile exactly: per provider and day,
``SUM(BilledCost)`` in ``focus_costs`` is the generators' own net cost, and the cost API's total is the sum
of every raw net cost. Then ``setup_local`` seeds the demo tenant the same way, twice, without doubling."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from billing.demo import COST_PIPELINES, cost_data_seed
from convergence.warehouse import get_warehouse
from pipelines.models import PipelineRun, RunStatus, RunTrigger
from tenants.actors import Actor
from tenants.models import Tenant

# Steps run in their own thread (the step timeout), with their own database connection: they must see
# committed rows.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# 30 days across a month boundary: AWS and Azure each load two billing periods.
START = dt.date(2025, 10, 17)
END = dt.date(2025, 11, 15)
ROWS_PER_DAY = 25


@pytest.fixture
def export_root(settings: Any, tmp_path: Path) -> Path:
    settings.SOURCE_FILE_ROOT = tmp_path / "exports"
    settings.SOURCE_FILE_ROOT.mkdir()
    return Path(settings.SOURCE_FILE_ROOT)


def _focus_by_provider_day(dataset: str) -> dict[tuple[str, dt.date], Decimal]:
    rows = (
        get_warehouse()
        .query(
            f"SELECT x_Provider AS provider, x_ChargeDate AS day, SUM(BilledCost) AS billed "
            f"FROM `{dataset}.focus_costs` GROUP BY provider, day"
        )
        .rows
    )
    return {(row["provider"], row["day"]): row["billed"] for row in rows}


def test_thirty_days_of_three_providers_reconcile_exactly(
    export_root: Path, make_tenant: Any, tenant_client: Any
) -> None:
    tenant, raw_key = make_tenant("acme")

    result = cost_data_seed(
        tenant=tenant, actor=Actor.system("test"), start=START, end=END, rows_per_day=ROWS_PER_DAY, seed=3
    )

    assert result.failed == []
    assert [planned.pipeline for planned, _status in result.runs].count(COST_PIPELINES["gcp"]) == 30
    assert [planned.pipeline for planned, _status in result.runs].count(COST_PIPELINES["aws"]) == 2
    assert [planned.pipeline for planned, _status in result.runs].count(COST_PIPELINES["azure"]) == 2
    assert PipelineRun.objects.filter(tenant=tenant, status=RunStatus.COMPLETED).count() == 34
    assert set(PipelineRun.objects.filter(tenant=tenant).values_list("trigger", flat=True)) == {
        RunTrigger.BACKFILL
    }
    tenant.usage.refresh_from_db()
    assert (tenant.usage.runs_today, tenant.usage.running) == (0, 0)  # seeding used none of the quota

    expected = {
        (provider, day): net
        for provider, summary in result.exports.items()
        for day, net in summary.net_cost_by_day.items()
    }
    assert len(expected) == 90
    assert _focus_by_provider_day(tenant.dataset_id) == expected

    client = tenant_client(raw_key)
    response = client.get(
        "/api/v1/tenants/acme/costs",
        {"start": START.isoformat(), "end": END.isoformat(), "group_by": "provider"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["currency"] == "USD"
    assert Decimal(body["total_billed_cost"]) == result.expected_net_cost()
    assert {row["key"]: Decimal(row["billed_cost"]) for row in body["rows"]} == {
        provider: summary.total_net_cost for provider, summary in result.exports.items()
    }
    by_day = client.get(
        "/api/v1/tenants/acme/costs",
        {"start": START.isoformat(), "end": END.isoformat(), "group_by": "provider", "granularity": "day"},
    ).json()
    assert {
        (row["key"], dt.date.fromisoformat(row["period"])): Decimal(row["billed_cost"])
        for row in by_day["rows"]
    } == expected


def test_running_the_seed_again_does_not_double_cost(export_root: Path, make_tenant: Any) -> None:
    tenant, _raw_key = make_tenant("acme")
    start, end = dt.date(2025, 10, 30), dt.date(2025, 11, 2)
    first = cost_data_seed(tenant=tenant, actor=Actor.system("test"), start=start, end=end, rows_per_day=10)
    before = _focus_by_provider_day(tenant.dataset_id)

    again = cost_data_seed(tenant=tenant, actor=Actor.system("test"), start=start, end=end, rows_per_day=10)

    assert first.failed == [] and again.failed == []
    assert _focus_by_provider_day(tenant.dataset_id) == before
    assert sum(before.values()) == first.expected_net_cost() == again.expected_net_cost()


def test_setup_local_seeds_the_demo_tenant_once(
    export_root: Path, settings: Any, tmp_path: Path, tenant_client: Any
) -> None:
    from tests.conftest import ensure_seeded_plans

    ensure_seeded_plans()
    settings.VAR_DIR = tmp_path
    settings.ADMIN_API_KEY_PATH = tmp_path / "admin_api_key"
    out = StringIO()

    call_command(
        "setup_local", "--demo-days", "3", "--demo-rows-per-day", "10", stdout=out, stderr=StringIO()
    )

    demo = Tenant.objects.get(tenant_id="demo")
    runs = PipelineRun.objects.filter(tenant=demo)
    assert runs.filter(status=RunStatus.COMPLETED).count() == runs.count() >= 3 + 1 + 1
    first_count = runs.count()
    costs_line = next(line for line in out.getvalue().splitlines() if "demo costs:" in line)
    key = (tmp_path / "demo_api_key").read_text().strip()
    assert f"X-API-Key: {key}" in costs_line
    url = costs_line.split("'")[-2]
    path = url[url.index("/api/v1/") :]
    first_total = tenant_client(key).get(path).json()["total_billed_cost"]
    assert Decimal(first_total) > 0

    second = StringIO()
    call_command(
        "setup_local", "--demo-days", "3", "--demo-rows-per-day", "10", stdout=second, stderr=StringIO()
    )

    assert "already loaded" in second.getvalue()
    assert PipelineRun.objects.filter(tenant=demo).count() == first_count
    assert tenant_client(key).get(path).json()["total_billed_cost"] == first_total
