"""Pieces the warehouse processors share: identifier and schema-file fields, the run's datasets, and SQL
that is checked and bound before it reaches the warehouse."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from django.conf import settings
from pydantic import AfterValidator

from convergence.warehouse import Field as WarehouseField
from convergence.warehouse.base import ParamValue
from pipelines.processors.base import StepError
from pipelines.spec import IDENTIFIER_RE
from pipelines.sql import SqlAnalysis, SqlError, SqlKind, analyze_sql, bind_parameters

if TYPE_CHECKING:
    from pipelines.engine import RunContext

DatasetType = Literal["tenant_dataset", "central"]


def _identifier(value: str) -> str:
    if not IDENTIFIER_RE.fullmatch(value):
        raise ValueError(f"invalid identifier {value!r}")
    return value


def _schema_file(value: str) -> str:
    root = Path(settings.PIPELINE_CONFIGS_DIR).resolve()
    path = (root / value).resolve()
    if root not in path.parents or not path.is_file():
        raise ValueError(f"schema file {value!r} not found under the configs folder")
    return value


#: A table or column name; the loader reports a bad value with the variable it came from.
Identifier = Annotated[str, AfterValidator(_identifier)]
#: A BigQuery JSON schema file, relative to ``PIPELINE_CONFIGS_DIR``.
SchemaFile = Annotated[str, AfterValidator(_schema_file)]


def read_schema(schema_file: str) -> tuple[WarehouseField, ...]:
    """The fields of a BigQuery JSON schema file under the configs folder; ``StepError`` if unreadable."""
    path = Path(settings.PIPELINE_CONFIGS_DIR) / _schema_file(schema_file)
    try:
        return tuple(WarehouseField.from_api_repr(item) for item in json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepError(f"schema file {schema_file} is not a BigQuery JSON schema") from exc


def run_datasets(context: RunContext) -> dict[str, str]:
    """The datasets this run's SQL may reference: the tenant's own, plus the central dataset for system
    pipelines. Values are the names shown in messages."""
    datasets: list[str] = []
    if context.tenant_id is not None:
        datasets.append(context.dataset("tenant_dataset"))
    if context.pipeline.is_system:
        datasets.append(context.dataset("central"))
    return {name: name for name in datasets}


def checked_sql(context: RunContext, sql: str, kind: SqlKind) -> SqlAnalysis:
    """Re-run the loader's SQL checks on the resolved SQL against this run's real datasets, so a config
    that validated against placeholders still cannot reach another dataset. ``StepError`` if refused."""
    try:
        return analyze_sql(sql, kind=kind, datasets=run_datasets(context))
    except SqlError as exc:
        raise StepError(f"SQL refused: {'; '.join(exc.errors)}") from None


def query_parameters(
    context: RunContext, *analyses: SqlAnalysis, internal: Mapping[str, ParamValue] | None = None
) -> dict[str, ParamValue]:
    """Bound, typed values for exactly the ``@params`` these SQL texts use. ``internal`` values are the
    processor's own (names starting with ``_``, which no declared parameter can have)."""
    internal = internal or {}
    used: set[str] = set()
    for analysis in analyses:
        used |= analysis.parameters
    try:
        bound: dict[str, ParamValue] = dict(
            bind_parameters(used - internal.keys(), context.pipeline.spec.parameters, context.parameters)
        )
    except SqlError as exc:
        raise StepError(f"SQL refused: {'; '.join(exc.errors)}") from None
    bound.update({name: value for name, value in internal.items() if name in used})
    return bound


def quote(identifier: str) -> str:
    """A validated identifier in backticks, for SQL the processor builds itself."""
    return f"`{_identifier(identifier)}`"
