"""The scheduler: the beat tick that turns due schedules into runs, the dispatcher that hands QUEUED
runs to workers within each tenant's concurrency limit, the reaper of runs whose worker died, the
daily quota reset and the retention cleanup; plus the read side of the operations view.

Every function takes ``now`` (a settable clock: tests and catch-up drills pass it; the default is the
wall clock) and is safe to run in several processes at once: work is claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` (ignored on SQLite, which ``make run`` uses single-process), every
state change is a conditional UPDATE, and quota is taken by single conditional statements: the
admission in ``pipelines.services`` (manual triggers, the dispatcher's slots) and, for a tick's batch,
the same rules applied per tenant inside the tick's write statement. Beat tasks
(``pipelines/tasks.py``), the scheduler endpoints and the management commands all call these
functions."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max, Min
from django.db.models.functions import TruncDate
from django.utils import timezone

from pipelines.cron import CronError, CronSpec, next_run_after, parse_cron, validate_timezone
from pipelines.loader import Pipeline, PipelineConfigError, PipelineNotFound
from pipelines.models import TERMINAL_STATUSES, PipelineRun, RunStatus, RunTrigger, Schedule, SchedulerState
from pipelines.services import (
    WORKER_LOST_ERROR,
    AdmissionRefused,
    _admit,
    pipeline_id_for,
    resolve_schedule_parameters,
    run_enqueue,
    slot_release,
    tenant_pipeline_get,
)
from pipelines.spec import ParameterError
from tenants.actors import Actor
from tenants.models import Subscription, Tenant, TenantUsage
from tenants.selectors import current_period_start, subscription_is_active, tenant_queryset
from tenants.services import audit_record

logger = logging.getLogger(__name__)

#: Reasons recorded on SKIPPED scheduled runs (``error`` reads ``"<reason>: <message>"``);
#: ``quota_unavailable`` only if a tenant lost its usage row (never made so by the application).
SKIP_REASONS = (
    "daily_quota_exceeded",
    "monthly_quota_exceeded",
    "subscription_inactive",
    "quota_unavailable",
)
DISPATCH_BATCH = 100


def _clock(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else timezone.now()


def _record_job(*, job: str, now: dt.datetime, details: dict[str, Any]) -> None:
    """Upsert the job's last-run row. Two concurrent first runs may both try to create it: the loser
    of that race updates instead."""
    values = {"last_run_at": now, "details": details}
    if SchedulerState.objects.filter(job=job).update(**values):
        return
    try:
        with transaction.atomic():
            SchedulerState.objects.create(job=job, **values)
    except IntegrityError:
        SchedulerState.objects.filter(job=job).update(**values)


# --- tick ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    """What one tick did. ``queued``: QUEUED runs inserted; ``skipped``: runs recorded SKIPPED (quota
    or inactive subscription); ``failed``: runs recorded FAILED because the schedule itself no longer
    validates (pipeline gone, parameters no longer fit its spec); ``coalesced``: schedules whose
    catch-up run stood for more than one missed fire time; ``schedules``: due schedules advanced."""

    queued: int = 0
    skipped: int = 0
    failed: int = 0
    coalesced: int = 0
    schedules: int = 0

    def __add__(self, other: TickResult) -> TickResult:
        return TickResult(
            queued=self.queued + other.queued,
            skipped=self.skipped + other.skipped,
            failed=self.failed + other.failed,
            coalesced=self.coalesced + other.coalesced,
            schedules=self.schedules + other.schedules,
        )


@dataclass(frozen=True)
class _Timing:
    scheduled_for: dt.datetime  # the latest fire time <= now: what the one catch-up run stands for
    next_run_at: dt.datetime  # the first fire time strictly after now
    coalesced: bool  # more than one fire time was due
    local_day: dt.date  # ``scheduled_for``'s date in the schedule's zone: what relative dates resolve to


@dataclass(frozen=True)
class _Outcome:
    """A due schedule's run before quota: QUEUED with its resolved parameters, FAILED with the reason
    the schedule no longer runs, or SKIPPED (``subscription_inactive``). ``parameters_json`` is
    ``parameters`` as stored."""

    status: str
    error: str
    parameters: dict[str, Any]
    parameters_json: str


@dataclass
class _TickMemo:
    """Per-tick caches: many schedules share a cron, zone and due time, or a pipeline and parameters.
    ``rows`` maps a schedule's ``(cron, zone, next_run_at, pipeline, stored parameters as JSON text)``
    straight to its timing and outcome, so a schedule like one already seen costs one lookup."""

    rows: dict[tuple[str, str, dt.datetime, str, str], tuple[_Timing, _Outcome] | CronError] = field(
        default_factory=dict
    )
    timings: dict[tuple[str, str, dt.datetime], _Timing | CronError] = field(default_factory=dict)
    pipelines: dict[str, Pipeline | str] = field(default_factory=dict)
    outcomes: dict[tuple[str, str, str, dt.date], _Outcome] = field(default_factory=dict)
    skipped: dict[tuple[int, str], _Outcome] = field(default_factory=dict)
    zones: dict[str, zoneinfo.ZoneInfo] = field(default_factory=dict)


@dataclass
class _Due:
    schedule_id: Any
    tenant_id: str
    pipeline: str
    timing: _Timing
    status: str
    error: str
    run_parameters: dict[str, Any]


def due_timing(
    *, spec: CronSpec, zone: zoneinfo.ZoneInfo, first_due: dt.datetime, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime, bool]:
    """For a schedule due since ``first_due`` (a fire time <= ``now``): ``(scheduled_for, next_run_at,
    coalesced)`` where ``scheduled_for`` is the latest fire time <= ``now``, ``next_run_at`` the first
    fire time strictly after ``now`` (both DST-correct, via ``pipelines.cron``), and ``coalesced`` says
    whether more than one fire time was missed.

    The usual case costs two cron evaluations. After an outage it searches back from ``now`` in
    growing windows instead of walking every missed fire time, so a week of a per-minute schedule
    costs a few dozen evaluations, not ten thousand."""
    following = next_run_after(spec, zone, first_due)
    if following > now:
        return first_due, following, False
    window = dt.timedelta(minutes=1)
    while True:
        start = max(now - window, first_due)
        latest = next_run_after(spec, zone, start)
        if latest <= now:
            break
        window *= 4  # ends: at start == first_due, ``latest`` is ``following`` (<= now)
    upcoming = next_run_after(spec, zone, latest)
    while upcoming <= now:
        latest, upcoming = upcoming, next_run_after(spec, zone, upcoming)
    return latest, upcoming, True


def schedules_tick(*, now: dt.datetime | None = None, batch_size: int | None = None) -> TickResult:
    """Turn every due schedule (enabled, ``next_run_at <= now``) into one run and advance it.

    Works in batches of ``batch_size`` (``SCHEDULER_BATCH_SIZE``), each its own transaction: claim
    due schedules with ``SELECT ... FOR UPDATE SKIP LOCKED`` (so concurrent ticks split the work and
    never see the same schedule), insert one run per schedule under ``UNIQUE(schedule,
    scheduled_for)`` (conflicts are dropped, so a retried or concurrent tick never doubles a fire
    time), and set ``next_run_at`` to the first fire time strictly after ``now``.

    Missed fire times coalesce: a schedule that was due several times since it last ran (beat was
    down) gets ONE catch-up run whose ``scheduled_for`` is the latest due fire time, not one per
    missed time. Its relative-date parameters (``yesterday``...) resolve in the schedule's zone
    against ``scheduled_for``.

    Each run takes one from the tenant's day and period quota, without a concurrency slot (it waits
    QUEUED for the dispatcher), through a single conditional statement per batch that admits as many
    of the tenant's runs as still fit, in ``(scheduled_for, schedule)`` order. A run over quota is
    recorded SKIPPED with ``error`` ``daily_quota_exceeded: ...`` or ``monthly_quota_exceeded: ...``
    (``subscription_inactive: ...`` for a suspended tenant) and takes nothing; so does a fire time
    that already has a run. Returns the counts (``TickResult``); ``queued`` and ``skipped`` are the
    API's body.

    On PostgreSQL each batch is two statements (``_tick_batch_pg``); elsewhere (SQLite for ``make
    run``) plain ORM statements with the same outcome (``_tick_batch_orm``)."""
    now = _clock(now)
    batch_size = batch_size or settings.SCHEDULER_BATCH_SIZE
    memo = _TickMemo()
    total = TickResult()
    tick_batch = _tick_batch_pg if connection.vendor == "postgresql" else _tick_batch_orm
    while True:
        with transaction.atomic():
            result = tick_batch(now=now, batch_size=batch_size, memo=memo)
        if result is None:
            break
        total += result
    _record_job(
        job="tick",
        now=now,
        details={"queued": total.queued, "skipped": total.skipped, "failed": total.failed},
    )
    if total.schedules:
        logger.info(
            "tick: %d schedule(s) due, %d queued, %d skipped, %d failed, %d catch-up",
            total.schedules,
            total.queued,
            total.skipped,
            total.failed,
            total.coalesced,
        )
    return total


def _zone(memo: _TickMemo, name: str) -> zoneinfo.ZoneInfo:
    zone = memo.zones.get(name)
    if zone is None:
        zone = memo.zones[name] = validate_timezone(name)
    return zone


def _plan(
    memo: _TickMemo,
    *,
    cron: str,
    zone_name: str,
    first_due: dt.datetime,
    pipeline: str,
    stored: str | None,
    now: dt.datetime,
) -> tuple[_Timing, _Outcome] | CronError:
    """A due schedule's timing and run outcome (cached per tick), or the CronError that parks it.
    ``stored``: the schedule's parameters as JSON text (the cache key; parsed only on a miss)."""
    key = (cron, zone_name, first_due, pipeline, stored or "")
    planned = memo.rows.get(key)
    if planned is None:
        timing = _timing(memo, cron, zone_name, first_due, now)
        if isinstance(timing, CronError):
            planned = timing
        else:
            planned = (timing, _outcome(memo, pipeline, stored or "", zone_name, timing))
        memo.rows[key] = planned
    return planned


def _timing(
    memo: _TickMemo, cron: str, zone_name: str, first_due: dt.datetime, now: dt.datetime
) -> _Timing | CronError:
    key = (cron, zone_name, first_due)
    cached = memo.timings.get(key)
    if cached is None:
        try:
            zone = _zone(memo, zone_name)
            scheduled_for, next_run_at, coalesced = due_timing(
                spec=parse_cron(cron), zone=zone, first_due=first_due, now=now
            )
            cached = _Timing(scheduled_for, next_run_at, coalesced, scheduled_for.astimezone(zone).date())
        except CronError as exc:
            cached = exc
        memo.timings[key] = cached
    return cached


def _outcome(memo: _TickMemo, pipeline_name: str, stored: str, zone_name: str, timing: _Timing) -> _Outcome:
    """The run a schedule makes at ``timing``: its parameters resolved against the pipeline's spec in
    the schedule's zone (relative dates against ``scheduled_for``), or FAILED with the reason the
    schedule no longer validates. Depends only on the local day, so it is cached per day."""
    key = (pipeline_name, stored, zone_name, timing.local_day)
    outcome = memo.outcomes.get(key)
    if outcome is not None:
        return outcome
    pipeline = memo.pipelines.get(pipeline_name)
    if pipeline is None:
        try:
            pipeline = tenant_pipeline_get(name=pipeline_name)
        except (PipelineNotFound, PipelineConfigError):
            pipeline = f"schedule_invalid: pipeline {pipeline_name} not found or its config is invalid"
        memo.pipelines[pipeline_name] = pipeline
    if isinstance(pipeline, str):
        outcome = _Outcome(RunStatus.FAILED, pipeline[:1000], {}, "{}")
    else:
        try:
            resolved = resolve_schedule_parameters(
                json.loads(stored) if stored else {},
                pipeline.spec.parameters,
                at=timing.scheduled_for,
                tz=_zone(memo, zone_name),
            )
            outcome = _Outcome(RunStatus.QUEUED, "", resolved, json.dumps(resolved))
        except ParameterError as exc:
            error = f"invalid_parameters: {json.dumps(exc.errors, sort_keys=True)}"
            outcome = _Outcome(RunStatus.FAILED, error[:1000], {}, "{}")
    memo.outcomes[key] = outcome
    return outcome


def _inactive(memo: _TickMemo, outcome: _Outcome, refusal: str) -> _Outcome:
    """A QUEUED outcome of a tenant whose subscription is not active: SKIPPED with the reason."""
    if outcome.status != RunStatus.QUEUED:
        return outcome
    key = (id(outcome), refusal)  # outcomes live in the memo for the whole tick: ids are stable
    skipped = memo.skipped.get(key)
    if skipped is None:
        skipped = memo.skipped[key] = _Outcome(
            RunStatus.SKIPPED, refusal, outcome.parameters, outcome.parameters_json
        )
    return skipped


@dataclass(frozen=True)
class _TenantQuota:
    """What admission needs of a tenant, read with the claim. ``inactive``: the ``subscription_inactive``
    refusal, or "" when the subscription is active (or in trial)."""

    tenant_id: str
    inactive: str
    priority: int
    period: dt.datetime | None
    daily_limit: int
    monthly_limit: int

    @property
    def daily_refusal(self) -> str:  # as ``pipelines.services._admit`` words it
        return f"daily_quota_exceeded: Daily pipeline quota of {self.daily_limit} reached"

    @property
    def monthly_refusal(self) -> str:
        return f"monthly_quota_exceeded: Billing-period pipeline quota of {self.monthly_limit} reached"


def _tenant_quota(tenant_id: str, columns: tuple[Any, ...], *, now: dt.datetime) -> _TenantQuota:
    """From the claim's subscription and plan columns (all None when the tenant has no subscription)."""
    status, trial_ends_at, anchor, priority, daily_limit, monthly_limit = columns
    if status is None:
        return _TenantQuota(tenant_id, "subscription_inactive: no subscription", 0, None, 0, 0)
    tenant = Tenant(tenant_id=tenant_id)
    tenant.subscription = Subscription(tenant=tenant, status=status, trial_ends_at=trial_ends_at)
    active = subscription_is_active(tenant=tenant, now=now)
    return _TenantQuota(
        tenant_id=tenant_id,
        inactive="" if active else f"subscription_inactive: subscription is {status.lower()}",
        priority=priority or 0,
        period=current_period_start(anchor=anchor, now=now),
        daily_limit=daily_limit,
        monthly_limit=monthly_limit,
    )


# The claim: due schedules locked SKIP LOCKED (the same locking query as reliability.md §4.5), with what
# admission needs of their tenants. The subscription and plan rows are read, not locked.
_CLAIM_SQL = """
WITH due AS (
    SELECT id, tenant_id, pipeline, cron, timezone, parameters, next_run_at
    FROM pipelines_schedule
    WHERE enabled AND next_run_at <= %(now)s
    ORDER BY next_run_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
SELECT due.id, due.tenant_id, due.pipeline, due.cron, due.timezone, due.parameters::text, due.next_run_at,
    sub.status, sub.trial_ends_at, sub.current_period_start, plan.priority, plan.daily_limit,
    plan.monthly_limit
FROM due
LEFT JOIN tenants_subscription sub ON sub.tenant_id = due.tenant_id
LEFT JOIN tenants_plan plan ON plan.id = sub.plan_id
"""

# The write: one statement for the claimed batch. Arrays (1-based indexes into the distinct values):
# per schedule its id, timing and outcome; per timing (scheduled_for, next_run_at), NULLs parking a
# schedule whose cron no longer parses; per outcome (status, error, parameters); per tenant its
# priority, period start, limits and refusal texts. What it guarantees:
# - every claimed schedule advances (``next_run_at``, ``last_run_at``), whether or not it gets a run;
# - a fire time that already has a run gets none and takes no quota (checked here; the unique
#   constraint and ON CONFLICT DO NOTHING back it up);
# - quota: each tenant's usage row is locked (tenant_id order, so concurrent ticks cannot deadlock) and
#   its counts read as in ``pipelines.services._admit`` (a past day or period counts as zero); the
#   tenant is granted min(wanted, daily room, period room) runs and the row updated once, only when
#   something was granted. The first ``granted`` of its QUEUED runs in (scheduled_for, schedule)
#   order stay QUEUED; the rest are SKIPPED with the limit the next run would have hit;
# - runs are inserted ON CONFLICT (schedule_id, scheduled_for) DO NOTHING; the result counts the
#   inserted runs by status.
_WRITE_SQL = """
WITH claimed AS (
    SELECT c.schedule_id, t.scheduled_for, t.next_run_at, c.outcome
    FROM unnest(%(schedule_ids)b::uuid[], %(timing_of)b::int[], %(outcome_of)b::int[])
        AS c(schedule_id, timing, outcome)
    JOIN unnest(%(scheduled_for)b::timestamptz[], %(next_run_at)b::timestamptz[]) WITH ORDINALITY
        AS t(scheduled_for, next_run_at, timing) USING (timing)
), advanced AS (
    UPDATE pipelines_schedule s
    SET next_run_at = c.next_run_at, last_run_at = COALESCE(c.scheduled_for, s.last_run_at)
    FROM claimed c
    WHERE s.id = c.schedule_id
    RETURNING s.id AS schedule_id, s.tenant_id, s.pipeline, c.scheduled_for, c.outcome
), candidates AS (
    SELECT a.schedule_id, a.tenant_id, a.pipeline, a.scheduled_for, o.status, o.error, o.parameters,
        row_number() OVER (PARTITION BY a.tenant_id, o.status ORDER BY a.scheduled_for, a.schedule_id)
            AS place
    FROM advanced a
    JOIN unnest(%(statuses)b::text[], %(errors)b::text[], %(parameters)b::text[]) WITH ORDINALITY
        AS o(status, error, parameters, outcome) USING (outcome)
    WHERE NOT EXISTS (
        SELECT FROM pipelines_pipelinerun r
        WHERE r.schedule_id = a.schedule_id AND r.scheduled_for = a.scheduled_for
    )
), tenant AS (
    SELECT * FROM unnest(
        %(tenant_ids)b::text[], %(priorities)b::int[], %(periods)b::timestamptz[], %(daily_limits)b::int[],
        %(monthly_limits)b::int[], %(daily_refusals)b::text[], %(monthly_refusals)b::text[]
    ) AS t(tenant_id, priority, period, daily_limit, monthly_limit, daily_refusal, monthly_refusal)
), wanted AS (
    SELECT tenant_id, count(*) AS runs FROM candidates WHERE status = 'QUEUED' GROUP BY tenant_id
), usage AS (
    SELECT u.tenant_id, w.runs, t.period, t.daily_limit, t.monthly_limit, t.daily_refusal,
        t.monthly_refusal,
        CASE WHEN u.day = %(today)b THEN u.runs_today ELSE 0 END AS used_today,
        CASE WHEN u.period_start >= t.period THEN u.runs_this_period ELSE 0 END AS used_period
    FROM tenants_tenantusage u
    JOIN wanted w ON w.tenant_id = u.tenant_id
    JOIN tenant t ON t.tenant_id = u.tenant_id
    ORDER BY u.tenant_id
    FOR UPDATE OF u
), grants AS (
    SELECT tenant_id, period, used_today, used_period, granted,
        CASE WHEN used_today + granted >= daily_limit THEN daily_refusal ELSE monthly_refusal END AS refusal
    FROM (
        SELECT usage.*, LEAST(
            runs, GREATEST(daily_limit - used_today, 0), GREATEST(monthly_limit - used_period, 0)
        ) AS granted
        FROM usage
    ) AS sized
), admitted AS (
    UPDATE tenants_tenantusage u SET
        runs_today = g.used_today + g.granted,
        day = %(today)b,
        runs_this_period = g.used_period + g.granted,
        period_start = GREATEST(u.period_start, g.period),
        updated_at = %(now)b
    FROM grants g
    WHERE u.tenant_id = g.tenant_id AND g.granted > 0
), decided AS (
    SELECT c.*, CASE WHEN c.status <> 'QUEUED' OR c.place <= g.granted THEN c.status ELSE 'SKIPPED' END
            AS outcome,
        CASE WHEN c.status <> 'QUEUED' OR c.place <= g.granted THEN c.error
            ELSE coalesce(g.refusal, 'quota_unavailable: the tenant has no usage row') END AS reason
    FROM candidates c
    LEFT JOIN grants g ON g.tenant_id = c.tenant_id
), inserted AS (
    INSERT INTO pipelines_pipelinerun (
        pipeline_logging_id, tenant_id, pipeline, pipeline_id, status, trigger, parameters, user_id,
        priority, attempt, max_attempts, cancel_requested, error, rows_processed, bytes_processed,
        created_at, finished_at, schedule_id, scheduled_for
    )
    SELECT gen_random_uuid(), d.tenant_id, d.pipeline,
        d.tenant_id || '_' || replace(d.pipeline, '/', '_'),  -- pipelines.services.pipeline_id_for
        d.outcome, %(trigger)b, d.parameters::jsonb, '', coalesce(t.priority, 0), 0, %(max_attempts)b,
        false, d.reason, 0, 0, %(created_at)b,
        CASE WHEN d.outcome = 'QUEUED' THEN NULL ELSE %(now)b::timestamptz END, d.schedule_id,
        d.scheduled_for
    FROM decided d
    LEFT JOIN tenant t ON t.tenant_id = d.tenant_id
    ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
    RETURNING status
)
SELECT status, count(*) FROM inserted GROUP BY status
"""


def _tick_batch_pg(*, now: dt.datetime, batch_size: int, memo: _TickMemo) -> TickResult | None:
    """One claimed batch in two statements (``_CLAIM_SQL``, then ``_WRITE_SQL``); None when nothing
    was due. Between them Python computes each schedule's timing (``pipelines.cron``) and outcome
    (parameters resolved in its zone), cached per tick, and sends the batch as typed arrays of
    indexes into the distinct values, so the work per schedule is a few dictionary lookups."""
    rows = _pg_fetch(_CLAIM_SQL, {"now": now, "batch": batch_size})
    if not rows:
        return None
    tenants: dict[str, _TenantQuota] = {}
    schedule_ids: list[Any] = []
    timing_of: list[int] = []
    outcome_of: list[int | None] = []
    timing_slots: dict[int, int] = {}  # id(timing) -> 1-based index into ``timings``
    timings: list[_Timing | None] = [None]  # index 1: (NULL, NULL), parking a broken schedule
    outcome_slots: dict[int, int] = {}
    outcomes: list[_Outcome] = []
    coalesced = 0
    for row in rows:
        schedule_id, tenant_id, pipeline, cron, zone_name, stored, first_due = row[:7]
        planned = _plan(
            memo,
            cron=cron,
            zone_name=zone_name,
            first_due=first_due,
            pipeline=pipeline,
            stored=stored,
            now=now,
        )
        schedule_ids.append(schedule_id)
        if isinstance(planned, CronError):
            logger.warning("schedule %s has an invalid cron or zone (%s); it is parked", schedule_id, planned)
            timing_of.append(1)
            outcome_of.append(None)
            continue
        timing, outcome = planned
        tenant = tenants.get(tenant_id)
        if tenant is None:
            tenant = tenants[tenant_id] = _tenant_quota(tenant_id, row[7:], now=now)
        if tenant.inactive:
            outcome = _inactive(memo, outcome, tenant.inactive)
        coalesced += timing.coalesced
        slot = timing_slots.get(id(timing))
        if slot is None:
            timings.append(timing)
            slot = timing_slots[id(timing)] = len(timings)
        timing_of.append(slot)
        slot = outcome_slots.get(id(outcome))
        if slot is None:
            outcomes.append(outcome)
            slot = outcome_slots[id(outcome)] = len(outcomes)
        outcome_of.append(slot)
    quotas = list(tenants.values())
    counts = dict(
        _pg_fetch(
            _WRITE_SQL,
            {
                "schedule_ids": schedule_ids,
                "timing_of": timing_of,
                "outcome_of": outcome_of,
                "scheduled_for": [None if t is None else t.scheduled_for for t in timings],
                "next_run_at": [None if t is None else t.next_run_at for t in timings],
                "statuses": [str(o.status) for o in outcomes],
                "errors": [o.error for o in outcomes],
                "parameters": [o.parameters_json for o in outcomes],
                "tenant_ids": [q.tenant_id for q in quotas],
                "priorities": [q.priority for q in quotas],
                "periods": [q.period for q in quotas],
                "daily_limits": [q.daily_limit for q in quotas],
                "monthly_limits": [q.monthly_limit for q in quotas],
                "daily_refusals": [q.daily_refusal for q in quotas],
                "monthly_refusals": [q.monthly_refusal for q in quotas],
                "today": now.astimezone(dt.UTC).date(),
                "now": now,
                "created_at": timezone.now(),
                "trigger": RunTrigger.SCHEDULED.value,
                "max_attempts": settings.RUN_MAX_ATTEMPTS,
            },
        )
    )
    return TickResult(
        queued=counts.get(RunStatus.QUEUED, 0),
        skipped=counts.get(RunStatus.SKIPPED, 0),
        failed=counts.get(RunStatus.FAILED, 0),
        coalesced=coalesced,
        schedules=len(rows),
    )


def _pg_fetch(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement on the current connection (and transaction) with psycopg's own cursor: its
    server-side binding sends the arrays as typed parameters instead of quoted literals, and binary
    results skip the text parsing (Django's time-zone loader parses every timestamp in Python)."""
    import psycopg  # only on PostgreSQL; Django's own cursors bind client-side (quoted literals)

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall() if cursor.description else []


# --- tick: the ORM path (SQLite) -------------------------------------------------------------------


def _tick_batch_orm(*, now: dt.datetime, batch_size: int, memo: _TickMemo) -> TickResult | None:
    """One claimed batch with ORM statements (``make run`` on SQLite, where ``FOR UPDATE SKIP LOCKED``
    is ignored and the one writer needs no row locks); None when nothing was due. Same outcome as
    ``_tick_batch_pg``."""
    rows = list(
        Schedule.objects.select_for_update(skip_locked=True)
        .filter(enabled=True, next_run_at__lte=now)
        .order_by("next_run_at")
        .values_list("pk", "tenant_id", "pipeline", "cron", "timezone", "parameters", "next_run_at")[
            :batch_size
        ]
    )
    if not rows:
        return None
    due: list[_Due] = []
    broken: list[Any] = []
    for pk, tenant_id, pipeline, cron, zone_name, parameters, next_run_at in rows:
        assert next_run_at is not None  # filtered by next_run_at <= now
        stored = json.dumps(parameters or {}, sort_keys=True)
        planned = _plan(
            memo,
            cron=cron,
            zone_name=zone_name,
            first_due=next_run_at,
            pipeline=pipeline,
            stored=stored,
            now=now,
        )
        if isinstance(planned, CronError):
            logger.warning("schedule %s has an invalid cron or zone (%s); it is parked", pk, planned)
            broken.append(pk)
            continue
        timing, outcome = planned
        due.append(_Due(pk, tenant_id, pipeline, timing, outcome.status, outcome.error, outcome.parameters))
    fresh = _without_existing_runs(due)
    queued, skipped = _admit_scheduled(fresh, now=now)
    _insert_runs(fresh, now=now)
    _advance(due, broken)
    return TickResult(
        queued=queued,
        skipped=skipped,
        failed=sum(1 for item in fresh if item.status == RunStatus.FAILED),
        coalesced=sum(1 for item in due if item.timing.coalesced),
        schedules=len(rows),
    )


def _without_existing_runs(due: list[_Due]) -> list[_Due]:
    """Drop fire times that already have a run (only a manual edit of ``next_run_at`` can make one):
    checking first keeps the quota exact; the unique constraint still backs it up."""
    if not due:
        return []
    existing = set(
        PipelineRun.objects.filter(
            schedule_id__in=[item.schedule_id for item in due],
            scheduled_for__in={item.timing.scheduled_for for item in due},
        ).values_list("schedule_id", "scheduled_for")
    )
    return [item for item in due if (item.schedule_id, item.timing.scheduled_for) not in existing]


def _admit_scheduled(items: list[_Due], *, now: dt.datetime) -> tuple[int, int]:
    """Take quota for the runnable items, tenant by tenant in ``tenant_id`` order, through
    ``pipelines.services._admit``. Returns ``(queued, skipped)``."""
    by_tenant: dict[str, list[_Due]] = defaultdict(list)
    for item in items:
        if item.status == RunStatus.QUEUED:
            by_tenant[item.tenant_id].append(item)
    tenants = {tenant.tenant_id: tenant for tenant in tenant_queryset().filter(tenant_id__in=by_tenant)}
    queued = skipped = 0
    for tenant_id in sorted(by_tenant):
        waiting = sorted(
            by_tenant[tenant_id], key=lambda item: (item.timing.scheduled_for, str(item.schedule_id))
        )
        granted = _grant(tenants[tenant_id], count=len(waiting), now=now)
        for index, item in enumerate(waiting):
            if index < granted.count:
                queued += 1
            else:
                item.status, item.error = RunStatus.SKIPPED, granted.refusal
                skipped += 1
    return queued, skipped


@dataclass(frozen=True)
class _Grant:
    count: int
    refusal: str  # "<reason>: <message>" for the runs beyond ``count``


def _grant(tenant: Tenant, *, count: int, now: dt.datetime) -> _Grant:
    """Admit up to ``count`` runs (no slots) for one tenant: all at once in the usual case; when that
    is refused, one at a time until the first refusal, whose reason then applies to the rest."""
    subscription: Subscription = tenant.subscription
    if not subscription_is_active(tenant=tenant, now=now):
        return _Grant(0, f"subscription_inactive: subscription is {subscription.status.lower()}")
    try:
        _admit(tenant=tenant, subscription=subscription, now=now, runs=count, slots=0)
        return _Grant(count, "")
    except AdmissionRefused as exc:
        if count == 1:
            return _Grant(0, f"{exc.code}: {exc.message}")
    for granted in range(count):
        try:
            _admit(tenant=tenant, subscription=subscription, now=now, runs=1, slots=0)
        except AdmissionRefused as exc:
            return _Grant(granted, f"{exc.code}: {exc.message}")
    return _Grant(count, "")


def _insert_runs(items: list[_Due], *, now: dt.datetime) -> None:
    """One ``bulk_create`` for the batch (no model signals), dropping conflicts on ``(schedule,
    scheduled_for)``."""
    if not items:
        return
    priorities = dict(
        Tenant.objects.filter(tenant_id__in={item.tenant_id for item in items}).values_list(
            "tenant_id", "subscription__plan__priority"
        )
    )
    PipelineRun.objects.bulk_create(
        [
            PipelineRun(
                tenant_id=item.tenant_id,
                pipeline=item.pipeline,
                pipeline_id=pipeline_id_for(tenant_id=item.tenant_id, pipeline=item.pipeline),
                status=item.status,
                trigger=RunTrigger.SCHEDULED,
                parameters=item.run_parameters,
                priority=priorities.get(item.tenant_id) or 0,
                max_attempts=settings.RUN_MAX_ATTEMPTS,
                schedule_id=item.schedule_id,
                scheduled_for=item.timing.scheduled_for,
                error=item.error[:1000],
                finished_at=None if item.status == RunStatus.QUEUED else now,
            )
            for item in items
        ],
        ignore_conflicts=True,
    )


def _advance(due: list[_Due], broken: list[Any]) -> None:
    """Set each claimed schedule's ``next_run_at`` and ``last_run_at`` (one UPDATE per distinct pair
    of times); park schedules whose cron or zone no longer parses (``next_run_at`` null: not due
    until edited)."""
    groups: dict[tuple[dt.datetime, dt.datetime], list[Any]] = defaultdict(list)
    for item in due:
        groups[(item.timing.next_run_at, item.timing.scheduled_for)].append(item.schedule_id)
    for (next_run_at, last_run_at), ids in groups.items():
        Schedule.objects.filter(pk__in=ids).update(next_run_at=next_run_at, last_run_at=last_run_at)
    if broken:
        Schedule.objects.filter(pk__in=broken).update(next_run_at=None)


# --- dispatcher ------------------------------------------------------------------------------------


def queue_dispatch(*, tenant_id: str | None = None, now: dt.datetime | None = None) -> int:
    """Move QUEUED runs to PENDING and send them to workers, tenant by tenant, while each tenant's
    running count (PENDING + RUNNING) is under its plan's concurrent limit. Tenants are served by plan
    priority (SCALE, PROFESSIONAL, STARTER) then by their oldest waiting run; within a tenant, runs go
    by priority then age. ``tenant_id`` limits the pass to one tenant (what a finishing run asks for).

    Each slot is taken by the single-statement admission (``running + n <= limit``), so dispatchers
    running at once never exceed the limit; the runs are claimed ``FOR UPDATE SKIP LOCKED`` so no run
    is handed out twice. Tasks are sent after commit. Returns how many runs were dispatched."""
    now = _clock(now)
    waiting = PipelineRun.objects.filter(status=RunStatus.QUEUED)
    if tenant_id is not None:
        waiting = waiting.filter(tenant_id=tenant_id)
    order = (
        waiting.values("tenant_id")
        .annotate(plan_priority=Max("tenant__subscription__plan__priority"), oldest=Min("created_at"))
        .order_by("-plan_priority", "oldest", "tenant_id")
    )
    dispatched = 0
    for row in order:
        tenant = tenant_queryset().filter(tenant_id=row["tenant_id"]).first()
        if tenant is not None:
            dispatched += _dispatch_tenant(tenant, now=now)
    if tenant_id is None:
        _record_job(job="dispatch", now=now, details={"dispatched": dispatched})
    return dispatched


def _dispatch_tenant(tenant: Tenant, *, now: dt.datetime) -> int:
    subscription = tenant.subscription
    limit = subscription.plan.concurrent_limit
    dispatched = 0
    while True:
        with transaction.atomic():
            running = TenantUsage.objects.filter(tenant=tenant).values_list("running", flat=True).first() or 0
            free = limit - running  # a hint for the batch size; the admission below decides
            if free <= 0:
                break
            run_ids = list(
                PipelineRun.objects.select_for_update(skip_locked=True)
                .filter(tenant=tenant, status=RunStatus.QUEUED)
                .order_by("-priority", "created_at")
                .values_list("pk", flat=True)[: min(free, DISPATCH_BATCH)]
            )
            if not run_ids:
                break
            try:
                _admit(tenant=tenant, subscription=subscription, now=now, runs=0, slots=len(run_ids))
            except AdmissionRefused:
                if len(run_ids) == 1:
                    break
                run_ids = run_ids[:1]  # another dispatcher took slots since the read: try one
                try:
                    _admit(tenant=tenant, subscription=subscription, now=now, runs=0, slots=1)
                except AdmissionRefused:
                    break
            moved = PipelineRun.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED).update(
                status=RunStatus.PENDING, enqueued_at=now
            )
            for _ in range(len(run_ids) - moved):  # only without row locks (SQLite); give the slot back
                slot_release(tenant_id=tenant.tenant_id)
            _enqueue_on_commit(run_ids)
            dispatched += moved
            if len(run_ids) < free:
                break
    return dispatched


def _enqueue_on_commit(run_ids: Iterable[Any]) -> None:
    """Send after commit; a broker failure is logged (robust) and the reaper's resend recovers it."""
    for run_id in run_ids:
        transaction.on_commit(functools.partial(run_enqueue, run_id=str(run_id)), robust=True)


# --- reaper ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReapResult:
    """``requeued``: RUNNING runs whose lease expired, put back to PENDING and re-sent (their next
    claim is ``attempt + 1``); ``failed``: such runs that had used ``max_attempts``, now FAILED
    ``worker_lost`` with their slot released; ``resent``: PENDING runs whose message may have been
    lost (sent longer than ``RUN_RESEND_AFTER_S`` ago and still unclaimed), sent again."""

    requeued: int = 0
    failed: int = 0
    resent: int = 0


def runs_reap(*, now: dt.datetime | None = None, batch_size: int = 500) -> ReapResult:
    """Recover runs whose worker died. A RUNNING run whose heartbeat is older than ``RUN_LEASE_S`` goes
    back to PENDING (attempt unchanged: the claim adds one) and is re-sent, or, when ``attempt`` has
    reached ``max_attempts``, becomes FAILED ``worker_lost`` and releases its running slot; each is a
    conditional UPDATE on ``status = RUNNING`` under a ``SKIP LOCKED`` claim, so the slot is released
    exactly once even if a worker re-claims the run at the same moment. The dead worker's late finish
    is fenced by ``attempt`` and changes nothing. Also re-sends PENDING runs left unclaimed for
    ``RUN_RESEND_AFTER_S`` (the enqueue after commit can be lost if the process dies in between)."""
    now = _clock(now)
    stale = now - dt.timedelta(seconds=settings.RUN_LEASE_S)
    requeued = failed = 0
    while True:
        with transaction.atomic():
            rows = list(
                PipelineRun.objects.select_for_update(skip_locked=True)
                .filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale)
                .order_by("heartbeat_at")
                .values_list("pk", "tenant_id", "attempt", "max_attempts")[:batch_size]
            )
            if not rows:
                break
            retry = [pk for pk, _tenant, attempt, max_attempts in rows if attempt < max_attempts]
            exhausted = [
                (pk, tenant) for pk, tenant, attempt, max_attempts in rows if attempt >= max_attempts
            ]
            if retry:
                requeued += PipelineRun.objects.filter(
                    pk__in=retry, status=RunStatus.RUNNING, heartbeat_at__lt=stale
                ).update(status=RunStatus.PENDING, enqueued_at=now)
                _enqueue_on_commit(retry)
            for pk, tenant_id in exhausted:
                if PipelineRun.objects.filter(pk=pk, status=RunStatus.RUNNING, heartbeat_at__lt=stale).update(
                    status=RunStatus.FAILED, finished_at=now, error=WORKER_LOST_ERROR
                ):
                    slot_release(tenant_id=tenant_id)
                    failed += 1
        if len(rows) < batch_size:
            break
    resent = _resend_unclaimed(now=now, batch_size=batch_size)
    _record_job(job="reap", now=now, details={"requeued": requeued, "failed": failed, "resent": resent})
    if requeued or failed or resent:
        logger.warning("reaper: %d requeued, %d failed worker_lost, %d re-sent", requeued, failed, resent)
    return ReapResult(requeued=requeued, failed=failed, resent=resent)


def _resend_unclaimed(*, now: dt.datetime, batch_size: int) -> int:
    before = now - dt.timedelta(seconds=settings.RUN_RESEND_AFTER_S)
    with transaction.atomic():
        run_ids = list(
            PipelineRun.objects.select_for_update(skip_locked=True)
            .filter(status=RunStatus.PENDING, enqueued_at__lt=before)
            .order_by("enqueued_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if run_ids:
            PipelineRun.objects.filter(pk__in=run_ids, status=RunStatus.PENDING).update(enqueued_at=now)
            _enqueue_on_commit(run_ids)
    return len(run_ids)


# --- quota reset and retention ---------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaResetResult:
    """``tenants_reset``: usage rows whose daily count was reset (their day was before today, UTC);
    ``periods_reset``: usage rows whose billing-period count was reset (the subscription's monthly
    anniversary has passed since their period started)."""

    tenants_reset: int
    periods_reset: int


def quotas_reset(*, now: dt.datetime | None = None) -> QuotaResetResult:
    """Reset the daily run counts (beat runs this at 00:00 UTC) and the period counts of tenants past
    their subscription anniversary. It writes exactly what the lazy rollover in the admission
    statement would (a day before today counts as zero; a period that started before the current one
    counts as zero), as conditional UPDATEs, so it races harmlessly with admissions and with itself:
    a second call at once resets nothing more. Running counts are never touched."""
    now = _clock(now)
    today = now.astimezone(dt.UTC).date()
    tenants_reset = TenantUsage.objects.filter(day__lt=today).update(runs_today=0, day=today)
    by_period: dict[dt.datetime, list[str]] = defaultdict(list)
    for tenant_id, anchor in Subscription.objects.values_list("tenant_id", "current_period_start"):
        by_period[current_period_start(anchor=anchor, now=now)].append(tenant_id)
    periods_reset = 0
    for period, tenant_ids in by_period.items():
        periods_reset += TenantUsage.objects.filter(tenant_id__in=tenant_ids, period_start__lt=period).update(
            runs_this_period=0, period_start=period
        )
    _record_job(
        job="quota_reset", now=now, details={"tenants_reset": tenants_reset, "periods_reset": periods_reset}
    )
    return QuotaResetResult(tenants_reset=tenants_reset, periods_reset=periods_reset)


def runs_purge_expired(*, now: dt.datetime | None = None, batch_size: int = 1000) -> int:
    """Delete finished runs created more than ``RUN_RETENTION_DAYS`` ago, with their step logs and DQ
    results, in batches (each its own transaction). Runs still QUEUED, PENDING or RUNNING are kept
    whatever their age. Returns the number of records deleted (runs + step logs + DQ results)."""
    now = _clock(now)
    cutoff = now - dt.timedelta(days=settings.RUN_RETENTION_DAYS)
    expired = PipelineRun.objects.filter(created_at__lt=cutoff, status__in=TERMINAL_STATUSES)
    cleaned = 0
    while True:
        run_ids = list(expired.order_by().values_list("pk", flat=True)[:batch_size])
        if not run_ids:
            break
        with transaction.atomic():
            deleted, _per_model = expired.filter(pk__in=run_ids).delete()
        cleaned += deleted
        if len(run_ids) < batch_size:
            break
    _record_job(job="retention", now=now, details={"records_cleaned": cleaned})
    return cleaned


# --- run now ---------------------------------------------------------------------------------------


@transaction.atomic
def schedule_run_now(*, schedule: Schedule, actor: Actor, now: dt.datetime | None = None) -> PipelineRun:
    """Staff "run now": one extra run of the schedule's pipeline, parameters resolved as of ``now`` in
    the schedule's zone. It takes one from the day and period quota like a scheduled run
    (``AdmissionRefused`` when over, nothing recorded) and waits QUEUED, so the tenant's concurrency
    limit still holds; the dispatcher is asked for it right after commit. ``PipelineNotFound`` /
    ``PipelineConfigError`` / ``ParameterError`` when the schedule no longer validates."""
    now = _clock(now)
    tenant = tenant_queryset().get(tenant_id=schedule.tenant_id)
    pipeline = tenant_pipeline_get(name=schedule.pipeline)
    parameters = resolve_schedule_parameters(
        dict(schedule.parameters), pipeline.spec.parameters, at=now, tz=validate_timezone(schedule.timezone)
    )
    if not subscription_is_active(tenant=tenant, now=now):
        raise AdmissionRefused(
            "subscription_inactive", f"Subscription is {tenant.subscription.status.lower()}"
        )
    _admit(tenant=tenant, subscription=tenant.subscription, now=now, runs=1, slots=0)
    run = PipelineRun.objects.create(
        tenant=tenant,
        pipeline=schedule.pipeline,
        pipeline_id=pipeline_id_for(tenant_id=tenant.tenant_id, pipeline=schedule.pipeline),
        status=RunStatus.QUEUED,
        trigger=RunTrigger.MANUAL,
        parameters=parameters,
        user_id=actor.user_id,
        priority=tenant.subscription.plan.priority,
        max_attempts=settings.RUN_MAX_ATTEMPTS,
        schedule=schedule,
    )
    audit_record(
        actor=actor,
        action="schedule.run_now",
        tenant_id=tenant.tenant_id,
        target_type="pipeline_run",
        target_id=str(run.pk),
        details={"schedule": str(schedule.pk), "pipeline": schedule.pipeline},
    )
    tenant_id = tenant.tenant_id
    transaction.on_commit(lambda: queue_dispatch(tenant_id=tenant_id, now=now), robust=True)
    return run


# --- operations view (read side) -------------------------------------------------------------------


@dataclass(frozen=True)
class DayCounts:
    day: dt.date
    counts: dict[str, int]  # status -> runs created that day (UTC)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class OperationsOverview:
    due: int  # enabled schedules with next_run_at <= now
    queued: int
    running: int  # PENDING + RUNNING
    oldest_queued_age_s: float | None
    last_tick_at: dt.datetime | None
    mirror_lag_s: float | None  # None: not available
    days: list[DayCounts]


def mirror_lag_seconds_or_none() -> float | None:
    """The central mirror's lag (``convergence.mirror.mirror_lag_seconds``), or None while that module
    is not installed or cannot answer; the view shows "n/a" then."""
    try:
        from convergence.mirror import mirror_lag_seconds  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        lag = mirror_lag_seconds()
    except Exception:
        logger.exception("mirror lag could not be read")
        return None
    return None if lag is None else float(lag)


def operations_overview(*, now: dt.datetime | None = None, days: int = 14) -> OperationsOverview:
    """Counts for the operations page: due schedules, queued and running runs, the oldest queued
    run's age, the last tick, the mirror lag, and runs per UTC day by status for the last ``days``
    days (today included, oldest first, every day present even with no runs)."""
    now = _clock(now)
    oldest = PipelineRun.objects.filter(status=RunStatus.QUEUED).aggregate(oldest=Min("created_at"))["oldest"]
    tick = SchedulerState.objects.filter(job="tick").values_list("last_run_at", flat=True).first()
    first_day = now.astimezone(dt.UTC).date() - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
    per_day: dict[dt.date, dict[str, int]] = {first_day + dt.timedelta(days=n): {} for n in range(days)}
    rows = (
        PipelineRun.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("day", "status")
        .annotate(runs=Count("pk"))
        .order_by()
    )
    for row in rows:
        if row["day"] in per_day:
            per_day[row["day"]][row["status"]] = row["runs"]
    return OperationsOverview(
        due=Schedule.objects.filter(enabled=True, next_run_at__lte=now).count(),
        queued=PipelineRun.objects.filter(status=RunStatus.QUEUED).count(),
        running=PipelineRun.objects.filter(status__in=(RunStatus.PENDING, RunStatus.RUNNING)).count(),
        oldest_queued_age_s=None if oldest is None else max((now - oldest).total_seconds(), 0.0),
        last_tick_at=tick,
        mirror_lag_s=mirror_lag_seconds_or_none(),
        days=[DayCounts(day, counts) for day, counts in per_day.items()],
    )
