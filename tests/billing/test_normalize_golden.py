"""Golden tests: a small hand-written export per provider → the exact FOCUS rows. Every expected value
is worked out by hand here from the export text and domain.md §2.5, not computed by the code under test."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.readers import read_export
from tests.billing.golden import RUN_ID, land, normalize

UTC = dt.UTC


def assert_columns(row: dict[str, Any], expected: dict[str, Any]) -> None:
    """The named columns of ``row`` have exactly the expected values (others are not compared)."""
    assert {name: row[name] for name in expected} == expected


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


GCP_EXPORT = (
    # Usage with two credits, resource and system labels, across no period boundary.
    '{"billing_account_id":"01A2B3-C4D5E6-F7G8H9","service":{"id":"6F81-5844-456A","description":"Compute '
    'Engine"},'
    '"sku":{"id":"2E27-4F75-95CD","description":"N1 Predefined Instance Core running in Americas"},'
    '"usage_start_time":"2025-05-31T23:00:00Z","usage_end_time":"2025-06-01T00:00:00Z",'
    '"project":{"id":"acme-prod-123","number":"412345678901","name":"acme prod","labels":[{"key":"env",'
    '"value":"prod"}]},'
    '"labels":[{"key":"team","value":"data"},{"key":"app","value":"etl"}],'
    '"system_labels":[{"key":"compute.googleapis.com/cores","value":"4"}],'
    '"location":{"location":"us-central1-a","country":"US","region":"us-central1","zone":"us-central1-a"},'
    '"transaction_type":"GOOGLE","export_time":"2025-06-01T05:00:00Z","cost":1.5,"currency":"USD",'
    '"currency_conversion_rate":1.0,"usage":{"amount":14400.0,"unit":"seconds","amount_in_pricing_units":4.0,'
    '"pricing_unit":"hour"},"credits":[{"name":"Sustained usage discount","amount":-0.25,'
    '"type":"SUSTAINED_USAGE_DISCOUNT"},'
    '{"name":"Promo","amount":-0.05,"type":"PROMOTION"}],"invoice":{"month":"202505",'
    '"publisher_type":"GOOGLE"},'
    '"cost_type":"regular","price":{"effective_price":0.375,"list_price":0.45,"unit":"hour",'
    '"pricing_unit_quantity":4.0},'
    '"cost_at_list":1.8}\n'
    # Tax: no SKU, no quantity, no prices; no labels.
    '{"billing_account_id":"01A2B3-C4D5E6-F7G8H9","service":{"id":"2062-016F-44A2","description":"Invoice"},'
    '"sku":{"id":"6F2E-1234-ABCD","description":"Tax"},"usage_start_time":"2025-05-31T00:00:00Z",'
    '"usage_end_time":"2025-06-01T00:00:00Z","project":{"id":"acme-prod-123","name":"acme prod"},'
    '"labels":[],"system_labels":[],"cost":0.12,"currency":"USD","credits":[],'
    '"invoice":{"month":"202505"},"cost_type":"tax"}\n'
    # A correction exported later: the negation of an earlier row, on the next invoice month.
    '{"billing_account_id":"01A2B3-C4D5E6-F7G8H9","service":{"id":"95FF-2EF5-5EA1","description":"Cloud '
    'Storage"},'
    '"sku":{"id":"E5F0-6A5D-7BAD","description":"Standard Storage US Multi-region"},'
    '"usage_start_time":"2025-05-31T10:00:00Z","usage_end_time":"2025-05-31T11:00:00Z",'
    '"project":{"id":"acme-data-prod","name":"acme data"},"labels":[],"system_labels":[],'
    '"location":{"location":"US"},"cost":-0.4,"currency":"USD","credits":[{"name":"Free tier","amount":0.1}],'
    '"usage":{"amount":-100.0,"unit":"byte-seconds","amount_in_pricing_units":-2.0,"pricing_unit":"gibibyte '
    'month"},'
    '"invoice":{"month":"202506"},"cost_type":"adjustment","adjustment_info":{"id":"adj-1",'
    '"type":"USAGE_CORRECTION"}}\n'
    # Another day: not part of the run.
    '{"billing_account_id":"01A2B3-C4D5E6-F7G8H9","service":{"id":"6F81-5844-456A","description":"Compute '
    'Engine"},'
    '"sku":{"id":"2E27-4F75-95CD","description":"x"},"usage_start_time":"2025-05-30T23:00:00Z",'
    '"usage_end_time":"2025-05-31T00:00:00Z","cost":9.0,"currency":"USD","cost_type":"regular",'
    '"invoice":{"month":"202505"}}\n'
)


def test_gcp_export_normalizes_to_the_expected_focus_rows(warehouse: Any, tmp_path: Path) -> None:
    path = tmp_path / "20250531.ndjson"
    path.write_text(GCP_EXPORT)
    raw = land(warehouse, "gcp", read_export("gcp", path), tmp_path)

    rows = sorted(normalize(warehouse, "gcp", raw, dt.date(2025, 5, 31)), key=lambda row: row["x_CostType"])

    assert len(rows) == 3  # the 2025-05-30 row is not the run's day
    adjustment, regular, tax = rows
    assert_columns(
        regular,
        {
            # 1.5 - 0.25 - 0.05 = 1.2: BilledCost and EffectiveCost are net of credits.
            "BilledCost": Decimal("1.200000000"),
            "EffectiveCost": Decimal("1.200000000"),
            "ListCost": Decimal("1.800000000"),
            "ContractedCost": Decimal("1.500000000"),
            "ListUnitPrice": Decimal("0.450000000"),
            "ContractedUnitPrice": Decimal("0.375000000"),
            "x_CreditAmount": Decimal("-0.300000000"),
            "x_CostBeforeCredits": Decimal("1.500000000"),
            "BillingAccountId": "01A2B3-C4D5E6-F7G8H9",
            "BillingCurrency": "USD",
            "BillingPeriodStart": _ts("2025-05-01T00:00:00"),
            "BillingPeriodEnd": _ts("2025-06-01T00:00:00"),
            "ChargePeriodStart": _ts("2025-05-31T23:00:00"),
            "ChargePeriodEnd": _ts("2025-06-01T00:00:00"),
            "ChargeCategory": "Usage",
            "ChargeClass": None,
            "ChargeFrequency": "Usage-Based",
            "ChargeDescription": "N1 Predefined Instance Core running in Americas",
            "ConsumedQuantity": Decimal("14400.000000000"),
            "ConsumedUnit": "seconds",
            "PricingQuantity": Decimal("4.000000000"),
            "PricingUnit": "hour",
            "PricingCategory": "Standard",
            "ProviderName": "Google Cloud",
            "PublisherName": "Google Cloud",
            "InvoiceIssuerName": "Google Cloud",
            "ServiceName": "Compute Engine",
            "ServiceCategory": "Compute",
            "SkuId": "2E27-4F75-95CD",
            "RegionId": "us-central1",
            "RegionName": "Iowa",
            "AvailabilityZone": "us-central1-a",
            "SubAccountId": "acme-prod-123",
            "SubAccountName": "acme prod",
            "SubAccountType": "Project",
            "Tags": '{"team":"data","app":"etl","compute.googleapis.com/cores":"4"}',
            "x_TagList": [
                {"key": "team", "value": "data"},
                {"key": "app", "value": "etl"},
                {"key": "compute.googleapis.com/cores", "value": "4"},
            ],
            "x_Provider": "gcp",
            "x_ChargeDate": dt.date(2025, 5, 31),
            "x_RunId": RUN_ID,
            "x_FocusVersion": "1.2",
            "x_ServiceCode": "6F81-5844-456A",
            "x_InvoiceMonth": "202505",
            "x_ExportTime": _ts("2025-06-01T05:00:00"),
        },
    )
    assert_columns(
        tax,
        {
            "BilledCost": Decimal("0.120000000"),
            "ListCost": Decimal("0.120000000"),  # no cost_at_list: the cost itself
            "ChargeCategory": "Tax",
            "ChargeFrequency": "One-Time",
            "PricingQuantity": None,
            "PricingUnit": None,
            "PricingCategory": None,
            "SkuId": None,
            "ListUnitPrice": None,
            "ConsumedQuantity": None,
            "ServiceCategory": "Other",
            "Tags": None,
            "x_TagList": [],
        },
    )
    assert_columns(
        adjustment,
        {
            # -0.4 + 0.1: a correction's credit is positive (it negates a credit).
            "BilledCost": Decimal("-0.300000000"),
            "ChargeCategory": "Adjustment",
            "ChargeClass": "Correction",
            "ChargeFrequency": "One-Time",
            "BillingPeriodStart": _ts("2025-06-01T00:00:00"),
            "BillingPeriodEnd": _ts("2025-07-01T00:00:00"),
            "ConsumedQuantity": None,
            "PricingQuantity": Decimal("-2.000000000"),
            "ServiceCategory": "Storage",
            "RegionId": None,
        },
    )


AWS_LEGACY_CSV = (
    "identity/LineItemId,identity/TimeInterval,bill/InvoicingEntity,bill/BillType,bill/PayerAccountId,"
    "bill/BillingPeriodStartDate,bill/BillingPeriodEndDate,lineItem/UsageAccountId,lineItem/LineItemType,"
    "lineItem/UsageStartDate,lineItem/UsageEndDate,lineItem/ProductCode,lineItem/UsageType,"
    "lineItem/Operation,"
    "lineItem/UsageAmount,lineItem/CurrencyCode,lineItem/UnblendedRate,lineItem/UnblendedCost,"
    "lineItem/LineItemDescription,lineItem/LegalEntity,product/ProductName,product/regionCode,"
    "product/location,"
    "product/sku,pricing/publicOnDemandCost,pricing/publicOnDemandRate,pricing/term,pricing/unit,"
    "reservation/ReservationARN,resourceTags/user:Team\n"
    'id-1,2023-11-05T00:00:00Z/2023-11-06T00:00:00Z,"Amazon Web Services, Inc.",Anniversary,012345678901,'
    "2023-11-01T00:00:00.000Z,2023-12-01T00:00:00.000Z,012345678901,Usage,2023-11-05T10:00:00.000Z,"
    "2023-11-05T12:00:00.000Z,AmazonEC2,USE1-BoxUsage:m5.large,RunInstances,2.0,USD,0.096,1.92E-1,"
    '"$0.096 per On Demand Linux m5.large Instance Hour","Amazon Web Services, Inc.",'
    "Amazon Elastic Compute Cloud,us-east-1,US East (N. Virginia),SKU1,1.92E-1,0.096,OnDemand,Hrs,,data\n"
    'id-2,2023-11-01T00:00:00Z/2023-11-02T00:00:00Z,"Amazon Web Services, Inc.",Anniversary,012345678901,'
    "2023-11-01T00:00:00.000Z,2023-12-01T00:00:00.000Z,012345678901,Tax,2023-11-01T00:00:00.000Z,"
    "2023-12-01T00:00:00.000Z,AmazonEC2,,,1.0,USD,,1.0E-6,Tax for product code AmazonEC2,"
    '"Amazon Web Services, Inc.",Amazon Elastic Compute Cloud,,,,0.0,,,,,\n'
)


def test_aws_legacy_cur_normalizes_to_the_expected_focus_rows(warehouse: Any, tmp_path: Path) -> None:
    path = tmp_path / "cur.csv"
    path.write_text(AWS_LEGACY_CSV)
    raw = land(warehouse, "aws", read_export("aws", path), tmp_path)

    rows = sorted(normalize(warehouse, "aws", raw, dt.date(2023, 11, 20)), key=lambda row: row["x_CostType"])

    assert len(rows) == 2
    tax, usage = rows
    assert_columns(
        usage,
        {
            "BilledCost": Decimal("0.192000000"),  # no net unblended cost: the unblended cost
            "EffectiveCost": Decimal("0.192000000"),
            "ListCost": Decimal("0.192000000"),
            "ContractedCost": Decimal("0.192000000"),
            "ListUnitPrice": Decimal("0.096000000"),
            "BillingAccountId": "012345678901",  # leading zero kept: account ids are strings
            "SubAccountId": "012345678901",
            "BillingPeriodStart": _ts("2023-11-01T00:00:00"),
            "BillingPeriodEnd": _ts("2023-12-01T00:00:00"),
            "ChargePeriodStart": _ts("2023-11-05T10:00:00"),
            "ChargePeriodEnd": _ts("2023-11-05T12:00:00"),
            "ChargeCategory": "Usage",
            "ChargeFrequency": "Usage-Based",
            "PricingQuantity": Decimal("2.000000000"),
            "PricingUnit": "Hrs",
            "PricingCategory": "Standard",
            "ServiceName": "Amazon Elastic Compute Cloud",
            "ServiceCategory": "Compute",
            "RegionId": "us-east-1",
            "RegionName": "US East (N. Virginia)",
            "SkuId": "SKU1",
            "PublisherName": "Amazon Web Services, Inc.",
            "InvoiceIssuerName": "Amazon Web Services, Inc.",
            "CommitmentDiscountId": None,
            "CommitmentDiscountCategory": None,
            "Tags": '{"Team":"data"}',  # resourceTags/user:Team → user_Team → Team
            "x_TagList": [{"key": "Team", "value": "data"}],
            "x_UsageType": "USE1-BoxUsage:m5.large",
            "x_Operation": "RunInstances",
            "x_ChargeDate": dt.date(2023, 11, 5),
        },
    )
    assert_columns(
        tax,
        {
            "BilledCost": Decimal("0.000001000"),
            "ChargeCategory": "Tax",
            "PricingQuantity": None,
            "PricingUnit": None,
            "PricingCategory": None,
            "SkuId": None,
            "ListUnitPrice": None,
            "ConsumedQuantity": None,
            "Tags": None,
            "x_ChargeDate": dt.date(2023, 11, 1),
        },
    )


AZURE_EA_CSV = (
    "\ufeffBillingAccountId,BillingAccountName,BillingPeriodStartDate,BillingPeriodEndDate,SubscriptionId,"
    "SubscriptionName,Date,Product,PartNumber,MeterCategory,MeterSubCategory,MeterName,Quantity,"
    "EffectivePrice,"
    "Cost,UnitPrice,BillingCurrency,ResourceLocation,ConsumedService,ResourceId,ResourceName,Tags,"
    "UnitOfMeasure,"
    "ResourceGroup,ReservationId,ReservationName,ChargeType,Frequency,PublisherType,PayGPrice,PricingModel,"
    "IsAzureCreditEligible,benefitId,benefitName\n"
    "8611537,Trey,09/01/2023,09/30/2023,sub-1,Prod,9/2/2023,VM D2 v3,AAA-1,Virtual Machines,Dv3,D2 v3,"
    "24,0.1,2.4000000000000000000000000000,0.1,USD,EastUS,Microsoft.Compute,/subscriptions/sub-1/vm1,vm1,"
    '"""env"": ""prod"",""team"": ""data""",1 Hour,rg-1,,,Usage,UsageBased,Azure,0.12,OnDemand,True,,\n'
    "8611537,Trey,09/01/2023,09/30/2023,sub-1,Prod,09/02/2023,VM D2 v3,AAA-1,Virtual Machines,Dv3,D2 v3,"
    "10,0.05,5.64902E-05,0.1,USD,westus2,microsoft.compute,/subscriptions/sub-1/vm2,vm2,,1 Hour,rg-1,"
    "ri-1,RI one,Usage,UsageBased,Azure,0.12,Reservation,TRUE,"
    "/providers/Microsoft.Capacity/reservationOrders/o/"
    "reservations/r,RI one\n"
    "8611537,Trey,09/01/2023,09/30/2023,sub-1,Prod,09/01/2023,Reserved VM,AAA-1,Virtual Machines,Dv3,D2 v3,"
    "1,100,100,100,USD,,Microsoft.Capacity,,,,1 Hour,,ri-1,RI one,Purchase,Recurring,Azure,0,Reservation,"
    "True,"
    "/providers/Microsoft.Capacity/reservationOrders/o/reservations/r,RI one\n"
)


def test_azure_ea_cost_variant_normalizes_to_the_expected_focus_rows(warehouse: Any, tmp_path: Path) -> None:
    path = tmp_path / "part_0_0001.csv"
    path.write_text(AZURE_EA_CSV, encoding="utf-8")
    raw = land(warehouse, "azure", read_export("azure", path), tmp_path)

    rows = sorted(
        normalize(warehouse, "azure", raw, dt.date(2023, 9, 15)),
        key=lambda row: (row["x_CostType"], row["RegionId"] or ""),
    )

    assert len(rows) == 3
    purchase, on_demand, covered = rows
    assert_columns(
        on_demand,
        {
            "BilledCost": Decimal("2.400000000"),
            "EffectiveCost": Decimal("2.400000000"),
            "ListCost": Decimal("2.880000000"),  # PayGPrice 0.12 x 24
            "ContractedCost": Decimal("2.400000000"),  # UnitPrice 0.1 x 24
            "BillingPeriodStart": _ts("2023-09-01T00:00:00"),
            "BillingPeriodEnd": _ts("2023-10-01T00:00:00"),  # inclusive 09/30 + 1 day
            "ChargePeriodStart": _ts("2023-09-02T00:00:00"),
            "ChargePeriodEnd": _ts("2023-09-03T00:00:00"),
            "ChargeCategory": "Usage",
            "ChargeFrequency": "Usage-Based",
            "PricingCategory": "Standard",
            "BillingAccountId": "8611537",
            "BillingAccountType": "Enrollment",
            "BillingCurrency": "USD",
            "ServiceName": "Virtual Machines",
            "ServiceCategory": "Compute",
            "RegionId": "eastus",
            "RegionName": "East US",
            "SubAccountId": "sub-1",
            "Tags": '{"env": "prod","team": "data"}',  # the brace-less body wrapped, values unaltered
            "x_TagList": [{"key": "env", "value": "prod"}, {"key": "team", "value": "data"}],
            "x_ResourceGroupName": "rg-1",
            "CommitmentDiscountId": None,
        },
    )
    assert_columns(
        covered,
        {
            "BilledCost": Decimal("0E-9"),  # reservation-covered usage is billed on the purchase
            "EffectiveCost": Decimal("0.000056490"),  # 5.64902E-05 rounded to NUMERIC's 9 decimals
            "ChargePeriodStart": _ts("2023-09-02T00:00:00"),  # 09/02/2023 and 9/2/2023 are the same day
            "PricingCategory": "Committed",
            "CommitmentDiscountId": "/providers/Microsoft.Capacity/reservationOrders/o/reservations/r",
            "CommitmentDiscountCategory": "Usage",
            "CommitmentDiscountType": "Reservation",
            "CommitmentDiscountStatus": "Used",
            "RegionId": "westus2",
            "Tags": None,
        },
    )
    assert_columns(
        purchase,
        {
            "BilledCost": Decimal("100.000000000"),
            "EffectiveCost": Decimal("0E-9"),  # a commitment purchase is amortized into usage
            "ChargeCategory": "Purchase",
            "ChargeFrequency": "Recurring",
            "CommitmentDiscountStatus": None,
            "ConsumedQuantity": None,
            "ServiceCategory": "Compute",
        },
    )


@pytest.mark.bigquery
@pytest.mark.parametrize(
    ("provider", "name", "day"),
    [
        ("gcp", "20250531.ndjson", dt.date(2025, 5, 31)),
        ("aws", "cur.csv", dt.date(2023, 11, 20)),
        ("azure", "part_0_0001.csv", dt.date(2023, 9, 15)),
    ],
)
def test_normalization_sql_runs_as_written_on_bigquery_with_the_same_rows(
    bigquery_warehouse: Any, provider: str, name: str, day: dt.date, tmp_path: Path
) -> None:
    """The BigQuery backend runs the normalization SQL as written (no transpile): on the emulator it gives
    the rows the DuckDB backend gives from its transpiled, rewritten form (Tags text included)."""
    from convergence.warehouse.duckdb import DuckDBWarehouse

    text = {"gcp": GCP_EXPORT, "aws": AWS_LEGACY_CSV, "azure": AZURE_EA_CSV}[provider]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    export = read_export(provider, path)
    embedded = DuckDBWarehouse(":memory:")
    try:
        expected = normalize(embedded, provider, land(embedded, provider, export, tmp_path), day)
    finally:
        embedded.close()
    try:
        actual = normalize(
            bigquery_warehouse, provider, land(bigquery_warehouse, provider, export, tmp_path), day
        )
    finally:
        bigquery_warehouse.drop_dataset("golden", delete_contents=True)

    def key(row: dict[str, Any]) -> tuple[str, str]:
        return (str(row["x_CostType"]), str(row["BilledCost"]))

    assert len(expected) >= 2
    assert sorted(actual, key=key) == sorted(expected, key=key)
