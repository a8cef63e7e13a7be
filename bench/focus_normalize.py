"""FOCUS normalization throughput (DESIGN.md "Performance"): ``focus.normalize`` over one day of
generated GCP billing rows (default 1,000,000) run through the full run path on DuckDB, vs the same
normalization SQL run directly on DuckDB (target <= 1.15x). Prints rows/s, the ratio and peak memory.

Data: one usage day from the sample generator (``billing.generators.gcp``, NDJSON), read by the GCP
reader and loaded into the tenant's ``gcp_billing_export`` through the adapter.

Numerator, per run: ``run_create`` + ``run_execute`` of a one-step pipeline (``focus.normalize`` into
``focus_costs_staging``, replace_partition on the provider's day). Denominator, per run: ``duckdb.connect``,
BEGIN, DELETE the day's staging rows, INSERT the normalization SELECT as the adapter transpiles it, COMMIT,
close. That is the same SQL the processor runs, in the fast DuckDB form the transpile produces: the credits
sum as ``list_sum(list_transform(...))`` (from ``(SELECT SUM(c.amount) FROM UNNEST(credits) AS c)``) and
the Tags JSON as ``list_aggregate(list_transform(...), 'string_agg', ',')`` (from ``(SELECT STRING_AGG(...)
FROM UNNEST(...) AS t WITH OFFSET AS o)``); the bench refuses to run if either correlated form is left.

Peak memory: the peak RSS of a child process that sets up Django and runs one pipeline run, next to
a child that only sets up Django and opens the warehouse (the baseline).

Usage: ``.venv/bin/python bench/focus_normalize.py [--pairs N]``; ``BENCH_FOCUS_ROWS`` sizes the day."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

TENANT_ID = "benchco"
PIPELINE = "gcp/bench/focus_normalize"
DAY = dt.date(2024, 3, 15)
ROWS = int(os.environ.get("BENCH_FOCUS_ROWS", "1000000"))
TARGET = 1.15

PIPELINE_YAML = """
description: Bench - FOCUS normalization of one GCP usage day
parameters:
  date: {type: date, required: true}
steps:
  - step_id: normalize
    ps_type: focus.normalize
    provider: gcp
    source: {dataset_type: tenant_dataset, table: gcp_billing_export}
    destination: {dataset_type: tenant_dataset, table: focus_costs_staging}
"""


def write_pipeline_config() -> None:
    from django.conf import settings

    path = Path(settings.PIPELINE_CONFIGS_DIR) / f"{PIPELINE}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PIPELINE_YAML)


def generate_export(dataset: str) -> tuple[int, float]:
    """One day of ROWS generated GCP rows in the raw table; returns (rows, seconds)."""
    import pyarrow.parquet as pq

    from billing.generators.gcp import generate_gcp, write_gcp
    from billing.readers import raw_fields, read_export
    from convergence.warehouse import FileFormat, TableRef, TableSpec, WriteMode, get_warehouse

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="focus-bench-") as scratch:
        summary = write_gcp(generate_gcp(DAY, DAY, ROWS, seed=1), Path(scratch))
        table = read_export("gcp", summary.files[0])
        parquet = Path(scratch) / "day.parquet"
        pq.write_table(table, parquet)
        get_warehouse().load_file(
            str(parquet),
            TableRef(dataset, "gcp_billing_export"),
            file_format=FileFormat.PARQUET,
            spec=TableSpec(schema=raw_fields("gcp"), partition_field="usage_start_time"),
            write_mode=WriteMode.TRUNCATE,
        )
    return table.num_rows, time.perf_counter() - started


def run_pipeline(tenant: Any) -> float:
    return benchlib.timed_run(tenant, PIPELINE, DAY)


def direct_sql(dataset: str) -> tuple[str, str]:
    """The DELETE and INSERT the direct side runs: the adapter's own transpile of the same SQL."""
    from billing.focus.normalize import PROVIDER_SQL, normalize_sql
    from convergence.warehouse.duckdb import transpile

    select = transpile(normalize_sql("gcp", f"`{dataset}`.`gcp_billing_export`")).sql
    upper = select.upper()
    if "LIST_SUM(LIST_TRANSFORM(" not in upper:
        raise RuntimeError("the transpiled normalization lost the list_sum credits form")
    if "LIST_AGGREGATE(LIST_TRANSFORM(" not in upper or "UNNEST" in upper:
        raise RuntimeError("the transpiled normalization lost the list_aggregate Tags form")
    delete = transpile(
        f"DELETE FROM {dataset}.focus_costs_staging WHERE {PROVIDER_SQL['gcp'].focus_period}"
    ).sql
    return delete, f'INSERT INTO "{dataset}"."focus_costs_staging" BY NAME {select}'


def run_direct(path: str, delete: str, insert: str) -> float:
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect(path)
    try:
        connection.execute("SET TimeZone='UTC'")
        connection.execute("BEGIN TRANSACTION")
        connection.execute(delete, {"date": DAY})
        connection.execute(insert, {"date": DAY, "_run_id": "direct"}).fetchone()
        connection.execute("COMMIT")
    finally:
        connection.close()
    return time.perf_counter() - started


def summary(dataset: str) -> tuple[Any, ...]:
    from convergence.warehouse import get_warehouse

    row = (
        get_warehouse()
        .query(
            "SELECT COUNT(*) AS n, SUM(BilledCost) AS billed, SUM(ListCost) AS listed, "
            f"COUNT(Tags) AS tagged FROM {dataset}.focus_costs_staging"
        )
        .rows[0]
    )
    return (row["n"], row["billed"], row["listed"], row["tagged"])


def child_peak_rss(mode: str) -> int:
    """Peak RSS (KiB) of a child process running ``mode`` (``baseline`` or ``run``) in this env."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode], check=True, capture_output=True, text=True
    ).stdout
    return int(json.loads(output.strip().splitlines()[-1])["peak_kib"])


def child(mode: str) -> int:
    benchlib.setup_django()
    from convergence.warehouse import get_warehouse
    from tenants.models import Tenant

    get_warehouse().ping()
    if mode == "run":
        run_pipeline(Tenant.objects.get(tenant_id=TENANT_ID))
    print(json.dumps({"peak_kib": _peak_rss_kib()}))
    return 0


def _peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM starts afresh at exec; ru_maxrss would carry over the forking
    parent's peak (the generator's), so it is only the fallback outside Linux."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="measured numerator/denominator pairs (>= 3)")
    parser.add_argument("--child", choices=["baseline", "run"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    pairs = max(args.pairs, 3)

    with benchlib.bench_environment("focus"):
        benchlib.setup_django()
        from django.conf import settings

        write_pipeline_config()
        tenant, _key = benchlib.create_tenant(TENANT_ID)
        dataset = f"{TENANT_ID}_{settings.ENV_SUFFIX}"
        warehouse_path = settings.WAREHOUSE_URL.removeprefix("duckdb://")
        rows, generate_s = generate_export(dataset)
        print(
            f"generated and landed {rows:,} GCP rows for {DAY} in {generate_s:.1f} s; {pairs} pairs",
            flush=True,
        )

        run_pipeline(tenant)  # warm-up; creates focus_costs_staging
        via_pipeline = summary(dataset)
        delete, insert = direct_sql(dataset)
        run_direct(warehouse_path, delete, insert)
        via_direct = summary(dataset)
        if via_pipeline != via_direct or via_direct[0] != rows:
            print(f"sides disagree: pipeline {via_pipeline} vs direct {via_direct}", file=sys.stderr)
            return 1

        numerator: list[float] = []
        denominator: list[float] = []
        for index in range(pairs):
            if index % 2 == 0:
                numerator.append(run_pipeline(tenant))
                denominator.append(run_direct(warehouse_path, delete, insert))
            else:
                denominator.append(run_direct(warehouse_path, delete, insert))
                numerator.append(run_pipeline(tenant))
        baseline_kib = child_peak_rss("baseline")
        run_kib = child_peak_rss("run")

        ratios = [n / d for n, d in zip(numerator, denominator, strict=True)]
        ratio = benchlib.median(ratios)
        med_n, med_d = benchlib.median(numerator), benchlib.median(denominator)
        verdict = "meets" if ratio <= TARGET else "MISSES"
        benchlib.result(
            f"focus_normalize: {rows / med_n:,.0f} rows/s through the pipeline ({rows / med_d:,.0f} rows/s "
            f"direct); {ratio:.3f}x pipeline run / direct DuckDB (median of {pairs} pair ratios; medians "
            f"{med_n:.3f} s vs {med_d:.3f} s; target <= {TARGET}x: {verdict}); peak RSS {run_kib / 1024:.0f} "
            f"MiB "
            f"for one run (baseline process {baseline_kib / 1024:.0f} MiB)"
        )
        print(f"  pair ratios: {' '.join(f'{value:.3f}' for value in ratios)}")
        print(f"  check: {via_direct[0]:,} FOCUS rows, identical sums from both sides")
    return 0


if __name__ == "__main__":
    sys.exit(main())
