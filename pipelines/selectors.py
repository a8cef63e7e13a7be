"""Read-side queries for runs and schedules: always scoped to one tenant."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from pipelines.models import DQResult, PipelineRun, Schedule, StepLog
from tenants.models import Tenant


def run_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    pipeline: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
) -> QuerySet[PipelineRun]:
    """The tenant's runs, newest first, with optional filters."""
    runs = PipelineRun.objects.filter(tenant=tenant).order_by("-created_at", "-pk")
    if status:
        runs = runs.filter(status=status)
    if pipeline:
        runs = runs.filter(pipeline=pipeline)
    if created_after:
        runs = runs.filter(created_at__gte=created_after)
    if created_before:
        runs = runs.filter(created_at__lt=created_before)
    return runs


def run_get(*, tenant: Tenant, run_id: str) -> PipelineRun | None:
    """The tenant's run with the step logs and DQ results of its latest attempt, or None (also for
    another tenant's run: existence is never confirmed)."""
    run = PipelineRun.objects.filter(tenant=tenant, pk=run_id).first()
    if run is None:
        return None
    steps = StepLog.objects.filter(run=run, attempt=run.attempt).order_by("position")
    dq = DQResult.objects.filter(run=run, attempt=run.attempt).order_by("created_at", "pk")
    run.latest_steps = list(steps)  # type: ignore[attr-defined]
    run.latest_dq_results = list(dq)  # type: ignore[attr-defined]
    return run


def schedule_list(*, tenant: Tenant) -> QuerySet[Schedule]:
    """The tenant's schedules, oldest first."""
    return Schedule.objects.filter(tenant=tenant).order_by("created_at", "pk")


def schedule_get(*, tenant: Tenant, schedule_id: str) -> Schedule | None:
    """The tenant's schedule, or None (also for another tenant's: existence is never confirmed)."""
    return Schedule.objects.filter(tenant=tenant, pk=schedule_id).first()
