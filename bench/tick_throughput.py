"""Tick throughput (DESIGN.md "Runs, queue and schedules", reliability.md §4.5): the scheduler tick
(``pipelines.scheduler.schedules_tick``) vs the raw ``SELECT ... FOR UPDATE SKIP LOCKED`` SQL loop doing
the same inserts, on the same Postgres database in the same process (target >= 0.5x schedules/s).

Numerator: ``schedules_tick(now=T)`` over N due schedules (``*/15 * * * *`` UTC, spread over 4 SCALE
tenants with limits raised to 10^9): batches of 500 claimed ``FOR UPDATE SKIP LOCKED``, cron evaluation
(next fire after now, latest due time), parameters resolved against the pipeline's spec (relative date),
quota admission per tenant and batch, existing-run check, one QUEUED run per schedule inserted under
``UNIQUE(schedule, scheduled_for)``, ``next_run_at`` advanced, the tick's state row written.

Denominator: the reliability.md §4.5 CTE, looped until it returns no rows (autocommit): claim 500 due
schedules ``FOR UPDATE SKIP LOCKED``, advance ``next_run_at`` by a fixed 15 minutes (no cron), insert the
same run rows (parameters copied raw, no quota) ``ON CONFLICT DO NOTHING``.

Between measurements (untimed) both sides get the same state back: runs deleted, the schedules due
again, ``VACUUM ANALYZE``. Sides alternate (ABAB..., order flipped each round) after a warm-up; the
figure is the median of the per-round ratios.

Usage: ``.venv/bin/python bench/tick_throughput.py [--rounds 5] [--schedules 5000]``"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

import benchlib
from pipeline_overhead import PIPELINE, write_pipeline_config

TARGET = 0.5
TENANTS = ("tick_a", "tick_b", "tick_c", "tick_d")
BATCH = 500
DUE = dt.datetime(2025, 11, 19, 5, 0, tzinfo=dt.UTC)
NOW = DUE + dt.timedelta(seconds=30)

RAW_TICK_SQL = """
WITH due AS (
    SELECT id, next_run_at FROM pipelines_schedule
    WHERE enabled AND next_run_at <= %(now)s
    ORDER BY next_run_at
    FOR UPDATE SKIP LOCKED
    LIMIT %(batch)s
), adv AS (
    UPDATE pipelines_schedule s
    SET next_run_at = due.next_run_at + interval '15 minutes', last_run_at = due.next_run_at
    FROM due WHERE s.id = due.id
    RETURNING s.id, s.tenant_id, s.pipeline, s.parameters, due.next_run_at AS scheduled_for
)
INSERT INTO pipelines_pipelinerun (
    pipeline_logging_id, tenant_id, pipeline, pipeline_id, status, trigger, parameters, user_id,
    priority, attempt, max_attempts, cancel_requested, error, rows_processed, bytes_processed,
    created_at, schedule_id, scheduled_for
)
SELECT gen_random_uuid(), adv.tenant_id, adv.pipeline,
       adv.tenant_id || '_' || replace(adv.pipeline, '/', '_'), 'QUEUED', 'scheduled', adv.parameters, '',
       0, 0, 3, false, '', 0, 0, now(), adv.id, adv.scheduled_for
FROM adv
ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
RETURNING pipeline_logging_id
"""


def setup_tenants() -> None:
    """Django set up, the bench pipeline's config written and the tenants created (SCALE, limits raised)."""
    benchlib.setup_django()
    write_pipeline_config()
    for tenant_id in TENANTS:
        benchlib.create_tenant(tenant_id)


def make_schedules(
    count: int,
    *,
    next_run_at: dt.datetime = DUE,
    last_run_at: dt.datetime | None = None,
    batch_size: int = 5000,
) -> None:
    """``count`` enabled ``*/15 * * * *`` UTC schedules of the bench pipeline, spread over the tenants."""
    from pipelines.models import Schedule

    Schedule.objects.bulk_create(
        (
            Schedule(
                tenant_id=TENANTS[index % len(TENANTS)],
                pipeline=PIPELINE,
                cron="*/15 * * * *",
                timezone="UTC",
                parameters={"date": "yesterday"},
                enabled=True,
                next_run_at=next_run_at,
                last_run_at=last_run_at,
            )
            for index in range(count)
        ),
        batch_size=batch_size,
    )


def reset(due_count: int | None = None) -> None:
    """Untimed: no runs, every schedule (or the first ``due_count``) due again, fresh statistics."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pipelines_pipelinerun")
        cursor.execute("UPDATE pipelines_schedule SET next_run_at = %s, last_run_at = NULL", [DUE])
        cursor.execute("UPDATE tenants_tenantusage SET runs_today = 0, runs_this_period = 0, running = 0")
        cursor.execute("VACUUM ANALYZE pipelines_schedule")
        cursor.execute("VACUUM ANALYZE pipelines_pipelinerun")
        cursor.execute("VACUUM ANALYZE tenants_tenantusage")


def raw_tick() -> int:
    from django.db import connection

    inserted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(RAW_TICK_SQL, {"now": NOW, "batch": BATCH})
            rows = cursor.fetchall()
        if not rows:
            return inserted
        inserted += len(rows)


def code_tick() -> int:
    from pipelines.scheduler import schedules_tick

    return schedules_tick(now=NOW, batch_size=BATCH).queued


def measure(side: str, expected: int) -> float:
    """Seconds for one full tick over the due schedules; checks it made exactly one run each."""
    from pipelines.models import PipelineRun

    reset()
    started = time.perf_counter()
    made = code_tick() if side == "tick" else raw_tick()
    elapsed = time.perf_counter() - started
    runs = PipelineRun.objects.count()
    distinct = PipelineRun.objects.values("schedule_id", "scheduled_for").distinct().count()
    if not made == runs == distinct == expected:
        raise RuntimeError(f"{side}: made {made}, {runs} rows, {distinct} distinct, expected {expected}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side (>= 3)")
    parser.add_argument("--schedules", type=int, default=5000, help="due schedules per tick")
    args = parser.parse_args()
    rounds = max(args.rounds, 3)

    with benchlib.bench_environment("tick"):
        setup_tenants()
        make_schedules(args.schedules)
        print(
            f"{args.schedules} due schedules over {len(TENANTS)} tenants, batches of {BATCH}; "
            f"{rounds} rounds after a warm-up",
            flush=True,
        )
        for side in ("tick", "raw"):
            measure(side, args.schedules)
        seconds: dict[str, list[float]] = {"tick": [], "raw": []}
        for index in range(rounds):
            for side in ("tick", "raw") if index % 2 == 0 else ("raw", "tick"):
                seconds[side].append(measure(side, args.schedules))

        rates: dict[str, list[float]] = {
            side: [args.schedules / s for s in values] for side, values in seconds.items()
        }
        ratios = [tick / raw for tick, raw in zip(rates["tick"], rates["raw"], strict=True)]
        ratio = benchlib.median(ratios)
        verdict = "meets" if ratio >= TARGET else "MISSES"
        benchlib.result(
            f"tick_throughput: {ratio:.3f}x tick+claim code / raw SKIP LOCKED SQL loop schedules/s "
            f"(median of {rounds} round ratios; medians {benchlib.median(rates['tick']):.0f} vs "
            f"{benchlib.median(rates['raw']):.0f} schedules/s; {args.schedules} due, batch {BATCH}; "
            f"target >= {TARGET}x: {verdict})"
        )
        rows: list[list[Any]] = []
        for side in ("tick", "raw"):
            rows.append(
                [
                    side,
                    f"{benchlib.median(rates[side]):.0f}",
                    f"{min(rates[side]):.0f}",
                    f"{max(rates[side]):.0f}",
                    f"{benchlib.median(seconds[side]) * 1000:.0f}",
                ]
            )
        print(benchlib.table(["side", "median_per_s", "min_per_s", "max_per_s", "median_ms"], rows))
        print(f"  round ratios (tick/raw): {' '.join(f'{value:.3f}' for value in ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
