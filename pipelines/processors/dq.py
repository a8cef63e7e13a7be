"""``dq.checks``: data-quality checks over warehouse tables, each recorded as a DQ result."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import sqlglot
from django.utils import timezone
from pydantic import Field, field_validator, model_validator
from sqlglot import exp
from sqlglot.errors import SqlglotError

from billing.focus.columns import CUSTOM_PREFIX, FOCUS_COLUMNS, MANDATORY_1_2
from billing.focus.rules import (
    RULE_SELECTORS,
    FocusRule,
    placeholder_predicate,
    select_rules,
    unknown_selector_message,
)
from convergence.warehouse import Field as WarehouseField
from convergence.warehouse import TableRef
from convergence.warehouse.base import ParamValue
from pipelines.engine import RunContext
from pipelines.processors.base import Processor, ProcessorConfig, StepError, StepResult
from pipelines.processors.common import (
    DatasetType,
    Identifier,
    SchemaFile,
    checked_sql,
    query_parameters,
    quote,
    read_schema,
)
from pipelines.spec import IDENTIFIER_RE
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


RuleSeverity = Literal["error", "warn"]


class FocusRulesCheck(TableCheck):
    """The FOCUS rule set (billing/focus/rules.py) over a FOCUS table: one result per rule, each with the
    rule's own severity (``severity_overrides`` changes it; a split §2.6 id such as F11 covers both
    parts, a rule id such as F11A wins over it). ``severity`` is refused here for that reason."""

    check: Literal["focus_rules"]
    #: Rule ids (F06, F11A) or split §2.6 ids (F11); all implemented rules when absent.
    rules: list[str] | None = Field(default=None, min_length=1)
    severity_overrides: dict[str, RuleSeverity] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_check_severity(cls, data: Any) -> Any:
        if isinstance(data, dict) and "severity" in data:
            raise ValueError("focus_rules takes each rule's severity; change one with severity_overrides")
        return data

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: list[str] | None) -> list[str] | None:
        for selector in value or []:
            if selector not in RULE_SELECTORS:
                raise ValueError(unknown_selector_message(selector))
        return value

    @field_validator("severity_overrides")
    @classmethod
    def _known_overrides(cls, value: dict[str, RuleSeverity]) -> dict[str, RuleSeverity]:
        for selector in value:
            if selector not in RULE_SELECTORS:
                raise ValueError(unknown_selector_message(selector))
        return value

    def rule_severity(self, rule: FocusRule) -> RuleSeverity:
        return self.severity_overrides.get(
            rule.rule_id, self.severity_overrides.get(rule.family_id, rule.severity)
        )


class ReconciliationCheck(TableCheck):
    """Per UTC day, the FOCUS table's ``SUM(focus_amount)`` (rows limited by the step's ``where``)
    against the raw export's ``SUM(raw_amount)`` (rows limited by ``raw_where``). A day passes when
    ``|focus - raw| <= tolerance * |raw|`` (so a raw total of 0 needs exactly 0); a day on one side only
    fails. Amounts are summed as NUMERIC and compared as exact decimals."""

    check: Literal["reconciliation"]
    raw_table: TableTarget
    #: A BigQuery expression over one raw row: its net cost (cast to NUMERIC before summing).
    raw_amount: str = Field(min_length=1)
    #: A BigQuery DATE expression over one raw row: its UTC usage date.
    raw_day: str = Field(min_length=1)
    #: A boolean BigQuery expression limiting the raw rows to the run's day or period.
    raw_where: str | None = Field(default=None, min_length=1)
    focus_amount: Identifier = "BilledCost"
    focus_day: Identifier = "x_ChargeDate"
    #: Relative; the comparison is inclusive (a difference of exactly tolerance x raw passes).
    tolerance: decimal.Decimal = Field(default=decimal.Decimal("1e-9"), ge=0, lt=1)
    #: The raw table's BigQuery JSON schema file: with it, validation rejects unknown raw columns.
    raw_schema_file: SchemaFile | None = None

    @field_validator("raw_amount", "raw_day")
    @classmethod
    def _per_row(cls, value: str) -> str:
        tree = _parse_expression(value)
        if tree is not None and _has_outer_aggregate(tree):
            raise ValueError("must be a per-row expression (the check sums it per day), not an aggregate")
        return value

    @model_validator(mode="after")
    def _raw_columns(self) -> ReconciliationCheck:
        if self.raw_schema_file is not None:
            try:
                names = [field.name for field in read_schema(self.raw_schema_file)]
            except StepError as exc:
                raise ValueError(exc.message) from None
            for label, sql in (("raw_amount", self.raw_amount), ("raw_day", self.raw_day)) + (
                (("raw_where", self.raw_where),) if self.raw_where else ()
            ):
                unknown = unknown_columns(sql, names)
                if unknown:
                    raise ValueError(
                        f"{label}: unknown column(s) {', '.join(unknown)} (not in {self.raw_schema_file})"
                    )
        return self


#: Add a check: a model here and its runner in CHECKS. A named rule set (e.g. FOCUS conformance) is a
#: check whose runner returns one outcome per rule.
Check = Annotated[
    NotNullCheck
    | UniqueCheck
    | AcceptedValuesCheck
    | RowCountCheck
    | ExpressionCheck
    | FreshnessCheck
    | CustomCheck
    | FocusRulesCheck
    | ReconciliationCheck,
    Field(discriminator="check"),
]


class DqConfig(ProcessorConfig):
    #: The table checks run on unless they name their own.
    table: TableTarget | None = None
    #: A boolean BigQuery expression limiting every table check to some rows, e.g. ``usage_date = @date``.
    where: str | None = Field(default=None, min_length=1)
    checks: list[Check] = Field(min_length=1)

    sql_fields = {
        "where": "predicate",
        "checks[*].predicate": "predicate",
        "checks[*].sql": "query",
        "checks[*].raw_amount": "predicate",
        "checks[*].raw_day": "predicate",
        "checks[*].raw_where": "predicate",
    }
    identifier_fields = (
        "table.table",
        "checks[*].table.table",
        "checks[*].column",
        "checks[*].columns[*]",
        "checks[*].raw_table.table",
        "checks[*].focus_amount",
        "checks[*].focus_day",
    )
    dataset_fields = (
        "table.dataset_type",
        "checks[*].table.dataset_type",
        "checks[*].raw_table.dataset_type",
    )

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
    #: For checks whose outcomes differ in severity (a rule set); None takes the check's own.
    severity: RuleSeverity | None = None


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


# --- SQL expressions in check configs ------------------------------------------------------------------
def _parse_expression(sql: str) -> exp.Expr | None:
    """The expression's tree, or None when it does not parse (the loader's SQL check reports that)."""
    try:
        return sqlglot.parse_one(sql, read="bigquery", into=exp.Condition)
    except SqlglotError:
        return None


def _has_outer_aggregate(tree: exp.Expr) -> bool:
    """True when an aggregate applies to the expression's own rows (not inside a subquery)."""
    return any(node.find_ancestor(exp.Select) is None for node in tree.find_all(exp.AggFunc))


def unknown_columns(sql: str, columns: Iterable[str]) -> list[str]:
    """Columns ``sql`` reads from its row that are not in ``columns`` (case-insensitive, as BigQuery).
    ``a.b`` reads column ``a`` (a RECORD); names given to UNNEST items, subqueries and CTEs inside the
    expression are not columns. An expression that does not parse reports nothing here."""
    tree = _parse_expression(sql)
    if tree is None:
        return []
    local: set[str] = set()
    for alias in tree.find_all(exp.TableAlias):
        # BigQuery's ``UNNEST(array) AS item`` names its item as the alias's column.
        local |= {name.lower() for name in [alias.name, *(column.name for column in alias.columns)] if name}
    local |= {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    known = {column.lower() for column in columns}
    unknown: list[str] = []
    for column in tree.find_all(exp.Column):
        parts = column.parts
        if not parts:
            continue
        root = parts[0].name
        if root.lower() not in local and root.lower() not in known and root not in unknown:
            unknown.append(root)
    return unknown


# --- FOCUS rule set ------------------------------------------------------------------------------------
def _for_duckdb(sql: str) -> str:
    """``SAFE.PARSE_JSON(x)`` as ``SAFE_CAST(x AS JSON)``: sqlglot renders the former for DuckDB as
    ``SAFE.JSON(x)``, which DuckDB lacks, while DuckDB's TRY_CAST to JSON is NULL for invalid JSON.
    BigQuery cannot cast a STRING to JSON, so the rule text keeps the BigQuery form."""
    tree = sqlglot.parse_one(sql, read="bigquery")
    for node in list(tree.find_all(exp.SafeFunc)):
        if isinstance(node.this, exp.ParseJSON):
            cast = exp.TryCast(this=node.this.this.copy(), to=exp.DataType.build("JSON"), safe=True)
            node.replace(cast)
    return tree.sql(dialect="bigquery")


def _string_columns(schema: Iterable[WarehouseField]) -> list[str]:
    """Top-level STRING columns whose names can be written into SQL (F26 reads them all)."""
    return [
        field.name
        for field in schema
        if field.type.upper() == "STRING"
        and field.mode.upper() != "REPEATED"
        and IDENTIFIER_RE.fullmatch(field.name)
    ]


def _listed(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _focus_rules(scope: CheckScope, check: FocusRulesCheck) -> list[CheckOutcome]:
    """One outcome per selected rule: schema rules from the table's description, every row and aggregate
    rule from one query over the rows the step's ``where`` selects (observed: failing rows or groups)."""
    assert scope.table is not None
    schema = scope.context.warehouse.describe_table(scope.table).schema
    fields = {field.name: field for field in schema}
    prefix = check.name or check.check
    table = str(scope.table)
    results: dict[str, CheckOutcome] = {}
    counted: list[tuple[FocusRule, str]] = []  # (rule, failure condition for row rules)

    def outcome(rule: FocusRule, passed: bool, observed: Any, message: str = "") -> CheckOutcome:
        return CheckOutcome(
            name=f"{prefix}.{rule.rule_id}",
            table=table,
            passed=passed,
            observed=observed,
            expected=0,
            message=message,
            severity=check.rule_severity(rule),
        )

    rules = select_rules(check.rules)
    for rule in rules:
        if rule.rule_id == "F01":
            missing = [name for name in MANDATORY_1_2 if name not in fields]
            message = f"missing: {_listed(missing)}" if missing else ""
            results[rule.rule_id] = outcome(rule, not missing, len(missing), message)
            continue
        if rule.rule_id == "F27":
            foreign = [
                name for name in fields if name not in FOCUS_COLUMNS and not name.startswith(CUSTOM_PREFIX)
            ]
            message = f"not FOCUS nor {CUSTOM_PREFIX}-prefixed: {_listed(foreign)}" if foreign else ""
            results[rule.rule_id] = outcome(rule, not foreign, len(foreign), message)
            continue
        absent = [name for name in rule.columns if name not in fields]
        if absent:
            message = f"skipped: the table has no column {', '.join(absent)}"
            results[rule.rule_id] = outcome(rule, True, "skipped", message)
            continue
        if rule.rule_id == "F24" and fields["Tags"].type.upper() != "STRING":
            message = f"skipped: Tags is {fields['Tags'].type}, not a STRING holding JSON"
            results[rule.rule_id] = outcome(rule, True, "skipped", message)
            continue
        if rule.rule_id == "F26":
            strings = _string_columns(schema)
            if not strings:
                results[rule.rule_id] = outcome(rule, True, 0, "the table has no STRING column")
                continue
            counted.append((rule, placeholder_predicate(strings)))
            continue
        counted.append((rule, rule.predicate))

    if counted:
        row = scope.query(_focus_rules_sql(scope, counted))
        for rule, _condition in counted:
            failing = int(row[f"rule_{rule.rule_id}"])
            results[rule.rule_id] = outcome(rule, failing == 0, failing)
    return [results[rule.rule_id] for rule in rules]


def _focus_rules_sql(scope: CheckScope, counted: list[tuple[FocusRule, str]]) -> str:
    """One statement: the scoped rows once, every row rule as a COUNTIF over them, and each aggregate
    rule as a count of failing groups, all in a single result row (columns ``rule_<id>``)."""
    ctes = [f"scoped AS (SELECT * FROM {scope.table_sql}{scope.filtered()})"]
    sources: list[str] = []
    columns: list[str] = []
    row_counts = [
        f"COUNTIF({condition}) AS rule_{rule.rule_id}" for rule, condition in counted if rule.kind == "row"
    ]
    if row_counts:
        ctes.append(f"row_rules AS (SELECT {', '.join(row_counts)} FROM scoped)")
        sources.append("row_rules")
        columns += [f"row_rules.rule_{rule.rule_id}" for rule, _ in counted if rule.kind == "row"]
    for rule, _condition in counted:
        if rule.kind != "aggregate":
            continue
        name = f"groups_{rule.rule_id}"
        where = f" WHERE {rule.predicate}" if rule.predicate else ""
        group_by = ", ".join(quote(column) for column in rule.group_by)
        ctes.append(
            f"{name} AS (SELECT COUNT(*) AS failing FROM (SELECT 1 AS one FROM scoped{where} "
            f"GROUP BY {group_by} HAVING {rule.having}) AS failing_groups)"
        )
        sources.append(name)
        columns.append(f"{name}.failing AS rule_{rule.rule_id}")
    sql = f"WITH {', '.join(ctes)} SELECT {', '.join(columns)} FROM {' CROSS JOIN '.join(sources)}"
    return _for_duckdb(sql) if scope.context.warehouse.kind == "duckdb" else sql


# --- reconciliation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Day:
    day: dt.date | None
    focus: decimal.Decimal | None
    raw: decimal.Decimal | None

    def deviation(self) -> decimal.Decimal | None:
        """``|focus - raw| / |raw|``; None (worse than any number) when a side is missing or raw is 0
        while focus is not."""
        if self.focus is None or self.raw is None:
            return None
        difference = abs(self.focus - self.raw)
        if difference == 0:
            return decimal.Decimal(0)
        if self.raw == 0:
            return None
        with decimal.localcontext(prec=80):
            return difference / abs(self.raw)

    def passes(self, tolerance: decimal.Decimal) -> bool:
        if self.focus is None or self.raw is None:
            return False
        # 80 digits hold any NUMERIC (38 digits) times any tolerance exactly.
        with decimal.localcontext(prec=80):
            return abs(self.focus - self.raw) <= tolerance * abs(self.raw)

    @property
    def label(self) -> str:
        return self.day.isoformat() if self.day is not None else "(no day)"


def _present_total(value: decimal.Decimal | None) -> decimal.Decimal:
    return value if value is not None else decimal.Decimal(0)


#: NUMERIC's scale: totals are shown with it on every backend (BigQuery returns ``Decimal('1')``).
_NUMERIC_UNIT = decimal.Decimal("0.000000001")


def _amount(value: decimal.Decimal | None) -> str:
    if value is None:
        return "no rows"
    with decimal.localcontext(prec=80):
        return f"{value.quantize(_NUMERIC_UNIT):f}"


def _reconciliation(scope: CheckScope, check: ReconciliationCheck) -> list[CheckOutcome]:
    """One outcome: the worst day (failing days first, then the largest relative difference; earliest
    on ties), observed ``day: focus total``, expected the raw total of that day."""
    assert scope.table is not None
    context = scope.context
    raw_ref = check.raw_table.ref(context)
    warehouse = context.warehouse
    focus_fields = [field.name for field in warehouse.describe_table(scope.table).schema]
    absent = [name for name in (check.focus_amount, check.focus_day) if name not in focus_fields]
    if absent:
        raise StepError(f"reconciliation: {scope.table} has no column {', '.join(absent)}")
    raw_fields = [field.name for field in warehouse.describe_table(raw_ref).schema]
    raw_sql = {"raw_amount": check.raw_amount, "raw_day": check.raw_day}
    if check.raw_where:
        raw_sql["raw_where"] = check.raw_where
    analyses: dict[str, SqlAnalysis] = {}
    for label, text in raw_sql.items():
        unknown = unknown_columns(text, raw_fields)
        if unknown:
            raise StepError(
                f"reconciliation: {label} reads unknown column(s) {', '.join(unknown)} of {raw_ref}"
            )
        analyses[label] = checked_sql(context, text, "predicate")
    raw_where = f" WHERE ({analyses['raw_where'].normalized})" if "raw_where" in analyses else ""
    sql = (
        f"WITH focus_days AS (SELECT {quote(check.focus_day)} AS charge_day, "
        f"SUM(CAST({quote(check.focus_amount)} AS NUMERIC)) AS amount "
        f"FROM {scope.table_sql}{scope.filtered()} GROUP BY charge_day), "
        f"raw_days AS (SELECT ({analyses['raw_day'].normalized}) AS charge_day, "
        f"SUM(CAST(({analyses['raw_amount'].normalized}) AS NUMERIC)) AS amount "
        f"FROM {quote(raw_ref.dataset)}.{quote(raw_ref.table)}{raw_where} GROUP BY charge_day) "
        "SELECT COALESCE(focus_days.charge_day, raw_days.charge_day) AS charge_day, "
        "focus_days.amount AS focus_amount, raw_days.amount AS raw_amount, "
        "focus_days.charge_day IS NOT NULL AS in_focus, raw_days.charge_day IS NOT NULL AS in_raw "
        "FROM focus_days FULL OUTER JOIN raw_days ON focus_days.charge_day = raw_days.charge_day "
        "ORDER BY charge_day"
    )
    analysis = checked_sql(context, sql, "query")
    params = query_parameters(context, analysis)
    rows = warehouse.query(sql, params, labels=context.labels).rows
    days = [
        _Day(
            day=row["charge_day"],
            # A group on one side with only NULL amounts sums to NULL: present, with a total of 0.
            focus=_present_total(row["focus_amount"]) if row["in_focus"] else None,
            raw=_present_total(row["raw_amount"]) if row["in_raw"] else None,
        )
        for row in rows
    ]
    name = check.name or check.check
    expected_rule = f"raw net within {check.tolerance} relative"
    if not days:
        return [
            CheckOutcome(
                name=name, table=str(scope.table), passed=True, observed="no rows", expected="no rows"
            )
        ]
    failing = [day for day in days if not day.passes(check.tolerance)]

    def badness(day: _Day) -> tuple[int, int, decimal.Decimal]:
        deviation = day.deviation()
        return (0 if day in failing else 1, 0 if deviation is None else 1, -(deviation or decimal.Decimal(0)))

    worst = min(days, key=badness)  # min keeps the earliest of equals (days are sorted)
    message = (
        f"{len(failing)} of {len(days)} day(s) off: {_listed([day.label for day in failing], 10)}"
        if failing
        else f"{len(days)} day(s) reconciled ({expected_rule})"
    )
    return [
        CheckOutcome(
            name=name,
            table=str(scope.table),
            passed=not failing,
            observed=f"{worst.label}: {_amount(worst.focus)}",
            expected=_amount(worst.raw),
            message=message,
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
    "focus_rules": _focus_rules,
    "reconciliation": _reconciliation,
}


class DqProcessor(Processor[DqConfig]):
    """Run data-quality checks and record each result (observed, expected, PASS/WARN/FAIL).

    Checks: ``not_null``, ``unique``, ``accepted_values``, ``row_count`` (min/max), ``expression`` (a
    boolean predicate that must hold for every row), ``freshness`` (newest ``column`` at most
    ``max_age_hours`` old), ``custom`` (SQL returning failing rows), ``focus_rules`` (the FOCUS rule set:
    one result per rule, each with its own severity) and ``reconciliation`` (daily totals against the raw
    export). A failing ``warn`` check is
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
                severity = outcome.severity or check.severity
                status = PASS if outcome.passed else FAIL if severity == "error" else WARN
                context.record_dq(
                    check=outcome.name,
                    table=outcome.table,
                    status=status,
                    severity=severity,
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
