"""Azure Cost Management cost-details CSV reader → Arrow in the ``azure_cost_details`` raw schema.

One canonical naming for every variant: the EA names in PascalCase (``CostInBillingCurrency``,
``ProductName``, ``BillingCurrencyCode``, ``InvoiceSectionName``, ``BenefitId``), plus the MCA-only
columns. The EA "Cost" variant (finops-toolkit: ``Cost``, ``Product``, ``BillingCurrency``,
``InvoiceSection``) and MCA's camelCase names are mapped to them by name, never by position.

Parsing is explicit: dates ``M/D/YYYY`` with or without zero padding (EA) or ISO (``YYYY-MM-DD``),
numbers as exact decimals (E-notation and 28-decimal costs included) rounded to NUMERIC's 9 decimals,
``TRUE``/``True`` flags. ``Tags`` is stored as a JSON object: EA writes the object body without braces
(``"env": "prod","team": "data"``), which is wrapped in ``{}``; ``TagList`` holds the same tags as
key/value pairs. Tags that are not a JSON object even when wrapped are kept as written with an empty
``TagList``, so FOCUS rule F24 flags them instead of the load failing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from billing.readers.common import CellParser, ReaderError, read_csv_rows, table_from_rows
from convergence.warehouse import Field

_STRING_COLUMNS = (
    "BillingAccountId",
    "BillingAccountName",
    "BillingProfileId",
    "BillingProfileName",
    "InvoiceSectionId",
    "InvoiceSectionName",
    "AccountId",
    "AccountName",
    "AccountOwnerId",
    "SubscriptionId",
    "SubscriptionName",
    "ResourceGroup",
    "ResourceLocation",
    "ResourceLocationNormalized",
    "ProductName",
    "ProductId",
    "PartNumber",
    "MeterId",
    "MeterCategory",
    "MeterSubCategory",
    "MeterName",
    "MeterRegion",
    "ServiceFamily",
    "UnitOfMeasure",
    "BillingCurrencyCode",
    "PricingCurrency",
    "CostCenter",
    "ConsumedService",
    "ResourceId",
    "ResourceName",
    "Tags",
    "OfferId",
    "AdditionalInfo",
    "ServiceInfo1",
    "ServiceInfo2",
    "ReservationId",
    "ReservationName",
    "ProductOrderId",
    "ProductOrderName",
    "Term",
    "PublisherType",
    "PublisherId",
    "PublisherName",
    "ChargeType",
    "Frequency",
    "PricingModel",
    "AvailabilityZone",
    "PlanName",
    "CostAllocationRuleName",
    "BenefitId",
    "BenefitName",
    "InvoiceId",
    "PreviousInvoiceId",
    "ResellerName",
    "ResellerMpnId",
    "Provider",
)
_DATE_COLUMNS = (
    "Date",
    "BillingPeriodStartDate",
    "BillingPeriodEndDate",
    "ServicePeriodStartDate",
    "ServicePeriodEndDate",
    "ExchangeRateDate",
)
_NUMERIC_COLUMNS = (
    "Quantity",
    "EffectivePrice",
    "UnitPrice",
    "PayGPrice",
    "CostInBillingCurrency",
    "CostInPricingCurrency",
    "CostInUsd",
    "PaygCostInBillingCurrency",
    "PaygCostInUsd",
    "ExchangeRatePricingToBilling",
)
AZURE_RAW_FIELDS: tuple[Field, ...] = (
    *(Field(name, "DATE") for name in _DATE_COLUMNS),
    *(Field(name, "NUMERIC") for name in _NUMERIC_COLUMNS),
    *(Field(name, "STRING") for name in _STRING_COLUMNS),
    Field("IsAzureCreditEligible", "BOOL"),
    Field("TagList", "RECORD", "REPEATED", (Field("key", "STRING"), Field("value", "STRING"))),
)
_TYPES = {field.name: field.type for field in AZURE_RAW_FIELDS}
#: Source names that differ from the canonical one by more than the first letter's case.
_ALIASES = {
    "Cost": "CostInBillingCurrency",
    "Product": "ProductName",
    "BillingCurrency": "BillingCurrencyCode",
    "InvoiceSection": "InvoiceSectionName",
    "ResourceGroupName": "ResourceGroup",
    "Location": "ResourceLocationNormalized",
}
_DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")


def canonical_column(name: str) -> str:
    """The raw table's name for an export column (``costInBillingCurrency``, ``Cost`` →
    ``CostInBillingCurrency``)."""
    upper = name[:1].upper() + name[1:]
    return _ALIASES.get(upper, upper)


def read_azure_csv(path: Path) -> pa.Table:
    """An EA or MCA cost-details CSV (BOM or not, LF or CRLF, optionally ``.csv.gz``); a header-only file
    gives an empty table. ``ReaderError`` when the cost, date or billing period column is missing."""
    header, rows = read_csv_rows(path)
    mapping: dict[str, str] = {}
    for name in header:
        canonical = canonical_column(name)
        if canonical in mapping.values():
            raise ReaderError(f"{path.name}: two columns mean {canonical}")
        if canonical in _TYPES:
            mapping[name] = canonical
    for required in ("CostInBillingCurrency", "Date", "BillingPeriodStartDate"):
        if required not in mapping.values():
            raise ReaderError(f"{path.name}: not an Azure cost details export (no {required} column)")
    parser = CellParser(path.name)
    typed: list[dict[str, Any]] = []
    for parser.line, cells in enumerate(rows, start=2):
        row: dict[str, Any] = {}
        for source, canonical in mapping.items():
            value = cells[source]
            type_name = _TYPES[canonical]
            if type_name == "DATE":
                row[canonical] = parser.date(source, value, _DATE_FORMATS)
            elif type_name == "NUMERIC":
                row[canonical] = parser.decimal(source, value)
            elif type_name == "BOOL":
                row[canonical] = parser.boolean(source, value)
            elif canonical == "Tags":
                row["Tags"], row["TagList"] = parse_tags(value)
            else:
                row[canonical] = parser.text(value)
        typed.append(row)
    return table_from_rows(typed, AZURE_RAW_FIELDS)


def parse_tags(value: str) -> tuple[str | None, list[dict[str, str]]]:
    """``(Tags as a JSON object text, [{key, value}])``. Brace-less bodies are wrapped in ``{}``; values
    stay as written (non-string JSON values as their JSON text). Not an object → ``(value, [])``."""
    text = value.strip()
    if not text:
        return None, []
    wrapped = text if text.startswith("{") else "{" + text + "}"
    try:
        parsed = json.loads(wrapped)
    except ValueError:
        return text, []
    if not isinstance(parsed, dict):
        return text, []
    pairs = [
        {"key": str(key), "value": item if isinstance(item, str) else json.dumps(item)}
        for key, item in parsed.items()
    ]
    return wrapped, pairs
