"""Helpers for the golden and real-fixture tests: land a reader's Arrow table into a raw table of the
in-memory DuckDB warehouse and run the provider's normalization SELECT over it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from billing.focus.normalize import normalize_sql
from billing.readers import RAW_TABLES, raw_fields
from convergence.warehouse import FileFormat, ScalarParam, TableRef, TableSpec, Warehouse, WriteMode

DATASET = "golden"
RUN_ID = "run-golden"


def land(warehouse: Warehouse, provider: str, table: pa.Table, scratch: Path) -> TableRef:
    """Load ``table`` (a reader's output) into the provider's raw table in dataset ``golden``."""
    warehouse.create_dataset(DATASET)
    path = scratch / f"{provider}.parquet"
    pq.write_table(table, path)
    ref = TableRef(DATASET, RAW_TABLES[provider])
    warehouse.load_file(
        str(path),
        ref,
        file_format=FileFormat.PARQUET,
        spec=TableSpec(schema=raw_fields(provider)),
        write_mode=WriteMode.TRUNCATE,
    )
    return ref


def normalize(warehouse: Warehouse, provider: str, raw: TableRef, day: dt.date) -> list[dict[str, Any]]:
    """The FOCUS rows the provider's normalization produces for the run ``day``."""
    sql = normalize_sql(provider, f"`{raw.dataset}`.`{raw.table}`")
    params = {"date": ScalarParam("DATE", day), "_run_id": ScalarParam("STRING", RUN_ID)}
    return warehouse.query(sql, params).rows
