"""Celery tasks. Messages carry only a run id; Postgres holds the state, so a duplicate or
redelivered message is harmless."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings

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
