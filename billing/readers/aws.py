"""AWS Cost and Usage Report readers → Arrow in the ``aws_cur`` raw schema (CUR 2.0 column names).

CUR 2.0 Parquet (what AWS Data Exports and the sample generator write) is read column by column: maps
(``product``, ``resource_tags``, ``cost_category``, ``discount``) become ``ARRAY<STRUCT<key, value>>``
(BigQuery has no map type), timestamps become microsecond UTC. CSV (CUR 2.0, or the legacy CUR 1.0 with
``lineItem/UnblendedCost``-style names) is read as text and parsed explicitly: legacy names are renamed
to their CUR 2.0 form (``lineItem/UnblendedCost`` → ``line_item_unblended_cost``,
``reservation/ReservationARN`` → ``reservation_reservation_a_r_n``), ``product/*`` attributes without a
CUR 2.0 column go into the ``product`` map, ``resourceTags/user:Name`` into ``resource_tags`` as
``user_Name``, ``costCategory/X`` into ``cost_category``. Account ids stay strings (leading zeros)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from billing.generators.aws import _DOUBLE_COLUMNS, _MAP_COLUMNS, _TIMESTAMP_COLUMNS, CUR2_COLUMNS
from billing.readers.common import CellParser, ReaderError, arrow_schema, read_csv_rows, table_from_rows
from convergence.warehouse import Field

_KEY_VALUE = (Field("key", "STRING"),)


def _raw_field(name: str) -> Field:
    if name in _MAP_COLUMNS:
        value_type = "FLOAT64" if name == "discount" else "STRING"
        return Field(name, "RECORD", "REPEATED", (Field("key", "STRING"), Field("value", value_type)))
    if name in _TIMESTAMP_COLUMNS:
        return Field(name, "TIMESTAMP")
    if name in _DOUBLE_COLUMNS:
        return Field(name, "FLOAT64")
    return Field(name, "STRING")


#: The raw table: every CUR 2.0 column the generator knows, typed as CUR 2.0 types them.
AWS_RAW_FIELDS: tuple[Field, ...] = tuple(_raw_field(name) for name in CUR2_COLUMNS)
_FIELDS_BY_NAME = {field.name: field for field in AWS_RAW_FIELDS}
_TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
)
_CAPITAL = re.compile(r"([A-Z])")


def legacy_column_name(name: str) -> str:
    """``lineItem/UnblendedCost`` → ``line_item_unblended_cost``: CUR 2.0 puts ``_`` before every capital
    (hence ``reservation_a_r_n`` for ``ReservationARN``)."""
    category, _, column = name.partition("/")
    return f"{_snake(category)}_{_snake(column)}"


def _snake(text: str) -> str:
    return _CAPITAL.sub(r"_\1", text).lower().lstrip("_")


def read_cur_parquet(path: Path) -> pa.Table:
    """A CUR 2.0 Parquet file. Columns the raw schema lacks are ignored; absent ones are null."""
    try:
        source = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReaderError(f"{path.name}: not a Parquet file ({type(exc).__name__})") from None
    schema = arrow_schema(AWS_RAW_FIELDS)
    columns = []
    for field, arrow_field in zip(AWS_RAW_FIELDS, schema, strict=True):
        if field.name not in source.column_names:
            columns.append(pa.nulls(source.num_rows, arrow_field.type))
            continue
        column = source.column(field.name).combine_chunks()
        try:
            if field.mode == "REPEATED":
                columns.append(_map_to_list(column, arrow_field.type))
            else:
                columns.append(column.cast(arrow_field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise ReaderError(f"{path.name}: column {field.name} has type {column.type}") from None
    return pa.Table.from_arrays(columns, schema=schema)


def _map_to_list(column: pa.Array, target: pa.DataType) -> pa.Array:
    if not pa.types.is_map(column.type):
        return column.cast(target)
    struct_type = target.value_type
    entries = pa.StructArray.from_arrays(
        [column.keys.cast(pa.string()), column.items.cast(struct_type.field("value").type)],
        fields=[struct_type.field("key"), struct_type.field("value")],
    )
    # A null map is an empty list: BigQuery has no NULL arrays.
    offsets = column.offsets
    lists = pa.ListArray.from_arrays(offsets, entries, type=target)
    return pc.if_else(column.is_null(), pa.scalar([], type=target), lists) if column.null_count else lists


def read_cur_csv(path: Path) -> pa.Table:
    """A CUR CSV file (optionally ``.csv.gz``), CUR 2.0 names or legacy ``category/Name`` names."""
    header, rows = read_csv_rows(path)
    legacy = any("/" in name for name in header)
    names = {name: legacy_column_name(name) if legacy and "/" in name else name for name in header}
    if "line_item_unblended_cost" not in names.values():
        raise ReaderError(f"{path.name}: not a Cost and Usage Report (no unblended cost column)")
    parser = CellParser(path.name)
    typed: list[dict[str, Any]] = []
    for parser.line, cells in enumerate(rows, start=2):
        row: dict[str, Any] = {"product": [], "resource_tags": [], "cost_category": []}
        for source, value in cells.items():
            _put(parser, row, source, names[source], value, legacy)
        typed.append(row)
    return table_from_rows(typed, AWS_RAW_FIELDS)


def _put(parser: CellParser, row: dict[str, Any], source: str, name: str, value: str, legacy: bool) -> None:
    field = _FIELDS_BY_NAME.get(name)
    if field is not None and field.mode != "REPEATED":
        if field.type == "TIMESTAMP":
            row[name] = parser.timestamp(source, value, _TIMESTAMP_FORMATS)
        elif field.type == "FLOAT64":
            row[name] = parser.float64(source, value)
        else:
            row[name] = parser.text(value)
        return
    if not legacy or value == "":
        return
    category, _, attribute = source.partition("/")
    if category == "product":
        row["product"].append({"key": _snake(attribute), "value": value})
    elif category == "resourceTags":
        row["resource_tags"].append({"key": attribute.replace(":", "_", 1), "value": value})
    elif category == "costCategory":
        row["cost_category"].append({"key": attribute, "value": value})
