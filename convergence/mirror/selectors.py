"""Read-side queries about the mirror."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from convergence.models import OutboxEvent


@dataclass(frozen=True)
class MirrorLag:
    """``lag_seconds``: age of the oldest undelivered outbox event (0 when none is waiting);
    ``status``: ``ok`` under ``MIRROR_LAG_THRESHOLD_S``, else ``lagging``."""

    lag_seconds: float
    threshold_seconds: int

    @property
    def status(self) -> str:
        return "ok" if self.lag_seconds < self.threshold_seconds else "lagging"


def mirror_lag(*, now: dt.datetime | None = None) -> MirrorLag:
    """How far the central dataset is behind Postgres, from the outbox's oldest ``created_at``
    (one index lookup, cheap enough for every readiness probe)."""
    oldest = OutboxEvent.objects.order_by("created_at").values_list("created_at", flat=True).first()
    lag = 0.0 if oldest is None else max(((now or timezone.now()) - oldest).total_seconds(), 0.0)
    return MirrorLag(lag_seconds=round(lag, 3), threshold_seconds=settings.MIRROR_LAG_THRESHOLD_S)
