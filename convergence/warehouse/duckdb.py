"""Embedded DuckDB backend: BigQuery SQL transpiled with sqlglot, datasets as DuckDB schemas.

Process model. DuckDB lets one process at a time open a database file read-write, and the embedded
default file is shared by the web, worker and beat processes. So for a file path every operation (or
every ``session()`` scope) opens its own connection and closes it afterwards, and a "Could not set
lock" error is retried with backoff for up to ``lock_timeout_s`` before it becomes a retryable
``WarehouseError``. ``:memory:`` holds one connection for the object's life (nothing else can see it).

Adapter-owned differences from BigQuery (see shared/reference/bq-emulators.md):

- NUMERIC and BIGNUMERIC are DECIMAL(38,9): sqlglot's default DECIMAL is (18,3) and truncates, and
  DuckDB has no wider decimal than 38 digits, so BIGNUMERIC keeps NUMERIC's range and scale.
- DATE_TRUNC / DATE_ADD / DATE_SUB return DATE (DuckDB returns TIMESTAMP).
- COUNTIF is 0 over no rows or only NULL conditions, as on BigQuery (DuckDB's COUNT_IF is NULL there).
- The session time zone is UTC, so DATE(timestamp) and TIMESTAMP literals mean what BigQuery means.
- JSON given as a string on insert/load is parsed, as BigQuery does.
- ``(SELECT SUM(c.x) FROM UNNEST(arr) AS c)`` becomes ``list_sum(list_transform(arr, lambda c: c.x))``,
  about 5x faster on DuckDB (DESIGN.md "Performance"), and ``(SELECT STRING_AGG(<expr of t>, sep
  [ORDER BY o]) FROM UNNEST(arr) AS t [WITH OFFSET AS o])`` becomes
  ``list_aggregate(list_transform(arr, lambda t: <expr>), 'string_agg', sep)`` (same NULL and order
  semantics, no correlated join).
- Partitioning and clustering have no DuckDB equivalent; they live in ``_convergence_meta.tables`` so
  ``describe_table`` round-trips them.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from convergence.warehouse.base import (
    IDENTIFIER_PATTERN,
    ConflictError,
    Field,
    FileFormat,
    JobLabels,
    NotFoundError,
    Params,
    QueryResult,
    ScalarParam,
    TableInfo,
    TableRef,
    TableSpec,
    Warehouse,
    WarehouseError,
    WriteMode,
)

logger = logging.getLogger(__name__)

META_SCHEMA = "_convergence_meta"
#: Schemas that exist in every DuckDB database or belong to the adapter; never shown as datasets.
RESERVED_SCHEMAS = frozenset({"main", META_SCHEMA, "information_schema", "pg_catalog", "temp", "system"})

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_TYPE_ALIASES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "STRUCT": "RECORD",
    "DECIMAL": "NUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
}
_SCALAR_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "NUMERIC": "DECIMAL(38,9)",
    # DuckDB's widest decimal is 38 digits; BIGNUMERIC's 76.76 cannot be represented, so it shares
    # NUMERIC's (38,9) and describe_table reports BIGNUMERIC only for columns created as such.
    "BIGNUMERIC": "DECIMAL(38,9)",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMPTZ",
    "TIME": "TIME",
    "JSON": "JSON",
    "BYTES": "BLOB",
    "GEOGRAPHY": "VARCHAR",
}
_DUCKDB_TO_BIGQUERY = {
    "varchar": "STRING",
    "bigint": "INT64",
    "integer": "INT64",
    "smallint": "INT64",
    "tinyint": "INT64",
    "hugeint": "INT64",
    "ubigint": "INT64",
    "uinteger": "INT64",
    "usmallint": "INT64",
    "utinyint": "INT64",
    "double": "FLOAT64",
    "float": "FLOAT64",
    "decimal": "NUMERIC",
    "boolean": "BOOL",
    "date": "DATE",
    "timestamp": "DATETIME",
    "timestamp with time zone": "TIMESTAMP",
    "time": "TIME",
    "blob": "BYTES",
}
_LOCK_MESSAGE = "Could not set lock"
_NOT_FOUND = re.compile(r"(Table|Schema|Catalog|View) with name .* does not exist", re.IGNORECASE)


# --- SQL transpilation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Statement:
    """One BigQuery statement transpiled to DuckDB: the SQL text, whether it is DML (returns a row
    count), whether it returns rows, and the ``@name`` parameters it uses."""

    sql: str
    is_dml: bool
    returns_rows: bool
    parameters: frozenset[str]


@functools.lru_cache(maxsize=2048)
def transpile(sql: str) -> Statement:
    """Transpile one BigQuery statement to DuckDB with the adapter's fixes. ``WarehouseError``
    (not retryable, without the SQL text) when it does not parse or is not exactly one statement."""
    try:
        trees = [tree for tree in sqlglot.parse(sql, read="bigquery") if tree is not None]
    except ParseError as exc:
        raise WarehouseError(f"SQL syntax error: {_describe_parse_error(exc)}") from None
    except SqlglotError as exc:
        raise WarehouseError(f"SQL not understood: {type(exc).__name__}") from None
    if len(trees) != 1:
        raise WarehouseError(f"expected exactly one SQL statement, got {len(trees)}")
    tree = trees[0]
    parameters = frozenset(
        node.name for node in tree.find_all(exp.Parameter) if isinstance(node.this, exp.Var)
    )
    _fix_numeric_types(tree)
    _rewrite_unnest_aggregates(tree)
    _cast_date_functions(tree)
    _zero_empty_countif(tree)
    _drop_project_qualifier(tree)
    try:
        text = tree.sql(dialect="duckdb")
    except SqlglotError as exc:
        raise WarehouseError(f"SQL not supported by the DuckDB backend: {type(exc).__name__}") from None
    is_dml = isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge)
    returns_rows = isinstance(tree, exp.Query | exp.Describe | exp.Show) or (
        isinstance(tree, exp.Command) and tree.name.upper() in {"DESCRIBE", "SHOW", "EXPLAIN"}
    )
    return Statement(sql=text, is_dml=is_dml, returns_rows=returns_rows, parameters=parameters)


def _describe_parse_error(exc: ParseError) -> str:
    # sqlglot's own message quotes the statement around the error; keep the position only.
    if exc.errors:
        first = exc.errors[0]
        return (
            f"{first.get('description', 'invalid syntax')} (line {first.get('line')}, col {first.get('col')})"
        )
    return "invalid syntax"


def _fix_numeric_types(tree: exp.Expr) -> None:
    for data_type in tree.find_all(exp.DataType):
        if data_type.this == exp.DataType.Type.BIGDECIMAL or (
            data_type.this == exp.DataType.Type.DECIMAL and not data_type.expressions
        ):
            data_type.set("this", exp.DataType.Type.DECIMAL)
            data_type.set(
                "expressions",
                [
                    exp.DataTypeParam(this=exp.Literal.number(38)),
                    exp.DataTypeParam(this=exp.Literal.number(9)),
                ],
            )


def _cast_date_functions(tree: exp.Expr) -> None:
    # Reversed breadth-first order handles inner calls first, so nested calls each get their cast.
    for node in reversed(list(tree.find_all(exp.DateTrunc, exp.DateAdd, exp.DateSub))):
        parent = node.parent
        if isinstance(parent, exp.Cast) and parent.to.this == exp.DataType.Type.DATE:
            continue
        cast = exp.Cast(to=exp.DataType.build("DATE"))
        node.replace(cast)
        cast.set("this", node)


def _zero_empty_countif(tree: exp.Expr) -> None:
    # COALESCE(COUNT_IF(x), 0); a windowed COUNTIF is wrapped as a whole (COALESCE(... OVER (...), 0)).
    for node in list(tree.find_all(exp.CountIf)):
        target = node.parent if isinstance(node.parent, exp.Window) else node
        coalesce = exp.Coalesce(this=target.copy(), expressions=[exp.Literal.number(0)])
        target.replace(coalesce)


def _drop_project_qualifier(tree: exp.Expr) -> None:
    # `project.dataset.table` would name a DuckDB catalog; the backend has exactly one project.
    for table in tree.find_all(exp.Table):
        if table.args.get("catalog") is not None and table.args.get("db") is not None:
            table.set("catalog", None)


def _rewrite_unnest_aggregates(tree: exp.Expr) -> None:
    for subquery in list(tree.find_all(exp.Subquery)):
        replacement = _list_aggregate_form(subquery)
        if replacement is not None:
            subquery.replace(replacement)


def _list_aggregate_form(subquery: exp.Subquery) -> exp.Expression | None:
    """A scalar aggregate over one aliased ``UNNEST`` as a DuckDB list function (no correlated join),
    or None when the subquery is not exactly one of these shapes:

    - ``(SELECT SUM(c.f) FROM UNNEST(arr) AS c)`` → ``list_sum(list_transform(arr, lambda c: c.f))``;
    - ``(SELECT STRING_AGG(<expr of t>, sep [ORDER BY o]) FROM UNNEST(arr) AS t [WITH OFFSET AS o])`` →
      ``list_aggregate(list_transform(arr, lambda t: <expr>), 'string_agg', sep)``: list order is the
      offset order, NULL values are skipped and an empty or all-NULL input gives NULL, as in BigQuery.
      ``<expr>`` may only read ``t`` (no outer columns, offset, subqueries or aggregates)."""
    # Only a scalar subquery can become a scalar expression (not a derived table, IN or EXISTS).
    if subquery.args.get("alias") is not None or isinstance(
        subquery.parent, exp.From | exp.Join | exp.Lateral | exp.In | exp.Exists
    ):
        return None
    select = subquery.this
    if not isinstance(select, exp.Select) or len(select.expressions) != 1:
        return None
    other_clauses = (
        "joins",
        "where",
        "group",
        "having",
        "qualify",
        "order",
        "limit",
        "offset",
        "distinct",
        "with",
        "laterals",
        "windows",
    )
    if any(select.args.get(clause) for clause in other_clauses):
        return None
    aggregate = select.expressions[0]
    if isinstance(aggregate, exp.Alias):
        aggregate = aggregate.this
    from_clause = select.args.get("from_") or select.args.get("from")
    unnest = from_clause.this if isinstance(from_clause, exp.From) else None
    if not isinstance(unnest, exp.Unnest) or len(unnest.expressions) != 1:
        return None
    alias = unnest.args.get("alias")
    if not isinstance(alias, exp.TableAlias):
        return None
    alias_names = [column.name for column in alias.columns] or ([alias.name] if alias.name else [])
    if len(alias_names) != 1:
        return None
    element = alias_names[0]
    offset = unnest.args.get("offset")
    array = unnest.expressions[0].copy()
    if isinstance(aggregate, exp.Sum) and not offset:
        column = aggregate.this
        if not isinstance(column, exp.Column) or column.table != element or column.args.get("db") is not None:
            return None
        body = exp.Dot(this=exp.to_identifier(element), expression=column.this.copy())
        return exp.Anonymous(this="list_sum", expressions=[_list_transform(array, element, body)])
    if isinstance(aggregate, exp.GroupConcat):
        return _string_agg_form(aggregate, array, element, offset)
    return None


def _string_agg_form(
    aggregate: exp.GroupConcat, array: exp.Expression, element: str, offset: exp.Expression | None
) -> exp.Expression | None:
    value = aggregate.this
    if isinstance(value, exp.Order):
        # Only the offset order, ascending, which is list order.
        offset_name = offset.name if isinstance(offset, exp.Identifier) else None
        keys = value.expressions
        if (
            offset_name is None
            or len(keys) != 1
            or not isinstance(keys[0], exp.Ordered)
            or keys[0].args.get("desc")
            or not isinstance(keys[0].this, exp.Column)
            or keys[0].this.table
            or keys[0].this.name != offset_name
        ):
            return None
        value = value.this
    separator = aggregate.args.get("separator")
    if separator is None:
        separator = exp.Literal.string(",")
    elif not isinstance(separator, exp.Literal) or not separator.is_string:
        return None
    for node in value.walk():
        if isinstance(
            node,
            exp.Subquery
            | exp.Select
            | exp.AggFunc
            | exp.Window
            | exp.Parameter
            | exp.Distinct
            | exp.Order
            | exp.Limit
            | exp.IgnoreNulls
            | exp.RespectNulls,
        ):
            return None
        if isinstance(node, exp.Column) and (node.table or node.name) != element:
            return None
        if isinstance(node, exp.Column) and node.args.get("db") is not None:
            return None
    transform = _list_transform(array, element, value.copy())
    return exp.Anonymous(
        this="list_aggregate", expressions=[transform, exp.Literal.string("string_agg"), separator.copy()]
    )


def _list_transform(array: exp.Expression, element: str, body: exp.Expression) -> exp.Transform:
    return exp.Transform(
        this=array, expression=exp.Lambda(this=body, expressions=[exp.to_identifier(element)])
    )


# --- types ------------------------------------------------------------------------------------------
def _bigquery_type(type_name: str) -> str:
    upper = type_name.upper()
    return _TYPE_ALIASES.get(upper, upper)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise WarehouseError(f"invalid {what} name {name!r}")
    return name


def _table_sql(ref: TableRef) -> str:
    _check_identifier(ref.dataset, "dataset")
    _check_identifier(ref.table, "table")
    return f"{_quote(ref.dataset)}.{_quote(ref.table)}"


def duckdb_type(field: Field) -> str:
    """The DuckDB column type for a BigQuery field (REPEATED as a list, RECORD as a STRUCT)."""
    type_name = _bigquery_type(field.type)
    if type_name == "RECORD":
        if not field.fields:
            raise WarehouseError(f"RECORD field {field.name!r} has no sub-fields")
        base = "STRUCT(" + ", ".join(f"{_quote(sub.name)} {duckdb_type(sub)}" for sub in field.fields) + ")"
    elif type_name in _SCALAR_TYPES:
        base = _SCALAR_TYPES[type_name]
    else:
        raise WarehouseError(f"unsupported BigQuery type {field.type!r} for field {field.name!r}")
    return f"{base}[]" if field.mode.upper() == "REPEATED" else base


def _field_from_duckdb(name: str, type_: Any, *, nullable: bool = True) -> Field:
    if type_.id == "list":
        element = _field_from_duckdb(name, type_.children[0][1])
        return Field(name=name, type=element.type, mode="REPEATED", fields=element.fields)
    mode = "NULLABLE" if nullable else "REQUIRED"
    if type_.id == "struct":
        return Field(
            name=name,
            type="RECORD",
            mode=mode,
            fields=tuple(_field_from_duckdb(sub, sub_type) for sub, sub_type in type_.children),
        )
    if str(type_) == "JSON":
        return Field(name=name, type="JSON", mode=mode)
    return Field(name=name, type=_DUCKDB_TO_BIGQUERY.get(type_.id, "STRING"), mode=mode)


def _canonical(field: Field) -> Field:
    """What DuckDB can represent of a field: no descriptions, nested REQUIRED lost, BIGNUMERIC=NUMERIC."""
    type_name = _bigquery_type(field.type)
    return Field(
        name=field.name,
        type="NUMERIC" if type_name == "BIGNUMERIC" else type_name,
        mode=field.mode.upper(),
        fields=tuple(
            _canonical(
                Field(
                    sub.name, sub.type, "NULLABLE" if sub.mode.upper() == "REQUIRED" else sub.mode, sub.fields
                )
            )
            for sub in field.fields
        ),
    )


# --- result conversion --------------------------------------------------------------------------------
Converter = Callable[[Any], Any]


def _converter(type_: Any) -> Converter | None:
    """A function that turns DuckDB's Python value into the documented type, or None if it already is."""
    if str(type_) == "JSON":
        return lambda value: None if value is None else json.loads(value)
    if type_.id == "timestamp with time zone":
        return lambda value: value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else value
    if type_.id == "struct":
        children = [(name, _converter(child)) for name, child in type_.children]
        if all(convert is None for _, convert in children):
            return None

        def convert_struct(value: Any) -> Any:
            if value is None:
                return None
            return {name: (convert(value[name]) if convert else value[name]) for name, convert in children}

        return convert_struct
    if type_.id == "list":
        element = _converter(type_.children[0][1])
        if element is None:
            return None
        return lambda value: None if value is None else [element(item) for item in value]
    return None


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    description = cursor.description or []
    names = [column[0] for column in description]
    converters = [_converter(column[1]) for column in description]
    rows = cursor.fetchall()
    if all(convert is None for convert in converters):
        return [dict(zip(names, row, strict=True)) for row in rows]
    return [
        {
            name: (convert(value) if convert else value)
            for name, convert, value in zip(names, converters, row, strict=True)
        }
        for row in rows
    ]


# --- parameter and row values ---------------------------------------------------------------------------
def _param_value(value: Any) -> Any:
    if isinstance(value, ScalarParam):
        return _typed_value(value.type, value.value)
    if isinstance(value, list):
        return [_param_value(item) for item in value]
    return value


def _typed_value(type_name: str, value: Any) -> Any:
    type_name = type_name.strip().upper()
    if value is None:
        return None
    if type_name.startswith("ARRAY<") and type_name.endswith(">"):
        return [_typed_value(type_name[6:-1], item) for item in value]
    type_name = _bigquery_type(type_name)
    try:
        if type_name in {"NUMERIC", "BIGNUMERIC"}:
            return decimal.Decimal(str(value))
        if type_name == "INT64":
            return int(value)
        if type_name == "FLOAT64":
            return float(value)
        if type_name == "BOOL":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if type_name == "DATE":
            return dt.date.fromisoformat(value) if isinstance(value, str) else value
        if type_name == "DATETIME":
            return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if type_name == "TIMESTAMP":
            stamp = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
            return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp
        if type_name == "JSON":
            return value if isinstance(value, str) else json.dumps(value)
        if type_name == "STRING":
            return str(value)
    except (ValueError, TypeError, decimal.InvalidOperation) as exc:
        raise WarehouseError(f"parameter value does not fit {type_name}: {exc}") from None
    return value


class _RowError(Exception):
    pass


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not a warehouse value")


def _row_value(field: Field, value: Any, path: str) -> Any:
    """Check and normalise one value for the JSON row document (all sub-fields present, JSON parsed)."""
    if field.mode.upper() == "REPEATED":
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise _RowError(f"{path}: expected a list for a REPEATED field")
        single = Field(field.name, field.type, "NULLABLE", field.fields)
        return [_row_value(single, item, f"{path}[{index}]") for index, item in enumerate(value)]
    if value is None:
        if field.mode.upper() == "REQUIRED":
            raise _RowError(f"{path}: missing value for REQUIRED field")
        return None
    type_name = _bigquery_type(field.type)
    if type_name == "RECORD":
        if not isinstance(value, Mapping):
            raise _RowError(f"{path}: expected an object for a RECORD field")
        known = {sub.name for sub in field.fields}
        unknown = sorted(set(value) - known)
        if unknown:
            raise _RowError(f"{path}: no such field: {unknown[0]}")
        return {sub.name: _row_value(sub, value.get(sub.name), f"{path}.{sub.name}") for sub in field.fields}
    if type_name == "JSON" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _RowError(f"{path}: not valid JSON") from None
    if type_name in {"NUMERIC", "BIGNUMERIC"} and isinstance(value, float):
        # repr keeps the decimal digits the caller wrote; DuckDB would go through binary floating point.
        return repr(value)
    if type_name == "INT64" and (isinstance(value, float) and not value.is_integer()):
        raise _RowError(f"{path}: {value!r} is not an INT64")
    if type_name == "INT64" and isinstance(value, bool):
        raise _RowError(f"{path}: {value!r} is not an INT64")
    return value


def _json_value_sql(field: Field, column: str) -> str:
    """The SELECT expression that turns a row-document column into the table's type."""
    if field.mode.upper() == "REPEATED":
        # BigQuery has no NULL arrays: an absent REPEATED value is an empty list.
        return f"coalesce({column}, CAST([] AS {duckdb_type(field)}))"
    if _bigquery_type(field.type) == "BYTES":
        return f"from_base64({column})"
    return column


def _document_type(field: Field) -> str:
    # BYTES travel base64-encoded in the JSON row document and are decoded by _json_value_sql.
    if _bigquery_type(field.type) == "BYTES" and field.mode.upper() != "REPEATED":
        return "VARCHAR"
    return duckdb_type(field)


# --- errors ---------------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    # DuckDB appends "LINE 1: <statement>" context; the first line never carries the statement.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def translate_error(exc: Exception) -> WarehouseError:
    """Map a DuckDB exception to the warehouse error hierarchy."""
    message = _first_line(exc)
    if isinstance(exc, duckdb.CatalogException):
        if _NOT_FOUND.search(message):
            return NotFoundError(message)
        if "already exists" in message:
            return ConflictError(message)
        return WarehouseError(message)
    if isinstance(exc, duckdb.IOException) and _LOCK_MESSAGE in message:
        return WarehouseError(message, retryable=True)
    if isinstance(exc, duckdb.TransactionException | duckdb.InterruptException):
        return WarehouseError(message, retryable=True)
    return WarehouseError(message)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except WarehouseError:
        raise
    except duckdb.Error as exc:
        raise translate_error(exc) from None


# --- the backend ------------------------------------------------------------------------------------------
class DuckDBWarehouse(Warehouse):
    """The embedded backend. Construction does not connect; every call connects as described above."""

    kind = "duckdb"

    def __init__(self, path: str, *, lock_timeout_s: float = 60.0) -> None:
        self.path = path
        self.lock_timeout_s = lock_timeout_s
        self._in_memory = path == ":memory:"
        self._lock = threading.RLock()
        self._memory_connection: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({self.path!r})"

    # --- connections ----------------------------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        if not self._in_memory:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                connection = duckdb.connect(self.path)
                break
            except duckdb.IOException as exc:
                if _LOCK_MESSAGE not in str(exc):
                    raise translate_error(exc) from None
                if time.monotonic() + delay > deadline:
                    raise WarehouseError(
                        f"warehouse file {self.path} is locked by another process "
                        f"(gave up after {self.lock_timeout_s:g} s)",
                        retryable=True,
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except duckdb.Error as exc:
                raise translate_error(exc) from None
        try:
            connection.execute("SET TimeZone='UTC'")
        except duckdb.Error as exc:
            connection.close()
            raise translate_error(exc) from None
        return connection

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection for one operation, held under the lock for its duration."""
        with self._lock:
            if self._in_memory:
                if self._memory_connection is None:
                    self._memory_connection = self._open()
                yield self._memory_connection
                return
            session_connection: duckdb.DuckDBPyConnection | None = getattr(self._local, "connection", None)
            if session_connection is not None:
                yield session_connection
                return
            connection = self._open()
            try:
                yield connection
            finally:
                connection.close()

    @contextmanager
    def session(self) -> Iterator[Warehouse]:
        """Hold one connection (and, for a file, its lock) for the calls made in this thread inside the
        scope. Other processes wait for the lock meanwhile, so keep sessions short."""
        if self._in_memory or getattr(self._local, "connection", None) is not None:
            yield self
            return
        with self._lock:
            connection = self._open()
        self._local.connection = connection
        try:
            yield self
        finally:
            self._local.connection = None
            with self._lock:
                connection.close()

    def close(self) -> None:
        """Close the in-memory connection (its data is lost); file connections are already closed."""
        with self._lock:
            if self._memory_connection is not None:
                self._memory_connection.close()
                self._memory_connection = None

    @contextmanager
    def _transaction(self, connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
        connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            try:
                connection.execute("ROLLBACK")
            except duckdb.Error:
                logger.debug("rollback after a failed statement also failed", exc_info=True)
            raise
        connection.execute("COMMIT")

    def ping(self) -> None:
        with _translated(), self._connection() as connection:
            connection.execute("SELECT 1").fetchall()

    # --- catalog helpers ------------------------------------------------------------------------------
    @staticmethod
    def _schema_exists(connection: duckdb.DuckDBPyConnection, dataset: str) -> bool:
        row = connection.execute(
            "SELECT count(*) FROM duckdb_schemas() WHERE database_name = current_database() "
            "AND schema_name = $name",
            {"name": dataset},
        ).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _table_exists(connection: duckdb.DuckDBPyConnection, ref: TableRef) -> bool:
        row = connection.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = $dataset AND table_name = $table",
            {"dataset": ref.dataset, "table": ref.table},
        ).fetchone()
        return bool(row and row[0])

    def _ensure_meta(self, connection: duckdb.DuckDBPyConnection) -> None:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {META_SCHEMA}.tables (dataset VARCHAR NOT NULL, "
            "table_name VARCHAR NOT NULL, schema_json VARCHAR NOT NULL, partition_field VARCHAR, "
            "clustering VARCHAR[] NOT NULL, description VARCHAR NOT NULL)"
        )

    def _meta_exists(self, connection: duckdb.DuckDBPyConnection) -> bool:
        return self._table_exists(connection, TableRef(META_SCHEMA, "tables"))

    def _delete_meta(self, connection: duckdb.DuckDBPyConnection, dataset: str, table: str | None) -> None:
        if not self._meta_exists(connection):
            return
        if table is None:
            connection.execute(f"DELETE FROM {META_SCHEMA}.tables WHERE dataset = $d", {"d": dataset})
        else:
            connection.execute(
                f"DELETE FROM {META_SCHEMA}.tables WHERE dataset = $d AND table_name = $t",
                {"d": dataset, "t": table},
            )

    def _fields(self, connection: duckdb.DuckDBPyConnection, ref: TableRef) -> tuple[Field, ...]:
        """The table's schema: derived from DuckDB's column types, refined by the stored spec where the
        two agree (BIGNUMERIC, nested REQUIRED, descriptions)."""
        if not self._table_exists(connection, ref):
            raise NotFoundError(f"Not found: Table {ref}")
        relation = connection.table(_table_sql(ref))
        nullable = dict(
            connection.execute(
                "SELECT column_name, is_nullable FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = $dataset AND table_name = $table",
                {"dataset": ref.dataset, "table": ref.table},
            ).fetchall()
        )
        stored = {field.name: field for field in self._stored_spec(connection, ref)[0]}
        fields = []
        for name, type_ in zip(relation.columns, relation.dtypes, strict=True):
            derived = _field_from_duckdb(name, type_, nullable=bool(nullable.get(name, True)))
            candidate = stored.get(name)
            fields.append(
                candidate if candidate is not None and _canonical(candidate) == derived else derived
            )
        return tuple(fields)

    def _stored_spec(
        self, connection: duckdb.DuckDBPyConnection, ref: TableRef
    ) -> tuple[tuple[Field, ...], str | None, tuple[str, ...]]:
        if not self._meta_exists(connection):
            return (), None, ()
        row = connection.execute(
            f"SELECT schema_json, partition_field, clustering FROM {META_SCHEMA}.tables "
            "WHERE dataset = $d AND table_name = $t",
            {"d": ref.dataset, "t": ref.table},
        ).fetchone()
        if row is None:
            return (), None, ()
        schema = tuple(Field.from_api_repr(item) for item in json.loads(row[0]))
        return schema, row[1], tuple(row[2])

    # --- datasets -------------------------------------------------------------------------------------
    def dataset_exists(self, dataset: str) -> bool:
        if dataset in RESERVED_SCHEMAS:
            return False
        with _translated(), self._connection() as connection:
            return self._schema_exists(connection, dataset)

    def create_dataset(
        self, dataset: str, *, exists_ok: bool = True, labels: Mapping[str, str] | None = None
    ) -> bool:
        """Create a schema. ``labels`` have no DuckDB equivalent and are ignored."""
        _check_identifier(dataset, "dataset")
        if dataset in RESERVED_SCHEMAS:
            raise WarehouseError(f"dataset name {dataset!r} is reserved by the DuckDB backend")
        with _translated(), self._connection() as connection:
            if self._schema_exists(connection, dataset):
                if exists_ok:
                    return False
                raise ConflictError(f"Already Exists: Dataset {dataset}")
            try:
                connection.execute(f"CREATE SCHEMA {_quote(dataset)}")
            except duckdb.CatalogException as exc:
                # Another process created it between the check and the CREATE.
                if exists_ok and "already exists" in str(exc):
                    return False
                raise
            return True

    def drop_dataset(self, dataset: str, *, delete_contents: bool = False, not_found_ok: bool = True) -> bool:
        _check_identifier(dataset, "dataset")
        if dataset in RESERVED_SCHEMAS:
            raise WarehouseError(f"dataset name {dataset!r} is reserved by the DuckDB backend")
        with _translated(), self._connection() as connection:
            if not self._schema_exists(connection, dataset):
                if not_found_ok:
                    return False
                raise NotFoundError(f"Not found: Dataset {dataset}")
            cascade = " CASCADE" if delete_contents else ""
            with self._transaction(connection):
                connection.execute(f"DROP SCHEMA {_quote(dataset)}{cascade}")
                self._delete_meta(connection, dataset, None)
            return True

    def list_datasets(self) -> list[str]:
        with _translated(), self._connection() as connection:
            rows = connection.execute(
                "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() "
                "AND NOT internal"
            ).fetchall()
        return sorted(name for (name,) in rows if name not in RESERVED_SCHEMAS)

    # --- tables ---------------------------------------------------------------------------------------
    def table_exists(self, ref: TableRef) -> bool:
        with _translated(), self._connection() as connection:
            return self._table_exists(connection, ref)

    def create_table(self, ref: TableRef, spec: TableSpec, *, exists_ok: bool = True) -> bool:
        """CREATE TABLE from the spec (REQUIRED → NOT NULL) and record partitioning/clustering."""
        table_sql = _table_sql(ref)
        names = {field.name for field in spec.schema}
        if spec.partition_field is not None and spec.partition_field not in names:
            raise WarehouseError(f"partition field {spec.partition_field!r} is not in the schema")
        for column in spec.clustering:
            if column not in names:
                raise WarehouseError(f"clustering field {column!r} is not in the schema")
        columns = []
        for field in spec.schema:
            _check_identifier(field.name, "column")
            required = " NOT NULL" if field.mode.upper() == "REQUIRED" else ""
            columns.append(f"{_quote(field.name)} {duckdb_type(field)}{required}")
        if not columns:
            raise WarehouseError("a table needs at least one column")
        with _translated(), self._connection() as connection:
            if not self._schema_exists(connection, ref.dataset):
                raise NotFoundError(f"Not found: Dataset {ref.dataset}")
            if self._table_exists(connection, ref):
                if exists_ok:
                    return False
                raise ConflictError(f"Already Exists: Table {ref}")
            self._ensure_meta(connection)
            with self._transaction(connection):
                connection.execute(f"CREATE TABLE {table_sql} ({', '.join(columns)})")
                self._delete_meta(connection, ref.dataset, ref.table)
                connection.execute(
                    f"INSERT INTO {META_SCHEMA}.tables "
                    "VALUES ($d, $t, $schema, $partition, $clustering, $desc)",
                    {
                        "d": ref.dataset,
                        "t": ref.table,
                        "schema": json.dumps([field.to_api_repr() for field in spec.schema]),
                        "partition": spec.partition_field,
                        "clustering": list(spec.clustering),
                        "desc": spec.description,
                    },
                )
            return True

    def drop_table(self, ref: TableRef, *, not_found_ok: bool = True) -> bool:
        table_sql = _table_sql(ref)
        with _translated(), self._connection() as connection:
            if not self._table_exists(connection, ref):
                if not_found_ok:
                    return False
                raise NotFoundError(f"Not found: Table {ref}")
            with self._transaction(connection):
                connection.execute(f"DROP TABLE {table_sql}")
                self._delete_meta(connection, ref.dataset, ref.table)
            return True

    def list_tables(self, dataset: str) -> list[str]:
        with _translated(), self._connection() as connection:
            if dataset in RESERVED_SCHEMAS or not self._schema_exists(connection, dataset):
                raise NotFoundError(f"Not found: Dataset {dataset}")
            rows = connection.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = $dataset",
                {"dataset": dataset},
            ).fetchall()
        return sorted(name for (name,) in rows)

    def describe_table(self, ref: TableRef) -> TableInfo:
        table_sql = _table_sql(ref)
        with _translated(), self._connection() as connection:
            schema = self._fields(connection, ref)
            _, partition_field, clustering = self._stored_spec(connection, ref)
            count_row = connection.execute(f"SELECT count(*) FROM {table_sql}").fetchone()
        return TableInfo(
            ref=ref,
            schema=schema,
            partition_field=partition_field,
            clustering=clustering,
            num_rows=int(count_row[0]) if count_row else 0,
        )

    # --- data -----------------------------------------------------------------------------------------
    @staticmethod
    def _bind(statement: Statement, params: Params | None) -> dict[str, Any]:
        supplied = dict(params or {})
        missing = sorted(statement.parameters - supplied.keys())
        if missing:
            raise WarehouseError(f"missing query parameter @{missing[0]}")
        # DuckDB rejects parameters a statement does not use; a predicate may use fewer than its SELECT.
        return {name: _param_value(supplied[name]) for name in statement.parameters}

    def query(
        self, sql: str, params: Params | None = None, *, labels: JobLabels | None = None
    ) -> QueryResult:
        statement = transpile(sql)
        bound = self._bind(statement, params)
        logger.debug("duckdb query", extra={"labels": (labels or JobLabels()).as_dict()})
        with _translated(), self._connection() as connection:
            cursor = connection.execute(statement.sql, bound)
            if statement.is_dml:
                row = cursor.fetchone()
                return QueryResult(rows_affected=int(row[0]) if row else 0, sql=statement.sql)
            if statement.returns_rows:
                return QueryResult(rows=_rows(cursor), sql=statement.sql)
            return QueryResult(sql=statement.sql)

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
        """Run the SELECT into ``destination`` in one transaction. ``sql`` of the result is every
        statement sent, in order, joined by ``;\\n``."""
        # One connection for the whole write (table creation included): a file opens once.
        with self.session():
            return self._query_to_table(
                sql,
                destination,
                params=params,
                write_mode=write_mode,
                replace_predicate=replace_predicate,
                merge_keys=merge_keys,
                spec=spec,
                labels=labels,
            )

    def _query_to_table(
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

        write_mode = WriteMode(write_mode)
        table_sql = _table_sql(destination)
        select = transpile(sql)
        if not select.returns_rows:
            raise WarehouseError("query_to_table needs a SELECT statement")
        bound = self._bind(select, params)
        delete: Statement | None = None
        if write_mode is WriteMode.REPLACE_PARTITION:
            if not replace_predicate:
                raise WarehouseError("replace_partition needs replace_predicate")
            delete = transpile(f"DELETE FROM {destination} WHERE {replace_predicate}")
        if write_mode is WriteMode.MERGE:
            if not merge_keys:
                raise WarehouseError("merge needs merge_keys")
            for key in merge_keys:
                _check_identifier(key, "merge key")
        logger.debug("duckdb query_to_table", extra={"labels": (labels or JobLabels()).as_dict()})
        source = f"SELECT * FROM ({select.sql})"
        sent: list[str] = []

        def run(text: str, values: Mapping[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
            sent.append(text)
            return connection.execute(text, dict(values or {}))

        if spec is not None:
            self.create_table(destination, spec, exists_ok=True)
        with _translated(), self._connection() as connection:
            with self._transaction(connection):
                if not self._table_exists(connection, destination):
                    if not self._schema_exists(connection, destination.dataset):
                        raise NotFoundError(f"Not found: Dataset {destination.dataset}")
                    run(f"CREATE TABLE {table_sql} AS {source}", bound)
                    row = run(f"SELECT count(*) FROM {table_sql}").fetchone()
                    return QueryResult(rows_affected=int(row[0]) if row else 0, sql=";\n".join(sent))
                if write_mode is WriteMode.MERGE:
                    affected = self._merge(run, table_sql, source, bound, merge_keys, connection)
                else:
                    if write_mode is WriteMode.TRUNCATE:
                        run(f"DELETE FROM {table_sql}")
                    elif delete is not None:
                        run(delete.sql, self._bind(delete, params))
                    row = run(f"INSERT INTO {table_sql} BY NAME {source}", bound).fetchone()
                    affected = int(row[0]) if row else 0
            return QueryResult(rows_affected=affected, sql=";\n".join(sent))

    @staticmethod
    def _merge(
        run: Callable[..., duckdb.DuckDBPyConnection],
        table_sql: str,
        source: str,
        bound: Mapping[str, Any],
        merge_keys: Sequence[str],
        connection: duckdb.DuckDBPyConnection,
    ) -> int:
        columns = [
            column[0] for column in connection.execute(f"{source} LIMIT 0", dict(bound)).description or []
        ]
        missing = [key for key in merge_keys if key not in columns]
        if missing:
            raise WarehouseError(f"merge key {missing[0]!r} is not a column of the query result")
        condition = " AND ".join(f"T.{_quote(key)} = S.{_quote(key)}" for key in merge_keys)
        updates = ", ".join(
            f"{_quote(column)} = S.{_quote(column)}" for column in columns if column not in merge_keys
        )
        insert_columns = ", ".join(_quote(column) for column in columns)
        insert_values = ", ".join(f"S.{_quote(column)}" for column in columns)
        matched = f"WHEN MATCHED THEN UPDATE SET {updates} " if updates else ""
        row = run(
            f"MERGE INTO {table_sql} AS T USING ({source}) AS S ON {condition} {matched}"
            f"WHEN NOT MATCHED THEN INSERT ({insert_columns}) VALUES ({insert_values})",
            bound,
        ).fetchone()
        return int(row[0]) if row else 0

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
        """Load a local file with DuckDB's readers, converting values to the table's (or ``spec``'s)
        schema. ``gs://`` needs the BigQuery backend."""
        write_mode = WriteMode(write_mode)
        file_format = FileFormat(file_format)
        if uri.startswith("gs://"):
            raise WarehouseError("gs:// loads need the bigquery backend")
        path = uri.removeprefix("file://")
        if write_mode not in (WriteMode.APPEND, WriteMode.TRUNCATE):
            raise WarehouseError(f"load_file supports append and truncate, not {write_mode}")
        if not os.path.isfile(path):
            raise WarehouseError(f"file not found: {path}")
        table_sql = _table_sql(destination)
        logger.debug("duckdb load_file", extra={"labels": (labels or JobLabels()).as_dict()})
        if spec is not None:
            self.create_table(destination, spec, exists_ok=True)
        with _translated(), self._connection() as connection:
            exists = self._table_exists(connection, destination)
            schema = self._fields(connection, destination) if exists else ()
            reader = self._reader(file_format, schema, skip_leading_rows)
            sent: list[str] = []
            with self._transaction(connection):
                if not exists:
                    if not self._schema_exists(connection, destination.dataset):
                        raise NotFoundError(f"Not found: Dataset {destination.dataset}")
                    sent.append(f"CREATE TABLE {table_sql} AS {reader}")
                    connection.execute(sent[-1], {"path": path})
                    row = connection.execute(f"SELECT count(*) FROM {table_sql}").fetchone()
                else:
                    if write_mode is WriteMode.TRUNCATE:
                        sent.append(f"DELETE FROM {table_sql}")
                        connection.execute(sent[-1])
                    sent.append(f"INSERT INTO {table_sql} BY NAME {reader}")
                    row = connection.execute(sent[-1], {"path": path}).fetchone()
        return QueryResult(rows_affected=int(row[0]) if row else 0, sql=";\n".join(sent))

    @staticmethod
    def _reader(file_format: FileFormat, schema: Sequence[Field], skip_leading_rows: int) -> str:
        """A SELECT over the file at ``$path`` producing the schema's columns and types (or the file's
        own columns when there is no schema yet)."""
        if file_format is FileFormat.CSV:
            if not schema:
                header = "true" if skip_leading_rows >= 1 else "false"
                return (
                    f"SELECT * FROM read_csv($path, header={header}, skip={max(skip_leading_rows - 1, 0)}, "
                    "delim=',', quote='\"', escape='\"')"
                )
            for field in schema:
                if _bigquery_type(field.type) == "RECORD" or field.mode.upper() == "REPEATED":
                    raise WarehouseError(f"CSV cannot load nested or repeated field {field.name!r}")
            # CSV columns are positional (as in BigQuery); read text, then convert to the column type.
            text_columns = ", ".join(f"{_literal(field.name)}: 'VARCHAR'" for field in schema)
            conversions = ", ".join(f"{_csv_value_sql(field)} AS {_quote(field.name)}" for field in schema)
            return (
                f"SELECT {conversions} FROM read_csv($path, header=false, skip={skip_leading_rows}, "
                f"auto_detect=false, delim=',', quote='\"', escape='\"', columns={{{text_columns}}})"
            )
        if file_format is FileFormat.NDJSON:
            if not schema:
                return "SELECT * FROM read_json($path, format='newline_delimited')"
            typed_columns = ", ".join(
                f"{_literal(field.name)}: {_literal(_document_type(field))}" for field in schema
            )
            conversions = ", ".join(
                f"{_json_value_sql(field, _ndjson_column_sql(field))} AS {_quote(field.name)}"
                for field in schema
            )
            return (
                f"SELECT {conversions} FROM read_json($path, format='newline_delimited', "
                f"columns={{{typed_columns}}})"
            )
        if not schema:
            return "SELECT * FROM read_parquet($path)"
        conversions = ", ".join(
            f"{_json_value_sql(field, _cast_sql(field))} AS {_quote(field.name)}"
            if field.mode.upper() == "REPEATED"
            else f"{_cast_sql(field)} AS {_quote(field.name)}"
            for field in schema
        )
        return f"SELECT {conversions} FROM read_parquet($path)"

    def insert_rows(self, ref: TableRef, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert with one INSERT ... SELECT over a JSON document of all rows, so a bad row fails the
        whole statement and nothing is inserted."""
        table_sql = _table_sql(ref)
        with _translated(), self._connection() as connection:
            schema = self._fields(connection, ref)
            known = {field.name for field in schema}
            document = []
            for index, row in enumerate(rows):
                unknown = sorted(set(row) - known)
                if unknown:
                    raise WarehouseError(f"row {index}: no such field: {unknown[0]}")
                try:
                    document.append(
                        {field.name: _row_value(field, row.get(field.name), field.name) for field in schema}
                    )
                except _RowError as exc:
                    raise WarehouseError(f"row {index}: {exc}") from None
            if not document:
                return 0
            try:
                payload = json.dumps(document, default=_json_default)
            except (TypeError, ValueError) as exc:
                raise WarehouseError(f"rows are not serialisable: {exc}") from None
            struct = (
                "STRUCT("
                + ", ".join(f"{_quote(field.name)} {_document_type(field)}" for field in schema)
                + ")"
            )
            conversions = ", ".join(
                f"{_json_value_sql(field, 'r.' + _quote(field.name))} AS {_quote(field.name)}"
                for field in schema
            )
            inserted = connection.execute(
                f"INSERT INTO {table_sql} BY NAME SELECT {conversions} "
                f"FROM (SELECT UNNEST(CAST(CAST($rows AS JSON) AS {struct}[])) AS r)",
                {"rows": payload},
            ).fetchone()
        return int(inserted[0]) if inserted else 0


def _ndjson_column_sql(field: Field) -> str:
    column = _quote(field.name)
    if _bigquery_type(field.type) == "JSON" and field.mode.upper() != "REPEATED":
        # BigQuery parses a string given for a JSON column as JSON text; read_json keeps it a JSON string.
        return (
            f"CASE WHEN json_type({column}) = 'VARCHAR' THEN CAST({column} ->> '$' AS JSON) ELSE {column} END"
        )
    return column


def _cast_sql(field: Field) -> str:
    return f"CAST({_quote(field.name)} AS {duckdb_type(field)})"


def _csv_value_sql(field: Field) -> str:
    column = _quote(field.name)
    type_name = _bigquery_type(field.type)
    if type_name == "BYTES":
        return f"from_base64({column})"
    if type_name == "BOOL":
        # BigQuery CSV accepts true/false, t/f, yes/no, y/n, 1/0; DuckDB's cast covers all but yes/no.
        return (
            f"CASE lower({column}) WHEN 'yes' THEN true WHEN 'no' THEN false "
            f"ELSE CAST({column} AS BOOLEAN) END"
        )
    return f"CAST({column} AS {duckdb_type(field)})"
