"""Real Celery worker processes for the acceptance tests: the environment they share with the test
process, a fixture starting them (via ``tests.pipelines.worker_launcher``) and stopping them after the
test, and a polling helper.

Use the fixtures by binding them in the test module: ``worker_env = real_workers.worker_env``."""

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

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 3


@pytest.fixture
def worker_env(settings: Any, tmp_path: Path, test_pipelines: Path) -> Iterator[dict[str, str]]:
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
def start_workers(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Real worker processes (prefork, prefetch 1) on the test's private queue, each with its own node
    name and log file under ``tmp_path``; ``start_workers(concurrency=1)`` starts one. Stopped (SIGTERM,
    then SIGKILL) after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def _start(concurrency: int = 1) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker-{len(processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.pipelines.worker_launcher",
                "worker",
                "-Q",
                worker_env["CELERY_QUEUE"],
                "--hostname",
                f"w{len(processes)}-{os.getpid()}@%h",
                "--concurrency",
                str(concurrency),
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
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` every 0.2 s until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
