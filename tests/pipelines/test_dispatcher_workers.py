"""Acceptance: under scheduled load with real Celery workers, no tenant ever has more runs RUNNING (or
PENDING + RUNNING) than its plan's concurrent limit, sampled from a separate connection throughout."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import defaultdict

import pytest
from django.db import connection, connections
from django.utils import timezone

from pipelines.models import TERMINAL_STATUSES, PipelineRun, StepLog
from pipelines.scheduler import queue_dispatch, schedules_tick
from tenants.models import TenantUsage
from tests.pipelines import real_workers
from tests.pipelines.real_workers import wait_for as wait_for  # re-exported for the other worker tests
from tests.pipelines.scheduler_factories import make_schedules

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

worker_env = real_workers.worker_env  # the fixtures: test database, private queue, short lease
start_workers = real_workers.start_workers  # real worker processes (prefork, prefetch 1)


class Sampler(threading.Thread):
    """Reads per-tenant RUNNING and PENDING+RUNNING counts on its own connection until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.max_running: dict[str, int] = defaultdict(int)
        self.max_active: dict[str, int] = defaultdict(int)
        self.samples = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with connections["default"].cursor() as cursor:
                    cursor.execute(
                        "SELECT tenant_id, SUM(CASE WHEN status = 'RUNNING' THEN 1 ELSE 0 END),"
                        " COUNT(*) FROM pipelines_pipelinerun"
                        " WHERE status IN ('PENDING', 'RUNNING') GROUP BY tenant_id"
                    )
                    for tenant_id, running, active in cursor.fetchall():
                        self.max_running[tenant_id] = max(self.max_running[tenant_id], int(running))
                        self.max_active[tenant_id] = max(self.max_active[tenant_id], int(active))
                self.samples += 1
                time.sleep(0.02)
        finally:
            connections["default"].close()


def test_scheduled_load_never_exceeds_a_tenant_s_concurrent_limit(make_tenant, start_workers) -> None:
    make_tenant("small", plan="STARTER")  # 1 at once
    make_tenant("pro", plan="PROFESSIONAL")  # 3 at once
    now = timezone.now()
    due = now - dt.timedelta(minutes=1)
    make_schedules("small", 4, next_run_at=due, pipeline="test/engine/slow")
    make_schedules("pro", 6, next_run_at=due, pipeline="test/engine/slow")
    start_workers(5)
    sampler = Sampler()
    sampler.start()
    try:
        assert schedules_tick(now=now).queued == 10
        queue_dispatch(now=now)  # the rest is dispatched by the workers as runs finish
        wait_for(
            lambda: PipelineRun.objects.filter(status__in=TERMINAL_STATUSES).count() == 10,
            180,
            "every scheduled run to finish",
        )
    finally:
        sampler.stop.set()
        sampler.join(timeout=10)
        connection.close()

    assert sampler.samples > 0
    assert dict(sampler.max_running).keys() <= {"small", "pro"}
    assert sampler.max_running["small"] <= 1 and sampler.max_active["small"] <= 1
    assert sampler.max_running["pro"] <= 3 and sampler.max_active["pro"] <= 3
    assert set(PipelineRun.objects.values_list("status", flat=True)) == {"COMPLETED"}
    assert set(TenantUsage.objects.values_list("tenant_id", "running")) == {("small", 0), ("pro", 0)}
    assert StepLog.objects.filter(status="COMPLETED").count() == 20  # two steps per run, once each
