"""Provider readers: explicit parsing (no type sniffing), exact decimals, and errors that name the file,
row and column without a server path."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal
from pathlib import Path

import pytest

from billing.readers import ReaderError, raw_fields, read_export
from billing.readers.aws import legacy_column_name
from billing.readers.azure import canonical_column, parse_tags


@pytest.mark.parametrize(
    ("legacy", "cur2"),
    [
        ("lineItem/UnblendedCost", "line_item_unblended_cost"),
        ("bill/PayerAccountId", "bill_payer_account_id"),
        ("reservation/ReservationARN", "reservation_reservation_a_r_n"),
        ("savingsPlan/SavingsPlanARN", "savings_plan_savings_plan_a_r_n"),
        ("pricing/publicOnDemandCost", "pricing_public_on_demand_cost"),
        ("product/regionCode", "product_region_code"),
    ],
)
def test_legacy_cur_names_map_to_cur2(legacy: str, cur2: str) -> None:
    assert legacy_column_name(legacy) == cur2
    assert cur2 in {field.name for field in raw_fields("aws")}


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("Cost", "CostInBillingCurrency"),
        ("costInBillingCurrency", "CostInBillingCurrency"),
        ("Product", "ProductName"),
        ("BillingCurrency", "BillingCurrencyCode"),
        ("billingCurrency", "BillingCurrencyCode"),
        ("InvoiceSection", "InvoiceSectionName"),
        ("benefitId", "BenefitId"),
        ("resourceGroupName", "ResourceGroup"),
    ],
)
def test_azure_variant_columns_map_to_one_name(source: str, canonical: str) -> None:
    assert canonical_column(source) == canonical


def test_tags_body_without_braces_is_wrapped_and_values_kept() -> None:
    assert parse_tags('"env": "prod","empty": ""') == (
        '{"env": "prod","empty": ""}',
        [{"key": "env", "value": "prod"}, {"key": "empty", "value": ""}],
    )
    assert parse_tags("") == (None, [])
    assert parse_tags("not json") == ("not json", [])


def _azure(tmp_path: Path, date_cell: str, cost: str, *, gz: bool = False) -> Path:
    text = (
        "\ufeffDate,BillingPeriodStartDate,BillingPeriodEndDate,Cost,ChargeType,BillingAccountId\r\n"
        f"{date_cell},09/01/2023,09/30/2023,{cost},Usage,0012345\r\n"
    )
    if gz:
        path = tmp_path / "part.csv.gz"
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path = tmp_path / "part.csv"
        path.write_bytes(text.encode("utf-8"))
    return path


def test_azure_reader_parses_bom_crlf_us_dates_and_exact_costs(tmp_path: Path) -> None:
    row = read_export("azure", _azure(tmp_path, "9/2/2023", "0.0000000191107392311096200000")).to_pylist()[0]

    assert row["Date"] == dt.date(2023, 9, 2)
    assert row["BillingPeriodEndDate"] == dt.date(2023, 9, 30)
    assert row["CostInBillingCurrency"] == Decimal("0.000000019")
    assert row["BillingAccountId"] == "0012345"  # never an integer


def test_azure_reader_reads_gzip(tmp_path: Path) -> None:
    table = read_export("azure", _azure(tmp_path, "09/02/2023", "5.64902E-05", gz=True))

    assert table.column("CostInBillingCurrency").to_pylist() == [Decimal("0.000056490")]


def test_day_first_date_is_refused_with_row_and_column(tmp_path: Path) -> None:
    with pytest.raises(ReaderError) as error:
        read_export("azure", _azure(tmp_path, "30/09/2023", "1"))

    assert str(error.value) == (
        "part.csv: row 2, column Date: '30/09/2023' is not a date "
        "(%m/%d/%Y or %Y-%m-%d or %Y-%m-%dT%H:%M:%S.%fZ or %Y-%m-%dT%H:%M:%SZ)"
    )
    assert str(tmp_path) not in str(error.value)


def test_bad_number_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match=r"^part.csv: row 2, column Cost: '1,5' is not a number$"):
        read_export("azure", _azure(tmp_path, "09/02/2023", '"1,5"'))


def test_row_with_a_missing_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cur.csv"
    path.write_text("lineItem/UnblendedCost,bill/PayerAccountId\n1.0\n")

    with pytest.raises(ReaderError, match=r"^cur.csv: line 2 has 1 fields, the header has 2$"):
        read_export("aws", path)


def test_file_that_is_not_the_providers_export_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")

    with pytest.raises(ReaderError, match="not a Cost and Usage Report"):
        read_export("aws", path)
    with pytest.raises(ReaderError, match="not an Azure cost details export"):
        read_export("azure", path)
    with pytest.raises(ReaderError, match="not a GCP billing export"):
        read_export("gcp", path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")

    with pytest.raises(ReaderError, match=r"^empty\.csv: the file is empty"):
        read_export("azure", path)


def test_gcp_ndjson_with_a_wrong_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "20250503.ndjson"
    path.write_text('{"cost": "not a number"}\n')

    with pytest.raises(ReaderError, match=r"^20250503\.ndjson: not a GCP billing export NDJSON file"):
        read_export("gcp", path)


def test_gcp_csv_json_lists_and_unknown_columns(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    path.write_text(
        "usage_start_time,cost,credits,labels,partition_date\n"
        '2025-05-03 07:00:00+00:00,1.5,"[{""name"": ""x"", ""amount"": -0.5, ""id"": null}]",'
        "\"[{'key': 'flag', 'value': 'true'}]\",2025-05-03\n"
    )

    row = read_export("gcp", path).to_pylist()[0]

    assert row["usage_start_time"] == dt.datetime(2025, 5, 3, 7, tzinfo=dt.UTC)
    assert row["credits"] == [{"name": "x", "amount": -0.5, "full_name": None, "id": None, "type": None}]
    assert row["labels"] == [{"key": "flag", "value": "true"}]  # the value text is not altered
