"""GCP Cloud Billing export readers → Arrow in the ``gcp_billing_export`` raw schema.

Two file forms exist: the NDJSON a BigQuery extract (or the sample generator) writes, one row per line
with nested records; and the flattened CSV other tools write from the BigQuery table (koku's, in the real
fixtures): nested fields as dotted columns (``service.id``), repeated fields as Python reprs
(``[{'key': 'env', 'value': 'prod'}]``, with single quotes and ``None``), timestamps as
``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``. Columns outside the schema (``partition_date``, the detailed
export's ``resource.*``) are ignored: Google adds columns over time and the reader must tolerate them."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

from billing.generators.gcp import GCP_BILLING_EXPORT_SCHEMA
from billing.readers.common import CellParser, ReaderError, arrow_schema, read_csv_rows, table_from_rows
from convergence.warehouse import Field

GCP_RAW_FIELDS: tuple[Field, ...] = tuple(Field.from_api_repr(item) for item in GCP_BILLING_EXPORT_SCHEMA)
_TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%d %H:%M:%S",
)


def read_gcp_ndjson(path: Path) -> pa.Table:
    """An NDJSON export file (nested records, one row per line) typed by the raw schema. A field the
    schema does not know is ignored; a value of the wrong type is a ``ReaderError``."""
    schema = arrow_schema(GCP_RAW_FIELDS)
    try:
        table = pa_json.read_json(
            path,
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        # Arrow's message names the offending value and row, never the path.
        raise ReaderError(f"{path.name}: not a GCP billing export NDJSON file ({exc})") from None
    return table.select(schema.names).cast(schema)


def read_gcp_csv(path: Path) -> pa.Table:
    """A flattened CSV export (dotted column names, repeated fields as Python or JSON lists)."""
    header, rows = read_csv_rows(path)
    known = _flat_names(GCP_RAW_FIELDS)
    if "cost" not in header or "usage_start_time" not in header:
        raise ReaderError(f"{path.name}: not a GCP billing export (no cost/usage_start_time column)")
    parser = CellParser(path.name)
    typed: list[dict[str, Any]] = []
    for parser.line, cells in enumerate(rows, start=2):
        row: dict[str, Any] = {}
        for name, value in cells.items():
            field = known.get(name)
            if field is None:
                continue
            _put(row, name.split("."), _cell(parser, name, field, value))
        typed.append(row)
    return table_from_rows(typed, GCP_RAW_FIELDS)


def _flat_names(fields: tuple[Field, ...], prefix: str = "") -> dict[str, Field]:
    names: dict[str, Field] = {}
    for field in fields:
        name = f"{prefix}{field.name}"
        if field.type == "RECORD" and field.mode != "REPEATED":
            names.update(_flat_names(field.fields, f"{name}."))
        else:
            names[name] = field
    return names


def _put(row: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        row = row.setdefault(part, {})
    row[parts[-1]] = value


def _cell(parser: CellParser, name: str, field: Field, value: str) -> Any:
    if field.mode == "REPEATED":
        return _repeated(parser, name, field, value)
    return _scalar(parser, name, field.type, value)


def _scalar(parser: CellParser, name: str, type_name: str, value: str | None) -> Any:
    if type_name == "FLOAT64":
        return parser.float64(name, value)
    if type_name == "NUMERIC":
        return parser.decimal(name, value)
    if type_name == "TIMESTAMP":
        return parser.timestamp(name, value, _TIMESTAMP_FORMATS)
    if type_name == "BOOL":
        return parser.boolean(name, value)
    return parser.text(value)


def _repeated(parser: CellParser, name: str, field: Field, value: str) -> list[dict[str, Any]]:
    """``[{'key': 'a', 'value': 'b'}]`` (Python repr) or the JSON equivalent; empty cell or ``[]`` → []."""
    if value.strip() in {"", "[]"}:
        return []
    try:
        # literal_eval reads Python literals only (no calls, no names), so it is safe on untrusted text.
        items = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            items = json.loads(value)  # the JSON form (true/false/null)
        except ValueError:
            raise parser.fail(name, value, "a list of records") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise parser.fail(name, value, "a list of records")
    known = {sub.name: sub for sub in field.fields}
    records = []
    for item in items:
        record: dict[str, Any] = {}
        for key, sub in known.items():
            raw = item.get(key)
            if raw is None:
                record[key] = None
            elif sub.type == "FLOAT64":
                if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                    raise parser.fail(f"{name}.{key}", str(raw), "a number")
                record[key] = parser.float64(f"{name}.{key}", repr(raw) if not isinstance(raw, str) else raw)
            elif sub.type == "BOOL":
                record[key] = bool(raw)
            else:
                record[key] = str(raw)
        records.append(record)
    return records
