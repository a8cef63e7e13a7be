"""The scheduler tick, quota reset, retention, "run now", the operations view, the scheduler endpoints,
commands and beat entries (pipelines/scheduler.py)."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from pipelines.cron import parse_cron
from pipelines.models import DQResult, PipelineRun, Schedule, SchedulerState, StepLog
from pipelines.scheduler import (
    due_timing,
    operations_overview,
    queue_dispatch,
    quotas_reset,
    runs_purge_expired,
    schedule_run_now,
    schedules_tick,
)
from pipelines.services import schedule_create
from tenants.actors import Actor
from tenants.models import AuditLog, Subscription, TenantUsage
from tests.pipelines import scheduler_factories
from tests.pipelines.scheduler_factories import make_schedules, utc

pytestmark = pytest.mark.django_db

sent = scheduler_factories.sent  # the fixture

ACTOR = Actor.system("test")
NOW = utc(2025, 11, 19, 5, 0, 30)


@pytest.fixture
def acme(make_tenant, test_pipelines):
    tenant, _raw = make_tenant("acme", plan="PROFESSIONAL")
    return tenant


def _usage(tenant_id: str = "acme") -> tuple[int, int, int]:
    usage = TenantUsage.objects.get(tenant_id=tenant_id)
    return usage.runs_today, usage.runs_this_period, usage.running


# --- tick ------------------------------------------------------------------------------------------


def test_tick_queues_one_run_per_due_schedule_and_advances_it(acme) -> None:
    schedule = schedule_create(
        tenant=acme,
        pipeline="test/engine/ok",
        cron="0 6 * * *",
        timezone="Europe/Berlin",
        parameters={"date": "yesterday", "label": "daily"},
        enabled=True,
        actor=ACTOR,
        now=utc(2025, 11, 18, 6),
    )
    assert schedule.next_run_at == utc(2025, 11, 19, 5)  # 06:00 CET

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped, result.failed, result.coalesced) == (1, 0, 0, 0)
    run = PipelineRun.objects.get()
    assert (run.status, run.trigger, run.schedule_id, run.scheduled_for) == (
        "QUEUED",
        "scheduled",
        schedule.pk,
        utc(2025, 11, 19, 5),
    )
    assert run.parameters == {"date": "2025-11-18", "label": "daily"}
    assert (run.pipeline, run.pipeline_id, run.priority, run.attempt) == (
        "test/engine/ok",
        "acme_test_engine_ok",
        acme.subscription.plan.priority,
        0,
    )
    schedule.refresh_from_db()
    assert (schedule.next_run_at, schedule.last_run_at) == (utc(2025, 11, 20, 5), utc(2025, 11, 19, 5))
    assert _usage() == (1, 1, 0)  # quota taken, no concurrency slot until dispatched
    assert SchedulerState.objects.get(job="tick").last_run_at == NOW


def test_a_second_tick_at_the_same_time_creates_nothing(acme) -> None:
    make_schedules("acme", 3, next_run_at=utc(2025, 11, 19, 5))
    assert schedules_tick(now=NOW).queued == 3

    again = schedules_tick(now=NOW)

    assert (again.queued, again.skipped, again.schedules) == (0, 0, 0)
    assert PipelineRun.objects.count() == 3
    assert _usage() == (3, 3, 0)


def test_schedules_not_yet_due_and_disabled_schedules_are_left_alone(acme) -> None:
    (later,) = make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 5, 15))
    (disabled,) = make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 4), enabled=False)

    result = schedules_tick(now=NOW)

    assert (result.queued, result.schedules) == (0, 0)
    assert not PipelineRun.objects.exists()
    assert Schedule.objects.get(pk=later.pk).next_run_at == utc(2025, 11, 19, 5, 15)
    assert Schedule.objects.get(pk=disabled.pk).next_run_at == utc(2025, 11, 19, 4)
    assert _usage() == (0, 0, 0)


def test_three_missed_hours_coalesce_into_one_catch_up_run_per_schedule(acme) -> None:
    now = utc(2025, 11, 19, 9, 7, 12)
    schedules = make_schedules("acme", 20, next_run_at=utc(2025, 11, 19, 6, 0))  # 12 fire times missed

    result = schedules_tick(now=now)

    assert (result.queued, result.coalesced, result.schedules) == (20, 20, 20)
    runs = PipelineRun.objects.filter(schedule__in=schedules)
    assert runs.count() == 20
    assert set(runs.values_list("scheduled_for", flat=True)) == {utc(2025, 11, 19, 9, 0)}  # the latest
    assert set(Schedule.objects.values_list("next_run_at", flat=True)) == {utc(2025, 11, 19, 9, 15)}
    assert all(moment > now for moment in Schedule.objects.values_list("next_run_at", flat=True))
    assert _usage() == (20, 20, 0)


def test_tick_with_a_run_already_present_for_the_fire_time_adds_none_and_takes_no_quota(acme) -> None:
    (schedule,) = make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 5))
    PipelineRun.objects.create(
        tenant=acme,
        pipeline="test/engine/ok",
        pipeline_id="acme_test_engine_ok",
        status="COMPLETED",
        trigger="scheduled",
        schedule=schedule,
        scheduled_for=utc(2025, 11, 19, 5),
    )

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped, result.schedules) == (0, 0, 1)
    assert PipelineRun.objects.filter(schedule=schedule).count() == 1
    assert Schedule.objects.get(pk=schedule.pk).next_run_at == utc(2025, 11, 19, 5, 15)
    assert _usage() == (0, 0, 0)


def test_relative_dates_resolve_in_the_schedule_zone_at_the_fire_time(acme) -> None:
    # 23:00 in Los Angeles on Nov 18 is 07:00 UTC on Nov 19: "today" is the 18th there.
    make_schedules(
        "acme",
        1,
        next_run_at=utc(2025, 11, 19, 7),
        cron="0 23 * * *",
        timezone="America/Los_Angeles",
        parameters={"date": "today"},
    )

    schedules_tick(now=utc(2025, 11, 19, 7, 0, 5))

    assert PipelineRun.objects.get().parameters == {"date": "2025-11-18"}
    assert Schedule.objects.get().next_run_at == utc(2025, 11, 20, 7)


def test_runs_over_the_daily_quota_are_recorded_skipped_with_the_reason(make_tenant, test_pipelines) -> None:
    make_tenant("small", plan="STARTER")  # 6 a day
    make_schedules("small", 8, next_run_at=utc(2025, 11, 19, 5))

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped) == (6, 2)
    assert PipelineRun.objects.filter(status="QUEUED").count() == 6
    skipped = PipelineRun.objects.filter(status="SKIPPED")
    assert skipped.count() == 2
    assert set(skipped.values_list("error", flat=True)) == {
        "daily_quota_exceeded: Daily pipeline quota of 6 reached"
    }
    assert all(run.finished_at == NOW for run in skipped)
    assert _usage("small") == (6, 6, 0)  # the skipped runs took nothing


def test_runs_over_the_period_quota_are_skipped_as_monthly(make_tenant, test_pipelines) -> None:
    tenant, _raw = make_tenant("small", plan="STARTER")  # 180 a period
    period_start = tenant.subscription.current_period_start
    TenantUsage.objects.filter(tenant=tenant).update(runs_this_period=179, period_start=period_start)
    make_schedules("small", 2, next_run_at=utc(2025, 11, 19, 5))
    Subscription.objects.filter(tenant=tenant).update(current_period_start=utc(2025, 11, 1))
    TenantUsage.objects.filter(tenant=tenant).update(period_start=utc(2025, 11, 1))

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped) == (1, 1)
    assert PipelineRun.objects.get(status="SKIPPED").error == (
        "monthly_quota_exceeded: Billing-period pipeline quota of 180 reached"
    )
    assert _usage("small") == (1, 180, 0)


def test_a_suspended_tenant_s_runs_are_skipped_and_take_nothing(acme) -> None:
    Subscription.objects.filter(tenant=acme).update(status="SUSPENDED")
    make_schedules("acme", 2, next_run_at=utc(2025, 11, 19, 5))

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped) == (0, 2)
    assert set(PipelineRun.objects.values_list("status", "error")) == {
        ("SKIPPED", "subscription_inactive: subscription is suspended")
    }
    assert _usage() == (0, 0, 0)


def test_a_schedule_whose_pipeline_is_gone_records_a_failed_run_and_takes_no_quota(
    acme, test_pipelines
) -> None:
    (schedule,) = make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 5))
    (test_pipelines / "test/engine/ok.yml").unlink()

    result = schedules_tick(now=NOW)

    assert (result.queued, result.skipped, result.failed) == (0, 0, 1)
    run = PipelineRun.objects.get()
    assert run.status == "FAILED"
    assert run.error.startswith("schedule_invalid: pipeline test/engine/ok not found")
    assert Schedule.objects.get(pk=schedule.pk).next_run_at == utc(2025, 11, 19, 5, 15)
    assert _usage() == (0, 0, 0)


def test_small_batches_cover_every_due_schedule(acme) -> None:
    make_schedules("acme", 7, next_run_at=utc(2025, 11, 19, 5))

    result = schedules_tick(now=NOW, batch_size=2)

    assert (result.queued, result.schedules) == (7, 7)
    assert PipelineRun.objects.values("schedule_id", "scheduled_for").distinct().count() == 7


def test_due_timing_after_an_outage_over_spring_forward_is_the_latest_fire_before_now() -> None:
    import zoneinfo

    new_york = zoneinfo.ZoneInfo("America/New_York")
    # Every 30 minutes from 01:00 to 03:30 local on 2025-03-09 (02:xx does not exist that day).
    first_due = utc(2025, 3, 9, 6, 0)  # 01:00 EST
    scheduled_for, next_run_at, coalesced = due_timing(
        spec=parse_cron("*/30 1-3 * * *"), zone=new_york, first_due=first_due, now=utc(2025, 3, 9, 7, 40)
    )
    assert (scheduled_for, next_run_at, coalesced) == (utc(2025, 3, 9, 7, 30), utc(2025, 3, 10, 5, 0), True)


# --- dispatch after the tick -------------------------------------------------------------------------


def test_queued_scheduled_runs_are_dispatched_within_the_limit(
    acme, sent, django_capture_on_commit_callbacks
) -> None:
    make_schedules("acme", 5, next_run_at=utc(2025, 11, 19, 5))
    schedules_tick(now=NOW)

    with django_capture_on_commit_callbacks(execute=True):
        dispatched = queue_dispatch(now=NOW)

    assert dispatched == 3  # PROFESSIONAL runs 3 at once
    assert PipelineRun.objects.filter(status="PENDING").count() == 3
    assert PipelineRun.objects.filter(status="QUEUED").count() == 2
    assert sorted(sent) == sorted(
        str(pk) for pk in PipelineRun.objects.filter(status="PENDING").values_list("pk", flat=True)
    )
    assert _usage() == (5, 5, 3)


# --- quota reset and retention -------------------------------------------------------------------------


def test_daily_reset_zeroes_yesterday_s_counts_and_agrees_with_the_lazy_rollover(acme) -> None:
    TenantUsage.objects.filter(tenant=acme).update(day=dt.date(2025, 11, 18), runs_today=5, running=2)

    result = quotas_reset(now=utc(2025, 11, 19, 0, 0, 5))

    assert result.tenants_reset == 1
    usage = TenantUsage.objects.get(tenant=acme)
    assert (usage.day, usage.runs_today, usage.running) == (dt.date(2025, 11, 19), 0, 2)
    assert quotas_reset(now=utc(2025, 11, 19, 0, 0, 6)).tenants_reset == 0  # a second call changes nothing


def test_daily_reset_leaves_a_day_already_rolled_by_an_admission(acme) -> None:
    TenantUsage.objects.filter(tenant=acme).update(day=dt.date(2025, 11, 19), runs_today=1)

    assert quotas_reset(now=utc(2025, 11, 19, 0, 0, 5)).tenants_reset == 0
    assert TenantUsage.objects.get(tenant=acme).runs_today == 1


def test_period_count_resets_on_the_subscription_anniversary_only(make_tenant, test_pipelines) -> None:
    due, _ = make_tenant("due")
    notyet, _ = make_tenant("notyet")
    Subscription.objects.filter(tenant=due).update(current_period_start=utc(2025, 9, 19, 12))
    Subscription.objects.filter(tenant=notyet).update(current_period_start=utc(2025, 9, 20, 12))
    TenantUsage.objects.filter(tenant=due).update(period_start=utc(2025, 10, 19, 12), runs_this_period=40)
    TenantUsage.objects.filter(tenant=notyet).update(period_start=utc(2025, 10, 20, 12), runs_this_period=30)

    result = quotas_reset(now=utc(2025, 11, 19, 12, 0, 1))

    assert result.periods_reset == 1
    due_usage = TenantUsage.objects.get(tenant=due)
    assert (due_usage.period_start, due_usage.runs_this_period) == (utc(2025, 11, 19, 12), 0)
    assert TenantUsage.objects.get(tenant=notyet).runs_this_period == 30


def _finished_run(tenant, *, created_at: dt.datetime, status: str = "COMPLETED") -> PipelineRun:
    run = PipelineRun.objects.create(
        tenant=tenant, pipeline="test/engine/ok", pipeline_id="acme_test_engine_ok", status=status
    )
    PipelineRun.objects.filter(pk=run.pk).update(created_at=created_at)
    return run


def test_retention_deletes_old_finished_runs_with_their_logs_and_keeps_the_rest(acme) -> None:
    now = utc(2025, 11, 19, 0, 30)
    old = _finished_run(acme, created_at=now - dt.timedelta(days=settings.RUN_RETENTION_DAYS, seconds=1))
    StepLog.objects.create(run=old, attempt=1, position=0, step_id="first", ps_type="x", status="COMPLETED")
    StepLog.objects.create(run=old, attempt=1, position=1, step_id="second", ps_type="x", status="COMPLETED")
    DQResult.objects.create(
        run=old, attempt=1, step_id="second", check_name="rows", status="PASS", severity="error"
    )
    recent = _finished_run(acme, created_at=now - dt.timedelta(days=settings.RUN_RETENTION_DAYS - 1))
    stuck = _finished_run(acme, created_at=now - dt.timedelta(days=400), status="QUEUED")

    assert runs_purge_expired(now=now) == 4  # 1 run + 2 step logs + 1 DQ result

    assert set(PipelineRun.objects.values_list("pk", flat=True)) == {recent.pk, stuck.pk}
    assert not StepLog.objects.exists()
    assert not DQResult.objects.exists()
    assert runs_purge_expired(now=now) == 0


# --- run now ---------------------------------------------------------------------------------------


def test_run_now_queues_one_run_counted_against_the_quota(
    acme, sent, django_capture_on_commit_callbacks
) -> None:
    schedule = schedule_create(
        tenant=acme,
        pipeline="test/engine/ok",
        cron="0 6 * * *",
        timezone="UTC",
        parameters={"date": "today"},
        enabled=True,
        actor=ACTOR,
        now=NOW,
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = schedule_run_now(schedule=schedule, actor=Actor.staff("alice"), now=NOW)

    run.refresh_from_db()
    assert (run.status, run.trigger, run.schedule_id, run.scheduled_for, run.user_id) == (
        "PENDING",
        "manual",
        schedule.pk,
        None,
        "alice",
    )
    assert run.parameters == {"date": "2025-11-19"}
    assert sent == [str(run.pk)]
    assert _usage() == (1, 1, 1)
    assert Schedule.objects.get(pk=schedule.pk).next_run_at == schedule.next_run_at  # untouched


# --- endpoints and commands ------------------------------------------------------------------------


def test_trigger_endpoint_returns_the_documented_body(acme, admin_client) -> None:
    make_schedules("acme", 2, next_run_at=utc(2025, 11, 19, 5))

    response = admin_client.post("/api/v1/scheduler/trigger")

    assert response.status_code == 200
    assert response.json() == {"queued": 2, "skipped": 0}
    assert admin_client.post("/api/v1/scheduler/trigger").json() == {"queued": 0, "skipped": 0}
    audits = AuditLog.objects.filter(action="scheduler.trigger").order_by("pk")
    assert [(entry.actor_type, entry.details) for entry in audits] == [
        ("admin_key", {"queued": 2, "skipped": 0}),
        ("admin_key", {"queued": 0, "skipped": 0}),
    ]


def test_process_queue_endpoint_returns_the_documented_body(acme, admin_client, sent) -> None:
    make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 5))
    schedules_tick(now=NOW)

    response = admin_client.post("/api/v1/scheduler/process-queue", {}, format="json")

    assert response.status_code == 200
    assert response.json() == {"dispatched": 1}
    assert list(
        AuditLog.objects.filter(action="scheduler.process_queue").values_list("details", flat=True)
    ) == [{"dispatched": 1}]


def test_reset_endpoint_returns_the_documented_body(acme, admin_client) -> None:
    TenantUsage.objects.filter(tenant=acme).update(day=dt.date(2000, 1, 1), runs_today=3)

    response = admin_client.post("/api/v1/scheduler/reset-daily-quotas")

    assert response.status_code == 200
    assert response.json() == {"tenants_reset": 1, "records_cleaned": 0}
    assert list(
        AuditLog.objects.filter(action="scheduler.reset_daily_quotas").values_list("details", flat=True)
    ) == [{"tenants_reset": 1, "records_cleaned": 0}]


def test_scheduler_endpoint_rejects_unknown_body_fields_and_does_nothing(acme, admin_client) -> None:
    make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 5))

    response = admin_client.post("/api/v1/scheduler/trigger", {"force": True}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"force": ["Unknown field."]}
    assert not PipelineRun.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="scheduler.").exists()


def test_scheduler_tick_command_ticks_as_of_now(acme) -> None:
    make_schedules("acme", 2, next_run_at=utc(2025, 11, 19, 5))
    out = StringIO()

    call_command("scheduler_tick", "--now", "2025-11-19T05:00:30Z", stdout=out)

    assert out.getvalue() == "Queued 2 run(s), skipped 0, failed 0 (2 due schedule(s), 0 catch-up).\n"
    assert PipelineRun.objects.count() == 2


@pytest.mark.parametrize(
    "command,args,message",
    [
        ("scheduler_tick", ["--now", "yesterday"], "--now must be an ISO 8601 instant"),
        ("scheduler_tick", ["--now", "2025-11-19T05:00:00"], "--now must include a UTC offset or Z"),
        ("scheduler_tick", ["--batch-size", "0"], "--batch-size must be at least 1"),
        ("process_queue", ["--now", "x"], "--now must be an ISO 8601 instant"),
        ("reset_quotas", ["--now", "x"], "--now must be an ISO 8601 instant"),
    ],
)
def test_scheduler_commands_refuse_bad_arguments_with_one_line(acme, command, args, message) -> None:
    make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 5))
    with pytest.raises(CommandError, match=message):
        call_command(command, *args)
    assert not PipelineRun.objects.exists()


def test_process_queue_and_reset_commands_report_counts(acme, sent) -> None:
    make_schedules("acme", 1, next_run_at=utc(2025, 11, 19, 5))
    schedules_tick(now=NOW)
    out = StringIO()

    call_command("process_queue", "--reap", "--now", "2025-11-19T05:00:40Z", stdout=out)
    call_command("reset_quotas", "--now", "2025-11-20T00:00:01Z", stdout=out)

    assert out.getvalue().splitlines() == [
        "Reaped: 0 requeued, 0 failed (worker_lost), 0 re-sent.",
        "Dispatched 1 run(s).",
        "Reset 1 tenant(s) (daily), 0 (period); cleaned 0 record(s).",
    ]


# --- beat --------------------------------------------------------------------------------------------


def test_beat_schedule_holds_the_system_entries_with_registered_task_names() -> None:
    from convergence.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE
    tasks = {name: entry["task"] for name, entry in schedule.items()}
    assert {
        "scheduler-tick": "pipelines.scheduler_tick",
        "scheduler-dispatch": "pipelines.process_queue",
        "scheduler-reap": "pipelines.reap_runs",
        "quota-reset": "pipelines.reset_quotas",
        "run-retention": "pipelines.purge_expired_runs",
    }.items() <= tasks.items()
    assert schedule["scheduler-tick"]["schedule"] == 30.0
    quota = schedule["quota-reset"]["schedule"]
    assert (quota.minute, quota.hour) == ({0}, {0})
    app.loader.import_default_modules()
    assert {entry["task"] for entry in schedule.values()} <= set(app.tasks)


@pytest.mark.django_db(transaction=True)
def test_starting_the_database_scheduler_twice_neither_duplicates_nor_deletes_entries() -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from convergence.celery import app

    every_hour = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(name="staff: nightly report", task="reports.nightly", interval=every_hour)

    DatabaseScheduler(app=app)
    first = dict(PeriodicTask.objects.values_list("name", "task"))
    DatabaseScheduler(app=app)
    second = dict(PeriodicTask.objects.values_list("name", "task"))

    assert first == second
    assert second["staff: nightly report"] == "reports.nightly"
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert second[name] == entry["task"]
    assert PeriodicTask.objects.filter(name="scheduler-tick").count() == 1
    assert PeriodicTask.objects.get(name="scheduler-tick").interval.every == 30


# --- admin -------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_admin_run_now_action_queues_a_run(acme, staff_client, sent) -> None:
    (schedule,) = make_schedules("acme", 1, next_run_at=utc(2099, 1, 1), parameters={"date": "today"})

    response = staff_client.post(
        "/admin/pipelines/schedule/",
        {"action": "run_now", "_selected_action": [str(schedule.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    run = PipelineRun.objects.get()
    assert (run.schedule_id, run.trigger, run.user_id) == (schedule.pk, "manual", "ops")
    assert "Queued 1 run(s)" in response.content.decode()


def test_operations_view_shows_counts_last_tick_mirror_lag_and_a_chart(
    acme, staff_client, monkeypatch
) -> None:
    now = timezone.now()
    make_schedules("acme", 2, next_run_at=now - dt.timedelta(minutes=1))
    schedules_tick(now=now)  # both queued and moved to the future
    make_schedules("acme", 1, next_run_at=now - dt.timedelta(minutes=1))  # due
    monkeypatch.setattr("pipelines.scheduler.mirror_lag_seconds_or_none", lambda: None)

    response = staff_client.get("/admin/pipelines/schedule/operations/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<td id="ops-due">1</td>' in html
    assert '<td id="ops-queued">2</td>' in html
    assert '<td id="ops-running">0</td>' in html
    assert f'<td id="ops-last-tick">{now:%Y-%m-%d %H:%M:%S} UTC</td>' in html
    assert '<td id="ops-mirror-lag">n/a</td>' in html
    assert html.count('<g class="day">') == 14
    assert 'src="http' not in html and 'href="http' not in html  # no CDN: everything is served here


def test_operations_overview_counts_runs_per_day_by_status(acme) -> None:
    now = utc(2025, 11, 19, 12)
    _finished_run(acme, created_at=utc(2025, 11, 19, 1))
    _finished_run(acme, created_at=utc(2025, 11, 19, 2), status="FAILED")
    _finished_run(acme, created_at=utc(2025, 11, 6, 0))  # the first of the 14 days
    _finished_run(acme, created_at=utc(2025, 11, 5, 23, 59))  # outside

    overview = operations_overview(now=now)

    assert overview.days[0].day == dt.date(2025, 11, 6)
    assert len(overview.days) == 14
    assert overview.days[-1].counts == {"COMPLETED": 1, "FAILED": 1}
    assert overview.days[0].counts == {"COMPLETED": 1}
    assert sum(day.total for day in overview.days) == 3


def test_operations_view_shows_the_mirror_lag_from_the_mirror_module(acme, staff_client) -> None:
    from convergence.mirror import mirror_lag_seconds
    from pipelines.scheduler import mirror_lag_seconds_or_none

    lag = mirror_lag_seconds_or_none()

    assert isinstance(lag, float) and lag >= 0.0
    assert abs(lag - mirror_lag_seconds()) < 60
    response = staff_client.get("/admin/pipelines/schedule/operations/")
    assert '<td id="ops-mirror-lag">n/a</td>' not in response.content.decode()


@pytest.mark.parametrize("changelist", ["/admin/pipelines/schedule/", "/admin/pipelines/pipelinerun/"])
def test_schedule_and_run_lists_link_to_the_operations_view(staff_client, changelist) -> None:
    response = staff_client.get(changelist)

    assert response.status_code == 200
    assert (
        '<a href="/admin/pipelines/schedule/operations/">Scheduler operations</a>'
        in response.content.decode()
    )
