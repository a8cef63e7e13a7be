"""Celery tasks. Messages carry only a run id; Postgres holds the state, so a duplicate or
redelivered message is harmless."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings

from pipelines import scheduler
from pipelines.models import PipelineRun, RunStatus
from pipelines.services import run_execute

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="pipelines.execute_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=200,
)
def execute_run(self: Task, run_id: str) -> str | None:
    """Execute one run. If another worker holds a live lease on it (a duplicate delivery, or a
    redelivery right after a worker died), look again once the lease could have expired: a dead
    worker's run is then re-claimed with ``attempt + 1``."""
    status = run_execute(run_id=run_id)
    if status is None:
        current = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        if current == RunStatus.RUNNING:
            raise self.retry(countdown=settings.RUN_LEASE_S)
    return status


# --- scheduler system tasks (beat entries in settings.CELERY_BEAT_SCHEDULE) -------------------------
# Each calls one service of pipelines/scheduler.py, as the scheduler endpoints and commands do. All are
# idempotent and safe to overlap, so a late or duplicated beat message costs only a query or two.


@shared_task(name="pipelines.scheduler_tick", ignore_result=True, time_limit=300, soft_time_limit=240)
def scheduler_tick() -> dict[str, int]:
    """Turn due schedules into runs (see ``schedules_tick``)."""
    result = scheduler.schedules_tick()
    return {"queued": result.queued, "skipped": result.skipped}


@shared_task(name="pipelines.process_queue", ignore_result=True, time_limit=120, soft_time_limit=90)
def process_queue() -> dict[str, int]:
    """Hand QUEUED runs to workers within each tenant's concurrency limit (see ``queue_dispatch``)."""
    return {"dispatched": scheduler.queue_dispatch()}


@shared_task(name="pipelines.reap_runs", ignore_result=True, time_limit=120, soft_time_limit=90)
def reap_runs() -> dict[str, int]:
    """Requeue or fail runs whose worker stopped heart-beating (see ``runs_reap``)."""
    result = scheduler.runs_reap()
    return {"requeued": result.requeued, "failed": result.failed, "resent": result.resent}


@shared_task(name="pipelines.reset_quotas", ignore_result=True, time_limit=600, soft_time_limit=540)
def reset_quotas() -> dict[str, int]:
    """Daily 00:00 UTC: reset day counts, and period counts past the subscription anniversary."""
    result = scheduler.quotas_reset()
    return {"tenants_reset": result.tenants_reset, "periods_reset": result.periods_reset}


@shared_task(name="pipelines.purge_expired_runs", ignore_result=True, time_limit=3600, soft_time_limit=3500)
def purge_expired_runs() -> dict[str, int]:
    """Delete finished runs (with step logs and DQ results) older than ``RUN_RETENTION_DAYS``."""
    return {"records_cleaned": scheduler.runs_purge_expired()}
