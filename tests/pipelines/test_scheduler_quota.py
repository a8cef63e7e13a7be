"""The scheduler tick's quota admission and outcomes per batch (pipelines/scheduler.py): several tenants
in one batch, rollover of a past day or period, FAILED/SKIPPED/parked schedules mixed with runnable
ones, and admission racing a manual trigger on the same usage row.

Most tests run on both tick paths: the two-statement PostgreSQL path and the ORM path that SQLite
(``make run``) uses, which must agree on every outcome."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, transaction

from pipelines import scheduler
from pipelines.models import PipelineRun, Schedule
from pipelines.scheduler import schedules_tick
from pipelines.services import _admit
from tenants.models import Subscription, TenantUsage
from tenants.selectors import tenant_queryset
from tests.pipelines.scheduler_factories import make_schedules, utc

NOW = utc(2025, 11, 19, 5, 0, 30)
TODAY = dt.date(2025, 11, 19)
PERIOD = utc(2025, 11, 1)  # the current billing period for subscriptions anchored on the 1st
DAILY_REFUSAL = "daily_quota_exceeded: Daily pipeline quota of 6 reached"


@pytest.fixture(params=["sql", "orm"])
def tick_path(request, monkeypatch) -> str:
    """Run the test on the PostgreSQL statements and again on the ORM path."""
    if request.param == "orm":
        monkeypatch.setattr(scheduler, "_tick_batch_pg", scheduler._tick_batch_orm)
    return request.param


def _tenant(
    make_tenant, tenant_id: str, plan: str, *, runs_today: int = 0, runs_this_period: int = 0
) -> None:
    tenant, _raw = make_tenant(tenant_id, plan=plan)
    Subscription.objects.filter(tenant=tenant).update(current_period_start=PERIOD)
    TenantUsage.objects.filter(tenant=tenant).update(
        day=TODAY, runs_today=runs_today, period_start=PERIOD, runs_this_period=runs_this_period
    )


def _usage(tenant_id: str) -> tuple[int, int, int]:
    usage = TenantUsage.objects.get(tenant_id=tenant_id)
    return usage.runs_today, usage.runs_this_period, usage.running


def _statuses(tenant_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in PipelineRun.objects.filter(tenant_id=tenant_id).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.mark.django_db
def test_two_tenants_in_one_batch_one_over_its_daily_quota(make_tenant, test_pipelines, tick_path) -> None:
    _tenant(make_tenant, "small", "STARTER", runs_today=3, runs_this_period=10)  # 6 a day: 3 left
    _tenant(make_tenant, "big", "PROFESSIONAL")
    earlier = make_schedules("small", 2, next_run_at=utc(2025, 11, 19, 4, 58), cron="58 4 * * *")
    later = make_schedules("small", 3, next_run_at=utc(2025, 11, 19, 5), cron="0 5 * * *")
    make_schedules("big", 4, next_run_at=utc(2025, 11, 19, 5))

    result = schedules_tick(now=NOW, batch_size=50)

    assert (result.queued, result.skipped, result.failed, result.schedules) == (7, 2, 0, 9)
    assert _statuses("small") == {"QUEUED": 3, "SKIPPED": 2}
    assert _statuses("big") == {"QUEUED": 4}
    # the first 3 in (scheduled_for, schedule) order are admitted: both 04:58 runs, then the lowest id
    first_at_five = min(later, key=lambda schedule: str(schedule.pk))
    queued = set(
        PipelineRun.objects.filter(tenant_id="small", status="QUEUED").values_list("schedule_id", flat=True)
    )
    assert queued == {earlier[0].pk, earlier[1].pk, first_at_five.pk}
    skipped = PipelineRun.objects.filter(status="SKIPPED")
    assert set(skipped.values_list("error", "finished_at", "priority")) == {(DAILY_REFUSAL, NOW, 1)}
    assert set(
        PipelineRun.objects.filter(status="QUEUED").values_list("tenant_id", "finished_at", "priority")
    ) == {
        ("small", None, 1),
        ("big", None, 2),
    }
    assert _usage("small") == (6, 13, 0)  # only the admitted runs are counted
    assert _usage("big") == (4, 4, 0)
    assert not Schedule.objects.filter(next_run_at__lte=NOW).exists()


@pytest.mark.django_db
def test_a_tenant_with_no_room_left_is_not_written_at_all(make_tenant, test_pipelines, tick_path) -> None:
    _tenant(make_tenant, "small", "STARTER", runs_today=6, runs_this_period=6)
    before = TenantUsage.objects.get(tenant_id="small").updated_at
    make_schedules("small", 2, next_run_at=utc(2025, 11, 19, 5))

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped) == (0, 2)
    assert set(PipelineRun.objects.values_list("status", "error")) == {("SKIPPED", DAILY_REFUSAL)}
    usage = TenantUsage.objects.get(tenant_id="small")
    assert (usage.runs_today, usage.runs_this_period, usage.updated_at) == (6, 6, before)


@pytest.mark.django_db
def test_the_daily_limit_is_named_when_both_limits_are_reached(
    make_tenant, test_pipelines, tick_path
) -> None:
    _tenant(make_tenant, "small", "STARTER", runs_today=5, runs_this_period=179)
    make_schedules("small", 3, next_run_at=utc(2025, 11, 19, 5))

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped) == (1, 2)
    assert set(PipelineRun.objects.filter(status="SKIPPED").values_list("error", flat=True)) == {
        DAILY_REFUSAL
    }
    assert _usage("small") == (6, 180, 0)


@pytest.mark.django_db
def test_counts_of_a_past_day_and_period_roll_over_before_admission(
    make_tenant, test_pipelines, tick_path
) -> None:
    _tenant(make_tenant, "small", "STARTER")
    TenantUsage.objects.filter(tenant_id="small").update(
        day=TODAY - dt.timedelta(days=1), runs_today=6, period_start=utc(2025, 10, 1), runs_this_period=180
    )
    make_schedules("small", 2, next_run_at=utc(2025, 11, 19, 5))

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped) == (2, 0)
    usage = TenantUsage.objects.get(tenant_id="small")
    assert (usage.day, usage.runs_today, usage.period_start, usage.runs_this_period) == (TODAY, 2, PERIOD, 2)


@pytest.mark.django_db
def test_one_batch_mixing_every_outcome(make_tenant, test_pipelines, tick_path) -> None:
    _tenant(make_tenant, "acme", "PROFESSIONAL")
    _tenant(make_tenant, "sleepy", "PROFESSIONAL")
    Subscription.objects.filter(tenant_id="sleepy").update(status="SUSPENDED")
    due = utc(2025, 11, 19, 5)
    (runnable,) = make_schedules("acme", 1, next_run_at=due)
    (gone,) = make_schedules("acme", 1, next_run_at=due, pipeline="test/engine/gone")
    (bad,) = make_schedules("acme", 1, next_run_at=due, parameters={"date": "yesterday", "label": "NOT OK!"})
    (done,) = make_schedules("acme", 1, next_run_at=due)
    (broken,) = make_schedules("acme", 1, next_run_at=due, cron="not a cron")
    (bad_zone,) = make_schedules("acme", 1, next_run_at=due, timezone="Mars/Olympus")
    (suspended,) = make_schedules("sleepy", 1, next_run_at=due)
    PipelineRun.objects.create(
        tenant_id="acme",
        pipeline="test/engine/ok",
        pipeline_id="acme_test_engine_ok",
        status="COMPLETED",
        trigger="scheduled",
        schedule=done,
        scheduled_for=due,
    )

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped, result.failed, result.schedules) == (1, 1, 2, 7)
    runs = {run.schedule_id: run for run in PipelineRun.objects.exclude(schedule=done)}
    assert set(runs) == {runnable.pk, gone.pk, bad.pk, suspended.pk}
    assert (runs[runnable.pk].status, runs[runnable.pk].parameters) == ("QUEUED", {"date": "2025-11-18"})
    assert runs[gone.pk].status == "FAILED"
    assert runs[gone.pk].error.startswith("schedule_invalid: pipeline test/engine/gone not found")
    assert runs[bad.pk].status == "FAILED"
    assert runs[bad.pk].error.startswith("invalid_parameters: ") and "label" in runs[bad.pk].error
    assert (runs[suspended.pk].status, runs[suspended.pk].error, runs[suspended.pk].parameters) == (
        "SKIPPED",
        "subscription_inactive: subscription is suspended",
        {"date": "2025-11-18"},
    )
    assert all(run.finished_at == NOW for run in runs.values() if run.status != "QUEUED")
    assert PipelineRun.objects.filter(schedule=done).count() == 1
    assert _usage("acme") == (1, 1, 0)  # only the runnable schedule took quota
    assert _usage("sleepy") == (0, 0, 0)
    times = dict(Schedule.objects.values_list("pk", "next_run_at"))
    assert times[broken.pk] is None and times[bad_zone.pk] is None  # parked until edited
    assert Schedule.objects.get(pk=broken.pk).last_run_at is None
    for schedule in (runnable, gone, bad, done, suspended):
        assert times[schedule.pk] == utc(2025, 11, 19, 5, 15)
        assert Schedule.objects.get(pk=schedule.pk).last_run_at == due


@pytest.mark.django_db
def test_a_batch_of_only_unparseable_schedules_parks_them(make_tenant, test_pipelines, tick_path) -> None:
    _tenant(make_tenant, "acme", "PROFESSIONAL")
    make_schedules("acme", 3, next_run_at=utc(2025, 11, 19, 5), cron="61 * * * *")

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped, result.failed, result.schedules) == (0, 0, 0, 3)
    assert not PipelineRun.objects.exists()
    assert set(Schedule.objects.values_list("next_run_at", flat=True)) == {None}
    assert _usage("acme") == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_admission_counts_a_manual_trigger_committed_while_the_tick_waited(
    make_tenant, test_pipelines
) -> None:
    """A manual trigger holds the usage row; the tick's write waits on it and must then count the
    committed run (its statement snapshot predates that commit): 6 a day, 4 used, 1 taken by the
    trigger, so of 3 scheduled runs exactly 1 is admitted and the day ends at 6, never 7."""
    _tenant(make_tenant, "small", "STARTER", runs_today=4, runs_this_period=4)
    make_schedules("small", 3, next_run_at=utc(2025, 11, 19, 5))
    holding, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def manual_trigger() -> None:
        try:
            with transaction.atomic():
                tenant = tenant_queryset().get(tenant_id="small")
                _admit(tenant=tenant, subscription=tenant.subscription, now=NOW, runs=1, slots=0)
                holding.set()
                release.wait(timeout=30)
        finally:
            holding.set()
            connection.close()

    def tick() -> None:
        try:
            results["tick"] = schedules_tick(now=NOW)
        finally:
            connection.close()

    trigger_thread = threading.Thread(target=manual_trigger)
    trigger_thread.start()
    assert holding.wait(timeout=30)
    tick_thread = threading.Thread(target=tick)
    tick_thread.start()
    tick_thread.join(timeout=1.0)
    assert tick_thread.is_alive()  # waiting on the usage row lock
    release.set()
    trigger_thread.join(timeout=30)
    tick_thread.join(timeout=30)

    result = results["tick"]
    assert isinstance(result, scheduler.TickResult)
    assert (result.queued, result.skipped) == (1, 2)
    assert _usage("small") == (6, 6, 0)
    assert _statuses("small") == {"QUEUED": 1, "SKIPPED": 2}
