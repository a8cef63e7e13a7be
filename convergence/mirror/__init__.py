"""Central mirror of the control plane: trigger-fed transactional outbox, drained by a task that
MERGEs current rows by key into the warehouse central dataset (``CENTRAL_DATASET``)."""

from __future__ import annotations

import datetime as dt


def mirror_lag_seconds(*, now: dt.datetime | None = None) -> float:
    """Age in seconds of the oldest undelivered change (0.0 when the mirror is up to date); the
    operations page reads it through this name."""
    from convergence.mirror.selectors import mirror_lag

    return mirror_lag(now=now).lag_seconds
