"""Pipeline overhead (reliability.md R6, DESIGN.md "Performance"): one ``gcp.bq_etl`` step run through
the full run path on DuckDB vs the same work done directly with the ``duckdb`` module (target <= 1.15x).

Numerator, per run: ``run_create(enforce_quota=False, enqueue=False)`` + ``run_execute(run_id=...)``:
pipeline config load and validation (twice: create and execute), usage lock + run INSERT + audit row,
claim, heartbeat thread, step logs, engine, processor (SQL re-check, parameter binding), adapter
(transpile, per-operation connections, catalog checks) and the replace_partition DELETE + INSERT
transaction, then the fenced finish.

Denominator, per run: ``duckdb.connect(file)``, BEGIN, DELETE the day, INSERT the same rollup written
in DuckDB's fast form (``list_sum(list_transform(credits, lambda c: c.amount))``), COMMIT, close: the
same engine, file, destination table and statements that a hand-written DuckDB job would run.

Both sides open the file fresh each run (no connection is held in between, so neither keeps DuckDB's
buffer cache warm for the other), alternate ABAB... after one warm-up each, in one process.

Usage: ``.venv/bin/python bench/pipeline_overhead.py [--pairs N] [--profile]``;
``BENCH_DAYS`` / ``BENCH_ROWS_PER_DAY`` size the generated billing export (default 30 x 1,000,000)."""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import benchlib

TENANT_ID = "benchco"
PIPELINE = "gcp/bench/focus_daily"
START = dt.date(2024, 3, 1)
DAYS = int(os.environ.get("BENCH_DAYS", "30"))
ROWS_PER_DAY = int(os.environ.get("BENCH_ROWS_PER_DAY", "1000000"))
TARGET = 1.15

DESTINATION_SCHEMA = [
    {"name": "usage_date", "type": "DATE", "mode": "REQUIRED"},
    {"name": "service", "type": "STRING"},
    {"name": "project", "type": "STRING"},
    {"name": "region", "type": "STRING"},
    {"name": "cost", "type": "NUMERIC"},
    {"name": "credits", "type": "NUMERIC"},
    {"name": "net_cost", "type": "NUMERIC"},
    {"name": "row_count", "type": "INT64"},
]

# The FOCUS-like daily rollup as a tenant writes it: BigQuery SQL, the correlated UNNEST credits sum.
ROLLUP_SQL = (
    "SELECT usage_date, service, project, region, SUM(cost) AS cost, "
    "SUM(IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0)) AS credits, "
    "SUM(cost) + SUM(IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0)) AS net_cost, "
    "COUNT(*) AS row_count "
    "FROM {tenant_dataset}.billing_export WHERE usage_date = @date "
    "GROUP BY usage_date, service, project, region"
)

PIPELINE_YAML = f"""
description: Bench - FOCUS-like daily rollup of a GCP billing export
parameters:
  date: {{type: date, required: true}}
steps:
  - step_id: focus_daily
    ps_type: gcp.bq_etl
    sql: "{ROLLUP_SQL}"
    destination:
      dataset_type: tenant_dataset
      table: focus_daily
      write_mode: replace_partition
      partition_field: usage_date
      schema_file: schemas/bench_focus_daily.json
"""

# The same work hand-written for DuckDB, in the fast list form DESIGN.md says to benchmark against.
DIRECT_DELETE = 'DELETE FROM "{dataset}"."focus_daily" WHERE usage_date = $date'
DIRECT_INSERT = (
    'INSERT INTO "{dataset}"."focus_daily" BY NAME '
    "SELECT usage_date, service, project, region, SUM(cost) AS cost, "
    "SUM(COALESCE(list_sum(list_transform(credits, lambda c: c.amount)), 0)) AS credits, "
    "SUM(cost) + SUM(COALESCE(list_sum(list_transform(credits, lambda c: c.amount)), 0)) AS net_cost, "
    "COUNT(*) AS row_count "
    'FROM "{dataset}"."billing_export" WHERE usage_date = $date '
    "GROUP BY usage_date, service, project, region"
)

# Deterministic billing-like export, generated through the adapter in BigQuery SQL: one day of
# ROWS_PER_DAY rows, then copied to the other days with a day-dependent cost.
FIRST_DAY_SQL = """
SELECT
  DATE '{start}' AS usage_date,
  CONCAT('service-', CAST(MOD(i, 13) AS STRING)) AS service,
  CONCAT('project-', CAST(MOD(i * 7, 211) AS STRING)) AS project,
  CONCAT('region-', CAST(MOD(i * 3, 17) AS STRING)) AS region,
  CAST(MOD(i * 7919, 100000) / 1000 AS NUMERIC) AS cost,
  CASE MOD(i, 4)
    WHEN 0 THEN ARRAY<STRUCT<name STRING, amount NUMERIC>>[]
    WHEN 1 THEN [STRUCT('SUSTAINED_USE' AS name, CAST(-MOD(i * 31, 1000) / 1000 AS NUMERIC) AS amount)]
    ELSE [STRUCT('SUSTAINED_USE' AS name, CAST(-MOD(i * 31, 1000) / 1000 AS NUMERIC) AS amount),
          STRUCT('COMMITTED_USE' AS name, CAST(-MOD(i * 17, 500) / 1000 AS NUMERIC) AS amount)]
  END AS credits
FROM UNNEST(GENERATE_ARRAY(0, {last})) AS i
"""
OTHER_DAYS_SQL = """
SELECT DATE_ADD(usage_date, INTERVAL d DAY) AS usage_date, service, project, region,
  cost + CAST(d AS NUMERIC) AS cost, credits
FROM {dataset}.billing_export CROSS JOIN UNNEST(GENERATE_ARRAY(1, {last_day})) AS d
WHERE usage_date = DATE '{start}'
"""


def write_pipeline_config() -> None:
    from django.conf import settings

    root = Path(settings.PIPELINE_CONFIGS_DIR)
    (root / "schemas").mkdir(parents=True, exist_ok=True)
    (root / "schemas" / "bench_focus_daily.json").write_text(json.dumps(DESTINATION_SCHEMA))
    path = root / f"{PIPELINE}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PIPELINE_YAML)


def generate_export(dataset: str) -> tuple[int, float]:
    """Create ``billing_export`` through the warehouse adapter; returns (rows, seconds)."""
    from convergence.warehouse import TableRef, WriteMode, get_warehouse

    warehouse = get_warehouse()
    ref = TableRef(dataset, "billing_export")
    started = time.perf_counter()
    warehouse.query_to_table(
        FIRST_DAY_SQL.format(start=START.isoformat(), last=ROWS_PER_DAY - 1),
        ref,
        write_mode=WriteMode.TRUNCATE,
    )
    if DAYS > 1:
        warehouse.query_to_table(
            OTHER_DAYS_SQL.format(dataset=dataset, last_day=DAYS - 1, start=START.isoformat()),
            ref,
            write_mode=WriteMode.APPEND,
        )
    rows = int(warehouse.query(f"SELECT COUNT(*) AS n FROM {dataset}.billing_export").rows[0]["n"])
    return rows, time.perf_counter() - started


def run_pipeline(tenant: Any, day: dt.date) -> float:
    """The numerator: create and execute one run; returns seconds."""
    return benchlib.timed_run(tenant, PIPELINE, day)


def run_direct(path: str, dataset: str, day: dt.date) -> float:
    """The denominator: the same DELETE + INSERT in one transaction, directly on DuckDB."""
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect(path)
    try:
        connection.execute("SET TimeZone='UTC'")
        connection.execute("BEGIN TRANSACTION")
        connection.execute(DIRECT_DELETE.format(dataset=dataset), {"date": day})
        connection.execute(DIRECT_INSERT.format(dataset=dataset), {"date": day}).fetchone()
        connection.execute("COMMIT")
    finally:
        connection.close()
    return time.perf_counter() - started


def destination_summary(dataset: str, day: dt.date) -> tuple[Any, ...]:
    from convergence.warehouse import get_warehouse

    row = (
        get_warehouse()
        .query(
            "SELECT COUNT(*) AS n, SUM(cost) AS cost, SUM(credits) AS credits, "
            f"SUM(row_count) AS source_rows FROM {dataset}.focus_daily WHERE usage_date = @date",
            {"date": day},
        )
        .rows[0]
    )
    return (row["n"], row["cost"], row["credits"], row["source_rows"])


def profile_pipeline_run(tenant: Any, day: dt.date) -> None:
    """cProfile one pipeline run. The engine runs a step in a helper thread (for its timeout), which
    cProfile cannot see, so for this one run the step is called inline instead."""
    from pipelines import engine

    original = engine._call_with_timeout
    engine._call_with_timeout = lambda function, timeout_s: function()
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        run_pipeline(tenant, day)
        profiler.disable()
    finally:
        engine._call_with_timeout = original
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(25)
        print(f"\ncProfile of one pipeline run (step inline), by {order}, top 25:")
        print(out.getvalue())


def _row(label: str, values: list[float]) -> list[Any]:
    return [label, f"{benchlib.median(values):.3f}", f"{min(values):.3f}", f"{max(values):.3f}", len(values)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=9, help="measured numerator/denominator pairs (>= 5)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one pipeline run")
    args = parser.parse_args()
    pairs = max(args.pairs, 5)

    with benchlib.bench_environment("pipeline"):
        benchlib.setup_django()
        from django.conf import settings

        write_pipeline_config()
        tenant, _key = benchlib.create_tenant(TENANT_ID)
        dataset = f"{TENANT_ID}_{settings.ENV_SUFFIX}"
        warehouse_path = settings.WAREHOUSE_URL.removeprefix("duckdb://")
        rows, generate_s = generate_export(dataset)
        day = START + dt.timedelta(days=DAYS // 2)
        print(
            f"generated {rows:,} billing rows ({DAYS} days x {ROWS_PER_DAY:,}) in {generate_s:.1f} s; "
            f"rolling up {day} ({ROWS_PER_DAY:,} rows); {pairs} pairs after 1 warm-up each",
            flush=True,
        )

        # Warm-up (also creates the destination from its schema file), then check both sides agree.
        run_pipeline(tenant, day)
        via_pipeline = destination_summary(dataset, day)
        run_direct(warehouse_path, dataset, day)
        via_direct = destination_summary(dataset, day)
        if via_pipeline != via_direct:
            print(f"sides disagree: pipeline {via_pipeline} vs direct {via_direct}", file=sys.stderr)
            return 1

        numerator: list[float] = []
        denominator: list[float] = []
        for index in range(pairs):
            # ABAB..., flipping the order every other pair so neither side always goes first.
            if index % 2 == 0:
                numerator.append(run_pipeline(tenant, day))
                denominator.append(run_direct(warehouse_path, dataset, day))
            else:
                denominator.append(run_direct(warehouse_path, dataset, day))
                numerator.append(run_pipeline(tenant, day))

        ratios = [n / d for n, d in zip(numerator, denominator, strict=True)]
        added_ms = [(n - d) * 1000 for n, d in zip(numerator, denominator, strict=True)]
        ratio = benchlib.median(ratios)
        med_n, med_d = benchlib.median(numerator), benchlib.median(denominator)
        verdict = "meets" if ratio <= TARGET else "MISSES"
        benchlib.result(
            f"pipeline_overhead: {ratio:.3f}x pipeline run / direct DuckDB (median of {pairs} pair ratios; "
            f"medians {med_n:.3f} s vs {med_d:.3f} s; {ROWS_PER_DAY:,}-row day of a {rows:,}-row export; "
            f"target <= {TARGET}x: {verdict})"
        )
        print(
            benchlib.table(
                ["side", "median_s", "min_s", "max_s", "runs"],
                [
                    _row("pipeline: run_create + run_execute", numerator),
                    _row("direct duckdb: DELETE + INSERT txn", denominator),
                ],
            )
        )
        print(f"  pair ratios: {' '.join(f'{value:.3f}' for value in ratios)}")
        print(
            f"  ratio of medians {med_n / med_d:.3f}x; added per run {benchlib.median(added_ms):+.0f} ms "
            "(median of pair differences)"
        )
        print(f"  destination check: {via_direct[0]:,} rollup rows, identical sums from both sides")
        if args.profile:
            profile_pipeline_run(tenant, day)
    return 0


if __name__ == "__main__":
    sys.exit(main())
