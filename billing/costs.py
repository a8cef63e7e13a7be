"""Cost analytics over a tenant's published FOCUS table (``{dataset}.focus_costs``): the cost API's query
and the admin tenant page's chart and data-quality summary.

Every query reads only the dataset of the tenant it is given (``tenant.dataset_id``, never request input).
Caller values (dates, the tag key, the currency) are bound as ``@name`` query parameters; the only text put
into SQL comes from fixed whitelists in this module (group and period expressions) and the validated
dataset id. Money is summed as NUMERIC in the warehouse and returned as ``Decimal``: exact, never a float.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Q

from billing.focus.schema import FOCUS_TABLE
from convergence.warehouse import JobLabels, NotFoundError, ScalarParam, TableRef, Warehouse, get_warehouse
from convergence.warehouse.base import IDENTIFIER_PATTERN, Params
from pipelines.models import DQResult, DQStatus, PipelineRun, RunStatus
from tenants.models import Tenant

PROVIDERS = ("gcp", "aws", "azure")
MAX_RANGE_DAYS = 366
MAX_TAG_KEY_LENGTH = 128
TAG_PREFIX = "tag:"
CHART_DAYS = 30
ZERO = Decimal(0)


class Granularity(enum.StrEnum):
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"


# group_by value -> the column expression it groups on (a fixed whitelist: request text never reaches SQL).
GROUP_COLUMNS: dict[str, str] = {
    "provider": "f.x_Provider",
    "service": "f.ServiceName",
    "sub_account": "f.SubAccountId",
    "region": "f.RegionId",
    "charge_category": "f.ChargeCategory",
}
# The tag value of the row's tag named @tag_key (NULL for rows without that tag). A scalar subquery, not a
# join: a row whose tag list repeats the key must still count once (the least value names its group),
# otherwise grouping by a tag would add the row's cost once per repetition.
TAG_COLUMN = "(SELECT MIN(t.value) FROM UNNEST(f.x_TagList) AS t WHERE t.key = @tag_key)"
PERIOD_COLUMNS: dict[Granularity, str] = {
    Granularity.DAY: "f.x_ChargeDate",
    Granularity.MONTH: "DATE_TRUNC(f.x_ChargeDate, MONTH)",
    Granularity.TOTAL: "CAST(NULL AS DATE)",
}


class CostQueryError(ValueError):
    """A cost query argument is invalid. ``field`` names the request parameter it came from."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class MixedCurrenciesError(Exception):
    """The range holds costs in more than one billing currency and no ``currency`` was chosen: adding
    them up would be meaningless. ``currencies`` are the ones found, sorted."""

    def __init__(self, currencies: list[str]) -> None:
        super().__init__(", ".join(currencies))
        self.currencies = currencies


@dataclass(frozen=True)
class GroupBy:
    """A validated ``group_by``: ``dimension`` is a key of ``GROUP_COLUMNS`` or ``"tag"`` (then
    ``tag_key`` is the tag's name), or None for no grouping."""

    dimension: str | None = None
    tag_key: str | None = None

    @property
    def label(self) -> str | None:
        """The ``group_by`` text as the caller wrote it."""
        if self.dimension == "tag":
            return f"{TAG_PREFIX}{self.tag_key}"
        return self.dimension


def group_by_parse(value: str | None) -> GroupBy:
    """Parse a ``group_by`` value; ``CostQueryError("group_by", ...)`` for an unknown dimension or a tag
    key that is empty, longer than 128 characters or has non-printable characters."""
    if value is None or value == "":
        return GroupBy()
    if value in GROUP_COLUMNS:
        return GroupBy(dimension=value)
    if value.startswith(TAG_PREFIX):
        key = value[len(TAG_PREFIX) :]
        if not key:
            raise CostQueryError("group_by", "tag: needs a tag key, e.g. tag:team")
        if len(key) > MAX_TAG_KEY_LENGTH:
            raise CostQueryError("group_by", f"A tag key is at most {MAX_TAG_KEY_LENGTH} characters")
        if not key.isprintable():
            raise CostQueryError("group_by", "A tag key must be printable characters")
        return GroupBy(dimension="tag", tag_key=key)
    choices = ", ".join([*GROUP_COLUMNS, "tag:KEY"])
    raise CostQueryError("group_by", f"Unknown group_by; choose one of {choices}")


def date_range_check(*, start: dt.date, end: dt.date) -> None:
    """``CostQueryError("end", ...)`` when ``end`` is before ``start`` or the inclusive range is longer
    than ``MAX_RANGE_DAYS`` days."""
    if end < start:
        raise CostQueryError("end", "end must not be before start")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise CostQueryError("end", f"The range is at most {MAX_RANGE_DAYS} days (start and end inclusive)")


@dataclass(frozen=True)
class CostRow:
    """One group of one period. ``period`` is the day (``day``), the month's first day (``month``) or
    None (``total``); ``key`` the group's value (None for rows without it, and without grouping)."""

    period: dt.date | None
    key: str | None
    billed_cost: Decimal
    effective_cost: Decimal


@dataclass(frozen=True)
class CostReport:
    """The answer to a cost query. ``currency`` is None when the range has no cost rows."""

    currency: str | None
    start: dt.date
    end: dt.date
    group_by: GroupBy
    granularity: Granularity
    total_billed_cost: Decimal
    total_effective_cost: Decimal
    rows: list[CostRow]


def _focus_table(tenant: Tenant) -> TableRef:
    # The dataset comes from the tenant row; checked anyway because it is interpolated into SQL text.
    if not re.fullmatch(IDENTIFIER_PATTERN, tenant.dataset_id):
        raise ValueError(f"tenant {tenant.tenant_id} has an invalid dataset id")
    return TableRef(tenant.dataset_id, FOCUS_TABLE)


def cost_query_sql(*, table: TableRef, group_by: GroupBy, granularity: Granularity) -> str:
    """The BigQuery Standard SQL of a cost query over ``table``: sums of BilledCost and EffectiveCost per
    (period, group key, currency) for ``x_ChargeDate`` in ``@start``..``@end`` (inclusive), optionally
    restricted to ``@currency`` (when ``@currency`` is not NULL). Uses ``@tag_key`` for tag grouping.
    Each cost row is counted exactly once whatever the grouping. Only whitelisted expressions and the
    table name are in the text."""
    if group_by.dimension is None:
        key_column = "CAST(NULL AS STRING)"
    elif group_by.dimension == "tag":
        key_column = TAG_COLUMN
    else:
        key_column = GROUP_COLUMNS[group_by.dimension]
    # The keys are computed per row in an inner query, so the grouping never holds a subquery.
    return (
        "SELECT c.period, c.group_key, c.currency,\n"
        "  SUM(c.billed) AS billed_cost, SUM(c.effective) AS effective_cost\n"
        f"FROM (SELECT {PERIOD_COLUMNS[granularity]} AS period, {key_column} AS group_key,\n"
        "    f.BillingCurrency AS currency, f.BilledCost AS billed, f.EffectiveCost AS effective\n"
        f"  FROM `{table.dataset}.{table.table}` AS f\n"
        "  WHERE f.x_ChargeDate BETWEEN @start AND @end\n"
        "    AND (@currency IS NULL OR f.BillingCurrency = @currency)) AS c\n"
        "GROUP BY c.period, c.group_key, c.currency"
    )


def _sort_key(row: CostRow) -> tuple[Any, ...]:
    # Periods ascending; within a period named groups alphabetically, the unnamed (NULL) group last.
    return (row.period or dt.date.min, row.key is None, row.key or "")


def cost_report(
    *,
    tenant: Tenant,
    start: dt.date,
    end: dt.date,
    group_by: GroupBy,
    granularity: Granularity,
    currency: str | None = None,
    warehouse: Warehouse | None = None,
) -> CostReport:
    """Billed and effective cost of ``tenant`` for ``start``..``end`` (inclusive, on the UTC charge
    date), per period of ``granularity`` and per ``group_by`` key, from its ``focus_costs`` table.

    One warehouse query. A tenant without a ``focus_costs`` table yet gets an empty report (zero totals).
    Costs in more than one currency raise ``MixedCurrenciesError`` unless ``currency`` selects one.
    ``CostQueryError`` for a bad range; ``WarehouseError`` when the warehouse fails."""
    date_range_check(start=start, end=end)
    warehouse = warehouse or get_warehouse()
    table = _focus_table(tenant)
    # A NULL parameter needs its type spelled out for BigQuery.
    params: dict[str, Any] = {"start": start, "end": end, "currency": ScalarParam("STRING", currency)}
    if group_by.dimension == "tag":
        params["tag_key"] = group_by.tag_key
    sql = cost_query_sql(table=table, group_by=group_by, granularity=granularity)
    try:
        result = warehouse.query(sql, params, labels=JobLabels(tenant=tenant.tenant_id, step="costs"))
    except NotFoundError:
        if warehouse.table_exists(table):
            raise
        result_rows: list[dict[str, Any]] = []
    else:
        result_rows = result.rows
    currencies = sorted({row["currency"] for row in result_rows if row["currency"] is not None})
    if len(currencies) > 1:
        raise MixedCurrenciesError(currencies)
    rows = sorted(
        (
            CostRow(
                period=row["period"],
                key=row["group_key"],
                billed_cost=_decimal(row["billed_cost"]),
                effective_cost=_decimal(row["effective_cost"]),
            )
            for row in result_rows
        ),
        key=_sort_key,
    )
    return CostReport(
        currency=currencies[0] if currencies else None,
        start=start,
        end=end,
        group_by=group_by,
        granularity=granularity,
        total_billed_cost=sum((row.billed_cost for row in rows), ZERO),
        total_effective_cost=sum((row.effective_cost for row in rows), ZERO),
        rows=rows,
    )


def _decimal(value: Any) -> Decimal:
    if value is None:
        return ZERO
    return value if isinstance(value, Decimal) else Decimal(str(value))


def money_text(value: Decimal) -> str:
    """An exact decimal string: no exponent, no trailing zeros (``"12.5"``, ``"0"``, ``"-3.000001"``)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


# --- admin tenant page -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyProviderCosts:
    """Daily BilledCost per provider over ``days`` (oldest first). ``costs[provider][i]`` is the cost of
    ``days[i]``; providers without cost are absent. ``currencies`` are the billing currencies seen."""

    days: list[dt.date]
    costs: dict[str, list[Decimal]]
    currencies: list[str]


DAILY_PROVIDER_SQL = (
    "SELECT f.x_ChargeDate AS day, f.x_Provider AS provider, f.BillingCurrency AS currency,\n"
    "  SUM(f.BilledCost) AS billed_cost\n"
    "FROM `{table}` AS f\n"
    "WHERE f.x_ChargeDate BETWEEN @start AND @end\n"
    "GROUP BY day, provider, currency"
)


def daily_provider_costs(
    *, tenant: Tenant, today: dt.date, days: int = CHART_DAYS, warehouse: Warehouse | None = None
) -> DailyProviderCosts:
    """The last ``days`` days up to ``today`` (inclusive) of ``tenant``'s BilledCost per provider and day,
    in one warehouse query. No table yet → no costs. ``WarehouseError`` when the warehouse fails."""
    warehouse = warehouse or get_warehouse()
    table = _focus_table(tenant)
    start = today - dt.timedelta(days=days - 1)
    day_list = [start + dt.timedelta(days=offset) for offset in range(days)]
    params: Params = {"start": start, "end": today}
    try:
        result_rows = warehouse.query(
            DAILY_PROVIDER_SQL.format(table=table),
            params,
            labels=JobLabels(tenant=tenant.tenant_id, step="admin-chart"),
        ).rows
    except NotFoundError:
        if warehouse.table_exists(table):
            raise
        result_rows = []
    index = {day: position for position, day in enumerate(day_list)}
    costs: dict[str, list[Decimal]] = {}
    for row in result_rows:
        provider = str(row["provider"] or "unknown")
        series = costs.setdefault(provider, [ZERO] * days)
        series[index[row["day"]]] += _decimal(row["billed_cost"])
    ordered = {name: costs[name] for name in _provider_order(costs)}
    currencies = sorted({str(row["currency"]) for row in result_rows if row["currency"] is not None})
    return DailyProviderCosts(days=day_list, costs=ordered, currencies=currencies)


def _provider_order(names: Iterable[str]) -> list[str]:
    known = [name for name in PROVIDERS if name in names]
    return known + sorted(set(names) - set(known))


@dataclass(frozen=True)
class ProviderQuality:
    """The data-quality state of one provider's cost data: its latest finished cost-pipeline run (None
    when there is none) and how many ``error``/``warn`` checks of that run's attempt failed.

    ``status``: ``NO_RUNS``; ``FAIL`` when an error-severity check failed (the data was not published);
    ``RUN_FAILED`` when the run failed for another reason; ``WARN`` when only warn checks failed;
    ``PASS`` otherwise."""

    provider: str
    run: PipelineRun | None
    errors_failed: int
    warnings: int

    @property
    def status(self) -> str:
        if self.run is None:
            return "NO_RUNS"
        if self.errors_failed:
            return "FAIL"
        if self.run.status == RunStatus.FAILED:
            return "RUN_FAILED"
        if self.warnings:
            return "WARN"
        return "PASS"


def provider_quality(*, tenant: Tenant) -> list[ProviderQuality]:
    """Per provider (gcp, aws, azure), the latest finished run (COMPLETED or FAILED) of ``tenant``'s
    ``{provider}/cost/...`` pipelines and its failed checks. A fixed number of queries (one per provider
    and one for all their DQ results), whatever the number of runs."""
    finished = (RunStatus.COMPLETED, RunStatus.FAILED)
    latest: dict[str, PipelineRun | None] = {}
    for provider in PROVIDERS:
        latest[provider] = (
            PipelineRun.objects.filter(
                tenant=tenant, status__in=finished, pipeline__startswith=f"{provider}/cost/"
            )
            .only("pk", "pipeline", "status", "attempt", "finished_at", "error")
            .order_by("-finished_at", "-created_at")
            .first()
        )
    runs = [run for run in latest.values() if run is not None]
    errors: dict[str, int] = {}
    warnings: dict[str, int] = {}
    if runs:
        # Only the attempt that produced the run's outcome counts; earlier attempts were retried away.
        attempts = Q()
        for run in runs:
            attempts |= Q(run_id=run.pk, attempt=run.attempt)
        failed = DQResult.objects.filter(attempts).exclude(status=DQStatus.PASS)
        for run_id, status, severity in failed.values_list("run_id", "status", "severity"):
            counter = errors if status == DQStatus.FAIL and severity == "error" else warnings
            counter[str(run_id)] = counter.get(str(run_id), 0) + 1
    return [
        ProviderQuality(
            provider=provider,
            run=run,
            errors_failed=errors.get(str(run.pk), 0) if run else 0,
            warnings=warnings.get(str(run.pk), 0) if run else 0,
        )
        for provider, run in latest.items()
    ]


# --- the chart on the admin tenant page ----------------------------------------------------------------

PROVIDER_COLORS = {"gcp": "#4285f4", "aws": "#ff9900", "azure": "#0a7d3e"}
OTHER_COLOR = "#888888"
CHART_BAR_WIDTH = 18
CHART_HEIGHT = 160


@dataclass(frozen=True)
class ChartSegment:
    provider: str
    color: str
    cost: str
    y: int
    height: int


@dataclass(frozen=True)
class ChartBar:
    day: dt.date
    total: str
    x: int
    segments: list[ChartSegment]


@dataclass(frozen=True)
class CostChart:
    """A server-rendered stacked bar chart (SVG coordinates precomputed): one bar per day, one segment per
    provider. ``legend`` is ``(provider, color, total over the days)``."""

    start: dt.date
    end: dt.date
    currency: str
    maximum: str
    width: int
    height: int
    bar_width: int
    bars: list[ChartBar]
    legend: list[tuple[str, str, str]]


def cost_chart(costs: DailyProviderCosts) -> CostChart:
    """Lay out ``costs`` as stacked bars scaled to the largest day (negative days draw as empty)."""
    totals = [
        sum((series[index] for series in costs.costs.values()), ZERO) for index in range(len(costs.days))
    ]
    maximum = max([*totals, ZERO])
    bars = []
    for index, day in enumerate(costs.days):
        segments = []
        top = CHART_HEIGHT
        for provider, series in costs.costs.items():
            value = series[index]
            # At least one pixel, so a small provider is still visible (and hoverable) next to a big one;
            # the scale leaves room for those pixels on the largest day.
            height = (
                max(1, int(value / maximum * (CHART_HEIGHT - len(costs.costs)))) if value > 0 < maximum else 0
            )
            top -= height
            segments.append(
                ChartSegment(
                    provider=provider,
                    color=PROVIDER_COLORS.get(provider, OTHER_COLOR),
                    cost=money_text(value),
                    y=top,
                    height=height,
                )
            )
        bars.append(
            ChartBar(day=day, total=money_text(totals[index]), x=index * CHART_BAR_WIDTH, segments=segments)
        )
    legend = [
        (provider, PROVIDER_COLORS.get(provider, OTHER_COLOR), money_text(sum(series, ZERO)))
        for provider, series in costs.costs.items()
    ]
    return CostChart(
        start=costs.days[0],
        end=costs.days[-1],
        currency=", ".join(costs.currencies) or "-",
        maximum=money_text(maximum),
        width=len(costs.days) * CHART_BAR_WIDTH,
        height=CHART_HEIGHT,
        bar_width=CHART_BAR_WIDTH - 2,
        bars=bars,
        legend=legend,
    )
