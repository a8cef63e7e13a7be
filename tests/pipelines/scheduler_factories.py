"""Shared by the scheduler, dispatcher and reaper tests: schedules and runs made in bulk, and a recorder
for the tasks the scheduler sends."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pipelines.models import PipelineRun, RunStatus, RunTrigger, Schedule

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def make_schedules(
    tenant_id: str,
    count: int,
    *,
    next_run_at: dt.datetime,
    cron: str = "*/15 * * * *",
    timezone: str = "UTC",
    pipeline: str = "test/engine/ok",
    parameters: dict[str, Any] | None = None,
    enabled: bool = True,
) -> list[Schedule]:
    """``count`` schedules in one INSERT, all due at ``next_run_at`` (as the tick would have set it)."""
    return Schedule.objects.bulk_create(
        Schedule(
            tenant_id=tenant_id,
            pipeline=pipeline,
            cron=cron,
            timezone=timezone,
            parameters={"date": "yesterday"} if parameters is None else parameters,
            enabled=enabled,
            next_run_at=next_run_at,
        )
        for _ in range(count)
    )


def make_queued_runs(
    tenant_id: str, count: int, *, priority: int = 0, pipeline: str = "ok"
) -> list[PipelineRun]:
    runs = []
    for _ in range(count):  # one by one: created_at orders them
        runs.append(
            PipelineRun.objects.create(
                tenant_id=tenant_id,
                pipeline=f"test/engine/{pipeline}",
                pipeline_id=f"{tenant_id}_test_engine_{pipeline}",
                status=RunStatus.QUEUED,
                trigger=RunTrigger.SCHEDULED,
                parameters={"date": "2025-11-19"},
                priority=priority,
            )
        )
    return runs


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run ids handed to the broker, in order (the broker itself is not under test here)."""
    calls: list[str] = []
    monkeypatch.setattr("pipelines.scheduler.run_enqueue", lambda *, run_id: calls.append(run_id))
    monkeypatch.setattr("pipelines.services.run_enqueue", lambda *, run_id: calls.append(run_id))
    return calls
