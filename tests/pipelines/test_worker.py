"""Runs through a real Celery worker process on Redis: delivery, execution and a SIGKILL mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from pipelines.models import PipelineRun, StepLog

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 3


@pytest.fixture
def worker_env(settings: Any, tmp_path: Path, test_pipelines: Path) -> dict[str, str]:
    """Settings shared by this test process and the worker: the test database, a file warehouse both
    can open, a private queue, and a short lease."""
    from convergence.celery import app
    from convergence.warehouse import get_warehouse

    queue = f"test-{uuid.uuid4().hex[:8]}"
    warehouse_url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    settings.WAREHOUSE_URL = warehouse_url
    settings.RUN_LEASE_S = LEASE_S
    get_warehouse.cache_clear()
    app.conf.task_default_queue = queue
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "convergence.settings.test",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "CELERY_VISIBILITY_TIMEOUT_S": "4",
        "CELERY_UNACKED_RESTORE_INTERVAL_S": "1",
        "CELERY_UNACKED_RESTORE_THROTTLE": "1",
        "WAREHOUSE_URL": warehouse_url,
        "PIPELINE_CONFIGS_DIR": str(test_pipelines),
        "RUN_LEASE_S": str(LEASE_S),
        "RUN_HEARTBEAT_S": "1",
        "KMS_LOCAL_KEY": os.environ.get("KMS_LOCAL_KEY", "dGVzdC1vbmx5LWttcy1sb2NhbC1rZXktMzJieXRlcyE="),
        "CELERY_QUEUE": queue,
    }
    yield env
    app.conf.task_default_queue = "celery"


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []

    def _start() -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker-{len(processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.pipelines.worker_launcher",
                "worker",
                "-Q",
                worker_env["CELERY_QUEUE"],
                "--concurrency",
                "1",
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            cwd=REPO,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

    yield _start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _status(run_id: str) -> str:
    return PipelineRun.objects.values_list("status", flat=True).get(pk=run_id)


def test_run_is_executed_by_a_real_worker(make_tenant, tenant_client, start_worker) -> None:
    _tenant, raw = make_tenant("acme")
    start_worker()
    response = tenant_client(raw).post(
        "/api/v1/pipelines/run/acme/test/engine/ok", {"date": "2025-11-19"}, format="json"
    )
    assert response.status_code == 202
    run_id = response.json()["pipeline_logging_id"]
    _wait_for(lambda: _status(run_id) in {"COMPLETED", "FAILED"}, 60, "the run to finish")
    run = PipelineRun.objects.get(pk=run_id)
    assert (run.status, run.attempt, run.rows_processed) == ("COMPLETED", 1, 7)
    assert list(StepLog.objects.filter(run=run).values_list("step_id", "status")) == [
        ("first", "COMPLETED"),
        ("second", "COMPLETED"),
    ]


def test_sigkilled_worker_run_is_redelivered_and_completes_once(
    make_tenant, tenant_client, start_worker, tmp_path
) -> None:
    _tenant, raw = make_tenant("acme")
    hold = tmp_path / "hold"
    hold.write_text("the step blocks while this file exists")
    worker = start_worker()
    response = tenant_client(raw).post(
        "/api/v1/pipelines/run/acme/test/engine/slow",
        {"date": "2025-11-19", "hold_file": str(hold)},
        format="json",
    )
    assert response.status_code == 202
    run_id = response.json()["pipeline_logging_id"]
    _wait_for(
        lambda: StepLog.objects.filter(run_id=run_id, step_id="first", status="RUNNING").exists(),
        60,
        "the first step to start",
    )
    os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool child, mid-step
    worker.wait(timeout=10)
    assert _status(run_id) == "RUNNING"
    hold.unlink()
    start_worker()
    _wait_for(lambda: _status(run_id) in {"COMPLETED", "FAILED"}, 90, "the redelivered run to finish")
    run = PipelineRun.objects.get(pk=run_id)
    assert (run.status, run.attempt) == ("COMPLETED", 2)
    final_steps = list(StepLog.objects.filter(run=run, attempt=2).values_list("step_id", "status"))
    assert final_steps == [("first", "COMPLETED"), ("second", "COMPLETED")]
    # The dead attempt never completed anything.
    assert not StepLog.objects.filter(run=run, attempt=1, status="COMPLETED").exists()
