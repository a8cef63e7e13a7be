"""The ``--now`` option shared by the scheduler commands: a settable clock for drills and tests."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError


def parse_now(raw: str | None) -> dt.datetime | None:
    """An ISO 8601 instant with an offset (``2025-11-19T06:00:00Z``), or None for the wall clock."""
    if raw is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(
            f"--now must be an ISO 8601 instant like 2025-11-19T06:00:00Z, got {raw!r}"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CommandError(f"--now must include a UTC offset or Z, got {raw!r}")
    return moment.astimezone(dt.UTC)
