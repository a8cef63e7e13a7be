"""Tick scaling (DESIGN.md "Runs, queue and schedules"): one scheduler tick with 1,000 schedules due in a
table of 100,000 vs in a table of 1,000, on the same Postgres database in the same process (target
<= 1.5x the time). The partial index ``schedule_due_idx`` on ``next_run_at WHERE enabled`` is what keeps
the not-due 99,000 out of the tick's way.

Both sides run ``schedules_tick(now=T)`` over the same 1,000 due schedules (``*/15 * * * *`` UTC, over 4
SCALE tenants with limits raised to 10^9). The large side adds 99,000 enabled schedules due next month.
Switching sides inserts or deletes those 99,000 (untimed); before every measurement the runs are
deleted, the 1,000 made due again and the tables ``VACUUM ANALYZE``d. Order is flipped each round
(S B, B S, ...) so there is one switch per round; the figure is the median of per-round ratios.

Usage: ``.venv/bin/python bench/tick_scaling.py [--rounds 5]``"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import benchlib
from tick_throughput import BATCH, DUE, NOW, make_schedules, setup_tenants

TARGET = 1.5
DUE_COUNT = 1_000
LARGE = 100_000
LATER = DUE + dt.timedelta(days=30)


def add_idle(count: int) -> None:
    # last_run_at = LATER marks the idle ones.
    make_schedules(count, next_run_at=LATER, last_run_at=LATER, batch_size=10_000)


def set_size(size: int) -> None:
    """Untimed: the table holds the 1,000 due schedules plus ``size - 1,000`` idle ones."""
    from pipelines.models import Schedule

    idle = Schedule.objects.filter(last_run_at=LATER)
    current = idle.count()
    wanted = size - DUE_COUNT
    if current < wanted:
        add_idle(wanted - current)
    elif current > wanted:
        idle.delete()
        add_idle(wanted)


def reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pipelines_pipelinerun")
        cursor.execute(
            "UPDATE pipelines_schedule SET next_run_at = %s, last_run_at = NULL"
            " WHERE last_run_at IS NULL OR last_run_at <> %s",
            [DUE, LATER],
        )
        cursor.execute("UPDATE tenants_tenantusage SET runs_today = 0, runs_this_period = 0, running = 0")
        cursor.execute("VACUUM ANALYZE pipelines_schedule")
        cursor.execute("VACUUM ANALYZE pipelines_pipelinerun")


def measure(size: int) -> float:
    from pipelines.models import PipelineRun, Schedule
    from pipelines.scheduler import schedules_tick

    set_size(size)
    reset()
    if Schedule.objects.count() != size:
        raise RuntimeError(f"expected {size} schedules")
    started = time.perf_counter()
    queued = schedules_tick(now=NOW, batch_size=BATCH).queued
    elapsed = time.perf_counter() - started
    if not queued == PipelineRun.objects.count() == DUE_COUNT:
        raise RuntimeError(f"size {size}: queued {queued}, expected {DUE_COUNT}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side (>= 3)")
    args = parser.parse_args()
    rounds = max(args.rounds, 3)

    with benchlib.bench_environment("tickscale"):
        setup_tenants()
        make_schedules(DUE_COUNT)
        print(
            f"{DUE_COUNT} due schedules in {DUE_COUNT:,} vs {LARGE:,}; {rounds} rounds after a warm-up",
            flush=True,
        )
        measure(DUE_COUNT)
        measure(LARGE)
        seconds: dict[int, list[float]] = {DUE_COUNT: [], LARGE: []}
        for index in range(rounds):
            for size in (LARGE, DUE_COUNT) if index % 2 == 0 else (DUE_COUNT, LARGE):
                seconds[size].append(measure(size))

        ratios = [large / small for large, small in zip(seconds[LARGE], seconds[DUE_COUNT], strict=True)]
        ratio = benchlib.median(ratios)
        verdict = "meets" if ratio <= TARGET else "MISSES"
        large_ms, small_ms = (benchlib.median(seconds[size]) * 1000 for size in (LARGE, DUE_COUNT))
        benchlib.result(
            f"tick_scaling: {ratio:.3f}x tick time with {DUE_COUNT:,} due in {LARGE:,} schedules / in "
            f"{DUE_COUNT:,} (median of {rounds} round ratios; medians {large_ms:.0f} vs {small_ms:.0f} ms; "
            f"target <= {TARGET}x: {verdict})"
        )
        rows = [
            [
                f"{size:,}",
                f"{benchlib.median(values) * 1000:.0f}",
                f"{min(values) * 1000:.0f}",
                f"{max(values) * 1000:.0f}",
            ]
            for size, values in seconds.items()
        ]
        print(benchlib.table(["schedules", "median_ms", "min_ms", "max_ms"], rows))
        print(f"  round ratios (large/small): {' '.join(f'{value:.3f}' for value in ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
