"""Static analysis of the BigQuery SQL in step configs: what it may reference and which ``@params`` it uses.

The loader runs these checks at validation time and the SQL processors run them again on the resolved
SQL before anything reaches the warehouse, so a config cannot read outside the run's datasets by any
route the parser can see. The check fails closed: anything it does not understand is refused.

Two kinds of SQL field exist:

- ``query``: exactly one ``SELECT`` (or ``WITH ... SELECT``, or a set operation of them).
- ``predicate``: one boolean expression, embedded by a processor into a ``WHERE`` clause. It may hold
  subqueries, which are checked like any query.

A table reference must be ``dataset.table`` with the dataset in the allowed set; CTE names are the only
unqualified names accepted. Project-qualified names, ``INFORMATION_SCHEMA``, wildcard tables, table
functions (``EXTERNAL_QUERY``, ``ML.*``, ...), dataset-qualified functions (persistent or remote UDFs),
``@@system_variables``, scripting and DDL/DML are refused. BigQuery's implicit ``FROM t, t.array``
reads as a table in dataset ``t`` and is refused too: write ``UNNEST(t.array) AS item`` (DESIGN.md)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError

from convergence.warehouse import ScalarParam
from pipelines.spec import IDENTIFIER_RE, ParameterSpec

SqlKind = Literal["query", "predicate"]

#: BigQuery type of each run-time parameter type, so a NULL value is still typed.
PARAMETER_TYPES = {"date": "DATE", "string": "STRING", "int": "INT64", "bool": "BOOL", "enum": "STRING"}


class SqlError(ValueError):
    """The SQL was refused; ``errors`` are short messages free of the SQL text."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class SqlAnalysis:
    """What one SQL field uses. ``normalized`` is the SQL rendered back without comments (so a
    trailing ``--`` cannot swallow the text a processor appends); ``tables`` are ``(dataset, table)``."""

    parameters: frozenset[str]
    tables: tuple[tuple[str, str], ...]
    normalized: str


def analyze_sql(sql: str, *, kind: SqlKind, datasets: Mapping[str, str]) -> SqlAnalysis:
    """Parse ``sql`` (BigQuery dialect) and check it. ``datasets`` maps each allowed dataset name to how
    messages show it (``{tenant_dataset}`` at validation time, the real name at run time).
    ``SqlError`` lists every problem found."""
    # The parsed tree is cached and shared: read it, never modify it.
    tree = _parse(sql, kind)
    errors = _problems(tree, datasets)
    if errors:
        raise SqlError(errors)
    return SqlAnalysis(
        parameters=parameters_used(tree),
        tables=tuple((table.db, table.name) for table in tree.find_all(exp.Table) if table.db and table.name),
        normalized=tree.sql(dialect="bigquery", comments=False),
    )


@functools.lru_cache(maxsize=1024)
def _parse(sql: str, kind: SqlKind) -> exp.Expr:
    if kind == "predicate":
        if not sql.strip():
            raise SqlError(["SQL is empty"])
        try:
            return sqlglot.parse_one(sql, read="bigquery", into=exp.Condition)
        except SqlglotError as exc:
            raise SqlError([f"SQL does not parse: {_reason(exc)}"]) from None
    try:
        trees = [tree for tree in sqlglot.parse(sql, read="bigquery") if tree is not None]
    except SqlglotError as exc:
        raise SqlError([f"SQL does not parse: {_reason(exc)}"]) from None
    if not trees:
        raise SqlError(["SQL is empty"])
    if len(trees) > 1:
        raise SqlError([f"SQL must be a single statement (found {len(trees)})"])
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        raise SqlError([f"only a SELECT query is allowed here, not {_statement_name(tree)}"])
    return tree


def _reason(exc: SqlglotError) -> str:
    """sqlglot's message quotes the SQL around the error; keep the description and position only."""
    if isinstance(exc, ParseError) and exc.errors:
        first = exc.errors[0]
        description = first.get("description") or "invalid syntax"
        return f"{description} (line {first.get('line')}, col {first.get('col')})"
    if isinstance(exc, TokenError):
        return "invalid token (an unterminated string or quoted name?)"
    return type(exc).__name__


def _statement_name(tree: exp.Expr) -> str:
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    return tree.key.upper()


def _problems(tree: exp.Expr, datasets: Mapping[str, str]) -> list[str]:
    errors: list[str] = []

    def add(message: str) -> None:
        if message not in errors:
            errors.append(message)

    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    allowed = ", ".join(datasets.values())
    for node in tree.walk():
        if isinstance(node, exp.Command):
            add(f"only a SELECT query is allowed here, not {_statement_name(node)}")
        elif isinstance(node, exp.Table):
            message = _table_problem(node, ctes, datasets, allowed)
            if message:
                add(message)
        elif isinstance(node, exp.Parameter) and isinstance(node.this, exp.Parameter):
            add(f"system variable @@{node.this.name} is not allowed")
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            qualified = node.sql(dialect="bigquery").split("(")[0]
            add(f"dataset-qualified function {qualified!r} is not allowed")
        elif isinstance(node, exp.Anonymous):
            if node.name.upper() == "EXTERNAL_QUERY" and not isinstance(node.parent, exp.Table):
                add("EXTERNAL_QUERY is not allowed")
            elif "." in node.name:
                add(f"dataset-qualified function {node.name!r} is not allowed")
    return errors


def _table_problem(table: exp.Table, ctes: set[str], datasets: Mapping[str, str], allowed: str) -> str:
    if not isinstance(table.this, exp.Identifier):
        function = table.this
        name = function.name if isinstance(function, exp.Anonymous) else function.key.upper()
        qualified = f"{table.db}.{name}" if table.db else name
        return f"table function {qualified} is not allowed"
    parts = [part for part in (table.catalog, table.db, table.name) if part]
    shown = ".".join(parts)
    if any(part.upper().startswith("INFORMATION_SCHEMA") for part in parts):
        return "SQL must not read INFORMATION_SCHEMA"
    if table.catalog:
        return f"table {shown!r} must not name a project"
    if "*" in table.name:
        return f"wildcard table {shown!r} is not allowed"
    if not table.db:
        if table.name in ctes:
            return ""
        return f"table {table.name!r} must be dataset-qualified"
    if not IDENTIFIER_RE.fullmatch(table.db) or not IDENTIFIER_RE.fullmatch(table.name):
        return f"invalid table name {shown!r}"
    if table.db not in datasets:
        return f"SQL references dataset {table.db!r} (only {allowed} allowed)"
    return ""


def parameters_used(tree: exp.Expr) -> frozenset[str]:
    """The ``@name`` query parameters in a parsed tree (not ``@@system`` variables nor ``'@'`` in
    strings)."""
    return frozenset(
        node.name
        for node in tree.find_all(exp.Parameter)
        if isinstance(node.this, exp.Var) and not isinstance(node.parent, exp.Parameter)
    )


def bind_parameters(
    used: Iterable[str], specs: Mapping[str, ParameterSpec], values: Mapping[str, Any]
) -> dict[str, ScalarParam]:
    """Typed query parameters for the names the SQL uses, and only those. A name with no declared
    parameter raises ``SqlError`` (the loader refuses such configs; this guards the run path)."""
    bound: dict[str, ScalarParam] = {}
    for name in sorted(used):
        spec = specs.get(name)
        if spec is None:
            raise SqlError([f"parameter @{name} is not declared"])
        bound[name] = ScalarParam(PARAMETER_TYPES[spec.type], values.get(name))
    return bound
