"""Pipeline services: admission and creation of runs, their execution by workers, cancellation, and
the control plane's own system pipelines.

Every run state change is one conditional UPDATE (``WHERE status = <expected> [AND attempt = n]``)
whose row count says whether this caller won; duplicates and stale workers change nothing."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import traceback
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from convergence.warehouse import Warehouse
from pipelines.cron import CronError, CronSpec, next_run_after, parse_cron, validate_timezone
from pipelines.engine import STOPPED, DQRecord, EngineHooks, PipelineOutcome, StepOutcome, execute
from pipelines.loader import Pipeline, PipelineConfigError, PipelineNotFound, ResolvedStep, load_pipeline
from pipelines.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    DQResult,
    PipelineRun,
    RunStatus,
    RunTrigger,
    Schedule,
    StepLog,
)
from pipelines.spec import ParameterError, ParameterSpec, resolve_parameters
from tenants.actors import Actor
from tenants.models import Subscription, Tenant, TenantUsage
from tenants.selectors import UsageView, current_period_start, next_period_start, subscription_is_active
from tenants.services import audit_record

logger = logging.getLogger(__name__)

CONCURRENT_RETRY_AFTER_S = 5


# --- system pipelines ------------------------------------------------------------------------------


def system_pipeline_run(
    *,
    name: str,
    tenant_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    warehouse: Warehouse | None = None,
) -> PipelineOutcome:
    """Run a system pipeline (``system/...`` or ``tenant/...``) in-process and return its outcome.

    Parameters are validated against the config (``ParameterError``); a step failure is reported in
    the outcome, not raised."""
    pipeline = load_pipeline(name)
    if not pipeline.is_system:
        raise ValueError(f"{name} is not a system pipeline")
    resolved = resolve_parameters(pipeline.spec.parameters, parameters or {})
    return execute(pipeline, tenant_id=tenant_id, parameters=resolved, warehouse=warehouse)


# --- admission -------------------------------------------------------------------------------------


class AdmissionRefused(Exception):
    """A run was not admitted. ``code`` is the API.md error code; ``retry_after`` is in seconds
    (429s only)."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def tenant_pipeline_get(*, name: str) -> Pipeline:
    """A tenant-runnable pipeline (``provider/domain/pipeline``); ``PipelineNotFound`` otherwise."""
    pipeline = load_pipeline(name)
    if pipeline.is_system or name.count("/") != 2:
        raise PipelineNotFound(name)
    return pipeline


def pipeline_id_for(*, tenant_id: str, pipeline: str) -> str:
    return f"{tenant_id}_{pipeline.replace('/', '_')}"


def _seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    return max(int((moment - now).total_seconds()) + 1, 1)


def run_create(
    *,
    tenant: Tenant,
    pipeline_name: str,
    parameters: dict[str, Any],
    actor: Actor,
    trigger: str = RunTrigger.MANUAL,
    enforce_quota: bool = True,
    enqueue: bool = True,
) -> tuple[PipelineRun, UsageView]:
    """Admit and create one run (PENDING), then send it to a worker after commit.

    Admission is one conditional UPDATE of the tenant's usage row: it increments the day, period and
    running counters only if all three are under the plan's limits (rolling the day and period over
    as it goes), so concurrent requests can never overshoot. A refusal raises ``AdmissionRefused``
    and records and consumes nothing. ``enforce_quota=False`` (staff backfills) records the run and
    counts it as running without checking or consuming the day and period quotas.
    ``PipelineNotFound`` for an unknown pipeline, ``ParameterError`` for bad parameters."""
    pipeline = tenant_pipeline_get(name=pipeline_name)
    resolved = resolve_parameters(pipeline.spec.parameters, parameters)
    stored_parameters = {
        name: value.isoformat() if isinstance(value, dt.date) else value
        for name, value in resolved.items()
        if value is not None
    }
    now = timezone.now()
    subscription = tenant.subscription
    plan = subscription.plan
    if enforce_quota and not subscription_is_active(tenant=tenant, now=now):
        message = (
            "Trial has ended"
            if subscription.status == "TRIAL"
            else f"Subscription is {subscription.status.lower()}"
        )
        raise AdmissionRefused("subscription_inactive", message)
    with transaction.atomic():
        if enforce_quota:
            usage = _admit(tenant=tenant, subscription=subscription, now=now)
        else:
            TenantUsage.objects.filter(tenant=tenant).update(running=F("running") + 1)
            usage = TenantUsage.objects.get(tenant=tenant)
        run = PipelineRun.objects.create(
            tenant=tenant,
            pipeline=pipeline_name,
            pipeline_id=pipeline_id_for(tenant_id=tenant.tenant_id, pipeline=pipeline_name),
            status=RunStatus.PENDING,
            trigger=trigger,
            parameters=stored_parameters,
            user_id=actor.user_id,
            priority=plan.priority,
            max_attempts=settings.RUN_MAX_ATTEMPTS,
            enqueued_at=now if enqueue else None,
        )
        audit_record(
            actor=actor,
            action="run.create",
            tenant_id=tenant.tenant_id,
            target_type="pipeline_run",
            target_id=str(run.pk),
            details={"pipeline": pipeline_name, "trigger": trigger},
        )
        if enqueue:
            run_id = str(run.pk)
            transaction.on_commit(lambda: run_enqueue(run_id=run_id))
    tenant.usage = usage
    view = UsageView(
        runs_today=usage.runs_today,
        runs_this_period=usage.runs_this_period,
        running=usage.running,
        daily_limit=plan.daily_limit,
        monthly_limit=plan.monthly_limit,
        concurrent_limit=plan.concurrent_limit,
    )
    return run, view


_ADMIT_SQL = """
UPDATE tenants_tenantusage SET
    runs_today = CASE WHEN day = %(today)s THEN runs_today + %(runs)s ELSE %(runs)s END,
    day = %(today)s,
    runs_this_period = CASE WHEN period_start >= %(period)s
        THEN runs_this_period + %(runs)s ELSE %(runs)s END,
    period_start = CASE WHEN period_start >= %(period)s THEN period_start ELSE %(period)s END,
    running = running + %(slots)s,
    updated_at = %(now)s
WHERE tenant_id = %(tenant_id)s
    AND (%(runs)s = 0
        OR (CASE WHEN day = %(today)s THEN runs_today ELSE 0 END) + %(runs)s <= %(daily)s)
    AND (%(runs)s = 0
        OR (CASE WHEN period_start >= %(period)s THEN runs_this_period ELSE 0 END) + %(runs)s <= %(monthly)s)
    AND (%(slots)s = 0 OR running + %(slots)s <= %(concurrent)s)
RETURNING runs_today, runs_this_period, running
"""


def _admit(
    *, tenant: Tenant, subscription: Subscription, now: dt.datetime, runs: int = 1, slots: int = 1
) -> TenantUsage:
    """Take ``runs`` runs from the day and period allowances and ``slots`` concurrency slots, all or
    nothing, in a single conditional UPDATE (which also rolls a past day or period over to zero);
    returns the updated row, or raises ``AdmissionRefused`` naming the limit that was reached.

    A manual trigger takes one of each; the scheduler tick takes runs without slots (its runs wait
    QUEUED), and the dispatcher takes slots without runs. With ``runs=0`` the day and period limits
    are not checked and with ``slots=0`` the concurrency limit is not.

    Written as SQL (UPDATE ... RETURNING, on PostgreSQL and SQLite alike) because this is the hot
    path of every trigger: the ORM's expression compilation cost more than the statement itself."""
    plan = subscription.plan
    today = now.astimezone(dt.UTC).date()
    period = current_period_start(anchor=subscription.current_period_start, now=now)
    ops = connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            _ADMIT_SQL,
            {
                "today": ops.adapt_datefield_value(today),
                "period": ops.adapt_datetimefield_value(period),
                "now": ops.adapt_datetimefield_value(now),
                "tenant_id": tenant.tenant_id,
                "runs": runs,
                "slots": slots,
                "daily": plan.daily_limit,
                "monthly": plan.monthly_limit,
                "concurrent": plan.concurrent_limit,
            },
        )
        row = cursor.fetchone()
    if row is not None:
        usage = tenant.usage
        usage.day, usage.period_start = today, max(usage.period_start, period)
        usage.runs_today, usage.runs_this_period, usage.running = row
        return usage
    usage = TenantUsage.objects.get(tenant=tenant)
    runs_today = usage.runs_today if usage.day == today else 0
    runs_this_period = usage.runs_this_period if usage.period_start >= period else 0
    if runs and runs_today + runs > plan.daily_limit:
        midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        raise AdmissionRefused(
            "daily_quota_exceeded",
            f"Daily pipeline quota of {plan.daily_limit} reached",
            retry_after=_seconds_until(midnight, now),
        )
    if runs and runs_this_period + runs > plan.monthly_limit:
        raise AdmissionRefused(
            "monthly_quota_exceeded",
            f"Billing-period pipeline quota of {plan.monthly_limit} reached",
            retry_after=_seconds_until(
                next_period_start(anchor=subscription.current_period_start, now=now), now
            ),
        )
    raise AdmissionRefused(
        "concurrent_limit_exceeded",
        f"Concurrent run limit of {plan.concurrent_limit} reached",
        retry_after=CONCURRENT_RETRY_AFTER_S,
    )


def slot_release(*, tenant_id: str) -> None:
    """A run left PENDING/RUNNING: give its concurrency slot back (same transaction as the change),
    and once that commits let the dispatcher hand the slot to the tenant's next QUEUED run."""
    TenantUsage.objects.filter(tenant_id=tenant_id, running__gt=0).update(running=F("running") - 1)
    transaction.on_commit(lambda: _dispatch_after_release(tenant_id=tenant_id))


def _dispatch_after_release(*, tenant_id: str) -> None:
    """Best effort: a failure here must not fail the finish or cancel that freed the slot; the beat
    dispatcher picks the queued runs up on its next pass."""
    from pipelines.scheduler import queue_dispatch

    try:
        queue_dispatch(tenant_id=tenant_id)
    except Exception:
        logger.exception("dispatch after a run released its slot failed for tenant %s", tenant_id)


def usage_recount(*, tenant_id: str) -> int:
    """Recompute ``running`` from the runs table (heals drift after manual edits); returns it."""
    with transaction.atomic():
        TenantUsage.objects.select_for_update().filter(tenant_id=tenant_id).first()
        running = PipelineRun.objects.filter(tenant_id=tenant_id, status__in=ACTIVE_STATUSES).count()
        TenantUsage.objects.filter(tenant_id=tenant_id).update(running=running)
    return running


def run_enqueue(*, run_id: str) -> None:
    """Send the run's id to a worker. Safe to call more than once: only a PENDING run is claimed."""
    from pipelines.tasks import execute_run

    execute_run.apply_async(args=[run_id], task_id=f"{run_id}")


# --- execution -------------------------------------------------------------------------------------


WORKER_LOST_ERROR = "worker_lost: the run's worker stopped responding and it used all its attempts"


@dataclass(frozen=True)
class Claim:
    run_id: str
    attempt: int
    tenant_id: str


def run_claim(*, run_id: str, now: dt.datetime | None = None) -> Claim | None:
    """Take the run for this worker: PENDING, or RUNNING with an expired lease (its worker died),
    becomes RUNNING with ``attempt + 1``. Returns the claim, or None if someone else holds the run,
    it is finished, or it has used up its attempts (then it is marked FAILED).

    ``attempt`` counts claims: the reaper (``pipelines.scheduler.runs_reap``) puts an expired run back
    to PENDING without touching it, so a run re-claimed here or after the reaper gets the same
    ``attempt + 1``, and both stop at ``max_attempts`` with the same ``worker_lost`` failure."""
    now = now or timezone.now()
    stale = now - dt.timedelta(seconds=settings.RUN_LEASE_S)
    claimable = Q(status=RunStatus.PENDING) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale)
    with transaction.atomic():
        updated = PipelineRun.objects.filter(claimable, pk=run_id, attempt__lt=F("max_attempts")).update(
            status=RunStatus.RUNNING, attempt=F("attempt") + 1, heartbeat_at=now, started_at=now, error=""
        )
        if updated:
            attempt, tenant_id = PipelineRun.objects.values_list("attempt", "tenant_id").get(pk=run_id)
            return Claim(run_id=run_id, attempt=attempt, tenant_id=tenant_id)
        exhausted = PipelineRun.objects.filter(claimable, pk=run_id, attempt__gte=F("max_attempts")).update(
            status=RunStatus.FAILED, finished_at=now, error=WORKER_LOST_ERROR
        )
        if exhausted:
            slot_release(tenant_id=PipelineRun.objects.values_list("tenant_id", flat=True).get(pk=run_id))
    return None


def run_heartbeat(*, claim: Claim) -> bool:
    """Extend the lease. False when the run is no longer ours (cancelled, or re-claimed)."""
    return bool(
        PipelineRun.objects.filter(pk=claim.run_id, attempt=claim.attempt, status=RunStatus.RUNNING).update(
            heartbeat_at=timezone.now()
        )
    )


def run_finish(
    *, claim: Claim, status: str, error: str = "", rows_processed: int = 0, bytes_processed: int = 0
) -> bool:
    """Record the outcome, fenced by attempt: True only for the worker that still holds the run."""
    assert status in (RunStatus.COMPLETED, RunStatus.FAILED)
    now = timezone.now()
    with transaction.atomic():
        finished = PipelineRun.objects.filter(
            pk=claim.run_id, attempt=claim.attempt, status=RunStatus.RUNNING
        ).update(
            status=status,
            error=error[:1000],
            rows_processed=rows_processed,
            bytes_processed=bytes_processed,
            finished_at=now,
            heartbeat_at=now,
        )
        if finished:
            slot_release(tenant_id=claim.tenant_id)
    return bool(finished)


class _Heartbeat(threading.Thread):
    """Refreshes the run's lease while it executes; notices when the run was cancelled or taken."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(name=f"heartbeat-{claim.run_id}", daemon=True)
        self.claim = claim
        self.lost = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(settings.RUN_HEARTBEAT_S):
                if not run_heartbeat(claim=self.claim):
                    self.lost.set()
                    return
        finally:
            close_old_connections()
            from django.db import connection

            connection.close()


class _RunRecorder:
    """Engine hooks that persist step logs and DQ results for one claimed attempt."""

    def __init__(self, run: PipelineRun, claim: Claim, heartbeat: _Heartbeat) -> None:
        self.run = run
        self.claim = claim
        self.heartbeat = heartbeat

    def should_stop(self) -> str | None:
        if self.heartbeat.lost.is_set():
            return "the run was cancelled or taken over"
        status = PipelineRun.objects.filter(pk=self.run.pk).values_list("status", "attempt").first()
        if status is None or status != (RunStatus.RUNNING, self.claim.attempt):
            return "the run was cancelled or taken over"
        return None

    def step_started(self, step: ResolvedStep, position: int) -> None:
        StepLog.objects.update_or_create(
            run=self.run,
            attempt=self.claim.attempt,
            step_id=step.step_id,
            defaults={
                "position": position,
                "ps_type": step.ps_type,
                "status": "RUNNING",
                "started_at": timezone.now(),
            },
        )

    def step_finished(self, outcome: StepOutcome, position: int, dq_records: list[DQRecord]) -> None:
        started = dt.datetime.fromtimestamp(outcome.started_at, tz=dt.UTC) if outcome.started_at else None
        finished = dt.datetime.fromtimestamp(outcome.finished_at, tz=dt.UTC) if outcome.finished_at else None
        result = outcome.result
        with transaction.atomic():
            StepLog.objects.update_or_create(
                run=self.run,
                attempt=self.claim.attempt,
                step_id=outcome.step_id,
                defaults={
                    "position": position,
                    "ps_type": outcome.ps_type,
                    "status": outcome.status,
                    "tries": outcome.attempts,
                    "rows_affected": result.rows_affected if result else 0,
                    "bytes_processed": result.bytes_processed if result else 0,
                    "error": outcome.error[:1000],
                    "started_at": started,
                    "finished_at": finished,
                },
            )
            DQResult.objects.bulk_create(
                [
                    DQResult(
                        run=self.run,
                        attempt=self.claim.attempt,
                        step_id=record.step_id,
                        check_name=record.check,
                        table=record.table,
                        status=record.status,
                        severity=record.severity,
                        observed=record.observed[:500],
                        expected=record.expected[:500],
                        message=record.message[:1000],
                    )
                    for record in dq_records
                ]
            )


def run_execute(*, run_id: str) -> str | None:
    """Claim the run and execute it; returns its final status, or None if this call did not run it
    (already claimed by a live worker, finished, or cancelled). Never raises for a pipeline failure;
    an unexpected error marks the run FAILED with a short message (the traceback goes to the log)."""
    claim = run_claim(run_id=run_id)
    if claim is None:
        return None
    run = PipelineRun.objects.select_related("tenant").get(pk=run_id)
    heartbeat = _Heartbeat(claim)
    heartbeat.start()
    recorder = _RunRecorder(run, claim, heartbeat)
    try:
        pipeline = tenant_pipeline_get(name=run.pipeline)
        parameters = resolve_parameters(pipeline.spec.parameters, dict(run.parameters))
        outcome = execute(
            pipeline,
            tenant_id=run.tenant_id,
            parameters=parameters,
            run_id=str(run.pk),
            hooks=EngineHooks(
                should_stop=recorder.should_stop,
                step_started=recorder.step_started,
                step_finished=recorder.step_finished,
            ),
        )
    except Exception:
        logger.error("run %s failed unexpectedly:\n%s", run_id, traceback.format_exc())
        run_finish(claim=claim, status=RunStatus.FAILED, error="internal error while running the pipeline")
        return RunStatus.FAILED
    finally:
        heartbeat.done.set()
    if outcome.status == STOPPED:
        return None
    rows = sum(step.result.rows_affected for step in outcome.steps if step.result is not None)
    processed = sum(step.result.bytes_processed for step in outcome.steps if step.result is not None)
    status = RunStatus.COMPLETED if outcome.succeeded else RunStatus.FAILED
    if not run_finish(
        claim=claim, status=status, error=outcome.error, rows_processed=rows, bytes_processed=processed
    ):
        logger.warning(
            "run %s attempt %d finished after losing its claim; result discarded", run_id, claim.attempt
        )
        return None
    return status


def run_cancel(*, run: PipelineRun, actor: Actor) -> PipelineRun:
    """Cancel a run that has not finished. A running run stops between steps. ``RunFinishedError``
    if it had already reached a terminal state."""
    now = timezone.now()
    changes = {
        "status": RunStatus.CANCELLED,
        "finished_at": now,
        "cancel_requested": True,
        "error": "cancelled",
    }
    with transaction.atomic():
        active = PipelineRun.objects.filter(pk=run.pk, status__in=ACTIVE_STATUSES).update(**changes)
        if active:
            slot_release(tenant_id=run.tenant_id)
        waiting = (
            0 if active else PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(**changes)
        )
        run.refresh_from_db()
        if not (active or waiting):
            raise RunFinishedError(run.status)
        audit_record(
            actor=actor,
            action="run.cancel",
            tenant_id=run.tenant_id,
            target_type="pipeline_run",
            target_id=str(run.pk),
        )
    return run


class RunFinishedError(Exception):
    pass


def run_retry(*, run: PipelineRun, actor: Actor) -> PipelineRun:
    """Start a new run of a finished run's pipeline with the same parameters (a staff action: recorded,
    but not counted against the tenant's quota). ``RunNotFinishedError`` while it is still going."""
    if run.status not in TERMINAL_STATUSES:
        raise RunNotFinishedError(run.status)
    new_run, _usage = run_create(
        tenant=run.tenant,
        pipeline_name=run.pipeline,
        parameters=dict(run.parameters),
        actor=actor,
        trigger=run.trigger,
        enforce_quota=False,
    )
    return new_run


class RunNotFinishedError(Exception):
    pass


# --- schedules -------------------------------------------------------------------------------------

RELATIVE_DATE_RE = re.compile(r"^(?:today|yesterday|today-(\d{1,4}))\Z")
MAX_RELATIVE_DAYS = 3650


class ScheduleFieldError(ValueError):
    """A schedule's ``field`` (``pipeline``, ``cron`` or ``timezone``) is invalid; ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _relative_days(value: Any) -> int | None:
    """Days back for a relative date value (``today`` 0, ``yesterday`` 1, ``today-N`` N), None when the
    value is not relative, ``ValueError`` when N is out of range."""
    if not isinstance(value, str):
        return None
    match = RELATIVE_DATE_RE.match(value)
    if match is None:
        return None
    if value == "today":
        return 0
    if value == "yesterday":
        return 1
    days = int(match.group(1))
    if days > MAX_RELATIVE_DAYS:
        raise ValueError(f"must be at most today-{MAX_RELATIVE_DAYS}")
    return days


def _substitute_relative_dates(
    schedule_parameters: dict[str, Any], specs: dict[str, ParameterSpec], today: dt.date
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    substituted: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in schedule_parameters.items():
        spec = specs.get(name)
        if spec is not None and spec.type == "date":
            try:
                days = _relative_days(value)
            except ValueError as exc:
                errors[name] = [str(exc)]
                continue
            if days is not None:
                substituted[name] = (today - dt.timedelta(days=days)).isoformat()
                continue
        substituted[name] = value
    return substituted, errors


def resolve_schedule_parameters(
    schedule_parameters: dict[str, Any],
    specs: dict[str, ParameterSpec],
    *,
    at: dt.datetime,
    tz: zoneinfo.ZoneInfo,
) -> dict[str, Any]:
    """A schedule's stored parameters as run parameters for a fire at ``at``: relative dates of ``date``
    parameters (``today``, ``yesterday``, ``today-N``) become ``YYYY-MM-DD`` of the local date in ``tz``,
    defaults fill the rest, unset optional values are left out. ``ParameterError`` (keyed by name) for
    unknown, missing or ill-typed values. Pure: no database, no clock."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime")
    substituted, errors = _substitute_relative_dates(schedule_parameters, specs, at.astimezone(tz).date())
    try:
        resolved = resolve_parameters(specs, substituted)
    except ParameterError as exc:
        errors = {**exc.errors, **errors}
        resolved = {}
    if errors:
        raise ParameterError(errors)
    return {
        name: value.isoformat() if isinstance(value, dt.date) else value
        for name, value in resolved.items()
        if value is not None
    }


def _schedule_validated(
    *, pipeline: str, cron: str, timezone_name: str, parameters: Any
) -> tuple[CronSpec, zoneinfo.ZoneInfo]:
    try:
        loaded = tenant_pipeline_get(name=pipeline)
    except (PipelineNotFound, PipelineConfigError) as exc:
        raise ScheduleFieldError("pipeline", f"pipeline {pipeline} not found") from exc
    try:
        spec = parse_cron(cron)
    except CronError as exc:
        raise ScheduleFieldError("cron", str(exc)) from exc
    try:
        zone = validate_timezone(timezone_name)
    except CronError as exc:
        raise ScheduleFieldError("timezone", str(exc)) from exc
    if not isinstance(parameters, dict):
        raise ParameterError({"parameters": ["must be an object"]})
    # Relative dates resolve to some date at run time; any instant checks the shape now.
    resolve_schedule_parameters(parameters, loaded.spec.parameters, at=timezone.now(), tz=zone)
    return spec, zone


def _next_run_at(
    *, enabled: bool, spec: CronSpec, zone: zoneinfo.ZoneInfo, now: dt.datetime
) -> dt.datetime | None:
    return next_run_after(spec, zone, now) if enabled else None


@transaction.atomic
def schedule_create(
    *,
    tenant: Tenant,
    pipeline: str,
    cron: str,
    timezone: str,
    parameters: dict[str, Any],
    enabled: bool,
    actor: Actor,
    now: dt.datetime | None = None,
) -> Schedule:
    """Create a schedule after validating its pipeline, cron, zone and parameters against the pipeline's
    spec (``ScheduleFieldError``, ``ParameterError``). ``next_run_at`` is the first fire time after
    ``now`` when enabled, null otherwise."""
    spec, zone = _schedule_validated(
        pipeline=pipeline, cron=cron, timezone_name=timezone, parameters=parameters
    )
    schedule = Schedule.objects.create(
        tenant=tenant,
        pipeline=pipeline,
        cron=cron,
        timezone=timezone,
        parameters=parameters,
        enabled=enabled,
        next_run_at=_next_run_at(enabled=enabled, spec=spec, zone=zone, now=now or _now()),
    )
    audit_record(
        actor=actor,
        action="schedule.create",
        tenant_id=tenant.tenant_id,
        target_type="schedule",
        target_id=str(schedule.pk),
        details={"pipeline": pipeline, "cron": cron, "timezone": timezone, "enabled": enabled},
    )
    return schedule


SCHEDULE_FIELDS = frozenset({"pipeline", "cron", "timezone", "parameters", "enabled"})
_TIMING_FIELDS = frozenset({"cron", "timezone", "enabled"})


@transaction.atomic
def schedule_update(
    *, schedule: Schedule, actor: Actor, now: dt.datetime | None = None, **changes: Any
) -> Schedule:
    """Change any of ``pipeline``, ``cron``, ``timezone``, ``parameters``, ``enabled``; the result is
    validated as a whole (``ScheduleFieldError``, ``ParameterError``). ``next_run_at`` is recomputed from
    ``now`` when the cron, zone or enabled flag changes (null while disabled)."""
    unknown = set(changes) - SCHEDULE_FIELDS
    if unknown:
        raise TypeError(f"unknown schedule fields: {', '.join(sorted(unknown))}")
    merged = {name: changes.get(name, getattr(schedule, name)) for name in SCHEDULE_FIELDS}
    spec, zone = _schedule_validated(
        pipeline=merged["pipeline"],
        cron=merged["cron"],
        timezone_name=merged["timezone"],
        parameters=merged["parameters"],
    )
    changed = [name for name in sorted(SCHEDULE_FIELDS) if merged[name] != getattr(schedule, name)]
    for name in changed:
        setattr(schedule, name, merged[name])
    update_fields = [*changed, "updated_at"]
    if _TIMING_FIELDS & set(changed):
        schedule.next_run_at = _next_run_at(
            enabled=merged["enabled"], spec=spec, zone=zone, now=now or _now()
        )
        update_fields.append("next_run_at")
    schedule.save(update_fields=update_fields)
    audit_record(
        actor=actor,
        action="schedule.update",
        tenant_id=schedule.tenant_id,
        target_type="schedule",
        target_id=str(schedule.pk),
        details={"changed": changed},
    )
    return schedule


@transaction.atomic
def schedule_delete(*, schedule: Schedule, actor: Actor) -> None:
    """Delete a schedule (runs it already made are kept)."""
    target_id = str(schedule.pk)
    tenant_id = schedule.tenant_id
    schedule.delete()
    audit_record(
        actor=actor,
        action="schedule.delete",
        tenant_id=tenant_id,
        target_type="schedule",
        target_id=target_id,
        details={"pipeline": schedule.pipeline},
    )


def _now() -> dt.datetime:
    return timezone.now()
