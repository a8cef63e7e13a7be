from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.generators import sample_export_write
from billing.generators.aws import CUR2_COLUMNS, CUR2_SCHEMA, generate_aws
from billing.generators.azure import EA_COLUMNS, MCA_COLUMNS, generate_azure
from billing.generators.gcp import GCP_BILLING_EXPORT_SCHEMA, TABLE_NAME, generate_gcp

# 2025-11-28 .. 2025-12-02 crosses a month end, so every provider writes two billing periods and the
# once-a-period rows (purchases, marketplace, refunds, tax) appear on 11-28 and 12-01.
START, END = dt.date(2025, 11, 28), dt.date(2025, 12, 2)
DAYS = [START + dt.timedelta(days=offset) for offset in range(5)]
ROWS = 40
VARIANTS = ["gcp", "aws", "azure-ea", "azure-mca"]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")
US_DATE = re.compile(r"^\d\d/\d\d/\d{4}$")


def _write(variant: str, out: Path, *, seed: int = 0, restated: bool = False, rows: int = ROWS) -> Any:
    provider, _, schema = variant.partition("-")
    return sample_export_write(
        provider=provider,
        start=START,
        end=END,
        rows_per_day=rows,
        out_dir=out,
        seed=seed,
        azure_schema=schema or "ea",
        restated=restated,
    )


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()
    }


def _fraction_digits(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


# --- reading the files back, by hand ------------------------------------------------------------------


def _gcp_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((out / TABLE_NAME).glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            rows.append(json.loads(line, parse_float=Decimal))
    return rows


def _aws_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((out / "data").rglob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def _azure_rows(out: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(out.glob("*/part_*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows.extend(csv.DictReader(handle, strict=True))
    return rows


def _exact(number: float) -> Decimal:
    # The double's shortest repr is the decimal the generator wrote; more than 9 fraction digits would
    # mean float noise got into the file.
    value = Decimal(repr(number))
    assert _fraction_digits(value) <= 9, number
    return value


def _net_by_day(variant: str, out: Path) -> dict[dt.date, Decimal]:
    """The raw export's net cost per day, from the file contents only."""
    totals: dict[dt.date, Decimal] = defaultdict(Decimal)
    if variant == "gcp":
        for row in _gcp_rows(out):
            day = dt.date.fromisoformat(row["usage_start_time"][:10])
            totals[day] += Decimal(row["cost"]) + sum(Decimal(credit["amount"]) for credit in row["credits"])
    elif variant == "aws":
        for row in _aws_rows(out):
            net = row["line_item_net_unblended_cost"]
            cost = net if net is not None else row["line_item_unblended_cost"]
            totals[row["line_item_usage_start_date"].date()] += _exact(cost)
    else:
        column = "CostInBillingCurrency" if variant == "azure-ea" else "costInBillingCurrency"
        date_column = "Date" if variant == "azure-ea" else "date"
        for row in _azure_rows(out):
            totals[dt.datetime.strptime(row[date_column], "%m/%d/%Y").date()] += Decimal(row[column])
    return dict(totals)


# --- determinism, counts, exact totals ----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_seed_writes_byte_identical_files_and_another_seed_does_not(
    variant: str, tmp_path: Path
) -> None:
    _write(variant, tmp_path / "a", seed=7)
    _write(variant, tmp_path / "b", seed=7)
    _write(variant, tmp_path / "c", seed=8)
    first, again, other = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert first == again
    assert first.keys() == other.keys()
    assert first != other


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_day_has_exactly_rows_per_day_rows(variant: str, tmp_path: Path) -> None:
    summary = _write(variant, tmp_path)
    if variant == "gcp":
        per_day = Counter(row["usage_start_time"][:10] for row in _gcp_rows(tmp_path))
    elif variant == "aws":
        per_day = Counter(row["line_item_usage_start_date"].date().isoformat() for row in _aws_rows(tmp_path))
    else:
        per_day = Counter(row["Date" if variant == "azure-ea" else "date"] for row in _azure_rows(tmp_path))
    assert sorted(per_day.values()) == [ROWS] * len(DAYS)
    assert summary.rows == ROWS * len(DAYS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_expected_net_cost_per_day_equals_a_recomputation_from_the_files(
    variant: str, tmp_path: Path
) -> None:
    summary = _write(variant, tmp_path, seed=3)
    assert summary.net_cost_by_day == _net_by_day(variant, tmp_path)
    assert set(summary.net_cost_by_day) == set(DAYS)
    assert summary.total_net_cost == sum(_net_by_day(variant, tmp_path).values())
    assert all(value > 0 for value in summary.net_cost_by_day.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_restatement_changes_some_costs_of_the_same_days(variant: str, tmp_path: Path) -> None:
    original = _write(variant, tmp_path / "original", seed=5)
    restated = _write(variant, tmp_path / "restated", seed=5, restated=True)
    _write(variant, tmp_path / "restated-again", seed=5, restated=True)
    assert _files(tmp_path / "restated") == _files(tmp_path / "restated-again")
    assert set(restated.net_cost_by_day) == set(original.net_cost_by_day) == set(DAYS)
    changed = [day for day in DAYS if restated.net_cost_by_day[day] != original.net_cost_by_day[day]]
    assert len(changed) >= 3
    assert restated.net_cost_by_day == _net_by_day(variant, tmp_path / "restated")


def test_gcp_restatement_appends_corrections_to_the_original_rows(tmp_path: Path) -> None:
    _write("gcp", tmp_path / "original", seed=5)
    _write("gcp", tmp_path / "restated", seed=5, restated=True)
    for day in DAYS:
        name = f"{day:%Y%m%d}.ndjson"
        before = (tmp_path / "original" / TABLE_NAME / name).read_text().splitlines()
        after = (tmp_path / "restated" / TABLE_NAME / name).read_text().splitlines()
        assert after[: len(before)] == before
        appended = [json.loads(line, parse_float=Decimal) for line in after[len(before) :]]
        assert len(appended) == 2  # one negation + re-add pair: 2% of 31 regular rows, at least one
        assert {row["cost_type"] for row in appended} == {"adjustment"}
        assert {row["adjustment_info"]["type"] for row in appended} == {"PRICE_CORRECTION"}
        latest_original = max(json.loads(line)["export_time"] for line in before)
        assert min(row["export_time"] for row in appended) > latest_original


def test_aws_restatement_keeps_line_item_ids_and_changes_some_costs(tmp_path: Path) -> None:
    _write("aws", tmp_path / "original", seed=5)
    _write("aws", tmp_path / "restated", seed=5, restated=True)
    before = {row["identity_line_item_id"]: row for row in _aws_rows(tmp_path / "original")}
    after = {row["identity_line_item_id"]: row for row in _aws_rows(tmp_path / "restated")}
    assert before.keys() == after.keys()
    changed = {
        key
        for key in before
        if before[key]["line_item_unblended_cost"] != after[key]["line_item_unblended_cost"]
    }
    kinds = Counter(before[key]["line_item_line_item_type"] for key in changed)
    assert kinds["Usage"] >= len(DAYS)
    assert set(kinds) <= {"Usage", "Tax"}


def test_azure_restatement_changes_quantities_and_costs_of_the_same_rows(tmp_path: Path) -> None:
    _write("azure-ea", tmp_path / "original", seed=5)
    _write("azure-ea", tmp_path / "restated", seed=5, restated=True)
    before, after = _azure_rows(tmp_path / "original"), _azure_rows(tmp_path / "restated")
    assert len(before) == len(after)
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert {old["ResourceId"] for old, _ in changed} == {new["ResourceId"] for _, new in changed}
    assert {old["ChargeType"] for old, _ in changed} <= {"Usage", "Tax"}
    assert sum(old["Quantity"] != new["Quantity"] for old, new in changed) >= len(DAYS)


# --- GCP: BigQuery schema, nested columns, quirks -----------------------------------------------------


def _check_value(value: Any, field: dict[str, Any], path: str) -> None:
    if field["mode"] == "REPEATED":
        assert isinstance(value, list), path
        for item in value:
            _check_one(item, field, path)
    elif value is not None:
        _check_one(value, field, path)


def _check_one(value: Any, field: dict[str, Any], path: str) -> None:
    kind = field["type"]
    if kind == "RECORD":
        assert isinstance(value, dict), path
        assert list(value) == [child["name"] for child in field["fields"]], path
        for child in field["fields"]:
            _check_value(value[child["name"]], child, f"{path}.{child['name']}")
    elif kind in ("FLOAT", "NUMERIC"):
        assert isinstance(value, Decimal | int) and not isinstance(value, bool), path
        assert _fraction_digits(Decimal(value)) <= 9, path
    elif kind == "TIMESTAMP":
        assert isinstance(value, str) and TIMESTAMP.match(value), path
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), path
    else:
        assert kind == "STRING" and isinstance(value, str), path


def test_gcp_rows_follow_the_committed_bigquery_schema(tmp_path: Path) -> None:
    committed = json.loads(
        (Path(settings.BASE_DIR) / "configs/gcp/schemas/gcp_billing_export.json").read_text()
    )
    assert committed == GCP_BILLING_EXPORT_SCHEMA
    _write("gcp", tmp_path)
    rows = _gcp_rows(tmp_path)
    assert sorted(path.name for path in (tmp_path / TABLE_NAME).iterdir()) == [
        f"{day:%Y%m%d}.ndjson" for day in DAYS
    ]
    for row in rows:
        assert list(row) == [field["name"] for field in GCP_BILLING_EXPORT_SCHEMA]
        for field in GCP_BILLING_EXPORT_SCHEMA:
            _check_value(row[field["name"]], field, field["name"])
    nested = {
        field["name"]: [child["name"] for child in field.get("fields", [])]
        for field in GCP_BILLING_EXPORT_SCHEMA
    }
    assert nested["service"] == ["id", "description"]
    assert nested["credits"] == ["name", "amount", "full_name", "id", "type"]
    assert set(nested["project"]) >= {"id", "number", "name", "labels", "ancestry_numbers"}
    assert nested["location"] == ["location", "country", "region", "zone"]
    assert nested["usage"] == ["amount", "unit", "amount_in_pricing_units", "pricing_unit"]
    assert {"invoice", "cost_type", "adjustment_info", "cost_at_list", "system_labels", "labels"} <= set(
        nested
    )
    assert all(_fraction_digits(row["cost"]) <= 6 for row in rows)


def test_gcp_export_has_credits_tax_corrections_commitments_and_marketplace(tmp_path: Path) -> None:
    _write("gcp", tmp_path)
    rows = _gcp_rows(tmp_path)
    assert {row["cost_type"] for row in rows} == {"regular", "tax", "adjustment", "rounding error"}
    # Credits are negative, except on the negating row of a correction, which negates them too.
    credits = [credit for row in rows if row["usage"]["amount"] >= 0 for credit in row["credits"]]
    assert credits and all(credit["amount"] < 0 for credit in credits)
    negated = [credit for row in rows if row["usage"]["amount"] < 0 for credit in row["credits"]]
    assert all(credit["amount"] > 0 for credit in negated)
    assert {"COMMITTED_USAGE_DISCOUNT", "SUSTAINED_USAGE_DISCOUNT"} <= {credit["type"] for credit in credits}
    assert any(row["sku"]["description"].startswith("Commitment v1:") for row in rows)
    marketplace = [row for row in rows if row["transaction_type"] == "THIRD_PARTY_RESELLER"]
    assert len(marketplace) == 2  # one per invoice month
    assert {row["invoice"]["publisher_type"] for row in marketplace} == {"PARTNER"}
    assert {row["seller_name"] for row in marketplace} == {"MongoDB Inc."}
    taxes = [row for row in rows if row["cost_type"] == "tax"]
    assert len(taxes) == 4 * len(DAYS)  # one per project per day
    assert all(row["project"]["id"] and row["sku"]["description"].startswith("Tax") for row in taxes)
    adjustments = [row for row in rows if row["cost_type"] == "adjustment"]
    assert len(adjustments) == 2 * len(DAYS)
    for negation, readd in zip(adjustments[::2], adjustments[1::2], strict=True):
        assert negation["adjustment_info"] == readd["adjustment_info"]
        assert negation["adjustment_info"]["mode"] == "COMPLETE_NEGATION_WITH_REMONETIZATION"
        original = next(
            row
            for row in rows
            if row["cost_type"] == "regular"
            and row["usage_start_time"] == negation["usage_start_time"]
            and row["sku"] == negation["sku"]
            and row["usage"]["amount"] == -negation["usage"]["amount"]
        )
        assert negation["cost"] == -original["cost"]
        assert negation["export_time"] > original["export_time"]
        assert 0 < readd["cost"] < original["cost"]
    # A correction of the month's last day is exported in December, so it is on December's invoice.
    late = [row for row in adjustments if row["usage_start_time"].startswith("2025-11-30")]
    assert {row["invoice"]["month"] for row in late} == {"202512"}


# --- AWS: CUR 2.0 Parquet ---------------------------------------------------------------------------


def test_aws_parquet_has_the_cur2_columns_and_types(tmp_path: Path) -> None:
    _write("aws", tmp_path)
    data = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    assert data == [
        "data/BILLING_PERIOD=2025-11/cur2-00001.snappy.parquet",
        "data/BILLING_PERIOD=2025-12/cur2-00001.snappy.parquet",
        "metadata/BILLING_PERIOD=2025-11/cur2-Manifest.json",
        "metadata/BILLING_PERIOD=2025-12/cur2-Manifest.json",
    ]
    schema = pq.read_schema(tmp_path / data[0])
    assert schema.names == list(CUR2_COLUMNS) and len(CUR2_COLUMNS) == 114
    assert schema.equals(CUR2_SCHEMA)
    expected = {
        "bill_billing_period_start_date": pa.timestamp("ms", tz="UTC"),
        "line_item_usage_start_date": pa.timestamp("ms", tz="UTC"),
        "line_item_line_item_type": pa.string(),
        "line_item_unblended_cost": pa.float64(),
        "line_item_net_unblended_cost": pa.float64(),
        "line_item_unblended_rate": pa.string(),
        "pricing_public_on_demand_cost": pa.float64(),
        "savings_plan_savings_plan_effective_cost": pa.float64(),
        "reservation_effective_cost": pa.float64(),
        "product_servicecode": pa.string(),
        "product_region_code": pa.string(),
        "line_item_usage_account_id": pa.string(),
        "bill_billing_entity": pa.string(),
        "product": pa.map_(pa.string(), pa.string()),
        "resource_tags": pa.map_(pa.string(), pa.string()),
    }
    assert {name: schema.field(name).type for name in expected} == expected
    manifest = json.loads((tmp_path / data[2]).read_text())
    assert manifest["dataFiles"] == [data[0]]
    assert (
        manifest["rowCount"] == pq.read_metadata(tmp_path / data[0]).num_rows == 3 * ROWS
    )  # the tax rows count on 11-28, their first day
    rows = _aws_rows(tmp_path)
    assert "012345678901" in {row["line_item_usage_account_id"] for row in rows}  # leading zero kept
    for row in rows:
        for name in (
            "line_item_unblended_cost",
            "pricing_public_on_demand_cost",
            "line_item_net_unblended_cost",
        ):
            if row[name] is not None:
                _exact(row[name])
        assert row["bill_billing_period_start_date"] <= row["line_item_usage_start_date"]
        assert row["line_item_usage_start_date"] < row["bill_billing_period_end_date"]


def test_aws_export_has_every_line_item_type_and_its_invariants(tmp_path: Path) -> None:
    _write("aws", tmp_path)
    rows = _aws_rows(tmp_path)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_type[row["line_item_line_item_type"]].append(row)
    assert set(by_type) == {
        "Usage",
        "Tax",
        "Credit",
        "Refund",
        "DiscountedUsage",
        "SavingsPlanCoveredUsage",
        "SavingsPlanNegation",
        "SavingsPlanRecurringFee",
        "RIFee",
        "Fee",
    }
    assert all(row["line_item_unblended_cost"] < 0 for row in by_type["Credit"] + by_type["Refund"])
    assert {row["bill_bill_type"] for row in by_type["Refund"]} == {"Refund"}
    (marketplace,) = [row for row in rows if row["bill_billing_entity"] == "AWS Marketplace"][:1]
    assert marketplace["line_item_line_item_type"] == "Fee" and marketplace["line_item_unblended_cost"] > 0
    assert len(by_type["Fee"]) == 2
    assert all(
        row["line_item_resource_id"] == "" and row["line_item_usage_type"] == "" for row in by_type["Tax"]
    )
    for covered, negation in zip(
        by_type["SavingsPlanCoveredUsage"], by_type["SavingsPlanNegation"], strict=True
    ):
        assert covered["line_item_unblended_cost"] == -negation["line_item_unblended_cost"] > 0
        assert 0 < covered["savings_plan_savings_plan_effective_cost"] < covered["line_item_unblended_cost"]
    for fee in by_type["SavingsPlanRecurringFee"]:
        assert fee["savings_plan_used_commitment"] <= fee["savings_plan_total_commitment_to_date"]
    assert all(
        row["line_item_unblended_cost"] == 0 and row["reservation_effective_cost"] > 0
        for row in by_type["DiscountedUsage"]
    )
    assert {
        row["reservation_reservation_a_r_n"] for row in by_type["RIFee"] + by_type["DiscountedUsage"]
    } == {by_type["RIFee"][0]["reservation_reservation_a_r_n"]}
    discounted = [row for row in by_type["Usage"] if row["line_item_net_unblended_cost"] is not None]
    assert {row["line_item_usage_account_id"] for row in discounted} == {"444455556666"}
    assert all(row["line_item_net_unblended_cost"] < row["line_item_unblended_cost"] for row in discounted)
    assert any(dict(row["resource_tags"]).get("user_team") for row in by_type["Usage"])
    assert len({row["product_region_code"] for row in by_type["Usage"]}) == 3
    assert len({row["line_item_product_code"] for row in by_type["Usage"]}) >= 4


# --- Azure: cost details CSV --------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "columns"), [("azure-ea", EA_COLUMNS), ("azure-mca", MCA_COLUMNS)])
def test_azure_csv_has_the_schema_columns_in_order(
    variant: str, columns: tuple[str, ...], tmp_path: Path
) -> None:
    _write(variant, tmp_path)
    files = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.csv"))
    assert files == ["20251101-20251130/part_0_0001.csv", "20251201-20251231/part_0_0001.csv"]
    raw = (tmp_path / files[0]).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" not in raw
    with (tmp_path / files[0]).open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == columns and len(columns) == (57 if variant == "azure-ea" else 65)
    ea = variant == "azure-ea"
    for row in _azure_rows(tmp_path):
        for name in (
            ("Date", "BillingPeriodStartDate", "BillingPeriodEndDate")
            if ea
            else ("date", "billingPeriodEndDate")
        ):
            assert US_DATE.match(row[name]), name
        numbers = ("Quantity", "EffectivePrice", "CostInBillingCurrency", "UnitPrice", "PayGPrice")
        if not ea:
            numbers = (
                "quantity",
                "effectivePrice",
                "costInBillingCurrency",
                "costInUsd",
                "exchangeRatePricingToBilling",
            )
        for name in numbers:
            assert _fraction_digits(Decimal(row[name])) <= 9, name
        assert row["IsAzureCreditEligible" if ea else "isAzureCreditEligible"] in ("True", "False")
    end_dates = {
        row["BillingPeriodEndDate" if ea else "billingPeriodEndDate"] for row in _azure_rows(tmp_path)
    }
    assert end_dates == {"11/30/2025", "12/31/2025"}  # inclusive, like Azure


def test_azure_ea_imitates_the_real_export_quirks(tmp_path: Path) -> None:
    _write("azure-ea", tmp_path, rows=200)
    rows = _azure_rows(tmp_path)
    tagged = [row["Tags"] for row in rows if row["Tags"]]
    assert tagged and not any(tags.startswith("{") for tags in tagged)
    parsed = [json.loads("{" + tags + "}") for tags in tagged]
    assert {"env", "team"} <= set().union(*parsed)
    assert any(value == "" for tags in parsed for value in tags.values())
    assert any(row["Tags"] == "" for row in rows)
    assert any("E-0" in row["CostInBillingCurrency"] for row in rows)  # 5.649E-05 style
    assert {row["ConsumedService"] for row in rows} >= {"Microsoft.Compute", "microsoft.compute"}
    assert {row["PublisherType"] for row in rows} == {"Azure", "Marketplace"}
    charges = Counter((row["ChargeType"], row["PricingModel"]) for row in rows)
    assert charges[("Purchase", "Reservation")] == charges[("Purchase", "SavingsPlan")] == 2
    assert charges[("Usage", "Reservation")] == charges[("Usage", "SavingsPlan")] == len(DAYS)
    assert charges[("Usage", "Spot")] > 0
    for row in rows:
        if row["ChargeType"] == "Usage" and row["PricingModel"] in ("Reservation", "SavingsPlan"):
            assert Decimal(row["CostInBillingCurrency"]) == 0 and row["benefitId"]
        if row["ChargeType"] in ("Refund", "Adjustment"):
            assert Decimal(row["CostInBillingCurrency"]) < 0
    purchase = next(
        row for row in rows if row["ChargeType"] == "Purchase" and row["PricingModel"] == "Reservation"
    )
    assert purchase["ResourceId"].endswith("/reservations/") and purchase["PayGPrice"] == "0"
    marketplace = [row for row in rows if row["PublisherType"] == "Marketplace"]
    assert len(marketplace) == 2 and all(Decimal(row["CostInBillingCurrency"]) > 0 for row in marketplace)
    assert {row["ChargeType"] for row in rows} == {"Usage", "Purchase", "Refund", "Adjustment", "Tax"}
    assert len({row["SubscriptionId"] for row in rows}) == 4  # three subscriptions; tax has none
    assert {row["SubscriptionId"] for row in rows if row["ChargeType"] == "Tax"} == {""}
    assert len({row["ResourceLocationNormalized"] for row in rows if row["ChargeType"] == "Usage"}) == 3


def test_azure_mca_bills_in_eur_from_usd_prices(tmp_path: Path) -> None:
    _write("azure-mca", tmp_path)
    rows = _azure_rows(tmp_path)
    assert {(row["billingCurrency"], row["pricingCurrency"]) for row in rows} == {("EUR", "USD")}
    for row in rows:
        rate = Decimal(row["exchangeRatePricingToBilling"])
        billing, pricing = Decimal(row["costInBillingCurrency"]), Decimal(row["costInPricingCurrency"])
        assert billing == (pricing * rate).quantize(Decimal("1e-9"))
        assert pricing == Decimal(row["costInUsd"])
    tags = [row["tags"] for row in rows if row["tags"]]
    assert tags and all(json.loads(value) for value in tags)  # MCA keeps the braces
    assert {row["publisherType"] for row in rows} == {"Microsoft", "Marketplace"}


# --- inputs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("generate", [generate_gcp, generate_aws, generate_azure])
@pytest.mark.parametrize(
    ("start", "end", "rows", "message"),
    [
        (END, START, 10, "end 2025-11-28 is before start 2025-12-02"),
        (START, END, 0, "between 1 and 1,000,000, got 0"),
        (START, END, 1_000_001, "got 1000001"),
    ],
)
def test_generators_reject_bad_ranges_and_row_counts(
    generate: Any, start: dt.date, end: dt.date, rows: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate(start, end, rows)


def test_azure_rejects_an_unknown_schema() -> None:
    with pytest.raises(ValueError, match="schema must be one of ea, mca, got 'csp'"):
        generate_azure(START, END, 10, schema="csp")


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_row_per_day_is_one_usage_row(variant: str, tmp_path: Path) -> None:
    summary = _write(variant, tmp_path, rows=1)
    assert summary.rows == len(DAYS)
    assert summary.net_cost_by_day == _net_by_day(variant, tmp_path)


def test_totals_are_only_available_after_a_full_pass() -> None:
    export = generate_gcp(START, START, 10)
    with pytest.raises(RuntimeError, match="iterate the export"):
        _ = export.net_cost_by_day
    rows = list(export)
    assert len(rows) == export.row_count == 10
    assert export.net_cost_by_day[START] == sum(
        row["cost"] + sum((credit["amount"] for credit in row["credits"]), Decimal(0)) for row in rows
    )


# --- the management command ---------------------------------------------------------------------------


def _command(*args: str) -> None:
    call_command("generate_sample_exports", *args)


@pytest.mark.parametrize(
    ("provider", "extra", "summary"),
    [
        ("gcp", [], "gcp: wrote 5 file(s), 200 rows, net cost "),
        ("aws", ["--restated"], "aws: wrote 4 file(s), 200 restated rows, net cost "),
        ("azure", ["--azure-schema", "mca", "--seed", "4"], "azure: wrote 2 file(s), 200 rows, net cost "),
    ],
)
def test_command_writes_the_export_and_prints_a_summary(
    provider: str, extra: list[str], summary: str, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "exports" / provider
    _command(
        "--provider",
        provider,
        "--start",
        "2025-11-28",
        "--end",
        "2025-12-02",
        "--rows-per-day",
        "40",
        "--out",
        str(out),
        *extra,
    )
    captured = capsys.readouterr()
    (line,) = captured.out.splitlines()
    assert line.startswith(summary) and line.endswith(f" in {out}")
    total = Decimal(line.split("net cost ")[1].split(" ")[0])
    variant = "azure-mca" if provider == "azure" else provider
    assert total == sum(_net_by_day(variant, out).values())
    assert line.split(" ")[-3] == ("EUR" if provider == "azure" else "USD")


def test_command_shows_progress_on_long_work(tmp_path: Path, capsys: Any) -> None:
    _command(
        "--provider",
        "gcp",
        "--start",
        "2025-11-01",
        "--end",
        "2025-11-03",
        "--rows-per-day",
        "4000",
        "--out",
        str(tmp_path),
    )
    assert "[##############################] 12,000/12,000 rows\n" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "oci"], "unknown provider 'oci' (choose gcp, aws, azure)"),
        (["--end", "2025-11-27"], "--end 2025-11-27 is before --start 2025-11-28"),
        (["--rows-per-day", "0"], "--rows-per-day must be between 1 and 1,000,000, got 0"),
        (["--rows-per-day", "1000001"], "--rows-per-day must be between 1 and 1,000,000, got 1000001"),
        (["--start", "2025-13-01"], "--start must be a date YYYY-MM-DD, got '2025-13-01'"),
        (["--azure-schema", "csp"], "unknown Azure schema 'csp' (choose ea, mca)"),
    ],
)
def test_command_rejects_bad_input_without_writing(args: list[str], message: str, tmp_path: Path) -> None:
    base = {"--provider": "azure", "--start": "2025-11-28", "--end": "2025-12-02", "--rows-per-day": "10"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    out = tmp_path / "out"
    with pytest.raises(CommandError) as info:
        _command(*[part for pair in base.items() for part in pair], "--out", str(out))
    assert str(info.value) == message
    assert not out.exists()


def test_command_rejects_an_unwritable_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CommandError, match=r"^--out .*a-file/exports is not a writable directory: "):
        _command(
            "--provider",
            "gcp",
            "--start",
            "2025-11-28",
            "--end",
            "2025-11-28",
            "--rows-per-day",
            "5",
            "--out",
            str(blocker / "exports"),
        )
    assert blocker.read_text() == "not a directory"


def test_command_requires_a_destination(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="one of the arguments --out --tenant is required"):
        _command("--provider", "gcp", "--start", "2025-11-28", "--end", "2025-11-28", "--rows-per-day", "5")


@pytest.mark.real_fixtures
def test_generated_exports_have_the_shapes_of_the_real_samples(real_fixtures: Path, tmp_path: Path) -> None:
    real_ea = real_fixtures / "azure" / "azure_ea_actual_cost_2023-09_focus-converters.csv"
    with real_ea.open(encoding="utf-8-sig", newline="") as handle:
        real_header = next(csv.reader(handle))
    # The real file is dataset version 2023-12-01-preview; 2024-08-01 added two columns at the end.
    assert list(EA_COLUMNS) == [*real_header, "AccountId", "ResourceLocationNormalized"]
    real_gcp = real_fixtures / "gcp" / "gcp_standard_usage_cost_2020-11_koku.csv"
    with real_gcp.open(encoding="utf-8", newline="") as handle:
        flattened = set(next(csv.reader(handle))) - {"partition_date"}  # koku's own column
    ours = {
        f"{field['name']}.{child['name']}"
        if field["type"] == "RECORD" and field["mode"] != "REPEATED"
        else field["name"]
        for field in GCP_BILLING_EXPORT_SCHEMA
        for child in field.get("fields", [{}])
    }
    assert flattened <= ours
    real_aws = real_fixtures / "aws" / "aws_cur_legacy_csv_daily_2023-11_focus-converters.csv"
    with real_aws.open(encoding="utf-8", newline="") as handle:
        types = {row["lineItem/LineItemType"] for row in csv.DictReader(handle)}
    _write("aws", tmp_path)
    assert types <= {row["line_item_line_item_type"] for row in _aws_rows(tmp_path)}
