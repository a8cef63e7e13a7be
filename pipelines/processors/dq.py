"""``dq.checks``: data-quality checks over warehouse tables, each recorded as a DQ result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from django.utils import timezone
from pydantic import Field, model_validator

from convergence.warehouse import TableRef
from convergence.warehouse.base import ParamValue
from pipelines.engine import RunContext
from pipelines.processors.base import Processor, ProcessorConfig, StepError, StepResult
from pipelines.processors.common import DatasetType, Identifier, checked_sql, query_parameters, quote
from pipelines.sql import SqlAnalysis

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


class TableTarget(ProcessorConfig):
    dataset_type: DatasetType
    table: Identifier

    def ref(self, context: RunContext) -> TableRef:
        return TableRef(context.dataset(self.dataset_type), self.table)


class CheckBase(ProcessorConfig):
    #: Shown in results and in the step's error; defaults to the check type.
    name: str | None = Field(default=None, min_length=1, max_length=128)
    severity: Literal["error", "warn"] = "error"


class TableCheck(CheckBase):
    #: Overrides the step's ``table`` for this check.
    table: TableTarget | None = None


class NotNullCheck(TableCheck):
    check: Literal["not_null"]
    column: Identifier


class UniqueCheck(TableCheck):
    check: Literal["unique"]
    columns: list[Identifier] = Field(min_length=1)


class AcceptedValuesCheck(TableCheck):
    check: Literal["accepted_values"]
    column: Identifier
    values: list[str] | list[int] = Field(min_length=1)


class RowCountCheck(TableCheck):
    check: Literal["row_count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountCheck:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("row_count min is greater than max")
        return self


class ExpressionCheck(TableCheck):
    check: Literal["expression"]
    #: A boolean BigQuery expression over the table's columns that must be TRUE for every row.
    predicate: str = Field(min_length=1)


class FreshnessCheck(TableCheck):
    check: Literal["freshness"]
    #: A DATE, DATETIME or TIMESTAMP column (DATE counts from 00:00 UTC, DATETIME is taken as UTC).
    column: Identifier
    max_age_hours: float = Field(gt=0)


class CustomCheck(CheckBase):
    check: Literal["custom"]
    #: A SELECT returning the failing rows; the check passes when it returns none. ``where`` is not applied.
    sql: str = Field(min_length=1)


#: Add a check: a model here and its runner in CHECKS. A named rule set (e.g. FOCUS conformance) is a
#: check whose runner returns one outcome per rule.
Check = Annotated[
    NotNullCheck
    | UniqueCheck
    | AcceptedValuesCheck
    | RowCountCheck
    | ExpressionCheck
    | FreshnessCheck
    | CustomCheck,
    Field(discriminator="check"),
]


class DqConfig(ProcessorConfig):
    #: The table checks run on unless they name their own.
    table: TableTarget | None = None
    #: A boolean BigQuery expression limiting every table check to some rows, e.g. ``usage_date = @date``.
    where: str | None = Field(default=None, min_length=1)
    checks: list[Check] = Field(min_length=1)

    sql_fields = {"where": "predicate", "checks[*].predicate": "predicate", "checks[*].sql": "query"}
    identifier_fields = ("table.table", "checks[*].table.table", "checks[*].column", "checks[*].columns[*]")
    dataset_fields = ("table.dataset_type", "checks[*].table.dataset_type")

    @model_validator(mode="after")
    def _tables(self) -> DqConfig:
        for index, check in enumerate(self.checks):
            if isinstance(check, TableCheck) and check.table is None and self.table is None:
                raise ValueError(f"checks[{index}] ({check.check}) needs a table: set 'table' on the step")
        return self


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    table: str
    passed: bool
    observed: Any
    expected: Any
    message: str = ""


@dataclass
class CheckScope:
    """What a check runner gets: the run, its table (None for custom SQL) and the step's ``where``."""

    context: RunContext
    table: TableRef | None
    where: SqlAnalysis | None

    @property
    def table_sql(self) -> str:
        assert self.table is not None
        return f"{quote(self.table.dataset)}.{quote(self.table.table)}"

    def filtered(self, *conditions: str) -> str:
        """``WHERE`` over the step's ``where`` (parenthesised, comments stripped) and ``conditions``."""
        parts = ([f"({self.where.normalized})"] if self.where else []) + list(conditions)
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    def query(self, sql: str, internal: Mapping[str, ParamValue] | None = None) -> dict[str, Any]:
        """Run one check query (re-checked against the run's datasets) and return its single row."""
        analysis = checked_sql(self.context, sql, "query")
        params = query_parameters(self.context, analysis, internal=internal)
        result = self.context.warehouse.query(sql, params, labels=self.context.labels)
        if len(result.rows) != 1:
            raise StepError("a data quality query returned no result row")
        return result.rows[0]


def _failing_rows(name: str, scope: CheckScope, failing: int) -> list[CheckOutcome]:
    """The outcome of a check that counts failing rows: it passes at zero."""
    return [
        CheckOutcome(
            name=name, table=str(scope.table or ""), passed=failing == 0, observed=failing, expected=0
        )
    ]


def _not_null(scope: CheckScope, check: NotNullCheck) -> list[CheckOutcome]:
    condition = f"{quote(check.column)} IS NULL"
    sql = f"SELECT COUNT(*) AS failing FROM {scope.table_sql}{scope.filtered(condition)}"
    return _failing_rows(check.name or check.check, scope, int(scope.query(sql)["failing"]))


def _unique(scope: CheckScope, check: UniqueCheck) -> list[CheckOutcome]:
    columns = ", ".join(quote(column) for column in check.columns)
    sql = (
        f"SELECT COUNT(*) AS failing FROM (SELECT {columns} FROM {scope.table_sql}{scope.filtered()} "
        f"GROUP BY {columns} HAVING COUNT(*) > 1) AS duplicates"
    )
    failing = int(scope.query(sql)["failing"])
    return _failing_rows(check.name or check.check, scope, failing)


def _accepted_values(scope: CheckScope, check: AcceptedValuesCheck) -> list[CheckOutcome]:
    column = quote(check.column)
    # The values are bound, never written into the SQL; NULLs are not_null's business.
    sql = (
        f"SELECT COUNT(*) AS failing FROM {scope.table_sql}"
        f"{scope.filtered(f'{column} IS NOT NULL', f'{column} NOT IN UNNEST(@_dq_accepted_values)')}"
    )
    failing = int(scope.query(sql, {"_dq_accepted_values": list(check.values)})["failing"])
    return _failing_rows(check.name or check.check, scope, failing)


def _row_count(scope: CheckScope, check: RowCountCheck) -> list[CheckOutcome]:
    sql = f"SELECT COUNT(*) AS row_count FROM {scope.table_sql}{scope.filtered()}"
    count = int(scope.query(sql)["row_count"])
    if check.min is not None and check.max is not None:
        expected = f"between {check.min} and {check.max}"
    elif check.min is not None:
        expected = f">= {check.min}"
    else:
        expected = f"<= {check.max}"
    passed = (check.min is None or count >= check.min) and (check.max is None or count <= check.max)
    return [
        CheckOutcome(
            name=check.name or check.check,
            table=str(scope.table),
            passed=passed,
            observed=count,
            expected=expected,
        )
    ]


def _expression(scope: CheckScope, check: ExpressionCheck) -> list[CheckOutcome]:
    predicate = checked_sql(scope.context, check.predicate, "predicate")
    # A NULL result does not hold, so it counts as failing.
    condition = f"NOT COALESCE(({predicate.normalized}), FALSE)"
    sql = f"SELECT COUNT(*) AS failing FROM {scope.table_sql}{scope.filtered(condition)}"
    return _failing_rows(check.name or check.check, scope, int(scope.query(sql)["failing"]))


def _freshness(scope: CheckScope, check: FreshnessCheck) -> list[CheckOutcome]:
    sql = f"SELECT MAX({quote(check.column)}) AS latest FROM {scope.table_sql}{scope.filtered()}"
    latest = scope.query(sql)["latest"]
    expected = f"<= {check.max_age_hours:g}h"
    name = check.name or check.check
    if latest is None:
        return [
            CheckOutcome(
                name=name, table=str(scope.table), passed=False, observed="no rows", expected=expected
            )
        ]
    if isinstance(latest, dt.datetime):
        stamp = latest if latest.tzinfo is not None else latest.replace(tzinfo=dt.UTC)
    elif isinstance(latest, dt.date):
        stamp = dt.datetime.combine(latest, dt.time.min, tzinfo=dt.UTC)
    else:
        raise StepError(f"freshness: column {check.column} is not a DATE, DATETIME or TIMESTAMP")
    age_hours = (timezone.now() - stamp).total_seconds() / 3600
    return [
        CheckOutcome(
            name=name,
            table=str(scope.table),
            passed=age_hours <= check.max_age_hours,
            observed=f"{age_hours:.1f}h",
            expected=expected,
            message=f"latest {check.column}: {stamp.isoformat()}",
        )
    ]


def _custom(scope: CheckScope, check: CustomCheck) -> list[CheckOutcome]:
    analysis = checked_sql(scope.context, check.sql, "query")
    # Rendered back without comments, on its own lines, so the wrapper cannot be commented out.
    sql = f"SELECT COUNT(*) AS failing FROM (\n{analysis.normalized}\n) AS failing_rows"
    failing = int(scope.query(sql)["failing"])
    table = str(scope.table) if scope.table else ".".join(analysis.tables[0]) if analysis.tables else ""
    return [
        CheckOutcome(
            name=check.name or check.check, table=table, passed=failing == 0, observed=failing, expected=0
        )
    ]


CheckRunner = Callable[[CheckScope, Any], list[CheckOutcome]]

#: Check type → runner. Each runner issues one query and returns its outcome(s).
CHECKS: dict[str, CheckRunner] = {
    "not_null": _not_null,
    "unique": _unique,
    "accepted_values": _accepted_values,
    "row_count": _row_count,
    "expression": _expression,
    "freshness": _freshness,
    "custom": _custom,
}


class DqProcessor(Processor[DqConfig]):
    """Run data-quality checks and record each result (observed, expected, PASS/WARN/FAIL).

    Checks: ``not_null``, ``unique``, ``accepted_values``, ``row_count`` (min/max), ``expression`` (a
    boolean predicate that must hold for every row), ``freshness`` (newest ``column`` at most
    ``max_age_hours`` old) and ``custom`` (SQL returning failing rows). A failing ``warn`` check is
    recorded as WARN and the step completes; a failing ``error`` check is recorded as FAIL and, after
    every check has run, the step fails (not retryable), which stops dependants and fails the run.
    ``where`` limits every table check; caller values reach SQL only as ``@params``."""

    config_model = DqConfig

    def run(self, context: RunContext, config: DqConfig) -> StepResult:
        where = checked_sql(context, config.where, "predicate") if config.where else None
        default_table = config.table.ref(context) if config.table else None
        failed: list[str] = []
        warned: list[str] = []
        total = 0
        for check in config.checks:
            if isinstance(check, TableCheck):
                scope = CheckScope(context, check.table.ref(context) if check.table else default_table, where)
            else:
                scope = CheckScope(context, default_table, None)
            for outcome in CHECKS[check.check](scope, check):
                total += 1
                status = PASS if outcome.passed else FAIL if check.severity == "error" else WARN
                context.record_dq(
                    check=outcome.name,
                    table=outcome.table,
                    status=status,
                    severity=check.severity,
                    observed=outcome.observed,
                    expected=outcome.expected,
                    message=outcome.message,
                )
                if status == FAIL:
                    failed.append(outcome.name)
                elif status == WARN:
                    warned.append(outcome.name)
        if failed:
            raise StepError(f"data quality: {len(failed)} check(s) failed: {', '.join(failed)}")
        return StepResult(outputs={"checks": total, "warned": warned})
