"""Acceptance: SIGKILL a worker with several runs in flight. The reaper, driven explicitly at lease
expiry, requeues them; a new worker finishes each once (StepLog counts), attempt 2 each."""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest
from django.db.models import Count
from django.utils import timezone

from pipelines.models import TERMINAL_STATUSES, PipelineRun, StepLog
from pipelines.scheduler import queue_dispatch, runs_reap, schedules_tick
from tenants.models import TenantUsage
from tests.pipelines import test_dispatcher_workers, test_worker
from tests.pipelines.scheduler_factories import make_schedules
from tests.pipelines.test_dispatcher_workers import wait_for
from tests.pipelines.test_worker import LEASE_S

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

IN_FLIGHT = 3
worker_env = test_worker.worker_env  # fixtures shared with the other real-worker tests
start_workers = test_dispatcher_workers.start_workers


def test_sigkilled_worker_s_runs_are_reaped_and_each_completes_once(
    make_tenant, start_workers, tmp_path
) -> None:
    make_tenant("big", plan="SCALE")
    hold = tmp_path / "hold"
    hold.write_text("step 'first' blocks while this file exists")
    now = timezone.now()
    make_schedules(
        "big",
        IN_FLIGHT,
        next_run_at=now - dt.timedelta(minutes=1),
        pipeline="test/engine/slow",
        parameters={"date": "yesterday", "hold_file": str(hold)},
    )
    worker = start_workers(IN_FLIGHT)
    assert schedules_tick(now=now).queued == IN_FLIGHT
    assert queue_dispatch(now=now) == IN_FLIGHT
    wait_for(
        lambda: StepLog.objects.filter(step_id="first", status="RUNNING").count() == IN_FLIGHT,
        90,
        "every run to be inside its first step",
    )

    os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool children, mid-step
    worker.wait(timeout=10)
    assert PipelineRun.objects.filter(status="RUNNING", attempt=1).count() == IN_FLIGHT

    # The next reaper pass after the lease has expired (the beat tick would run it): all requeued.
    reaped = runs_reap(now=timezone.now() + dt.timedelta(seconds=LEASE_S + 1))
    assert (reaped.requeued, reaped.failed) == (IN_FLIGHT, 0)
    assert PipelineRun.objects.filter(status="PENDING", attempt=1).count() == IN_FLIGHT
    assert TenantUsage.objects.get(tenant_id="big").running == IN_FLIGHT  # slots kept while requeued

    hold.unlink()
    start_workers(IN_FLIGHT)
    wait_for(
        lambda: PipelineRun.objects.filter(status__in=TERMINAL_STATUSES).count() == IN_FLIGHT,
        120,
        "the requeued runs to finish",
    )

    assert set(PipelineRun.objects.values_list("status", "attempt")) == {("COMPLETED", 2)}
    completed = (
        StepLog.objects.filter(status="COMPLETED").values("run_id", "step_id").annotate(times=Count("pk"))
    )
    assert len(completed) == IN_FLIGHT * 2
    assert {row["times"] for row in completed} == {1}  # no step completed twice
    assert not StepLog.objects.filter(attempt=1, status="COMPLETED").exists()
    assert TenantUsage.objects.get(tenant_id="big").running == 0
