"""Pieces every provider reader shares: BigQuery fields → Arrow types, CSV read as text, explicit value
parsers (exact decimals, fixed date/timestamp formats) and the reader's one error type.

Readers never let a type sniffer guess: every CSV cell is read as a string and parsed with the format the
provider documents, because sniffers read ``09/01/2023`` as 2023-01-09, account ids as integers and
``202011`` as a number (../shared/fixtures/real/README.md, "Cross-cutting notes")."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa

from convergence.warehouse import Field

#: NUMERIC's scale: values with more fraction digits are rounded half away from zero, as BigQuery's and
#: DuckDB's CAST to NUMERIC do, so a value rounds the same whichever side of the warehouse rounds it.
NUMERIC_STEP = Decimal("0.000000001")
_ARROW_SCALARS: dict[str, pa.DataType] = {
    "STRING": pa.string(),
    "FLOAT64": pa.float64(),
    "NUMERIC": pa.decimal128(38, 9),
    "BIGNUMERIC": pa.decimal128(38, 9),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "DATE": pa.date32(),
    "BOOL": pa.bool_(),
    "INT64": pa.int64(),
}
# Decoded text of a CSV line can hold any cell size the provider writes (AWS descriptions, AKS tags).
csv.field_size_limit(16 * 1024 * 1024)


class ReaderError(ValueError):
    """A file cannot be read as the provider's export. The message names the file (by name only, never
    a server path), the row and the column, and is safe to show a tenant."""


def arrow_type(field: Field) -> pa.DataType:
    """The Arrow type that loads into ``field`` without conversion (REPEATED → list, RECORD → struct)."""
    if field.type == "RECORD":
        base: pa.DataType = pa.struct([pa.field(sub.name, arrow_type(sub)) for sub in field.fields])
    else:
        base = _ARROW_SCALARS[field.type]
    return pa.list_(base) if field.mode == "REPEATED" else base


def arrow_schema(fields: Sequence[Field]) -> pa.Schema:
    """The Arrow schema of a raw table given as warehouse fields."""
    return pa.schema([pa.field(field.name, arrow_type(field)) for field in fields])


def open_text(path: Path) -> io.TextIOWrapper:
    """The file as text: UTF-8 with an optional BOM stripped, gzip when the name ends in ``.gz``,
    universal newlines off (the csv module handles CRLF inside and outside quotes)."""
    # The caller owns the returned handle (read_csv_rows closes it when its rows are consumed).
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def read_csv_rows(path: Path) -> tuple[list[str], Iterator[dict[str, str]]]:
    """The header and the rows (dicts of text cells) of a CSV export. ``ReaderError`` for an empty file,
    duplicate header names or a row whose field count differs from the header's."""
    handle = open_text(path)
    reader = csv.reader(handle, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise ReaderError(f"{path.name}: the file is empty (no header row)") from None
    except csv.Error as exc:
        handle.close()
        raise ReaderError(f"{path.name}: not a CSV file ({exc})") from None
    header = [name.strip() for name in header]
    if len(set(header)) != len(header):
        handle.close()
        raise ReaderError(f"{path.name}: the header repeats a column name")

    def rows() -> Iterator[dict[str, str]]:
        with handle:
            try:
                for cells in reader:
                    if not cells:
                        continue
                    if len(cells) != len(header):
                        raise ReaderError(
                            f"{path.name}: line {reader.line_num} has {len(cells)} fields, "
                            f"the header has {len(header)}"
                        )
                    yield dict(zip(header, cells, strict=True))
            except csv.Error as exc:
                raise ReaderError(f"{path.name}: line {reader.line_num}: {exc}") from None

    return header, rows()


class CellParser:
    """Parses one file's cells with explicit formats; errors name the file, line and column."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.line = 1

    def fail(self, column: str, value: str, expected: str) -> ReaderError:
        shown = value if len(value) <= 40 else value[:37] + "..."
        return ReaderError(f"{self.file_name}: row {self.line}, column {column}: {shown!r} is not {expected}")

    @staticmethod
    def text(value: str | None) -> str | None:
        """Empty cells are null (FOCUS: null, never empty strings)."""
        if value is None:
            return None
        return value if value != "" else None

    def decimal(self, column: str, value: str | None) -> Decimal | None:
        """An exact decimal (E-notation allowed: ``1.0E-6``, ``5.64902E-05``, ``5e-06``) rounded to NUMERIC's
        9 decimals half away from zero."""
        number = self.exact(column, value)
        return None if number is None else number.quantize(NUMERIC_STEP, rounding=ROUND_HALF_UP)

    def exact(self, column: str, value: str | None) -> Decimal | None:
        """An exact decimal, not rounded (for FLOAT64 columns: converted by the caller)."""
        if value is None or value.strip() == "":
            return None
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise self.fail(column, value, "a number") from None
        if not number.is_finite():
            raise self.fail(column, value, "a finite number")
        return number

    def float64(self, column: str, value: str | None) -> float | None:
        number = self.exact(column, value)
        return None if number is None else float(number)

    def date(self, column: str, value: str | None, formats: Sequence[str]) -> date | None:
        if value is None or value.strip() == "":
            return None
        for pattern in formats:
            try:
                return datetime.strptime(value.strip(), pattern).date()
            except ValueError:
                continue
        raise self.fail(column, value, f"a date ({' or '.join(formats)})")

    def timestamp(self, column: str, value: str | None, formats: Sequence[str]) -> datetime | None:
        """A UTC timestamp; a format with ``%z`` keeps the given offset and converts, one without means "
        "UTC."""
        if value is None or value.strip() == "":
            return None
        for pattern in formats:
            try:
                parsed = datetime.strptime(value.strip(), pattern)
            except ValueError:
                continue
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        raise self.fail(column, value, f"a timestamp ({' or '.join(formats)})")

    def boolean(self, column: str, value: str | None) -> bool | None:
        if value is None or value.strip() == "":
            return None
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        raise self.fail(column, value, "true or false")


def table_from_rows(rows: list[dict[str, Any]], fields: Sequence[Field]) -> pa.Table:
    """An Arrow table in the raw schema; keys missing from a row are null (empty list if REPEATED)."""
    schema = arrow_schema(fields)
    columns = []
    for field, arrow_field in zip(fields, schema, strict=True):
        values = [row.get(field.name) for row in rows]
        if field.mode == "REPEATED":
            values = [value if value is not None else [] for value in values]
        columns.append(pa.array(values, type=arrow_field.type))
    return pa.Table.from_arrays(columns, schema=schema)
