"""Celery tasks of the ``convergence`` app (autodiscovered as ``convergence.tasks``)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from convergence.mirror.services import mirror_drain


@shared_task(
    name="convergence.mirror_drain",
    ignore_result=True,
    # A drain is bounded (MIRROR_MAX_BATCHES); a late one is worthless, the next beat sends another.
    time_limit=max(settings.MIRROR_INTERVAL_S * 30, 300),
    soft_time_limit=max(settings.MIRROR_INTERVAL_S * 30, 300) - 30,
)
def mirror_drain_task() -> dict[str, Any]:
    """Deliver pending outbox events to the central dataset (sent by beat every MIRROR_INTERVAL_S).

    Delivery is guaranteed by the outbox, not by this message: a lost or duplicate message only
    moves the next drain. A drain already running elsewhere makes this one a no-op."""
    result = mirror_drain()
    return {
        "locked_out": result.locked_out,
        "events_delivered": result.events_delivered,
        "events_kept": result.events_kept,
        "failed_tables": sorted(result.failed_tables),
    }
