"""Provider export readers: each turns one export file into an Arrow table in its raw table's schema.

``RAW_TABLES`` names the raw landing table per provider; ``raw_fields`` its schema; ``read_export``
picks the reader from the provider and the file name."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from billing.readers.aws import AWS_RAW_FIELDS, read_cur_csv, read_cur_parquet
from billing.readers.azure import AZURE_RAW_FIELDS, read_azure_csv
from billing.readers.common import ReaderError
from billing.readers.gcp import GCP_RAW_FIELDS, read_gcp_csv, read_gcp_ndjson
from convergence.warehouse import Field

__all__ = ["RAW_TABLES", "SUFFIXES", "ReaderError", "raw_fields", "read_export"]

RAW_TABLES = {"gcp": "gcp_billing_export", "aws": "aws_cur", "azure": "azure_cost_details"}
#: File name endings each provider's export uses (what the land step fetches).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "gcp": (".ndjson", ".json", ".jsonl", ".csv", ".csv.gz"),
    "aws": (".parquet", ".csv", ".csv.gz"),
    "azure": (".csv", ".csv.gz"),
}
_FIELDS = {"gcp": GCP_RAW_FIELDS, "aws": AWS_RAW_FIELDS, "azure": AZURE_RAW_FIELDS}


def raw_fields(provider: str) -> tuple[Field, ...]:
    """The raw landing table's schema for ``provider`` (``KeyError`` for an unknown provider)."""
    return _FIELDS[provider]


def read_export(provider: str, path: Path) -> pa.Table:
    """Read one export file of ``provider``; ``ReaderError`` (safe to show a tenant) when it is not one."""
    name = path.name.lower()
    if provider == "gcp":
        if name.endswith((".csv", ".csv.gz")):
            return read_gcp_csv(path)
        return read_gcp_ndjson(path)
    if provider == "aws":
        if name.endswith(".parquet"):
            return read_cur_parquet(path)
        return read_cur_csv(path)
    if provider == "azure":
        return read_azure_csv(path)
    raise ReaderError(f"unknown provider {provider!r}")
