"""Sample Azure Cost Management cost details export (actual cost), EA or MCA columns, written as CSV.

``schema="ea"`` writes the 57 columns of the EA file schema version 2024-08-01 (``EA_COLUMNS``),
``schema="mca"`` the 65 columns of the MCA version 2023-12-01-preview (``MCA_COLUMNS``), both in the
order of Microsoft's schema pages. Values imitate real exports: ``MM/DD/YYYY`` dates, an inclusive
``BillingPeriodEndDate``, EA tags as the JSON object body without braces (``"env": "prod","team":
"data"``; MCA tags keep their braces), ``AdditionalInfo`` JSON, ``True``/``False`` flags, block-sized
units (``10K``, ``1 GB/Month``), inconsistent casing of ``ConsumedService`` and ``ResourceLocation``,
EA costs below 0.0001 in E-notation (``5.649E-05``), reservation rows with ``PayGPrice`` 0 and a
reservation purchase whose resource id ends in ``/reservations/``. Files are UTF-8 with a BOM, LF line
ends. Every number is exact decimal text with at most 9 fraction digits.

Net cost (``SampleExport.net_cost_by_day``) is domain.md §2.5's BilledCost for the actual-cost dataset:
``CostInBillingCurrency`` (EA; billed in USD) or ``costInBillingCurrency`` (MCA; billed in EUR from USD
prices at ``exchangeRatePricingToBilling``), summed per ``Date``. In actual cost, usage covered by a
reservation or savings plan already costs 0 and the commitment's cost is on its ``Purchase`` row.

What a day holds (``rows_per_day`` rows exactly; specials only when there is room): on-demand and spot
usage over several meters, subscriptions, resource groups and regions; one reservation-covered and one
savings-plan-covered usage row. The first generated day of each billing month also holds the reservation
and savings plan ``Purchase`` rows, a Marketplace charge (``PublisherType = Marketplace``), a ``Refund``,
an ``Adjustment`` (an SLA credit) and the month's ``Tax`` row (computed from the month's charges and
written after its last day).

A restated export is a later run of the same months: the same rows, about 3% of each day's usage rows
with a different quantity and cost, and the tax recomputed."""

from __future__ import annotations

import csv
import functools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from billing.generators.common import (
    CENT,
    NANO,
    ZERO,
    ProgressCallback,
    Record,
    Row,
    SampleExport,
    WriteSummary,
    day_rng,
    days_in_range,
    money,
    month_last_day,
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

PROVIDER = "azure"
SCHEMAS = ("ea", "mca")
RESTATED_SHARE = 0.03
TAX_RATE = Decimal("0.19")
PART_ROWS = 1_000_000
MCA_EXCHANGE_RATE = Decimal("0.9213")
CURRENCIES = {"ea": "USD", "mca": "EUR"}

EA_COLUMNS = (
    "InvoiceSectionName",
    "AccountName",
    "AccountOwnerId",
    "SubscriptionId",
    "SubscriptionName",
    "ResourceGroup",
    "ResourceLocation",
    "Date",
    "ProductName",
    "MeterCategory",
    "MeterSubCategory",
    "MeterId",
    "MeterName",
    "MeterRegion",
    "UnitOfMeasure",
    "Quantity",
    "EffectivePrice",
    "CostInBillingCurrency",
    "CostCenter",
    "ConsumedService",
    "ResourceId",
    "Tags",
    "OfferId",
    "AdditionalInfo",
    "ServiceInfo1",
    "ServiceInfo2",
    "ResourceName",
    "ReservationId",
    "ReservationName",
    "UnitPrice",
    "ProductOrderId",
    "ProductOrderName",
    "Term",
    "PublisherType",
    "PublisherName",
    "ChargeType",
    "Frequency",
    "PricingModel",
    "AvailabilityZone",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrencyCode",
    "BillingPeriodStartDate",
    "BillingPeriodEndDate",
    "BillingProfileId",
    "BillingProfileName",
    "InvoiceSectionId",
    "IsAzureCreditEligible",
    "PartNumber",
    "PayGPrice",
    "PlanName",
    "ServiceFamily",
    "CostAllocationRuleName",
    "benefitId",
    "benefitName",
    "AccountId",
    "ResourceLocationNormalized",
)

MCA_COLUMNS = (
    "invoiceId",
    "previousInvoiceId",
    "billingAccountId",
    "billingAccountName",
    "billingProfileId",
    "billingProfileName",
    "invoiceSectionId",
    "invoiceSectionName",
    "resellerName",
    "resellerMpnId",
    "costCenter",
    "billingPeriodEndDate",
    "billingPeriodStartDate",
    "servicePeriodEndDate",
    "servicePeriodStartDate",
    "date",
    "serviceFamily",
    "productOrderId",
    "productOrderName",
    "consumedService",
    "meterId",
    "meterName",
    "meterCategory",
    "meterSubCategory",
    "meterRegion",
    "ProductId",
    "ProductName",
    "SubscriptionId",
    "subscriptionName",
    "publisherType",
    "publisherId",
    "publisherName",
    "resourceGroupName",
    "ResourceId",
    "resourceLocation",
    "location",
    "effectivePrice",
    "quantity",
    "unitOfMeasure",
    "chargeType",
    "billingCurrency",
    "pricingCurrency",
    "costInBillingCurrency",
    "costInPricingCurrency",
    "costInUsd",
    "paygCostInBillingCurrency",
    "paygCostInUsd",
    "exchangeRatePricingToBilling",
    "exchangeRateDate",
    "isAzureCreditEligible",
    "serviceInfo1",
    "serviceInfo2",
    "additionalInfo",
    "tags",
    "PayGPrice",
    "frequency",
    "term",
    "reservationId",
    "reservationName",
    "pricingModel",
    "unitPrice",
    "costAllocationRuleName",
    "benefitId",
    "benefitName",
    "provider",
)
COLUMNS = {"ea": EA_COLUMNS, "mca": MCA_COLUMNS}

# Where the EA and MCA files name the same thing differently; every other MCA column is the EA name with a
# lowercase first letter, or MCA-only.
_MCA_FROM_EA = {
    "resourceGroupName": "ResourceGroup",
    "billingCurrency": "BillingCurrencyCode",
    "location": "ResourceLocationNormalized",
}


@dataclass(frozen=True)
class Location:
    """An Azure region as the cost file spells it: ARM name casings, meter region, normalized name."""

    code: str
    spellings: tuple[str, ...]
    meter_region: str
    normalized: str


LOCATIONS = (
    Location("eastus", ("EastUS", "eastus"), "US East", "US East"),
    Location("westeurope", ("WestEurope", "westeurope"), "EU West", "EU West"),
    Location("uksouth", ("uksouth", "UKSouth"), "UK South", "UK South"),
)
EAST_US, WEST_EUROPE, _UK_SOUTH = LOCATIONS


@dataclass(frozen=True)
class Subscription:
    """A subscription with its resource groups; ``environment`` picks its tag sets."""

    id: str
    name: str
    environment: str
    resource_groups: tuple[str, ...]
    cost_center: str


SUBSCRIPTIONS = (
    Subscription(
        stable_uuid("azure-sub-prod"), "acme-prod", "prod", ("rg-web-prod", "rg-data-prod"), "CC-1001"
    ),
    Subscription(stable_uuid("azure-sub-data"), "acme-data", "prod", ("rg-analytics", "rg-lake"), "CC-2040"),
    Subscription(
        stable_uuid("azure-sub-dev"), "acme-dev", "dev", ("rg-dev", "MC_rg-dev_aks-dev_eastus"), "CC-3300"
    ),
)
PROD, DATA, DEV = SUBSCRIPTIONS


@dataclass(frozen=True)
class Meter:
    """A meter with its prices (USD, per ``unit_of_measure`` block) and one row's quantity range."""

    category: str
    subcategory: str
    name: str
    product_name: str
    part_number: str
    service_family: str
    consumed_services: tuple[str, ...]
    resource_type: str
    unit_of_measure: str
    unit_price: Decimal
    payg_price: Decimal
    quantity_low: int
    quantity_high: int
    quantity_scale: int
    additional_info: str
    spot_price: Decimal | None = None
    weight: int = 1

    @functools.cached_property
    def meter_id(self) -> str:
        return stable_uuid(f"azure-meter/{self.category}/{self.subcategory}/{self.name}")

    @functools.cached_property
    def product_id(self) -> str:
        """An MCA ``ProductId`` shaped like ``DZH318Z0BQ4L/002X`` (product / SKU)."""
        product = stable_uuid(f"azure-product/{self.product_name}").replace("-", "").upper()
        return f"{product[:12]}/{self.part_number[-4:]}"


def _info(**values: Any) -> str:
    return json.dumps(values, separators=(",", ":"))


METERS = (
    Meter(
        "Virtual Machines",
        "Dsv3 Series",
        "D2s v3",
        "Virtual Machines Dsv3 Series - D2s v3 - {region}",
        "AAF-53280",
        "Compute",
        ("Microsoft.Compute", "microsoft.compute"),
        "Microsoft.Compute/virtualMachines",
        "1 Hour",
        Decimal("0.0864"),
        Decimal("0.096"),
        1,
        24,
        1,
        _info(ServiceType="Standard_D2s_v3", VCPUs=2, UsageType="ComputeHR", ImageType="Canonical"),
        spot_price=Decimal("0.0192"),
        weight=5,
    ),
    Meter(
        "Storage",
        "Premium SSD Managed Disks",
        "P10 LRS Disk",
        "Premium SSD Managed Disks - P10 LRS - {region}",
        "AAD-34125",
        "Storage",
        ("Microsoft.Compute",),
        "Microsoft.Compute/disks",
        "1/Month",
        Decimal("17.92"),
        Decimal("19.71"),
        32_258,
        33_333,
        1_000_000,
        "",
        weight=2,
    ),
    Meter(
        "Storage",
        "Tiered Block Blob",
        "Hot LRS Data Stored",
        "Tiered Block Blob - Hot LRS - {region}",
        "AAD-37124",
        "Storage",
        ("Microsoft.Storage",),
        "Microsoft.Storage/storageAccounts",
        "1 GB/Month",
        Decimal("0.0184"),
        Decimal("0.0208"),
        500,
        800_000,
        1_000,
        "",
        weight=3,
    ),
    Meter(
        "Storage",
        "Tiered Block Blob",
        "Hot LRS Write Operations",
        "Tiered Block Blob - Hot LRS - {region}",
        "AAD-37130",
        "Storage",
        ("Microsoft.Storage",),
        "Microsoft.Storage/storageAccounts",
        "10K",
        Decimal("0.055"),
        Decimal("0.065"),
        1,
        2_000,
        10_000,
        "",
        weight=2,
    ),
    Meter(
        "Storage",
        "Queues v2",
        "Class 2 Operations",
        "Queues v2 - Class 2 Operations - {region}",
        "AAD-37193",
        "Storage",
        ("Microsoft.Storage",),
        "Microsoft.Storage/storageAccounts",
        "10K",
        Decimal("0.004"),
        Decimal("0.0045"),
        1,
        500,
        10_000,
        "",
        weight=2,
    ),
    Meter(
        "SQL Database",
        "General Purpose - Compute Gen5",
        "vCore",
        "SQL Database Single/Elastic Pool General Purpose - Compute Gen5 - {region}",
        "AAA-81944",
        "Databases",
        ("Microsoft.Sql",),
        "Microsoft.Sql/servers",
        "1 Hour",
        Decimal("0.4539"),
        Decimal("0.5044"),
        2,
        48,
        1,
        _info(ServiceType="GP_Gen5_2", vCores=2),
        weight=2,
    ),
    Meter(
        "Bandwidth",
        "Rtn Preference: MGN",
        "Standard Data Transfer Out",
        "Rtn Preference: MGN - Standard Data Transfer Out",
        "AAA-61433",
        "Networking",
        ("Microsoft.Network", "Microsoft.Compute"),
        "Microsoft.Network/publicIPAddresses",
        "1 GB",
        Decimal("0.087"),
        Decimal("0.087"),
        1,
        200_000,
        1_000,
        "",
        weight=2,
    ),
    Meter(
        "Log Analytics",
        "",
        "Pay-as-you-go Data Ingestion",
        "Log Analytics - Pay-as-you-go - {region}",
        "AAH-18446",
        "Management and Governance",
        ("Microsoft.OperationalInsights", "MICROSOFT.OPERATIONALINSIGHTS"),
        "Microsoft.OperationalInsights/workspaces",
        "1 GB",
        Decimal("2.30"),
        Decimal("2.76"),
        10,
        20_000,
        1_000,
        "",
        weight=1,
    ),
)
METER_CHOICES = tuple(meter for meter in METERS for _ in range(meter.weight))
D4S_V3 = Meter(
    "Virtual Machines",
    "Dsv3 Series",
    "D4s v3",
    "Virtual Machines Dsv3 Series - D4s v3 - {region}",
    "AAF-53284",
    "Compute",
    ("Microsoft.Compute",),
    "Microsoft.Compute/virtualMachines",
    "1 Hour",
    Decimal("0.1728"),
    Decimal("0.192"),
    20,
    24,
    1,
    "",
)
E4S_V5 = Meter(
    "Virtual Machines",
    "Esv5 Series",
    "E4s v5",
    "Virtual Machines Esv5 Series - E4s v5 - {region}",
    "AAF-90021",
    "Compute",
    ("Microsoft.Compute",),
    "Microsoft.Compute/virtualMachines",
    "1 Hour",
    Decimal("0.252"),
    Decimal("0.28"),
    20,
    24,
    1,
    _info(ServiceType="Standard_E4s_v5", VCPUs=4, UsageType="ComputeHR", ImageType="Windows Server BYOL"),
)

RI_ORDER = stable_uuid("azure-ri-order")
RI_ID = stable_uuid("azure-ri")
RI_NAME = "VM_RI_D4s_v3_EastUS"
RI_ORDER_NAME = "Reserved VM Instance, Standard_D4s_v3, US East, 1 Year"
RI_BENEFIT = f"/providers/Microsoft.Capacity/reservationOrders/{RI_ORDER}/reservations/{RI_ID}"
RI_PURCHASE_RESOURCE = f"/providers/Microsoft.Capacity/reservationOrders/{RI_ORDER}/reservations/"
RI_HOURLY = Decimal("0.1382")
SP_ORDER = stable_uuid("azure-sp-order")
SP_ID = stable_uuid("azure-sp")
SP_NAME = "Compute_SP_3yr_acme"
SP_BENEFIT = f"/providers/Microsoft.BillingBenefits/savingsPlanOrders/{SP_ORDER}/savingsPlans/{SP_ID}"
SP_HOURLY = Decimal("0.25")
EA_ACCOUNT = {
    "BillingAccountId": "12345678",
    "BillingAccountName": "Acme Corp",
    "BillingProfileId": "12345678",
    "BillingProfileName": "Acme Corp",
    "InvoiceSectionId": "4455667",
    "InvoiceSectionName": "Cloud Platform",
    "AccountId": "98765432",
    "AccountName": "Acme Cloud Team",
    "AccountOwnerId": "cloud-team@acme.example",
}
MCA_ACCOUNT = {
    "BillingAccountId": f"{stable_uuid('mca-account')}:{stable_uuid('mca-tenant')}_2019-05-31",
    "BillingAccountName": "Acme Corp",
    "BillingProfileId": "AB12-CD34-EF5-GH67",
    "BillingProfileName": "Acme Corp EUR",
    "InvoiceSectionId": "WX89-YZ01-AB2-CD34",
    "InvoiceSectionName": "Cloud Platform",
}
AKS_TAGS = (
    ("aks-managed-createOperationID", ""),
    ("aks-managed-poolName", "agentpool"),
    ("kubernetes.io-created-for-pv-name", "pvc-0b1c2d3e"),
    ("env", "dev"),
)
TAG_SETS = {subscription.id: tag_sets(subscription.environment) for subscription in SUBSCRIPTIONS}


def _tags_body(tags: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in tags)


@dataclass
class UsageDraw:
    """The draws behind one usage row, so a restatement can reprice exactly that row."""

    meter: Meter
    subscription: Subscription
    location: Location
    spelling: str
    consumed_service: str
    resource_group: str
    resource_name: str
    tags: tuple[tuple[str, str], ...]
    spot: bool
    quantity: Decimal


class _PeriodBuilder:
    """Builds one billing month's charges as schema-neutral dicts (EA names, ``Decimal`` numbers)."""

    def __init__(self, period_start: date, schema: str) -> None:
        self.schema = schema
        self.period_start = period_start
        self.period_end = month_last_day(period_start)
        self.taxable = ZERO
        account = EA_ACCOUNT if schema == "ea" else MCA_ACCOUNT
        self.template: Row = {
            **dict.fromkeys(EA_COLUMNS, ""),
            **account,
            "BillingCurrencyCode": CURRENCIES[schema],
            "BillingPeriodStartDate": period_start,
            "BillingPeriodEndDate": self.period_end,
            "OfferId": "MS-AZR-0017P",
            "IsAzureCreditEligible": "True",
            "PublisherType": "Azure" if schema == "ea" else "Microsoft",
            "PublisherName": "Microsoft",
            "Frequency": "UsageBased",
            "ChargeType": "Usage",
            "PricingModel": "OnDemand",
            "invoiceId": f"G0{period_start:%Y%m}01",
            "previousInvoiceId": "",
            "ProductId": "",
            "ProductOrderId": "",
            "ProductOrderName": "",
        }
        if schema == "mca":
            self.template["ProductOrderId"] = stable_uuid("azure-plan")
            self.template["ProductOrderName"] = "Azure plan"

    def net(self, cost: Decimal) -> Decimal:
        """The cost in the billing currency: what the row's CostInBillingCurrency says."""
        return cost if self.schema == "ea" else money(cost * MCA_EXCHANGE_RATE, NANO)

    def _row(self, day: date, subscription: Subscription | None, **values: Any) -> Row:
        row = self.template.copy()
        row["Date"] = day
        if subscription is not None:
            row["SubscriptionId"] = subscription.id
            row["SubscriptionName"] = subscription.name
            row["CostCenter"] = subscription.cost_center
        row.update(values)
        return row

    def _meter_values(self, meter: Meter, location: Location, spelling: str, consumed: str) -> dict[str, Any]:
        return {
            "MeterCategory": meter.category,
            "MeterSubCategory": meter.subcategory,
            "MeterName": meter.name,
            "MeterId": meter.meter_id,
            "MeterRegion": location.meter_region,
            "ProductName": meter.product_name.replace("{region}", location.meter_region),
            "ProductId": meter.product_id,
            "PartNumber": meter.part_number,
            "ServiceFamily": meter.service_family,
            "ConsumedService": consumed,
            "UnitOfMeasure": meter.unit_of_measure,
            "ResourceLocation": spelling,
            "ResourceLocationNormalized": location.normalized,
            "AdditionalInfo": meter.additional_info,
        }

    def draw_usage(self, rng: random.Random) -> UsageDraw:
        meter = rng.choice(METER_CHOICES)
        subscription = rng.choice(SUBSCRIPTIONS)
        location = rng.choice(LOCATIONS)
        spelling = rng.choice(location.spellings)
        consumed = rng.choice(meter.consumed_services)
        group = rng.choice(subscription.resource_groups)
        name = f"{meter.resource_type.rsplit('/', 1)[1][:-1].lower()}-{subscription.name}-{rng.randrange(5)}"
        tags = rng.choice(TAG_SETS[subscription.id])
        if group.startswith("MC_") and rng.random() < 0.5:
            tags = AKS_TAGS
        spot = meter.spot_price is not None and rng.random() < 0.2
        quantity = Decimal(rng.randint(meter.quantity_low, meter.quantity_high)) / meter.quantity_scale
        return UsageDraw(meter, subscription, location, spelling, consumed, group, name, tags, spot, quantity)

    def usage(self, draw: UsageDraw, day: date) -> tuple[Decimal, Row]:
        meter, subscription = draw.meter, draw.subscription
        price, payg = meter.unit_price, meter.payg_price
        if draw.spot and meter.spot_price is not None:
            price = payg = meter.spot_price
        cost = money(draw.quantity * price, NANO)
        row = self._row(
            day,
            subscription,
            ResourceGroup=draw.resource_group,
            ResourceId=(
                f"/subscriptions/{subscription.id}/resourceGroups/{draw.resource_group}/providers/"
                f"{meter.resource_type}/{draw.resource_name}"
            ),
            ResourceName=draw.resource_name,
            Tags=draw.tags,
            Quantity=draw.quantity,
            EffectivePrice=price,
            UnitPrice=price,
            PayGPrice=payg,
            CostInBillingCurrency=cost,
            PricingModel="Spot" if draw.spot else "OnDemand",
            **self._meter_values(meter, draw.location, draw.spelling, draw.consumed_service),
        )
        self.taxable += cost
        return self.net(cost), row

    def covered_usage(self, rng: random.Random, day: date, benefit: str) -> tuple[Decimal, Row]:
        reservation = benefit == "reservation"
        meter, subscription, location = (
            (D4S_V3, PROD, EAST_US) if reservation else (E4S_V5, DATA, WEST_EUROPE)
        )
        quantity = Decimal(rng.randint(meter.quantity_low, meter.quantity_high))
        group = subscription.resource_groups[0]
        name = f"vm-{subscription.name}-{'ri' if reservation else 'sp'}"
        info = meter.additional_info
        if reservation:
            info = _info(
                ServiceType="Standard_D4s_v3",
                VCPUs=4,
                UsageType="ComputeHR",
                ReservationOrderId=RI_ORDER,
                ReservationId=RI_ID,
                ConsumptionMeter=meter.meter_id,
                RINormalizationRatio=1.0,
            )
        row = self._row(
            day,
            subscription,
            ResourceGroup=group,
            ResourceId=f"/subscriptions/{subscription.id}/resourceGroups/{group}/providers/{meter.resource_type}/{name}",
            ResourceName=name,
            Tags=TAG_SETS[subscription.id][1],
            Quantity=quantity,
            EffectivePrice=ZERO,
            UnitPrice=meter.unit_price,
            PayGPrice=ZERO if reservation else meter.payg_price,
            CostInBillingCurrency=ZERO,
            PricingModel="Reservation" if reservation else "SavingsPlan",
            Term="12" if reservation else "36",
            ReservationId=RI_ID if reservation else "",
            ReservationName=RI_NAME if reservation else "",
            ProductOrderId=RI_ORDER if reservation else SP_ORDER,
            ProductOrderName=RI_ORDER_NAME if reservation else "Compute Savings Plan, 3 Years",
            benefitId=RI_BENEFIT if reservation else SP_BENEFIT,
            benefitName=RI_NAME if reservation else SP_NAME,
            **self._meter_values(meter, location, location.spellings[0], meter.consumed_services[0]),
        )
        row["AdditionalInfo"] = info
        return ZERO, row

    def purchase(self, rng: random.Random, day: date, benefit: str) -> tuple[Decimal, Row]:
        hours = Decimal((next_month_start(self.period_start) - self.period_start).days * 24)
        reservation = benefit == "reservation"
        cost = money((RI_HOURLY if reservation else SP_HOURLY) * hours, NANO)
        values: dict[str, Any] = {
            "ResourceId": RI_PURCHASE_RESOURCE if reservation else SP_BENEFIT,
            "ProductName": "Virtual Machines Dsv3 Series - D4s v3 - US East"
            if reservation
            else "Compute Savings Plan",
            "MeterCategory": "Virtual Machines" if reservation else "Savings Plan",
            "MeterSubCategory": "Dsv3 Series" if reservation else "Compute Savings Plan",
            "MeterRegion": "US East" if reservation else "",
            "ConsumedService": "Microsoft.Capacity" if reservation else "Microsoft.BillingBenefits",
            "ServiceFamily": "Compute",
            "UnitOfMeasure": "1 Hour",
            "ResourceLocation": "eastus" if reservation else "",
            "Quantity": Decimal(1),
            "EffectivePrice": cost,
            "UnitPrice": cost,
            "PayGPrice": ZERO,
            "CostInBillingCurrency": cost,
            "ChargeType": "Purchase",
            "Frequency": "Recurring",
            "PricingModel": "Reservation" if reservation else "SavingsPlan",
            "Term": "12" if reservation else "36",
            "ReservationId": RI_ORDER if reservation else "",
            "ReservationName": RI_NAME if reservation else "",
            "ProductOrderId": RI_ORDER if reservation else SP_ORDER,
            "ProductOrderName": RI_ORDER_NAME if reservation else "Compute Savings Plan, 3 Years",
            "benefitId": RI_PURCHASE_RESOURCE if reservation else SP_BENEFIT,
            "benefitName": RI_NAME if reservation else SP_NAME,
            "OfferId": "",
            "PublisherName": "",
        }
        self.taxable += cost
        return self.net(cost), self._row(day, PROD if reservation else DATA, **values)

    def marketplace(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        cost = money(Decimal(rng.randint(15_000, 20_000)) * CENT, CENT)
        group = "rg-web-prod"
        row = self._row(
            day,
            PROD,
            ResourceGroup=group,
            ResourceId=f"/subscriptions/{PROD.id}/resourceGroups/{group}/providers/Microsoft.Datadog/monitors/acme-dd",
            ResourceName="acme-dd",
            ResourceLocation="eastus",
            ResourceLocationNormalized="US East",
            ProductName="Datadog - An Azure Native ISV Service - Pro",
            ConsumedService="Microsoft.SaaS",
            UnitOfMeasure="1/Month",
            Quantity=Decimal(1),
            EffectivePrice=cost,
            UnitPrice=cost,
            PayGPrice=cost,
            CostInBillingCurrency=cost,
            ChargeType="Purchase",
            Frequency="Recurring",
            Term="1",
            PublisherType="Marketplace",
            PublisherName="Datadog",
            PlanName="datadog-pro-monthly",
            IsAzureCreditEligible="False",
            Tags=(("env", "prod"), ("team", "platform")),
        )
        return self.net(cost), row

    def refund(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        cost = -money(Decimal(rng.randint(1_000, 4_000)) * CENT, CENT)
        previous = month_start(self.period_start - timedelta(days=1))
        row = self._row(
            day,
            PROD,
            ResourceId=RI_PURCHASE_RESOURCE,
            ProductName=RI_ORDER_NAME,
            MeterCategory="Virtual Machines",
            ConsumedService="Microsoft.Capacity",
            UnitOfMeasure="1 Hour",
            Quantity=Decimal(1),
            EffectivePrice=cost,
            UnitPrice=cost,
            PayGPrice=ZERO,
            CostInBillingCurrency=cost,
            ChargeType="Refund",
            Frequency="OneTime",
            PricingModel="Reservation",
            Term="12",
            ReservationId=RI_ORDER,
            ReservationName=RI_NAME,
            ProductOrderId=RI_ORDER,
            ProductOrderName=RI_ORDER_NAME,
            benefitId=RI_PURCHASE_RESOURCE,
            benefitName=RI_NAME,
            OfferId="",
            previousInvoiceId=f"G0{previous:%Y%m}01",
        )
        self.taxable += cost
        return self.net(cost), row

    def adjustment(self, rng: random.Random, day: date) -> tuple[Decimal, Row]:
        cost = -money(Decimal(rng.randint(200, 1_500)) * CENT, CENT)
        row = self._row(
            day,
            DATA,
            ProductName="Service Level Agreement credit - Virtual Machines",
            MeterCategory="Virtual Machines",
            ConsumedService="Microsoft.Compute",
            Quantity=Decimal(1),
            EffectivePrice=cost,
            UnitPrice=cost,
            PayGPrice=ZERO,
            CostInBillingCurrency=cost,
            ChargeType="Adjustment",
            Frequency="OneTime",
        )
        self.taxable += cost
        return self.net(cost), row

    def tax(self, day: date) -> tuple[Decimal, Row]:
        cost = money(max(self.taxable, ZERO) * TAX_RATE, CENT)
        row = self._row(
            day,
            None,
            ProductName="Tax",
            Quantity=Decimal(1),
            EffectivePrice=cost,
            UnitPrice=cost,
            PayGPrice=ZERO,
            CostInBillingCurrency=cost,
            ChargeType="Tax",
            Frequency="OneTime",
            PricingModel="",
            OfferId="",
            PublisherName="",
        )
        return self.net(cost), row


_DAILY_SPECIALS = (("reservation_usage", 1), ("savings_plan_usage", 1))
_PERIOD_SPECIALS = (
    ("reservation_purchase", 1),
    ("savings_plan_purchase", 1),
    ("marketplace", 1),
    ("refund", 1),
    ("adjustment", 1),
    ("tax", 1),
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
        draw = builder.draw_usage(rng)
        if restate_rng is not None and index in restate_at:
            factor = Decimal(restate_rng.choice(("0.8", "0.9", "1.15", "1.3")))
            draw.quantity = restated_amount(draw.quantity, factor, Decimal(1) / draw.meter.quantity_scale)
        net, row = builder.usage(draw, day)
        yield day, net, row
    specials: dict[str, Callable[[random.Random, date], tuple[Decimal, Row]]] = {
        "reservation_usage": lambda rng, day: builder.covered_usage(rng, day, "reservation"),
        "savings_plan_usage": lambda rng, day: builder.covered_usage(rng, day, "savings_plan"),
        "reservation_purchase": lambda rng, day: builder.purchase(rng, day, "reservation"),
        "savings_plan_purchase": lambda rng, day: builder.purchase(rng, day, "savings_plan"),
        "marketplace": builder.marketplace,
        "refund": builder.refund,
        "adjustment": builder.adjustment,
    }
    for name, make in specials.items():
        if name in planned:
            net, row = make(rng, day)
            yield day, net, row


def generate_azure(
    start: date,
    end: date,
    rows_per_day: int,
    seed: int = 0,
    *,
    schema: str = "ea",
    restated: bool = False,
) -> SampleExport:
    """Actual-cost rows for ``start``..``end`` (inclusive), lazily, as schema-neutral dicts.

    ``ValueError`` for an empty range, ``rows_per_day`` outside 1..1,000,000 or a ``schema`` other than
    ``ea``/``mca``. Each day has exactly ``rows_per_day`` rows (by ``Date``); a month's tax row follows
    its last day. Rows carry EA column names (plus the MCA-only fields) with ``Decimal`` numbers and
    ``date`` dates; ``format_row`` turns one into the cells of the chosen file schema."""
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(SCHEMAS)}, got {schema!r}")
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
                    net, row = builder.tax(anchor_day)
                    yield anchor_day, net, row
                builder = _PeriodBuilder(month_start(day), schema)
                anchor_day = day
                tax_planned = "tax" in _plan(rows_per_day, day in anchors)[0]
            yield from _day_records(builder, day, rows_per_day, seed, day in anchors, restated)
        if builder is not None and anchor_day is not None and tax_planned:
            net, row = builder.tax(anchor_day)
            yield anchor_day, net, row

    return SampleExport(PROVIDER, start, end, rows_per_day, seed, restated, CURRENCIES[schema], source)


def _number_text(value: Decimal, e_notation: bool) -> str:
    if e_notation and value and abs(value) < Decimal("0.0001"):
        sign, digits, exponent = value.normalize().as_tuple()
        assert isinstance(exponent, int)
        text = "".join(map(str, digits))
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}E{len(digits) - 1 + exponent:+03d}"
    text = format(value.normalize(), "f")
    return text


def _cell(value: Any, e_notation: bool) -> str:
    if isinstance(value, Decimal):
        return _number_text(value, e_notation)
    if isinstance(value, date):
        return value.strftime("%m/%d/%Y")
    return str(value)


def _mca_computed(row: Row) -> dict[str, Any]:
    cost = row["CostInBillingCurrency"]
    payg_usd = money(row["PayGPrice"] * row["Quantity"], NANO)
    return {
        "billingCurrency": CURRENCIES["mca"],
        "pricingCurrency": "USD",
        "costInBillingCurrency": money(cost * MCA_EXCHANGE_RATE, NANO),
        "costInPricingCurrency": cost,
        "costInUsd": cost,
        "paygCostInBillingCurrency": money(payg_usd * MCA_EXCHANGE_RATE, NANO),
        "paygCostInUsd": payg_usd,
        "exchangeRatePricingToBilling": MCA_EXCHANGE_RATE,
        "exchangeRateDate": row["BillingPeriodStartDate"],
        "servicePeriodStartDate": row["BillingPeriodStartDate"],
        "servicePeriodEndDate": row["BillingPeriodEndDate"],
        "resellerName": "",
        "resellerMpnId": "",
        "publisherId": "",
        "provider": "Azure",
        "tags": json.dumps(dict(row["Tags"]), separators=(",", ":")) if row["Tags"] else "",
    }


_MCA_COMPUTED = frozenset(
    (
        "billingCurrency",
        "pricingCurrency",
        "costInBillingCurrency",
        "costInPricingCurrency",
        "costInUsd",
        "paygCostInBillingCurrency",
        "paygCostInUsd",
        "exchangeRatePricingToBilling",
        "exchangeRateDate",
        "servicePeriodStartDate",
        "servicePeriodEndDate",
        "resellerName",
        "resellerMpnId",
        "publisherId",
        "provider",
        "tags",
    )
)
_ROW_KEYS = frozenset((*EA_COLUMNS, "invoiceId", "previousInvoiceId", "ProductId"))
# Each MCA column that is not computed reads the generated row's key of the same meaning.
_MCA_SOURCE = {
    name: _MCA_FROM_EA.get(name) or (name if name in _ROW_KEYS else name[0].upper() + name[1:])
    for name in MCA_COLUMNS
    if name not in _MCA_COMPUTED
}


def format_row(row: Row, schema: str) -> dict[str, str]:
    """The CSV cells of one generated row for ``schema`` (``ea`` or ``mca``), in the schema's order."""
    if schema == "ea":
        tags = row["Tags"]
        cells = {name: _cell(row[name], True) for name in EA_COLUMNS}
        cells["Tags"] = _tags_body(tags) if tags else ""
        return cells
    computed = _mca_computed(row)
    return {
        name: _cell(computed[name] if name in computed else row[_MCA_SOURCE[name]], False)
        for name in MCA_COLUMNS
    }


def write_azure(
    export: SampleExport, out_dir: Path, schema: str = "ea", progress: ProgressCallback | None = None
) -> WriteSummary:
    """Write ``export`` as cost details CSV: ``{out_dir}/{YYYYMMDD-YYYYMMDD}/part_0_0001.csv`` per billing
    month (the folder names the whole month), a new ``part_0_000N.csv`` every ``PART_ROWS`` rows.

    ``schema`` must be the one the export was generated with. Streams; returns the files and the expected
    net cost per day."""
    files: list[Path] = []
    handle: TextIO | None = None
    writer: Any = None
    period: date | None = None
    part = part_rows = 0
    columns = COLUMNS[schema]
    try:
        for day, row in export.records(progress):
            if month_start(day) != period or part_rows >= PART_ROWS:
                part = 1 if month_start(day) != period else part + 1
                period = month_start(day)
                if handle is not None:
                    handle.close()
                folder = out_dir / f"{period:%Y%m%d}-{month_last_day(period):%Y%m%d}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"part_0_{part:04d}.csv"
                files.append(path)
                handle = path.open("w", encoding="utf-8-sig", newline="")
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                part_rows = 0
            cells = format_row(row, schema)
            writer.writerow([cells[name] for name in columns])
            part_rows += 1
    finally:
        if handle is not None:
            handle.close()
    return WriteSummary(
        PROVIDER, tuple(sorted(files)), export.row_count, export.currency, export.net_cost_by_day
    )
