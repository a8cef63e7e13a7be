"""Warehouse adapter, selected by ``WAREHOUSE_URL``. Nothing outside this package imports the
BigQuery SDK or duckdb."""

from __future__ import annotations

import functools
from urllib.parse import parse_qs, urlparse

from convergence.warehouse.base import (
    ConflictError,
    Field,
    FileFormat,
    JobLabels,
    NotFoundError,
    QueryResult,
    ScalarParam,
    TableInfo,
    TableRef,
    TableSpec,
    Warehouse,
    WarehouseError,
    WriteMode,
)

__all__ = [
    "ConflictError",
    "Field",
    "FileFormat",
    "JobLabels",
    "NotFoundError",
    "QueryResult",
    "ScalarParam",
    "TableInfo",
    "TableRef",
    "TableSpec",
    "Warehouse",
    "WarehouseError",
    "WriteMode",
    "get_warehouse",
    "warehouse_from_url",
]


def warehouse_from_url(
    url: str,
    *,
    api_endpoint: str | None = None,
    max_bytes_billed: int | None = None,
    lock_timeout_s: float = 60.0,
) -> Warehouse:
    """Build a backend from a URL: ``duckdb:///path/to/file.duckdb``, ``duckdb:///:memory:`` or
    ``bigquery://PROJECT?location=US``. ``ValueError`` for anything else."""
    parsed = urlparse(url)
    if parsed.scheme == "duckdb":
        from convergence.warehouse.duckdb import DuckDBWarehouse

        path = url[len("duckdb://") :]
        if path.startswith("/:memory:"):
            path = ":memory:"
        if not path:
            raise ValueError("duckdb URL needs a path: duckdb:///var/warehouse.duckdb or duckdb:///:memory:")
        return DuckDBWarehouse(path, lock_timeout_s=lock_timeout_s)
    if parsed.scheme == "bigquery":
        from convergence.warehouse.bigquery import BigQueryWarehouse

        if not parsed.netloc:
            raise ValueError("bigquery URL needs a project: bigquery://PROJECT?location=US")
        query = parse_qs(parsed.query)
        location = query.get("location", ["US"])[0]
        return BigQueryWarehouse(
            project=parsed.netloc,
            location=location,
            api_endpoint=api_endpoint,
            max_bytes_billed=max_bytes_billed,
        )
    raise ValueError(f"unsupported WAREHOUSE_URL scheme {parsed.scheme!r} (use duckdb:// or bigquery://)")


@functools.cache
def get_warehouse() -> Warehouse:
    """The process-wide warehouse configured by settings (built on first use)."""
    from django.conf import settings

    return warehouse_from_url(
        settings.WAREHOUSE_URL,
        api_endpoint=settings.BIGQUERY_API_ENDPOINT,
        max_bytes_billed=settings.WAREHOUSE_MAX_BYTES_BILLED,
        lock_timeout_s=settings.WAREHOUSE_LOCK_TIMEOUT_S,
    )
