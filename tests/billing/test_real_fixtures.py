"""The real provider exports in ../shared/fixtures/real/ (README.md there lists their quirks): every reader
loads them, and per provider and day (or billing period) the FOCUS ``SUM(BilledCost)`` equals the raw net
cost computed here, independently, with Python ``Decimal`` from the CSV text.

NUMERIC has 9 decimals: a cost with more (AWS ``1.81E-8``, Azure's 28-decimal costs) is rounded half away
from zero per row, as BigQuery's and DuckDB's CAST do. Where that rounding moves a total by more than 1e-9
relative (the AWS file: 681 E-notation costs), the test asserts the exact per-row-rounded total and bounds
the difference from the exact total by half a nano per row."""

from __future__ import annotations

import ast
import csv
import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.readers import read_export
from tests.billing.golden import land, normalize

NANO = Decimal("0.000000001")
TOLERANCE = Decimal("1e-9")


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, strict=True))


def _close(observed: Decimal, expected: Decimal, rows: int) -> bool:
    """Within 1e-9 relative, or within NUMERIC's rounding of ``rows`` values (half a nano each) when a
    total is so small that the per-row rounding alone exceeds 1e-9 of it."""
    return abs(observed - expected) <= max(TOLERANCE * abs(expected), NANO / 2 * rows)


def _by_day(rows: list[dict[str, Any]]) -> dict[dt.date, Decimal]:
    totals: dict[dt.date, Decimal] = defaultdict(Decimal)
    for row in rows:
        totals[row["x_ChargeDate"]] += row["BilledCost"]
    return dict(totals)


@pytest.mark.parametrize(
    ("name", "rows", "days"),
    [("gcp_standard_usage_cost_2020-11_koku.csv", 25, 4), ("gcp_detailed_usage_cost_2022-08_koku.csv", 9, 1)],
)
def test_gcp_flattened_csv_reconciles_per_day(
    real_fixtures: Path, warehouse: Any, tmp_path: Path, name: str, rows: int, days: int
) -> None:
    path = real_fixtures / "gcp" / name
    expected: dict[dt.date, Decimal] = defaultdict(Decimal)
    counts: dict[dt.date, int] = defaultdict(int)
    for cells in _csv(path):
        day = dt.date.fromisoformat(cells["usage_start_time"][:10])
        counts[day] += 1
        credits = ast.literal_eval(cells["credits"])
        expected[day] += Decimal(cells["cost"]) + sum(
            (Decimal(repr(c["amount"])) for c in credits), Decimal(0)
        )
    table = read_export("gcp", path)
    assert table.num_rows == rows
    raw = land(warehouse, "gcp", table, tmp_path)

    focus: dict[dt.date, Decimal] = {}
    for day in expected:
        focus.update(_by_day(normalize(warehouse, "gcp", raw, day)))

    assert len(expected) == days
    assert set(focus) == set(expected)
    for day, net in expected.items():
        assert _close(focus[day], net, counts[day]), (day, focus[day], net)


def test_gcp_python_repr_credits_and_labels_are_parsed(real_fixtures: Path) -> None:
    table = read_export("gcp", real_fixtures / "gcp" / "gcp_standard_usage_cost_2020-11_koku.csv")
    credits = [credit for row in table.column("credits").to_pylist() for credit in row]
    labels = [label for row in table.column("labels").to_pylist() for label in row]

    assert len(credits) == 8
    assert {credit["type"] for credit in credits} == {"PROMOTION"}
    assert all(credit["full_name"] is None for credit in credits)
    assert {"key": "goog-resource-type", "value": "bigquery_dataset"} in labels
    assert set(table.column("invoice").to_pylist()[0].items()) >= {("month", "202011")}


def test_aws_legacy_cur_reconciles_for_the_billing_period(
    real_fixtures: Path, warehouse: Any, tmp_path: Path
) -> None:
    path = real_fixtures / "aws" / "aws_cur_legacy_csv_daily_2023-11_focus-converters.csv"
    cells = _csv(path)
    exact = sum((Decimal(row["lineItem/UnblendedCost"]) for row in cells), Decimal(0))
    sub_nano = sum(1 for row in cells if Decimal(row["lineItem/UnblendedCost"]) != _rounded(row))
    table = read_export("aws", path)
    raw = land(warehouse, "aws", table, tmp_path)

    rows = normalize(warehouse, "aws", raw, dt.date(2023, 11, 1))

    billed = sum((row["BilledCost"] for row in rows), Decimal(0))
    assert len(rows) == 1281
    assert exact == Decimal("1.68230869740")
    assert sub_nano == 415  # costs with digits beyond NUMERIC's 9 decimals
    assert _close(billed, exact, sub_nano)
    assert abs(billed - exact) / exact < Decimal("1e-8")
    assert {row["BillingAccountId"] for row in rows} == {"123412340534"}
    assert {row["ChargeCategory"] for row in rows} == {"Usage", "Tax"}
    assert sum(1 for row in rows if row["ChargeCategory"] == "Tax") == 12


def _rounded(row: dict[str, str]) -> Decimal:
    return Decimal(row["lineItem/UnblendedCost"]).quantize(NANO, rounding=ROUND_HALF_UP)


def _azure_net(row: dict[str, str]) -> Decimal:
    cost = Decimal(row.get("CostInBillingCurrency") or row["Cost"])
    # domain.md §2.5: usage covered by a reservation or savings plan is billed on the purchase.
    if row["ChargeType"] == "Usage" and row["PricingModel"] in {"Reservation", "SavingsPlan"}:
        return Decimal(0)
    return cost


@pytest.mark.parametrize(
    ("name", "rows", "days"),
    [
        ("azure_ea_actual_cost_2023-09_focus-converters.csv", 27, 1),
        ("azure_ea_actual_cost_2023-09_finops-toolkit.csv", 11, None),
        ("azure_ea_amortized_cost_2023-09_finops-toolkit.csv", 28, None),
    ],
)
def test_azure_ea_exports_reconcile_per_day(
    real_fixtures: Path, warehouse: Any, tmp_path: Path, name: str, rows: int, days: int | None
) -> None:
    path = real_fixtures / "azure" / name
    expected: dict[dt.date, Decimal] = defaultdict(Decimal)
    counts: dict[dt.date, int] = defaultdict(int)
    for cells in _csv(path):
        month, day, year = (int(part) for part in cells["Date"].split("/"))
        expected[dt.date(year, month, day)] += _azure_net(cells)
        counts[dt.date(year, month, day)] += 1
    table = read_export("azure", path)
    assert table.num_rows == rows
    raw = land(warehouse, "azure", table, tmp_path)

    focus = _by_day(normalize(warehouse, "azure", raw, dt.date(2023, 9, 1)))

    assert set(focus) == set(expected)
    if days is not None:
        assert len(focus) == days
    for day, net in expected.items():
        assert _close(focus[day], net, counts[day]), (day, focus[day], net)


def test_azure_brace_less_tags_become_json_objects(real_fixtures: Path) -> None:
    table = read_export(
        "azure", real_fixtures / "azure" / "azure_ea_amortized_cost_2023-09_finops-toolkit.csv"
    )
    tags = [value for value in table.column("Tags").to_pylist() if value is not None]
    tag_lists = table.column("TagList").to_pylist()

    assert len(tags) == 27
    assert all(value.startswith("{") and value.endswith("}") for value in tags)
    assert any({"key": "aks-managed-createOperationID", "value": ""} in pairs for pairs in tag_lists)


def test_azure_header_only_export_loads_as_no_rows(
    real_fixtures: Path, warehouse: Any, tmp_path: Path
) -> None:
    table = read_export("azure", real_fixtures / "azure" / "azure_ea_cost_header_only_finops-toolkit.csv")
    raw = land(warehouse, "azure", table, tmp_path)

    assert table.num_rows == 0
    assert normalize(warehouse, "azure", raw, dt.date(2023, 9, 1)) == []


def test_azure_us_dates_are_month_first(real_fixtures: Path) -> None:
    unpadded = read_export(
        "azure", real_fixtures / "azure" / "azure_ea_actual_cost_2023-09_focus-converters.csv"
    )
    padded = read_export("azure", real_fixtures / "azure" / "azure_ea_actual_cost_2023-09_finops-toolkit.csv")

    assert set(unpadded.column("Date").to_pylist()) == {dt.date(2023, 9, 2)}
    assert set(unpadded.column("BillingPeriodEndDate").to_pylist()) == {dt.date(2023, 9, 30)}
    assert set(padded.column("BillingPeriodStartDate").to_pylist()) == {dt.date(2023, 9, 1)}
