"""Runs through a real Celery worker process on Redis: delivery, execution and a SIGKILL mid-run."""

from __future__ import annotations

import os
import signal

import pytest

from pipelines.models import PipelineRun, StepLog
from tests.pipelines import real_workers
from tests.pipelines.real_workers import LEASE_S as LEASE_S  # re-exported for the other worker tests
from tests.pipelines.real_workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

worker_env = real_workers.worker_env  # the fixtures: test database, private queue, short lease
start_workers = real_workers.start_workers


def _status(run_id: str) -> str:
    return PipelineRun.objects.values_list("status", flat=True).get(pk=run_id)


def test_run_is_executed_by_a_real_worker(make_tenant, tenant_client, start_workers) -> None:
    _tenant, raw = make_tenant("acme")
    start_workers()
    response = tenant_client(raw).post(
        "/api/v1/pipelines/run/acme/test/engine/ok", {"date": "2025-11-19"}, format="json"
    )
    assert response.status_code == 202
    run_id = response.json()["pipeline_logging_id"]
    wait_for(lambda: _status(run_id) in {"COMPLETED", "FAILED"}, 60, "the run to finish")
    run = PipelineRun.objects.get(pk=run_id)
    assert (run.status, run.attempt, run.rows_processed) == ("COMPLETED", 1, 7)
    assert list(StepLog.objects.filter(run=run).values_list("step_id", "status")) == [
        ("first", "COMPLETED"),
        ("second", "COMPLETED"),
    ]


def test_sigkilled_worker_run_is_redelivered_and_completes_once(
    make_tenant, tenant_client, start_workers, tmp_path
) -> None:
    _tenant, raw = make_tenant("acme")
    hold = tmp_path / "hold"
    hold.write_text("the step blocks while this file exists")
    worker = start_workers()
    response = tenant_client(raw).post(
        "/api/v1/pipelines/run/acme/test/engine/slow",
        {"date": "2025-11-19", "hold_file": str(hold)},
        format="json",
    )
    assert response.status_code == 202
    run_id = response.json()["pipeline_logging_id"]
    wait_for(
        lambda: StepLog.objects.filter(run_id=run_id, step_id="first", status="RUNNING").exists(),
        60,
        "the first step to start",
    )
    os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool child, mid-step
    worker.wait(timeout=10)
    assert _status(run_id) == "RUNNING"
    hold.unlink()
    start_workers()
    wait_for(lambda: _status(run_id) in {"COMPLETED", "FAILED"}, 90, "the redelivered run to finish")
    run = PipelineRun.objects.get(pk=run_id)
    assert (run.status, run.attempt) == ("COMPLETED", 2)
    final_steps = list(StepLog.objects.filter(run=run, attempt=2).values_list("step_id", "status"))
    assert final_steps == [("first", "COMPLETED"), ("second", "COMPLETED")]
    # The dead attempt never completed anything.
    assert not StepLog.objects.filter(run=run, attempt=1, status="COMPLETED").exists()
