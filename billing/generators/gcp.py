"""Sample GCP Cloud Billing standard usage cost export (``gcp_billing_export_v1_<BILLING_ACCOUNT>``).

Rows follow the BigQuery schema in ``GCP_BILLING_EXPORT_SCHEMA`` (also committed as
``configs/gcp/schemas/gcp_billing_export.json``) and are written as NDJSON, one file per usage day, which
is what a BigQuery load job takes. Money is exact: ``cost``, credit amounts and ``cost_at_list`` have at
most 6 decimals (as Google's export) and are written as JSON numbers whose text is that exact decimal.

Net cost (what ``SampleExport.net_cost_by_day`` holds) is domain.md §1a's: ``cost + SUM(credits.amount)``
over every row of the usage day, whatever its ``cost_type`` (credits are negative).

What a day holds (``rows_per_day`` rows exactly, unless restated; specials only when there is room):
regular usage rows of several services, projects and locations, with sustained-use, committed-use
(resource and spend based), free-tier and promotion credits; one tax row per project; one usage
correction (a negating row plus a re-add row, ``cost_type = 'adjustment'``, exported two days later, so a
correction of a month's last days lands on the next invoice month); one committed-use fee row. The first
generated day of each month also holds a marketplace row (``transaction_type = 'THIRD_PARTY_RESELLER'``)
and a ``rounding error`` row.

A restated export is a later extract of the same days from the append-only table: every original row
again, byte for byte, plus price corrections (negation + re-add pairs exported five days later) for about
2% of each day's regular rows, so some days' net cost changes."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from billing.generators.common import (
    MICRO,
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
    period_anchor_days,
    plan_specials,
    random_hex,
    restated_indexes,
    tag_sets,
    validate_rows_per_day,
)

PROVIDER = "gcp"
BILLING_ACCOUNT_ID = "01A2B3-C4D5E6-F7G8H9"
TABLE_NAME = "gcp_billing_export_v1_" + BILLING_ACCOUNT_ID.replace("-", "_")
CURRENCY = "USD"
TAX_RATE = Decimal("0.0825")
CORRECTION_DELAY = timedelta(days=2)
RESTATEMENT_DELAY = timedelta(days=5)
RESTATED_SHARE = 0.02


def _field(name: str, field_type: str, mode: str = "NULLABLE", fields: list[Any] | None = None) -> Any:
    column: dict[str, Any] = {"name": name, "type": field_type, "mode": mode}
    if fields is not None:
        column["fields"] = fields
    return column


_KEY_VALUE = [_field("key", "STRING"), _field("value", "STRING")]

GCP_BILLING_EXPORT_SCHEMA: list[dict[str, Any]] = [
    _field("billing_account_id", "STRING"),
    _field("service", "RECORD", fields=[_field("id", "STRING"), _field("description", "STRING")]),
    _field("sku", "RECORD", fields=[_field("id", "STRING"), _field("description", "STRING")]),
    _field("usage_start_time", "TIMESTAMP"),
    _field("usage_end_time", "TIMESTAMP"),
    _field(
        "project",
        "RECORD",
        fields=[
            _field("id", "STRING"),
            _field("number", "STRING"),
            _field("name", "STRING"),
            _field("labels", "RECORD", "REPEATED", _KEY_VALUE),
            _field("ancestry_numbers", "STRING"),
            _field(
                "ancestors",
                "RECORD",
                "REPEATED",
                [_field("resource_name", "STRING"), _field("display_name", "STRING")],
            ),
        ],
    ),
    _field("labels", "RECORD", "REPEATED", _KEY_VALUE),
    _field("system_labels", "RECORD", "REPEATED", _KEY_VALUE),
    _field(
        "location",
        "RECORD",
        fields=[
            _field("location", "STRING"),
            _field("country", "STRING"),
            _field("region", "STRING"),
            _field("zone", "STRING"),
        ],
    ),
    _field(
        "tags",
        "RECORD",
        "REPEATED",
        [
            _field("key", "STRING"),
            _field("value", "STRING"),
            _field("inherited", "BOOLEAN"),
            _field("namespace", "STRING"),
        ],
    ),
    _field("transaction_type", "STRING"),
    _field("seller_name", "STRING"),
    _field("export_time", "TIMESTAMP"),
    _field("cost", "FLOAT"),
    _field("currency", "STRING"),
    _field("currency_conversion_rate", "FLOAT"),
    _field(
        "usage",
        "RECORD",
        fields=[
            _field("amount", "FLOAT"),
            _field("unit", "STRING"),
            _field("amount_in_pricing_units", "FLOAT"),
            _field("pricing_unit", "STRING"),
        ],
    ),
    _field(
        "credits",
        "RECORD",
        "REPEATED",
        [
            _field("name", "STRING"),
            _field("amount", "FLOAT"),
            _field("full_name", "STRING"),
            _field("id", "STRING"),
            _field("type", "STRING"),
        ],
    ),
    _field("invoice", "RECORD", fields=[_field("month", "STRING"), _field("publisher_type", "STRING")]),
    _field("cost_type", "STRING"),
    _field(
        "adjustment_info",
        "RECORD",
        fields=[
            _field("id", "STRING"),
            _field("description", "STRING"),
            _field("mode", "STRING"),
            _field("type", "STRING"),
        ],
    ),
    _field(
        "price",
        "RECORD",
        fields=[
            _field("effective_price", "NUMERIC"),
            _field("tier_start_amount", "NUMERIC"),
            _field("unit", "STRING"),
            _field("pricing_unit_quantity", "NUMERIC"),
            _field("list_price", "NUMERIC"),
            _field("effective_price_default", "NUMERIC"),
            _field("list_price_consumption_model", "NUMERIC"),
        ],
    ),
    _field("cost_at_list", "FLOAT"),
    _field("cost_at_effective_price_default", "NUMERIC"),
    _field("cost_at_list_consumption_model", "NUMERIC"),
    _field("consumption_model", "RECORD", fields=[_field("id", "STRING"), _field("description", "STRING")]),
]

REGIONS = {
    region.code: region
    for region in (
        Region("us-central1", "Iowa", "US", ("us-central1-a", "us-central1-b", "us-central1-c")),
        Region("us-east1", "South Carolina", "US", ("us-east1-b", "us-east1-c", "us-east1-d")),
        Region("europe-west1", "Belgium", "BE", ("europe-west1-b", "europe-west1-c", "europe-west1-d")),
        Region("asia-northeast1", "Tokyo", "JP", ("asia-northeast1-a", "asia-northeast1-b")),
    )
}
AMERICAS = ("us-central1", "us-east1")
ALL_REGIONS = tuple(REGIONS)
MULTI_REGIONS = {"US": "US", "EU": None}


@dataclass(frozen=True)
class Project:
    """A GCP project with the nested ``project`` record and the resource tags its rows carry."""

    id: str
    number: str
    name: str
    environment: str
    folder: tuple[str, str]
    labels: tuple[tuple[str, str], ...]

    def record(self) -> dict[str, Any]:
        organization = ("123456789012", "acme.example")
        return {
            "id": self.id,
            "number": self.number,
            "name": self.name,
            "labels": [{"key": key, "value": value} for key, value in self.labels],
            "ancestry_numbers": f"/{organization[0]}/{self.folder[0]}/",
            "ancestors": [
                {"resource_name": f"projects/{self.number}", "display_name": self.name},
                {"resource_name": f"folders/{self.folder[0]}", "display_name": self.folder[1]},
                {"resource_name": f"organizations/{organization[0]}", "display_name": organization[1]},
            ],
        }

    def resource_manager_tags(self) -> list[dict[str, Any]]:
        if self.environment != "prod":
            return []
        return [{"key": "environment", "value": "production", "inherited": True, "namespace": "123456789012"}]


PROJECTS = (
    Project(
        "acme-prod-123", "412345678901", "acme prod", "prod", ("456789012345", "prod"), (("env", "prod"),)
    ),
    Project(
        "acme-data-prod",
        "523456789012",
        "acme data",
        "prod",
        ("456789012345", "prod"),
        (("env", "prod"), ("team", "data")),
    ),
    Project("acme-dev-456", "634567890123", "acme dev", "dev", ("567890123456", "dev"), (("env", "dev"),)),
    Project("acme-shared-net", "745678901234", "shared networking", "prod", ("456789012345", "prod"), ()),
)


@dataclass(frozen=True)
class Sku:
    """A billable SKU: units, prices per pricing unit, the usage range of one hourly row, its credits."""

    service_id: str
    service: str
    sku_id: str
    description: str
    unit: str
    pricing_unit: str
    units_per_pricing_unit: Decimal
    price: Decimal
    list_price: Decimal
    usage_low: int
    usage_high: int
    location_kind: str  # zone, region, multi or global
    regions: tuple[str, ...]
    credit: str | None
    system_labels: tuple[tuple[str, str], ...] = ()
    weight: int = 1


GIB = Decimal(2**30)
HOUR = Decimal(3600)
GIB_MONTH = GIB * Decimal(730 * 3600)
COMPUTE = ("6F81-5844-456A", "Compute Engine")
BIGQUERY = ("24E6-581D-38E5", "BigQuery")
STORAGE = ("95FF-2EF5-5EA1", "Cloud Storage")

SKUS = (
    Sku(
        *COMPUTE,
        "2E27-4F75-95CD",
        "N1 Predefined Instance Core running in Americas",
        "seconds",
        "hour",
        HOUR,
        Decimal("0.031611"),
        Decimal("0.031611"),
        3600,
        8 * 3600,
        "zone",
        AMERICAS,
        "sud",
        (
            ("compute.googleapis.com/machine_spec", "n1-standard-4"),
            ("compute.googleapis.com/cores", "4"),
            ("compute.googleapis.com/memory", "15360"),
        ),
        weight=6,
    ),
    Sku(
        *COMPUTE,
        "2D4A-6B31-A7C0",
        "N1 Predefined Instance Ram running in Americas",
        "byte-seconds",
        "gibibyte hour",
        GIB * HOUR,
        Decimal("0.004237"),
        Decimal("0.004237"),
        2 * 2**30 * 3600,
        30 * 2**30 * 3600,
        "zone",
        AMERICAS,
        "sud",
        (("compute.googleapis.com/machine_spec", "n1-standard-4"),),
        weight=6,
    ),
    Sku(
        *COMPUTE,
        "9A3D-2F1C-0B77",
        "E2 Instance Core running in EMEA",
        "seconds",
        "hour",
        HOUR,
        Decimal("0.024036"),
        Decimal("0.024036"),
        1800,
        4 * 3600,
        "zone",
        ("europe-west1",),
        None,
        (("compute.googleapis.com/machine_spec", "e2-standard-2"),),
        weight=3,
    ),
    Sku(
        *COMPUTE,
        "6B8F-E63D-832B",
        "Network Internet Egress from Americas to APAC",
        "bytes",
        "gibibyte",
        GIB,
        Decimal("0.12"),
        Decimal("0.12"),
        10_000,
        80 * 2**30,
        "region",
        AMERICAS,
        None,
        weight=3,
    ),
    Sku(
        *BIGQUERY,
        "F17B-412E-CB64",
        "Analysis",
        "bytes",
        "tebibyte",
        GIB * 1024,
        Decimal("6.25"),
        Decimal("6.25"),
        10 * 2**20,
        2 * 2**40,
        "multi",
        ("US", "EU"),
        "free_tier",
        weight=4,
    ),
    Sku(
        *BIGQUERY,
        "2A0E-B2C5-8C44",
        "Active Logical Storage",
        "byte-seconds",
        "gibibyte month",
        GIB_MONTH,
        Decimal("0.02"),
        Decimal("0.02"),
        2**30 * 3600,
        200 * 2**30 * 3600,
        "multi",
        ("US", "EU"),
        None,
        (("bigquery.googleapis.com/storage_type", "active_logical"),),
        weight=2,
    ),
    Sku(
        *STORAGE,
        "E5F0-6A5D-7BAD",
        "Standard Storage US Multi-region",
        "byte-seconds",
        "gibibyte month",
        GIB_MONTH,
        Decimal("0.026"),
        Decimal("0.026"),
        2**30 * 3600,
        250 * 2**30 * 3600,
        "multi",
        ("US",),
        None,
        (("storage.googleapis.com/object_state", "live"),),
        weight=3,
    ),
    Sku(
        *STORAGE,
        "1C9F-4E5B-2A7E",
        "Multi-Region Standard Class A Operations",
        "requests",
        "count",
        Decimal(1),
        Decimal("0.00001"),
        Decimal("0.00001"),
        1,
        500_000,
        "multi",
        ("US", "EU"),
        None,
        weight=2,
    ),
    Sku(
        "9662-B51E-5089",
        "Cloud SQL",
        "3A1E-E4D2-6C4B",
        "Cloud SQL for PostgreSQL: Zonal - vCPU in Americas",
        "seconds",
        "hour",
        HOUR,
        Decimal("0.0413"),
        Decimal("0.0413"),
        3600,
        4 * 3600,
        "region",
        AMERICAS,
        "spend_cud",
        weight=2,
    ),
    Sku(
        "CCD8-9BF1-090E",
        "Kubernetes Engine",
        "B561-BA38-24D4",
        "Regional Kubernetes Clusters",
        "seconds",
        "hour",
        HOUR,
        Decimal("0.1"),
        Decimal("0.1"),
        3600,
        3600,
        "region",
        ALL_REGIONS,
        "promotion",
        weight=1,
    ),
    Sku(
        "5490-F7B7-8DF6",
        "Cloud Logging",
        "143F-A1B0-E0BE",
        "Log Storage cost",
        "bytes",
        "gibibyte",
        GIB,
        Decimal("0.5"),
        Decimal("0.5"),
        1000,
        4 * 2**30,
        "global",
        ("global",),
        None,
        weight=1,
    ),
    Sku(
        "FBF2-FC68-171A",
        "Security Command Center",
        "D5A4-0C3E-4DA4",
        "Event Threat Detection Log Ingest Bytes",
        "bytes",
        "gibibyte",
        GIB,
        Decimal("0.2"),
        Decimal("0.2"),
        1000,
        2**30,
        "global",
        ("global",),
        "promotion",
        weight=1,
    ),
)
SKU_CHOICES = tuple(sku for sku in SKUS for _ in range(sku.weight))
# Rows share these read-only sub-records (building them per row would dominate the generator's time).
PROJECT_RECORDS = {project.id: project.record() for project in PROJECTS}
PROJECT_TAGS = {project.id: project.resource_manager_tags() for project in PROJECTS}
SERVICE_RECORDS = {sku.sku_id: {"id": sku.service_id, "description": sku.service} for sku in SKUS}
SKU_RECORDS = {sku.sku_id: {"id": sku.sku_id, "description": sku.description} for sku in SKUS}
TAG_SETS = {project.id: tag_sets(project.environment) for project in PROJECTS}
LABEL_RECORDS = {
    combo: [{"key": key, "value": value} for key, value in combo]
    for combos in TAG_SETS.values()
    for combo in combos
}
SYSTEM_LABELS = {
    sku.sku_id: [{"key": key, "value": value} for key, value in sku.system_labels] for sku in SKUS
}
CUD_FEE = Sku(
    *COMPUTE,
    "8E3B-6F1A-5D21",
    "Commitment v1: Cpu in Americas for 1 Year",
    "seconds",
    "hour",
    HOUR,
    Decimal("0.019915"),
    Decimal("0.031611"),
    16 * 3600,
    16 * 3600,
    "region",
    ("us-central1",),
    None,
)
SERVICE_RECORDS[CUD_FEE.sku_id] = {"id": CUD_FEE.service_id, "description": CUD_FEE.service}
SKU_RECORDS[CUD_FEE.sku_id] = {"id": CUD_FEE.sku_id, "description": CUD_FEE.description}
SYSTEM_LABELS[CUD_FEE.sku_id] = []
CUD_ID = "projects/acme-prod-123/regions/us-central1/commitments/cud-cpu-1y"
SPEND_CUD_ID = "billingAccounts/01A2B3-C4D5E6-F7G8H9/commitments/cloudsql-1y"
MARKETPLACE_SERVICE = {"id": "A1E8-BE35-7EBC", "description": "MongoDB Atlas"}
MARKETPLACE_SKU = {"id": "C7F3-13A0-9D11", "description": "MongoDB Atlas (pay-as-you-go) usage"}
MARKETPLACE_SELLER = "MongoDB Inc."
INVOICE_SERVICE = {"id": "4A7E-2C1B-7F90", "description": "Invoice"}
ONE = Decimal(1)


@dataclass(frozen=True)
class Usage:
    """The draws behind one regular row, kept so a correction can reprice exactly that row."""

    sku: Sku
    project: Project
    location: dict[str, Any]
    start: datetime
    labels: tuple[tuple[str, str], ...]
    amount: Decimal
    export_time: datetime
    credit_draw: float


def _negate(value: Decimal) -> Decimal:
    # -Decimal("0.000000") is negative zero, which would be written as -0.0.
    return -value if value else value


@functools.lru_cache(maxsize=4096)
def _second_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _timestamp(moment: datetime) -> str:
    # strftime per row was a tenth of the generator's time; rows share a few hundred whole seconds.
    if moment.microsecond:
        return f"{_second_text(moment.replace(microsecond=0))}.{moment.microsecond:06d}Z"
    return f"{_second_text(moment)}Z"


@functools.lru_cache(maxsize=256)
def _location_record(kind: str, code: str, zone: str | None) -> dict[str, Any]:
    if kind == "global":
        return {"location": "global", "country": None, "region": None, "zone": None}
    if kind == "multi":
        return {"location": code, "country": MULTI_REGIONS[code], "region": None, "zone": None}
    region = REGIONS[code]
    return {"location": zone or code, "country": region.country, "region": code, "zone": zone}


def _location(rng: random.Random, sku: Sku) -> dict[str, Any]:
    code = rng.choice(sku.regions)
    zone = rng.choice(REGIONS[code].zones) if sku.location_kind == "zone" else None
    return _location_record(sku.location_kind, code, zone)


class _DayBuilder:
    """Builds one day's rows from that day's RNG; every method returns ``(net_cost, row)``."""

    def __init__(self, day: date, rng: random.Random) -> None:
        self.day = day
        self.rng = rng
        self.start = midnight(day)
        self.invoice_month = day.strftime("%Y%m")
        self.project_cost: dict[str, Decimal] = {project.id: ZERO for project in PROJECTS}

    def draw_usage(self) -> Usage:
        rng = self.rng
        sku = rng.choice(SKU_CHOICES)
        project = rng.choice(PROJECTS)
        location = _location(rng, sku)
        start = self.start + timedelta(hours=rng.randrange(24))
        labels = rng.choice(TAG_SETS[project.id])
        amount = Decimal(rng.randint(sku.usage_low, sku.usage_high))
        export_time = start + timedelta(hours=rng.randint(4, 20), microseconds=rng.randrange(1_000_000))
        return Usage(sku, project, location, start, labels, amount, export_time, rng.random())

    def usage_row(
        self,
        usage: Usage,
        *,
        sign: int = 1,
        adjustment: dict[str, Any] | None = None,
        export_time: datetime | None = None,
    ) -> tuple[Decimal, Row]:
        sku = usage.sku
        pricing_units = money(usage.amount / sku.units_per_pricing_unit, NANO)
        cost = money(pricing_units * sku.price, MICRO)
        cost_at_list = money(pricing_units * sku.list_price, MICRO)
        credits = self._credits(usage, cost)
        if sign < 0:
            cost, cost_at_list, pricing_units = _negate(cost), _negate(cost_at_list), _negate(pricing_units)
            credits = [dict(credit, amount=_negate(credit["amount"])) for credit in credits]
        moment = export_time or usage.export_time
        row: Row = {
            "billing_account_id": BILLING_ACCOUNT_ID,
            "service": SERVICE_RECORDS[sku.sku_id],
            "sku": SKU_RECORDS[sku.sku_id],
            "usage_start_time": _timestamp(usage.start),
            "usage_end_time": _timestamp(usage.start + timedelta(hours=1)),
            "project": PROJECT_RECORDS[usage.project.id],
            "labels": LABEL_RECORDS[usage.labels],
            "system_labels": SYSTEM_LABELS[sku.sku_id],
            "location": usage.location,
            "tags": PROJECT_TAGS[usage.project.id],
            "transaction_type": "GOOGLE",
            "seller_name": None,
            "export_time": _timestamp(moment),
            "cost": cost,
            "currency": CURRENCY,
            "currency_conversion_rate": ONE,
            "usage": {
                "amount": usage.amount if sign > 0 else _negate(usage.amount),
                "unit": sku.unit,
                "amount_in_pricing_units": pricing_units,
                "pricing_unit": sku.pricing_unit,
            },
            "credits": credits,
            "invoice": {
                "month": moment.strftime("%Y%m") if adjustment else self.invoice_month,
                "publisher_type": "GOOGLE",
            },
            "cost_type": "adjustment" if adjustment else "regular",
            "adjustment_info": adjustment,
            "price": {
                "effective_price": sku.price,
                "tier_start_amount": ZERO,
                "unit": sku.pricing_unit,
                "pricing_unit_quantity": pricing_units,
                "list_price": sku.list_price,
                "effective_price_default": sku.price,
                "list_price_consumption_model": sku.list_price,
            },
            "cost_at_list": cost_at_list,
            "cost_at_effective_price_default": cost,
            "cost_at_list_consumption_model": cost_at_list,
            "consumption_model": {"id": "default", "description": "Default"},
        }
        net = cost + sum((credit["amount"] for credit in credits), ZERO)
        if not adjustment:
            self.project_cost[usage.project.id] += net
        return net, row

    def _credits(self, usage: Usage, cost: Decimal) -> list[dict[str, Any]]:
        """The credits Google would nest in this row: negative amounts, none that round to zero."""
        kind, draw = usage.sku.credit, usage.credit_draw
        promotion = f"FreeTrial:Credit-{BILLING_ACCOUNT_ID}"
        # (name, amount, full_name, id, type); the promotion has no full_name, as in the koku sample.
        credit: tuple[str, Decimal, str | None, str | None, str] | None = None
        if kind == "sud" and usage.project.id == "acme-prod-123" and usage.sku.unit == "seconds":
            name = "Committed use discount: CPU"
            credit = (name, -cost, name, CUD_ID, "COMMITTED_USAGE_DISCOUNT")
        elif kind == "sud" and draw < 0.45:
            name = "Sustained usage discount"
            credit = (name, -money(cost * Decimal("0.2"), MICRO), name, None, "SUSTAINED_USAGE_DISCOUNT")
        elif kind == "spend_cud" and draw < 0.8:
            name = "Committed use discount: Cloud SQL"
            amount = -money(cost * Decimal("0.25"), MICRO)
            credit = (name, amount, name, SPEND_CUD_ID, "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE")
        elif kind == "free_tier" and draw < 0.15:
            credit = ("Free tier", -money(cost * Decimal("0.5"), MICRO), "Free tier", None, "FREE_TIER")
        elif kind == "promotion" and usage.project.environment == "dev":
            credit = (promotion, -cost, None, promotion, "PROMOTION")
        if credit is None or not credit[1]:
            return []
        return [dict(zip(("name", "amount", "full_name", "id", "type"), credit, strict=True))]

    def correction(
        self, usage: Usage, corrected: Usage, adjustment_type: str, delay: timedelta
    ) -> list[tuple[Decimal, Row]]:
        """A negation of ``usage``'s row and a re-add of it as ``corrected``.

        Both rows carry the same ``adjustment_info`` and are exported ``delay`` after the original."""
        adjustment = {
            "id": random_hex(self.rng, 16),
            "description": f"{adjustment_type.replace('_', ' ').capitalize()} for {usage.sku.description}",
            "mode": "COMPLETE_NEGATION_WITH_REMONETIZATION",
            "type": adjustment_type,
        }
        export_time = usage.export_time + delay
        return [
            self.usage_row(usage, sign=-1, adjustment=adjustment, export_time=export_time),
            self.usage_row(corrected, adjustment=adjustment, export_time=export_time),
        ]

    def cud_fee(self) -> tuple[Decimal, Row]:
        usage = Usage(
            CUD_FEE,
            PROJECTS[0],
            {"location": "us-central1", "country": "US", "region": "us-central1", "zone": None},
            self.start + timedelta(hours=self.rng.randrange(24)),
            (),
            Decimal(CUD_FEE.usage_low),
            self.start + timedelta(hours=26, microseconds=self.rng.randrange(1_000_000)),
            1.0,
        )
        return self.usage_row(usage)

    def invoice_row(self, project: Project | None, sku: dict[str, Any], cost: Decimal, cost_type: str) -> Row:
        hour = self.start + timedelta(hours=23)
        return {
            "billing_account_id": BILLING_ACCOUNT_ID,
            "service": INVOICE_SERVICE,
            "sku": sku,
            "usage_start_time": _timestamp(hour),
            "usage_end_time": _timestamp(hour + timedelta(hours=1)),
            "project": PROJECT_RECORDS[project.id] if project else None,
            "labels": [],
            "system_labels": [],
            "location": {"location": None, "country": None, "region": None, "zone": None},
            "tags": [],
            "transaction_type": "GOOGLE",
            "seller_name": None,
            "export_time": _timestamp(hour + timedelta(hours=5, microseconds=self.rng.randrange(1_000_000))),
            "cost": cost,
            "currency": CURRENCY,
            "currency_conversion_rate": ONE,
            "usage": {"amount": ZERO, "unit": None, "amount_in_pricing_units": ZERO, "pricing_unit": None},
            "credits": [],
            "invoice": {"month": self.invoice_month, "publisher_type": "GOOGLE"},
            "cost_type": cost_type,
            "adjustment_info": None,
            "price": None,
            "cost_at_list": None,
            "cost_at_effective_price_default": None,
            "cost_at_list_consumption_model": None,
            "consumption_model": None,
        }

    def tax(self, project: Project) -> tuple[Decimal, Row]:
        cost = money(max(self.project_cost[project.id], ZERO) * TAX_RATE, MICRO)
        sku = {"id": "0A1B-3C5D-7E9F", "description": "Tax: Sales tax"}
        return cost, self.invoice_row(project, sku, cost, "tax")

    def rounding_error(self) -> tuple[Decimal, Row]:
        cost = Decimal(self.rng.randint(-9, 9) or 1) * MICRO
        sku = {"id": "0A1B-3C5D-0000", "description": "Rounding error"}
        return cost, self.invoice_row(None, sku, cost, "rounding error")

    def marketplace(self) -> tuple[Decimal, Row]:
        project = PROJECTS[1]
        hour = self.start + timedelta(hours=self.rng.randrange(24))
        cost = money(Decimal(self.rng.randint(2_000_000, 9_000_000)) * MICRO, MICRO)
        row: Row = {
            "billing_account_id": BILLING_ACCOUNT_ID,
            "service": MARKETPLACE_SERVICE,
            "sku": MARKETPLACE_SKU,
            "usage_start_time": _timestamp(hour),
            "usage_end_time": _timestamp(hour + timedelta(hours=1)),
            "project": PROJECT_RECORDS[project.id],
            "labels": [],
            "system_labels": [],
            "location": {"location": "us-central1", "country": "US", "region": "us-central1", "zone": None},
            "tags": PROJECT_TAGS[project.id],
            "transaction_type": "THIRD_PARTY_RESELLER",
            "seller_name": MARKETPLACE_SELLER,
            "export_time": _timestamp(hour + timedelta(hours=7, microseconds=self.rng.randrange(1_000_000))),
            "cost": cost,
            "currency": CURRENCY,
            "currency_conversion_rate": ONE,
            "usage": {
                "amount": ONE,
                "unit": "count",
                "amount_in_pricing_units": ONE,
                "pricing_unit": "count",
            },
            "credits": [],
            "invoice": {"month": self.invoice_month, "publisher_type": "PARTNER"},
            "cost_type": "regular",
            "adjustment_info": None,
            "price": {
                "effective_price": cost,
                "tier_start_amount": ZERO,
                "unit": "count",
                "pricing_unit_quantity": ONE,
                "list_price": cost,
                "effective_price_default": cost,
                "list_price_consumption_model": cost,
            },
            "cost_at_list": cost,
            "cost_at_effective_price_default": cost,
            "cost_at_list_consumption_model": cost,
            "consumption_model": {"id": "default", "description": "Default"},
        }
        self.project_cost[project.id] += cost
        return cost, row


def _day_records(day: date, rows_per_day: int, seed: int, anchor: bool, restated: bool) -> Iterator[Record]:
    builder = _DayBuilder(day, day_rng(PROVIDER, seed, day))
    specials = [("tax", len(PROJECTS)), ("correction", 2), ("cud_fee", 1)]
    if anchor:
        specials += [("marketplace", 1), ("rounding", 1)]
    planned, regular = plan_specials(rows_per_day, tuple(specials))
    restate_rng = day_rng(PROVIDER, seed, day, "restated") if restated else None
    restate_at = restated_indexes(restate_rng, regular, RESTATED_SHARE)
    to_correct: Usage | None = None
    to_restate: list[Usage] = []
    pending = 0  # picked for restatement but not billable yet: the next billable row stands in
    for index in range(regular):
        usage = builder.draw_usage()
        net, row = builder.usage_row(usage)
        if to_correct is None and row["cost"] > 0:
            to_correct = usage
        pending += index in restate_at
        if pending and row["cost"] > 0:
            to_restate.append(usage)
            pending -= 1
        yield day, net, row
    if "correction" in planned and to_correct is not None:
        corrected = replace(to_correct, amount=Decimal(max(1, int(to_correct.amount * Decimal("0.6")))))
        for net, row in builder.correction(to_correct, corrected, "USAGE_CORRECTION", CORRECTION_DELAY):
            yield day, net, row
    elif "correction" in planned:
        # Nothing billable to correct: keep the day's row count with two more regular rows.
        for _ in range(2):
            net, row = builder.usage_row(builder.draw_usage())
            yield day, net, row
    if "cud_fee" in planned:
        net, row = builder.cud_fee()
        yield day, net, row
    if "marketplace" in planned:
        net, row = builder.marketplace()
        yield day, net, row
    if "rounding" in planned:
        net, row = builder.rounding_error()
        yield day, net, row
    if "tax" in planned:
        for project in PROJECTS:
            net, row = builder.tax(project)
            yield day, net, row
    if restate_rng is not None:
        builder.rng = restate_rng
        for usage in to_restate:
            factor = Decimal(restate_rng.choice(("0.85", "0.9", "1.1", "1.25")))
            repriced = replace(usage, sku=replace(usage.sku, price=money(usage.sku.price * factor, MICRO)))
            for net, row in builder.correction(usage, repriced, "PRICE_CORRECTION", RESTATEMENT_DELAY):
                yield day, net, row


def generate_gcp(
    start: date, end: date, rows_per_day: int, seed: int = 0, *, restated: bool = False
) -> SampleExport:
    """Rows of the standard usage cost export for ``start``..``end`` (inclusive), lazily.

    ``ValueError`` for an empty range or ``rows_per_day`` outside 1..1,000,000. Each day has exactly
    ``rows_per_day`` rows, plus the appended restatement pairs when ``restated``. Rows are JSON-ready
    dicts in schema order whose numbers are ``Decimal``; read totals from the returned export after
    iterating it."""
    days = days_in_range(start, end)
    validate_rows_per_day(rows_per_day)
    anchors = period_anchor_days(days)

    def source() -> Iterator[Record]:
        for day in days:
            yield from _day_records(day, rows_per_day, seed, day in anchors, restated)

    return SampleExport(PROVIDER, start, end, rows_per_day, seed, restated, CURRENCY, source)


def _json_default(value: object) -> float:
    # Every Decimal here has at most 15 significant digits, so the float's shortest repr is that exact
    # decimal: the file carries exact decimal text, not float noise.
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_gcp(export: SampleExport, out_dir: Path, progress: ProgressCallback | None = None) -> WriteSummary:
    """Write ``export`` as NDJSON, one file per usage day: ``{out_dir}/{TABLE_NAME}/{YYYYMMDD}.ndjson``.

    Streams (one open file at a time); returns the files and the expected net cost per day."""
    table_dir = out_dir / TABLE_NAME
    table_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    handle: TextIO | None = None
    current: date | None = None
    encode = json.JSONEncoder(separators=(",", ":"), default=_json_default, ensure_ascii=False).encode
    try:
        for day, row in export.records(progress):
            if day != current:
                if handle is not None:
                    handle.close()
                path = table_dir / f"{day:%Y%m%d}.ndjson"
                files.append(path)
                handle = path.open("w", encoding="utf-8", newline="\n")
                current = day
            assert handle is not None
            handle.write(encode(row))
            handle.write("\n")
    finally:
        if handle is not None:
            handle.close()
    return WriteSummary(PROVIDER, tuple(sorted(files)), export.row_count, CURRENCY, export.net_cost_by_day)


def write_schema(path: Path) -> None:
    """Write ``GCP_BILLING_EXPORT_SCHEMA`` as a BigQuery JSON schema file (what ``bq load`` takes)."""
    path.write_text(json.dumps(GCP_BILLING_EXPORT_SCHEMA, indent=2) + "\n", encoding="utf-8")
