"""The warehouse interface. BigQuery in production, embedded DuckDB by default.

SQL handed to any backend is BigQuery Standard SQL. Tables are addressed as ``dataset.table`` (never
project-qualified in configs: the backend supplies the project). Caller values are passed only as
named query parameters (``@name``); they never enter SQL text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$"


class WarehouseError(Exception):
    """A warehouse operation failed. ``retryable`` says whether trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class NotFoundError(WarehouseError):
    """The dataset or table does not exist."""


class ConflictError(WarehouseError):
    """The dataset or table already exists."""


class WriteMode(enum.StrEnum):
    APPEND = "append"
    TRUNCATE = "truncate"
    REPLACE_PARTITION = "replace_partition"
    MERGE = "merge"


class FileFormat(enum.StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"
    PARQUET = "parquet"


@dataclass(frozen=True)
class Field:
    """A column in BigQuery schema terms. ``type`` is a BigQuery type name (STRING, INT64, FLOAT64,
    NUMERIC, BIGNUMERIC, BOOL, DATE, DATETIME, TIMESTAMP, JSON, RECORD); ``mode`` is NULLABLE,
    REQUIRED or REPEATED; RECORD fields carry ``fields``."""

    name: str
    type: str
    mode: str = "NULLABLE"
    fields: tuple[Field, ...] = ()
    description: str = ""

    @classmethod
    def from_api_repr(cls, data: Mapping[str, Any]) -> Field:
        """Build from the BigQuery JSON schema format (``bq mk --schema file.json``)."""
        type_name = str(data["type"]).upper()
        type_name = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "STRUCT": "RECORD"}.get(
            type_name, type_name
        )
        return cls(
            name=str(data["name"]),
            type=type_name,
            mode=str(data.get("mode", "NULLABLE")).upper(),
            fields=tuple(cls.from_api_repr(sub) for sub in data.get("fields", ())),
            description=str(data.get("description", "")),
        )

    def to_api_repr(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "mode": self.mode}
        if self.fields:
            data["fields"] = [sub.to_api_repr() for sub in self.fields]
        if self.description:
            data["description"] = self.description
        return data


@dataclass(frozen=True)
class TableRef:
    dataset: str
    table: str

    def __str__(self) -> str:
        return f"{self.dataset}.{self.table}"


@dataclass(frozen=True)
class TableSpec:
    """What ``create_table`` needs: the schema plus optional DAY partitioning on a DATE/TIMESTAMP
    column and clustering columns."""

    schema: tuple[Field, ...]
    partition_field: str | None = None
    clustering: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class TableInfo:
    ref: TableRef
    schema: tuple[Field, ...]
    partition_field: str | None
    clustering: tuple[str, ...]
    num_rows: int | None


@dataclass(frozen=True)
class JobLabels:
    """Attached to every BigQuery job (as job labels) and to log lines on every backend."""

    tenant: str = ""
    run: str = ""
    step: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            key: value
            for key, value in (("tenant", self.tenant), ("run", self.run), ("step", self.step))
            if value
        }


@dataclass
class QueryResult:
    """Rows as dicts (nested RECORDs as dicts, REPEATED as lists, NUMERIC as Decimal, DATE as date,
    TIMESTAMP as aware UTC datetime). ``rows_affected`` is set for DML and writes into a table;
    ``bytes_processed`` where the engine reports it. ``sql`` is the exact text sent to the engine."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rows_affected: int | None = None
    bytes_processed: int | None = None
    sql: str = ""


@dataclass(frozen=True)
class ScalarParam:
    """An explicitly typed parameter, for when the Python type is ambiguous (None, empty list)."""

    type: str
    value: Any


ParamValue = (
    str | int | float | bool | decimal.Decimal | dt.date | dt.datetime | list[Any] | ScalarParam | None
)
Params = Mapping[str, ParamValue]


class Warehouse(ABC):
    """One interface over BigQuery and DuckDB. Every method raises ``WarehouseError`` (or a
    subclass) and nothing else."""

    #: "bigquery" or "duckdb"
    kind: str = ""

    # --- datasets -----------------------------------------------------------------------------------
    @abstractmethod
    def dataset_exists(self, dataset: str) -> bool:
        """True when the dataset exists."""

    @abstractmethod
    def create_dataset(
        self, dataset: str, *, exists_ok: bool = True, labels: Mapping[str, str] | None = None
    ) -> bool:
        """Create the dataset. Returns True if it was created, False if it existed and ``exists_ok``;
        raises ``ConflictError`` if it existed and not ``exists_ok``."""

    @abstractmethod
    def drop_dataset(self, dataset: str, *, delete_contents: bool = False, not_found_ok: bool = True) -> bool:
        """Drop the dataset (and its tables when ``delete_contents``). Returns True if it existed."""

    @abstractmethod
    def list_datasets(self) -> list[str]:
        """Dataset names, sorted."""

    # --- tables -------------------------------------------------------------------------------------
    @abstractmethod
    def table_exists(self, ref: TableRef) -> bool:
        """True when the table exists."""

    @abstractmethod
    def create_table(self, ref: TableRef, spec: TableSpec, *, exists_ok: bool = True) -> bool:
        """Create the table. Returns True if created, False if it existed and ``exists_ok``."""

    @abstractmethod
    def drop_table(self, ref: TableRef, *, not_found_ok: bool = True) -> bool:
        """Drop the table. Returns True if it existed."""

    @abstractmethod
    def list_tables(self, dataset: str) -> list[str]:
        """Table names in the dataset, sorted. ``NotFoundError`` for an unknown dataset."""

    @abstractmethod
    def describe_table(self, ref: TableRef) -> TableInfo:
        """Schema, partitioning, clustering and row count. ``NotFoundError`` for an unknown table."""

    # --- data ---------------------------------------------------------------------------------------
    @abstractmethod
    def query(
        self, sql: str, params: Params | None = None, *, labels: JobLabels | None = None
    ) -> QueryResult:
        """Run one BigQuery SQL statement with named parameters and return its rows (for SELECT) or
        its affected row count (for DML)."""

    @abstractmethod
    def query_to_table(
        self,
        sql: str,
        destination: TableRef,
        *,
        params: Params | None = None,
        write_mode: WriteMode = WriteMode.APPEND,
        replace_predicate: str | None = None,
        merge_keys: Sequence[str] = (),
        spec: TableSpec | None = None,
        labels: JobLabels | None = None,
    ) -> QueryResult:
        """Write the SELECT's result into ``destination`` atomically.

        - ``append``: insert the rows (creates the table from the result, or from ``spec``, if absent).
        - ``truncate``: replace the whole table's contents.
        - ``replace_partition``: delete the destination rows matching ``replace_predicate`` (BigQuery SQL
          over the destination's columns, may use the same ``params``), then insert, as one atomic
          change: a reader sees either the old or the new rows, never neither or both.
        - ``merge``: upsert on ``merge_keys`` (update matching rows, insert the others).

        ``rows_affected`` is the number of rows written (inserted or updated)."""

    @abstractmethod
    def load_file(
        self,
        uri: str,
        destination: TableRef,
        *,
        file_format: FileFormat,
        spec: TableSpec | None = None,
        write_mode: WriteMode = WriteMode.APPEND,
        skip_leading_rows: int = 1,
        labels: JobLabels | None = None,
    ) -> QueryResult:
        """Load a CSV (header row skipped by ``skip_leading_rows``), NDJSON or Parquet file into the
        table (``append`` or ``truncate`` only). ``uri`` is a local path, ``file://`` or ``gs://``.
        With ``spec`` the table is created with that schema if absent; values are converted to it."""

    @abstractmethod
    def insert_rows(self, ref: TableRef, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append rows (dicts keyed by column) to an existing table. Returns the count inserted.
        A row that does not fit the schema raises ``WarehouseError`` and nothing is inserted."""

    def read_table_as_tenant(
        self,
        *,
        table: str,
        columns: Sequence[str],
        where: str,
        params: Params | None,
        service_account_info: Mapping[str, Any],
        labels: JobLabels | None = None,
    ) -> pa.Table:
        """Read ``SELECT columns FROM table WHERE where`` (``table`` is ``project.dataset.table``, outside
        this warehouse's own datasets) with a client built from the tenant's service account key
        ``service_account_info``, never with the server's identity, and return the rows as Arrow. Only the
        BigQuery backend can do this; the others raise ``WarehouseError``. Errors carry messages safe to
        show the tenant (no SQL, no key material)."""
        raise WarehouseError(f"the {self.kind or 'configured'} warehouse cannot read tables as a tenant")

    # --- lifecycle ----------------------------------------------------------------------------------
    @abstractmethod
    def ping(self) -> None:
        """Cheap round trip; raises ``WarehouseError`` when the warehouse cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The adapter may be used again afterwards (it reconnects)."""

    @contextmanager
    def session(self) -> Iterator[Warehouse]:
        """A scope for several calls (a backend may hold one connection for its duration)."""
        yield self
