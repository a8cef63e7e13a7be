"""Sample AWS Cost and Usage Report 2.0 (Data Exports table ``COST_AND_USAGE_REPORT``), written as Parquet.

Columns are the CUR 2.0 set in ``CUR2_COLUMNS`` (the default export query of
aws-samples/aws-cudos-framework-deployment, without split cost allocation) with CUR 2.0's types: costs
and amounts ``double``, rates ``string``, dates ``timestamp``, and ``product``, ``resource_tags``,
``cost_category`` and ``discount`` maps. Time granularity is daily: ``identity_time_interval`` is one day
and usage windows sit inside it, except the monthly rows (``RIFee``, ``Tax``) which run to the end of the
billing period. Every cost is a decimal with at most 9 fraction digits and 15 significant digits before it
becomes a double, so ``Decimal(repr(value))`` gives the exact generated decimal back.

Net cost (``SampleExport.net_cost_by_day``) is domain.md §2.5's BilledCost:
``line_item_net_unblended_cost`` if not null, else ``line_item_unblended_cost``, summed over every line
item whose ``line_item_usage_start_date`` falls on the day. Only the usage account with a private rate
discount (444455556666) has the net columns; the other accounts leave them null.

What a day holds (``rows_per_day`` rows exactly; specials only when there is room): ``Usage`` rows over
several services, accounts (one with a leading zero) and regions; a ``SavingsPlanCoveredUsage`` row with
its ``SavingsPlanNegation``; the day's ``SavingsPlanRecurringFee``; an RI-covered ``DiscountedUsage`` row;
a ``Credit``. The first generated day of each billing period also holds the ``RIFee``, a marketplace
``Fee`` (``bill_billing_entity = 'AWS Marketplace'``), a ``Refund`` and the period's ``Tax`` rows (one per
account and taxed product code, computed from the period's usage and written after its last day).

A restated export is a later refresh of the same billing periods (the overwrite mode of Data Exports):
the same line items with the same ids, about 3% of each day's ``Usage`` rows with a different usage
amount and cost, and the tax recomputed from them."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from billing.generators.common import (
    CENT,
    NANO,
    ZERO,
    ProgressCallback,
    Record,
    Region,
    Row,
    SampleExport,
    WriteSummary,
    day_rng,
    days_in_range,
    midnight,
    money,
    month_start,
    next_month_start,
    period_anchor_days,
    plan_specials,
    restated_amount,
    restated_indexes,
    stable_uuid,
    tag_sets,
    validate_rows_per_day,
)

PROVIDER = "aws"
EXPORT_NAME = "cur2"
CURRENCY = "USD"
PAYER_ACCOUNT = ("111122223333", "acme-payer")
INVOICING_ENTITY = "Amazon Web Services Canada, Inc."
TAX_TYPE = "Canada Tax"
TAX_RATE = Decimal("0.13")
RESTATED_SHARE = 0.03
BATCH_ROWS = 20_000

_STRING, _DOUBLE = pa.string(), pa.float64()
_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_STRING_MAP = pa.map_(pa.string(), pa.string())
_DOUBLE_MAP = pa.map_(pa.string(), pa.float64())

_TIMESTAMP_COLUMNS = {
    "bill_billing_period_end_date",
    "bill_billing_period_start_date",
    "line_item_usage_end_date",
    "line_item_usage_start_date",
    "reservation_end_time",
    "reservation_start_time",
    "savings_plan_end_time",
    "savings_plan_start_time",
}
_DOUBLE_COLUMNS = {
    "discount_bundled_discount",
    "discount_total_discount",
    "line_item_blended_cost",
    "line_item_net_unblended_cost",
    "line_item_normalization_factor",
    "line_item_normalized_usage_amount",
    "line_item_unblended_cost",
    "line_item_usage_amount",
    "pricing_public_on_demand_cost",
    "reservation_amortized_upfront_cost_for_usage",
    "reservation_amortized_upfront_fee_for_billing_period",
    "reservation_effective_cost",
    "reservation_net_amortized_upfront_cost_for_usage",
    "reservation_net_amortized_upfront_fee_for_billing_period",
    "reservation_net_effective_cost",
    "reservation_net_recurring_fee_for_usage",
    "reservation_net_unused_amortized_upfront_fee_for_billing_period",
    "reservation_net_unused_recurring_fee",
    "reservation_net_upfront_value",
    "reservation_recurring_fee_for_usage",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_normalized_unit_quantity",
    "reservation_unused_quantity",
    "reservation_unused_recurring_fee",
    "reservation_upfront_value",
    "savings_plan_amortized_upfront_commitment_for_billing_period",
    "savings_plan_net_amortized_upfront_commitment_for_billing_period",
    "savings_plan_net_recurring_commitment_for_billing_period",
    "savings_plan_net_savings_plan_effective_cost",
    "savings_plan_recurring_commitment_for_billing_period",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_savings_plan_rate",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
}
_MAP_COLUMNS = {
    "cost_category": _STRING_MAP,
    "discount": _DOUBLE_MAP,
    "product": _STRING_MAP,
    "resource_tags": _STRING_MAP,
}

CUR2_COLUMNS = (
    "bill_bill_type",
    "bill_billing_entity",
    "bill_billing_period_end_date",
    "bill_billing_period_start_date",
    "bill_invoice_id",
    "bill_invoicing_entity",
    "bill_payer_account_id",
    "bill_payer_account_name",
    "cost_category",
    "discount",
    "discount_bundled_discount",
    "discount_total_discount",
    "identity_line_item_id",
    "identity_time_interval",
    "line_item_availability_zone",
    "line_item_blended_cost",
    "line_item_blended_rate",
    "line_item_currency_code",
    "line_item_legal_entity",
    "line_item_line_item_description",
    "line_item_line_item_type",
    "line_item_net_unblended_cost",
    "line_item_net_unblended_rate",
    "line_item_normalization_factor",
    "line_item_normalized_usage_amount",
    "line_item_operation",
    "line_item_product_code",
    "line_item_resource_id",
    "line_item_tax_type",
    "line_item_unblended_cost",
    "line_item_unblended_rate",
    "line_item_usage_account_id",
    "line_item_usage_account_name",
    "line_item_usage_amount",
    "line_item_usage_end_date",
    "line_item_usage_start_date",
    "line_item_usage_type",
    "pricing_currency",
    "pricing_lease_contract_length",
    "pricing_offering_class",
    "pricing_public_on_demand_cost",
    "pricing_public_on_demand_rate",
    "pricing_purchase_option",
    "pricing_rate_code",
    "pricing_rate_id",
    "pricing_term",
    "pricing_unit",
    "product",
    "product_comment",
    "product_fee_code",
    "product_fee_description",
    "product_from_location",
    "product_from_location_type",
    "product_from_region_code",
    "product_instance_family",
    "product_instance_type",
    "product_instancesku",
    "product_location",
    "product_location_type",
    "product_operation",
    "product_pricing_unit",
    "product_product_family",
    "product_region_code",
    "product_servicecode",
    "product_sku",
    "product_to_location",
    "product_to_location_type",
    "product_to_region_code",
    "product_usagetype",
    "reservation_amortized_upfront_cost_for_usage",
    "reservation_amortized_upfront_fee_for_billing_period",
    "reservation_availability_zone",
    "reservation_effective_cost",
    "reservation_end_time",
    "reservation_modification_status",
    "reservation_net_amortized_upfront_cost_for_usage",
    "reservation_net_amortized_upfront_fee_for_billing_period",
    "reservation_net_effective_cost",
    "reservation_net_recurring_fee_for_usage",
    "reservation_net_unused_amortized_upfront_fee_for_billing_period",
    "reservation_net_unused_recurring_fee",
    "reservation_net_upfront_value",
    "reservation_normalized_units_per_reservation",
    "reservation_number_of_reservations",
    "reservation_recurring_fee_for_usage",
    "reservation_reservation_a_r_n",
    "reservation_start_time",
    "reservation_subscription_id",
    "reservation_total_reserved_normalized_units",
    "reservation_total_reserved_units",
    "reservation_units_per_reservation",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_normalized_unit_quantity",
    "reservation_unused_quantity",
    "reservation_unused_recurring_fee",
    "reservation_upfront_value",
    "resource_tags",
    "savings_plan_amortized_upfront_commitment_for_billing_period",
    "savings_plan_end_time",
    "savings_plan_instance_type_family",
    "savings_plan_net_amortized_upfront_commitment_for_billing_period",
    "savings_plan_net_recurring_commitment_for_billing_period",
    "savings_plan_net_savings_plan_effective_cost",
    "savings_plan_offering_type",
    "savings_plan_payment_option",
    "savings_plan_purchase_term",
    "savings_plan_recurring_commitment_for_billing_period",
    "savings_plan_region",
    "savings_plan_savings_plan_a_r_n",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_savings_plan_rate",
    "savings_plan_start_time",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
)


@functools.lru_cache(maxsize=256)
def _sku(key: str) -> str:
    return base64.b32encode(hashlib.sha256(key.encode()).digest()).decode()[:16]


def _column_type(name: str) -> pa.DataType:
    if name in _MAP_COLUMNS:
        return _MAP_COLUMNS[name]
    if name in _TIMESTAMP_COLUMNS:
        return _TIMESTAMP
    if name in _DOUBLE_COLUMNS:
        return _DOUBLE
    return _STRING


CUR2_SCHEMA = pa.schema([pa.field(name, _column_type(name)) for name in CUR2_COLUMNS])


@dataclass(frozen=True)
class Account:
    """A linked (usage) account; ``discount`` is its private rate discount on ``Usage`` rows, if any."""

    id: str
    name: str
    environment: str
    business_unit: str
    discount: Decimal | None


ACCOUNTS = (
    Account("444455556666", "acme-prod", "prod", "retail", Decimal("0.06")),
    Account("777788889999", "acme-data", "prod", "analytics", None),
    Account("012345678901", "acme-dev", "dev", "engineering", None),
)
PROD, DATA, DEV = ACCOUNTS


@dataclass(frozen=True)
class AwsRegion:
    """A region: the usage-type prefix AWS puts on it and its price factor against us-east-1."""

    region: Region
    prefix: str
    price_factor: Decimal


REGIONS = (
    AwsRegion(
        Region("us-east-1", "US East (N. Virginia)", "US", ("us-east-1a", "us-east-1b")), "", Decimal(1)
    ),
    AwsRegion(Region("eu-west-1", "EU (Ireland)", "IE", ("eu-west-1a", "eu-west-1b")), "EU-", Decimal("1.1")),
    AwsRegion(
        Region("ap-southeast-2", "Asia Pacific (Sydney)", "AU", ("ap-southeast-2a", "ap-southeast-2b")),
        "APS2-",
        Decimal("1.25"),
    ),
)
US_EAST_1 = REGIONS[0]


@dataclass(frozen=True)
class Product:
    """A priced usage type. ``amount_*`` bound one row's usage; ``hourly`` rows span that many hours."""

    product_code: str
    servicecode: str
    product_name: str
    usage_type: str
    operation: str
    family: str
    pricing_unit: str
    rate: Decimal
    amount_low: int
    amount_high: int
    amount_scale: int
    resource_kind: str
    description: str
    hourly: bool = False
    instance_type: str | None = None
    normalization_factor: Decimal | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    weight: int = 1

    def sku(self, region: AwsRegion) -> str:
        """A 16-character product SKU, distinct per usage type and region as AWS's are."""
        return _sku(f"{self.servicecode}:{self.usage_type}:{region.region.code}")


PRODUCTS = (
    Product(
        "AmazonEC2",
        "AmazonEC2",
        "Amazon Elastic Compute Cloud",
        "BoxUsage:m5.large",
        "RunInstances",
        "Compute Instance",
        "Hrs",
        Decimal("0.096"),
        1,
        24,
        1,
        "instance",
        "${rate} per On Demand Linux m5.large Instance Hour",
        hourly=True,
        instance_type="m5.large",
        normalization_factor=Decimal(4),
        attributes=(("vcpu", "2"), ("memory", "8 GiB"), ("operating_system", "Linux"), ("tenancy", "Shared")),
        weight=5,
    ),
    Product(
        "AmazonEC2",
        "AmazonEC2",
        "Amazon Elastic Compute Cloud",
        "BoxUsage:t3.medium",
        "RunInstances",
        "Compute Instance",
        "Hrs",
        Decimal("0.0416"),
        1,
        24,
        1,
        "instance",
        "${rate} per On Demand Linux t3.medium Instance Hour",
        hourly=True,
        instance_type="t3.medium",
        normalization_factor=Decimal(2),
        attributes=(("vcpu", "2"), ("memory", "4 GiB"), ("operating_system", "Linux"), ("tenancy", "Shared")),
        weight=3,
    ),
    Product(
        "AmazonEC2",
        "AmazonEC2",
        "Amazon Elastic Compute Cloud",
        "EBS:VolumeUsage.gp3",
        "CreateVolume-Gp3",
        "Storage",
        "GB-Mo",
        Decimal("0.08"),
        1_000,
        2_000_000,
        1_000_000,
        "volume",
        "${rate} per GB-month of General Purpose (gp3) provisioned storage",
        attributes=(("volume_api_name", "gp3"), ("storage_media", "SSD-backed")),
        weight=2,
    ),
    Product(
        "AmazonEC2",
        "AWSDataTransfer",
        "AWS Data Transfer",
        "DataTransfer-Out-Bytes",
        "RunInstances",
        "Data Transfer",
        "GB",
        Decimal("0.09"),
        1,
        50_000_000,
        1_000_000,
        "instance",
        "${rate} per GB - first 10 TB / month data transfer out beyond the global free tier",
        attributes=(("transfer_type", "AWS Outbound"),),
        weight=2,
    ),
    Product(
        "AmazonS3",
        "AmazonS3",
        "Amazon Simple Storage Service",
        "TimedStorage-ByteHrs",
        "StandardStorage",
        "Storage",
        "GB-Mo",
        Decimal("0.023"),
        1_000,
        900_000_000,
        1_000_000,
        "bucket",
        "${rate} per GB - first 50 TB / month of storage used",
        attributes=(("storage_class", "General Purpose"), ("volume_type", "Standard")),
        weight=3,
    ),
    Product(
        "AmazonS3",
        "AmazonS3",
        "Amazon Simple Storage Service",
        "Requests-Tier1",
        "PutObject",
        "API Request",
        "Requests",
        Decimal("0.000005"),
        1,
        2_000_000,
        1,
        "bucket",
        "${rate} per 1,000 PUT, COPY, POST, or LIST requests",
        attributes=(("group", "S3-API-Tier1"),),
        weight=2,
    ),
    Product(
        "AmazonRDS",
        "AmazonRDS",
        "Amazon Relational Database Service",
        "InstanceUsage:db.r5.large",
        "CreateDBInstance:0014",
        "Database Instance",
        "Hrs",
        Decimal("0.25"),
        1,
        24,
        1,
        "db",
        "${rate} per RDS db.r5.large Single-AZ instance hour (or partial hour) running PostgreSQL",
        hourly=True,
        instance_type="db.r5.large",
        attributes=(("database_engine", "PostgreSQL"), ("deployment_option", "Single-AZ")),
        weight=2,
    ),
    Product(
        "AWSLambda",
        "AWSLambda",
        "AWS Lambda",
        "Lambda-GB-Second",
        "Invoke",
        "Serverless",
        "Lambda-GB-Second",
        Decimal("0.0000166667"),
        100,
        5_000_000,
        10,
        "function",
        "AWS Lambda - Total Compute - ${rate} per GB-second",
        attributes=(("group", "AWS-Lambda-Duration"),),
        weight=2,
    ),
    Product(
        "AmazonCloudWatch",
        "AmazonCloudWatch",
        "AmazonCloudWatch",
        "CW:MetricMonitorUsage",
        "MetricStorage",
        "Metric",
        "Metrics",
        Decimal("0.3"),
        1_000,
        400_000,
        10_000,
        "",
        "${rate} per metric-month - first 10,000 metrics",
        weight=1,
    ),
)
PRODUCT_CHOICES = tuple(product for product in PRODUCTS for _ in range(product.weight))
TAXED_PRODUCT_CODES = ("AmazonEC2", "AmazonS3", "AmazonRDS", "AWSLambda", "AmazonCloudWatch")
PRODUCT_NAMES = {product.product_code: product.product_name for product in PRODUCTS}
EC2_LARGE = PRODUCTS[0]
EC2_XLARGE = Product(
    "AmazonEC2",
    "AmazonEC2",
    "Amazon Elastic Compute Cloud",
    "BoxUsage:m5.xlarge",
    "RunInstances",
    "Compute Instance",
    "Hrs",
    Decimal("0.192"),
    20,
    24,
    1,
    "instance",
    "${rate} per On Demand Linux m5.xlarge Instance Hour",
    hourly=True,
    instance_type="m5.xlarge",
    normalization_factor=Decimal(8),
    attributes=(("vcpu", "4"), ("memory", "16 GiB"), ("operating_system", "Linux"), ("tenancy", "Shared")),
)

RI_ARN = f"arn:aws:ec2:us-east-1:{PAYER_ACCOUNT[0]}:reserved-instances/{stable_uuid('aws-ri-m5-large')}"
RI_HOURLY_FEE = Decimal("0.06")
SP_ARN = f"arn:aws:savingsplans::{PAYER_ACCOUNT[0]}:savingsplan/{stable_uuid('aws-compute-sp')}"
SP_RATE = Decimal("0.134")
SP_HOURLY_COMMITMENT = Decimal("0.15")
COMMITMENT_START = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
COMMITMENT_END = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
MARKETPLACE = {
    "product_code": "8c2v4ni9kqmgv2qz4v8a1qavz",
    "product_name": "Datadog Pro (Pay-As-You-Go)",
    "seller": "Datadog, Inc.",
}


def _line_item_id(rng: random.Random) -> str:
    return base64.b32encode(rng.getrandbits(260).to_bytes(33, "little")).decode()[:52].lower()


@functools.lru_cache(maxsize=1024)
def _interval(day: date) -> str:
    return f"{day:%Y-%m-%d}T00:00:00Z/{day + timedelta(days=1):%Y-%m-%d}T00:00:00Z"


def _rate_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f") if rate else "0.0"


@functools.lru_cache(maxsize=4096)
def _resource_id(product: Product, account: Account, region: AwsRegion, index: int) -> str | None:
    seed = f"{account.id}:{region.region.code}:{product.resource_kind}:{index}"
    token = stable_uuid(seed).replace("-", "")
    code = region.region.code
    match product.resource_kind:
        case "instance":
            return f"i-0{token[:16]}"
        case "volume":
            return f"vol-0{token[:16]}"
        case "bucket":
            return f"acme-{account.name}-{('logs', 'lake', 'assets')[index % 3]}-{code}"
        case "db":
            return f"arn:aws:rds:{code}:{account.id}:db:{('orders', 'analytics')[index % 2]}-db"
        case "function":
            return f"arn:aws:lambda:{code}:{account.id}:function:{('ingest', 'resize', 'notify')[index % 3]}"
    return None


TAG_SETS = {account.id: tag_sets(account.environment) for account in ACCOUNTS}


def _resource_tags(combo: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {f"user_{key.replace('-', '_')}": value for key, value in combo}


RESOURCE_TAGS = {combo: _resource_tags(combo) for combos in TAG_SETS.values() for combo in combos}


@dataclass
class UsageDraw:
    """The draws behind one ``Usage`` row, so a restatement can reprice exactly that line item."""

    line_item_id: str
    product: Product
    account: Account
    region: AwsRegion
    zone: str | None
    resource_id: str | None
    tags: tuple[tuple[str, str], ...]
    hours_start: int
    amount: Decimal


class _PeriodBuilder:
    """Builds rows for one billing period, remembering what the period's tax is computed from."""

    def __init__(self, period_start: date) -> None:
        self.period_start = period_start
        self.period_end = next_month_start(period_start)
        self.taxable: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        self.template: Row = dict.fromkeys(CUR2_COLUMNS)
        self.template.update(
            bill_billing_entity="AWS",
            bill_bill_type="Anniversary",
            bill_billing_period_start_date=midnight(period_start),
            bill_billing_period_end_date=midnight(self.period_end),
            bill_invoicing_entity=INVOICING_ENTITY,
            bill_payer_account_id=PAYER_ACCOUNT[0],
            bill_payer_account_name=PAYER_ACCOUNT[1],
            line_item_currency_code=CURRENCY,
            line_item_legal_entity=INVOICING_ENTITY,
            discount={},
            resource_tags={},
            cost_category={},
            product={},
        )

    def base(self, rng: random.Random, day: date, account: Account, line_item_type: str) -> Row:
        row = self.template.copy()
        row.update(
            identity_line_item_id=_line_item_id(rng),
            identity_time_interval=_interval(day),
            line_item_line_item_type=line_item_type,
            line_item_usage_account_id=account.id,
            line_item_usage_account_name=account.name,
            cost_category={"business_unit": account.business_unit},
        )
        return row

    def finish(self, row: Row, account: Account, unblended: Decimal, taxable: str | None = None) -> Decimal:
        """Fill the cost columns from ``unblended`` and return the row's net cost (BilledCost)."""
        row["line_item_unblended_cost"] = unblended
        row["line_item_blended_cost"] = unblended
        row["line_item_blended_rate"] = row["line_item_unblended_rate"]
        net = unblended
        if account.discount is not None:
            row["line_item_net_unblended_cost"] = unblended
            row["line_item_net_unblended_rate"] = row["line_item_unblended_rate"]
            if row["line_item_line_item_type"] == "Usage" and unblended:
                discount = -money(unblended * account.discount, NANO)
                net = unblended + discount
                row["line_item_net_unblended_cost"] = net
                rate = Decimal(row["line_item_unblended_rate"]) * (1 - account.discount)
                row["line_item_net_unblended_rate"] = _rate_text(money(rate, NANO))
                row["discount"] = {"private_rate_discount": discount}
                row["discount_total_discount"] = discount
        if taxable:
            self.taxable[(account.id, taxable)] += net
        return net

    def _product_columns(self, row: Row, product: Product, region: AwsRegion) -> None:
        code = region.region.code
        sku = product.sku(region)
        row.update(
            line_item_product_code=product.product_code,
            line_item_usage_type=region.prefix + product.usage_type,
            line_item_operation=product.operation,
            pricing_unit=product.pricing_unit,
            pricing_currency=CURRENCY,
            product_servicecode=product.servicecode,
            product_sku=sku,
            product_product_family=product.family,
            product_region_code=code,
            product_location=region.region.name,
            product_location_type="AWS Region",
            product_usagetype=region.prefix + product.usage_type,
            product_operation=product.operation,
            product_pricing_unit=product.pricing_unit,
            product_instance_type=product.instance_type,
            product_instance_family="General purpose" if product.instance_type else None,
            product={"product_name": product.product_name, "region": code, **dict(product.attributes)},
            pricing_rate_code=f"{sku}.JRTCKXETXF.6YS6EN2CT7",
            pricing_rate_id=str(int(sku.encode().hex()[:12], 16) % 10**9),
        )
        if product.servicecode == "AWSDataTransfer":
            row.update(
                product_from_location=region.region.name,
                product_from_location_type="AWS Region",
                product_from_region_code=code,
                product_to_location="External",
                product_to_location_type="Other",
            )

    def _window(self, row: Row, day: date, hours_start: int, hours: int) -> None:
        start = midnight(day) + timedelta(hours=hours_start)
        row["line_item_usage_start_date"] = start
        row["line_item_usage_end_date"] = start + timedelta(hours=hours)

    def draw_usage(self, rng: random.Random, day: date) -> UsageDraw:
        line_item_id = _line_item_id(rng)
        product = rng.choice(PRODUCT_CHOICES)
        account = rng.choice(ACCOUNTS)
        region = rng.choice(REGIONS)
        zone = rng.choice(region.region.zones) if product.resource_kind in ("instance", "volume") else None
        resource_id = _resource_id(product, account, region, rng.randrange(6))
        tags = rng.choice(TAG_SETS[account.id]) if resource_id else ()
        amount = Decimal(rng.randint(product.amount_low, product.amount_high)) / product.amount_scale
        hours_start = rng.randint(0, 24 - int(amount)) if product.hourly else 0
        return UsageDraw(line_item_id, product, account, region, zone, resource_id, tags, hours_start, amount)

    def usage(self, draw: UsageDraw, day: date) -> tuple[Decimal, Row]:
        product, region, account = draw.product, draw.region, draw.account
        row = self.template.copy()
        rate = money(product.rate * region.price_factor, NANO)
        row.update(
            identity_line_item_id=draw.line_item_id,
            identity_time_interval=_interval(day),
            line_item_line_item_type="Usage",
            line_item_usage_account_id=account.id,
            line_item_usage_account_name=account.name,
            cost_category={"business_unit": account.business_unit},
            line_item_availability_zone=draw.zone,
            line_item_resource_id=draw.resource_id,
            line_item_usage_amount=draw.amount,
            line_item_unblended_rate=_rate_text(rate),
            line_item_line_item_description=product.description.replace("{rate}", _rate_text(rate)),
            pricing_term="OnDemand",
            pricing_public_on_demand_rate=_rate_text(rate),
            pricing_public_on_demand_cost=money(draw.amount * rate, NANO),
            resource_tags=RESOURCE_TAGS[draw.tags],
        )
        if product.normalization_factor is not None:
            row["line_item_normalization_factor"] = product.normalization_factor
            row["line_item_normalized_usage_amount"] = draw.amount * product.normalization_factor
        self._product_columns(row, product, region)
        self._window(row, day, draw.hours_start, int(draw.amount) if product.hourly else 24)
        net = self.finish(row, account, money(draw.amount * rate, NANO), taxable=product.product_code)
        return net, row

    def savings_plan_pair(self, rng: random.Random, day: date) -> tuple[list[tuple[Decimal, Row]], Decimal]:
        hours = rng.randint(EC2_XLARGE.amount_low, EC2_XLARGE.amount_high)
        on_demand = money(EC2_XLARGE.rate * hours, NANO)
        effective = money(SP_RATE * hours, NANO)
        instance = _resource_id(EC2_XLARGE, DATA, US_EAST_1, 0)
        rows: list[tuple[Decimal, Row]] = []
        for line_item_type, sign in (("SavingsPlanCoveredUsage", 1), ("SavingsPlanNegation", -1)):
            row = self.base(rng, day, DATA, line_item_type)
            self._product_columns(row, EC2_XLARGE, US_EAST_1)
            self._window(row, day, 24 - hours, hours)
            row.update(
                line_item_availability_zone="us-east-1a",
                line_item_resource_id=instance,
                line_item_usage_amount=Decimal(hours),
                line_item_unblended_rate=_rate_text(EC2_XLARGE.rate * sign),
                line_item_normalization_factor=EC2_XLARGE.normalization_factor,
                pricing_term="OnDemand",
                pricing_public_on_demand_rate=_rate_text(EC2_XLARGE.rate),
                pricing_public_on_demand_cost=on_demand if sign > 0 else ZERO,
                savings_plan_savings_plan_a_r_n=SP_ARN,
                savings_plan_savings_plan_rate=SP_RATE,
                savings_plan_offering_type="ComputeSavingsPlans",
                savings_plan_payment_option="No Upfront",
                savings_plan_purchase_term="1yr",
                savings_plan_start_time=COMMITMENT_START,
                savings_plan_end_time=COMMITMENT_END,
            )
            if sign > 0:
                row["line_item_line_item_description"] = (
                    f"USD {SP_RATE} per hour for m5.xlarge in us-east-1 under Compute Savings Plan"
                )
                row["line_item_normalized_usage_amount"] = Decimal(hours) * Decimal(8)
                row["savings_plan_savings_plan_effective_cost"] = effective
                row["resource_tags"] = RESOURCE_TAGS[TAG_SETS[DATA.id][1]]
            else:
                row["line_item_line_item_description"] = (
                    f"SavingsPlanNegation used by AccountId : {DATA.id} "
                    f"and UsageSku : {EC2_XLARGE.sku(US_EAST_1)}"
                )
            rows.append((self.finish(row, DATA, on_demand * sign), row))
        return rows, effective

    def savings_plan_fee(self, rng: random.Random, day: date, used: Decimal) -> tuple[Decimal, Row]:
        row = self.base(rng, day, DATA, "SavingsPlanRecurringFee")
        commitment = SP_HOURLY_COMMITMENT * 24
        self._window(row, day, 0, 24)
        row.update(
            line_item_product_code="ComputeSavingsPlans",
            line_item_usage_type="ComputeSP:1yrNoUpfront",
            line_item_operation="",
            line_item_resource_id=SP_ARN,
            line_item_usage_amount=Decimal(24),
            line_item_unblended_rate=_rate_text(SP_HOURLY_COMMITMENT),
            line_item_line_item_description="1 year No Upfront Compute Savings Plan",
            pricing_unit="Hrs",
            product={"product_name": "Savings Plans for AWS Compute usage"},
            product_servicecode="ComputeSavingsPlans",
            savings_plan_savings_plan_a_r_n=SP_ARN,
            savings_plan_offering_type="ComputeSavingsPlans",
            savings_plan_payment_option="No Upfront",
            savings_plan_purchase_term="1yr",
            savings_plan_start_time=COMMITMENT_START,
            savings_plan_end_time=COMMITMENT_END,
            savings_plan_recurring_commitment_for_billing_period=commitment,
            savings_plan_amortized_upfront_commitment_for_billing_period=ZERO,
            savings_plan_total_commitment_to_date=commitment,
            savings_plan_used_commitment=used,
        )
        return self.finish(row, DATA, commitment), row

    def discounted_usage(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        row = self.base(rng, day, PROD, "DiscountedUsage")
        hours = Decimal(24)
        self._product_columns(row, EC2_LARGE, US_EAST_1)
        self._window(row, day, 0, 24)
        effective = money(RI_HOURLY_FEE * hours, NANO)
        row.update(
            line_item_availability_zone="us-east-1b",
            line_item_resource_id=_resource_id(EC2_LARGE, PROD, US_EAST_1, 1),
            line_item_usage_amount=hours,
            line_item_unblended_rate="0.0",
            line_item_normalization_factor=EC2_LARGE.normalization_factor,
            line_item_normalized_usage_amount=hours * Decimal(4),
            line_item_line_item_description=(
                f"USD {RI_HOURLY_FEE} hourly fee per Linux/UNIX (Amazon VPC), m5.large instance"
            ),
            pricing_term="Reserved",
            pricing_purchase_option="No Upfront",
            pricing_offering_class="standard",
            pricing_lease_contract_length="1yr",
            pricing_public_on_demand_rate=_rate_text(EC2_LARGE.rate),
            pricing_public_on_demand_cost=money(EC2_LARGE.rate * hours, NANO),
            reservation_reservation_a_r_n=RI_ARN,
            reservation_effective_cost=effective,
            reservation_recurring_fee_for_usage=effective,
            reservation_amortized_upfront_cost_for_usage=ZERO,
            reservation_start_time=COMMITMENT_START,
            reservation_end_time=COMMITMENT_END,
            resource_tags=RESOURCE_TAGS[TAG_SETS[PROD.id][1]],
        )
        return self.finish(row, PROD, ZERO), row

    def reservation_fee(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        row = self.base(rng, day, PROD, "RIFee")
        hours = Decimal((self.period_end - self.period_start).days * 24)
        row.update(
            line_item_usage_start_date=midnight(day),
            line_item_usage_end_date=midnight(self.period_end),
            line_item_product_code="AmazonEC2",
            line_item_usage_type="HeavyUsage:m5.large",
            line_item_operation="RunInstances",
            line_item_usage_amount=hours,
            line_item_unblended_rate=_rate_text(RI_HOURLY_FEE),
            line_item_line_item_description=(
                f"USD {RI_HOURLY_FEE} hourly fee per Linux/UNIX (Amazon VPC), m5.large instance"
            ),
            line_item_normalization_factor=EC2_LARGE.normalization_factor,
            pricing_term="Reserved",
            pricing_unit="Hrs",
            pricing_purchase_option="No Upfront",
            pricing_offering_class="standard",
            pricing_lease_contract_length="1yr",
            product={"product_name": EC2_LARGE.product_name, "region": "us-east-1"},
            product_servicecode="AmazonEC2",
            product_region_code="us-east-1",
            reservation_reservation_a_r_n=RI_ARN,
            reservation_number_of_reservations="1",
            reservation_units_per_reservation=str(hours),
            reservation_total_reserved_units=str(hours),
            reservation_normalized_units_per_reservation=str(hours * 4),
            reservation_total_reserved_normalized_units=str(hours * 4),
            reservation_amortized_upfront_fee_for_billing_period=ZERO,
            reservation_unused_quantity=ZERO,
            reservation_unused_normalized_unit_quantity=ZERO,
            reservation_unused_recurring_fee=ZERO,
            reservation_unused_amortized_upfront_fee_for_billing_period=ZERO,
            reservation_upfront_value=ZERO,
            reservation_modification_status="Original",
            reservation_start_time=COMMITMENT_START,
            reservation_end_time=COMMITMENT_END,
        )
        return self.finish(row, PROD, money(RI_HOURLY_FEE * hours, NANO), taxable="AmazonEC2"), row

    def credit(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        row = self.base(rng, day, DEV, "Credit")
        self._window(row, day, 0, 24)
        amount = -money(Decimal(rng.randint(100_000, 5_000_000)) * NANO * 1000, NANO)
        row.update(
            line_item_product_code="AmazonEC2",
            line_item_usage_amount=ZERO,
            line_item_unblended_rate=None,
            line_item_line_item_description="AWS Promotional Credit",
            product={"product_name": EC2_LARGE.product_name},
            product_servicecode="AmazonEC2",
        )
        return self.finish(row, DEV, amount), row

    def refund(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        row = self.base(rng, day, DATA, "Refund")
        self._window(row, day, 0, 24)
        row.update(
            bill_bill_type="Refund",
            line_item_product_code="AmazonS3",
            line_item_usage_amount=ZERO,
            line_item_unblended_rate=None,
            line_item_line_item_description="Refund for Amazon S3 request charges (case 12345678901)",
            product={"product_name": PRODUCT_NAMES["AmazonS3"]},
            product_servicecode="AmazonS3",
        )
        return self.finish(row, DATA, -money(Decimal(rng.randint(500, 2_000)) * CENT, CENT)), row

    def marketplace_fee(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        row = self.base(rng, day, PROD, "Fee")
        self._window(row, day, 0, 24)
        cost = money(Decimal(rng.randint(12_000, 18_000)) * CENT, CENT)
        row.update(
            bill_billing_entity="AWS Marketplace",
            bill_bill_type="Purchase",
            bill_invoicing_entity="Amazon Web Services, Inc.",
            line_item_legal_entity=MARKETPLACE["seller"],
            line_item_product_code=MARKETPLACE["product_code"],
            line_item_usage_type="Datadog-Pro-Monthly",
            line_item_operation="",
            line_item_usage_amount=Decimal(1),
            line_item_unblended_rate=_rate_text(cost),
            line_item_line_item_description=f"{MARKETPLACE['product_name']} - monthly subscription fee",
            pricing_unit="Units",
            product={"product_name": MARKETPLACE["product_name"]},
            product_servicecode=MARKETPLACE["product_code"],
        )
        return self.finish(row, PROD, cost), row

    def taxes(self, rng: random.Random, day: date) -> Iterator[tuple[Decimal, Row]]:
        for account in ACCOUNTS:
            for product_code in TAXED_PRODUCT_CODES:
                row = self.base(rng, day, account, "Tax")
                tax = money(max(self.taxable[(account.id, product_code)], ZERO) * TAX_RATE, CENT)
                row.update(
                    line_item_usage_start_date=midnight(day),
                    line_item_usage_end_date=midnight(self.period_end),
                    line_item_product_code=product_code,
                    line_item_usage_type="",
                    line_item_operation="",
                    line_item_resource_id="",
                    line_item_usage_amount=Decimal(1),
                    line_item_unblended_rate=None,
                    line_item_tax_type=TAX_TYPE,
                    line_item_line_item_description=f"Tax for product code {product_code}",
                    pricing_public_on_demand_cost=ZERO,
                    product={"product_name": PRODUCT_NAMES[product_code]},
                    product_servicecode=product_code,
                )
                yield self.finish(row, account, tax), row


_DAILY_SPECIALS = (("savings_plan", 3), ("discounted_usage", 1), ("credit", 1))
_PERIOD_SPECIALS = (
    ("reservation_fee", 1),
    ("marketplace", 1),
    ("refund", 1),
    ("tax", len(ACCOUNTS) * len(TAXED_PRODUCT_CODES)),
)


def _plan(rows_per_day: int, anchor: bool) -> tuple[set[str], int]:
    return plan_specials(rows_per_day, _DAILY_SPECIALS + (_PERIOD_SPECIALS if anchor else ()))


def _day_records(
    builder: _PeriodBuilder, day: date, rows_per_day: int, seed: int, anchor: bool, restated: bool
) -> Iterator[Record]:
    rng = day_rng(PROVIDER, seed, day)
    planned, regular = _plan(rows_per_day, anchor)
    restate_rng = day_rng(PROVIDER, seed, day, "restated") if restated else None
    restate_at = restated_indexes(restate_rng, regular, RESTATED_SHARE)
    for index in range(regular):
        draw = builder.draw_usage(rng, day)
        if restate_rng is not None and index in restate_at:
            factor = Decimal(restate_rng.choice(("0.8", "0.9", "1.15", "1.3")))
            if draw.product.hourly:
                # One more hour (starting earlier if the window already ends at midnight), or one less.
                hours = int(draw.amount)
                if hours < 24:
                    draw.hours_start = min(draw.hours_start, 23 - hours)
                draw.amount = Decimal(hours + 1 if hours < 24 else 23)
            else:
                draw.amount = restated_amount(draw.amount, factor, Decimal(1) / draw.product.amount_scale)
        net, row = builder.usage(draw, day)
        yield day, net, row
    specials: dict[str, Callable[[random.Random, date], tuple[Decimal, Row]]] = {
        "discounted_usage": builder.discounted_usage,
        "credit": builder.credit,
        "reservation_fee": builder.reservation_fee,
        "marketplace": builder.marketplace_fee,
        "refund": builder.refund,
    }
    if "savings_plan" in planned:
        pair, used = builder.savings_plan_pair(rng, day)
        for net, row in pair:
            yield day, net, row
        net, row = builder.savings_plan_fee(rng, day, used)
        yield day, net, row
    for name, make in specials.items():
        if name in planned:
            net, row = make(rng, day)
            yield day, net, row


def generate_aws(
    start: date, end: date, rows_per_day: int, seed: int = 0, *, restated: bool = False
) -> SampleExport:
    """CUR 2.0 line items for ``start``..``end`` (inclusive), lazily, grouped by billing period.

    ``ValueError`` for an empty range or ``rows_per_day`` outside 1..1,000,000. Each day has exactly
    ``rows_per_day`` line items (by ``line_item_usage_start_date``); a period's tax rows follow its last
    day. Rows are dicts with every ``CUR2_COLUMNS`` key; costs are ``Decimal``."""
    days = days_in_range(start, end)
    validate_rows_per_day(rows_per_day)
    anchors = period_anchor_days(days)

    def source() -> Iterator[Record]:
        builder: _PeriodBuilder | None = None
        anchor_day: date | None = None
        tax_planned = False
        for day in days:
            if builder is None or month_start(day) != builder.period_start:
                if builder is not None and anchor_day is not None and tax_planned:
                    yield from _taxes(builder, anchor_day, seed)
                builder = _PeriodBuilder(month_start(day))
                anchor_day = day
                tax_planned = "tax" in _plan(rows_per_day, day in anchors)[0]
            yield from _day_records(builder, day, rows_per_day, seed, day in anchors, restated)
        if builder is not None and anchor_day is not None and tax_planned:
            yield from _taxes(builder, anchor_day, seed)

    return SampleExport(PROVIDER, start, end, rows_per_day, seed, restated, CURRENCY, source)


def _taxes(builder: _PeriodBuilder, anchor_day: date, seed: int) -> Iterator[Record]:
    rng = day_rng(PROVIDER, seed, anchor_day, "tax")
    for net, row in builder.taxes(rng, anchor_day):
        yield anchor_day, net, row


def _doubles(values: list[Any]) -> list[float | None]:
    return [None if value is None else float(value) for value in values]


def _map_items(values: list[Any]) -> list[list[tuple[str, Any]] | None]:
    return [
        None
        if value is None
        else [
            (key, float(item) if isinstance(item, Decimal) else item) for key, item in sorted(value.items())
        ]
        for value in values
    ]


def _as_is(values: list[Any]) -> list[Any]:
    return values


_CONVERTERS: dict[str, Callable[[list[Any]], list[Any]]] = {
    name: _map_items if name in _MAP_COLUMNS else _doubles if name in _DOUBLE_COLUMNS else _as_is
    for name in CUR2_COLUMNS
}


def _write_batch(writer: pq.ParquetWriter, batch: list[Row]) -> None:
    arrays = [
        pa.array(_CONVERTERS[field.name]([row[field.name] for row in batch]), type=field.type)
        for field in CUR2_SCHEMA
    ]
    writer.write_table(pa.Table.from_arrays(arrays, schema=CUR2_SCHEMA))


def write_aws(export: SampleExport, out_dir: Path, progress: ProgressCallback | None = None) -> WriteSummary:
    """Write ``export`` like a CUR 2.0 Data Export: per billing period one Parquet file
    ``{out_dir}/data/BILLING_PERIOD=YYYY-MM/cur2-00001.snappy.parquet`` and, after it, the manifest
    ``{out_dir}/metadata/BILLING_PERIOD=YYYY-MM/cur2-Manifest.json``.

    Streams in batches of ``BATCH_ROWS``; returns the files and the expected net cost per day."""
    files: list[Path] = []
    writer: pq.ParquetWriter | None = None
    period: date | None = None
    period_rows = 0
    batch: list[Row] = []
    try:
        for day, row in export.records(progress):
            if month_start(day) != period:
                if writer is not None and period is not None:
                    _write_batch(writer, batch)
                    writer.close()
                    files.append(_write_manifest(out_dir, period, period_rows, export))
                period, period_rows, batch = month_start(day), 0, []
                path = (
                    out_dir
                    / "data"
                    / f"BILLING_PERIOD={period:%Y-%m}"
                    / f"{EXPORT_NAME}-00001.snappy.parquet"
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                files.append(path)
                writer = pq.ParquetWriter(path, CUR2_SCHEMA, compression="snappy")
            batch.append(row)
            period_rows += 1
            if len(batch) >= BATCH_ROWS:
                assert writer is not None
                _write_batch(writer, batch)
                batch = []
        if writer is not None and period is not None:
            _write_batch(writer, batch)
            writer.close()
            writer = None
            files.append(_write_manifest(out_dir, period, period_rows, export))
    finally:
        if writer is not None:
            writer.close()
    return WriteSummary(PROVIDER, tuple(sorted(files)), export.row_count, CURRENCY, export.net_cost_by_day)


def _write_manifest(out_dir: Path, period: date, rows: int, export: SampleExport) -> Path:
    data_file = f"data/BILLING_PERIOD={period:%Y-%m}/{EXPORT_NAME}-00001.snappy.parquet"
    execution = stable_uuid(f"aws-execution/{export.seed}/{export.restated}/{period}")
    manifest = {
        "exportName": EXPORT_NAME,
        "executionId": execution,
        "billingPeriod": {
            "start": f"{period:%Y-%m-%d}T00:00:00Z",
            "end": f"{next_month_start(period):%Y-%m-%d}T00:00:00Z",
        },
        "dataFiles": [data_file],
        "rowCount": rows,
        "columns": [{"name": field.name, "type": str(field.type)} for field in CUR2_SCHEMA],
    }
    path = out_dir / "metadata" / f"BILLING_PERIOD={period:%Y-%m}" / f"{EXPORT_NAME}-Manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
