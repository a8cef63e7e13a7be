"""FOCUS 1.2 column registry (domain.md §2.2, from FOCUS_Spec v1.2 ``specification/columns/*.md``) and the
1.3 additions (§2.4). One place that says which columns exist, how required they are and their types; the
table schema, the normalization SQL and the conformance rules (F01, F27) all read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["Mandatory", "Conditional", "Recommended"]
Kind = Literal["Dimension", "Metric"]
FocusType = Literal["String", "Decimal", "Date/Time", "JSON"]


@dataclass(frozen=True)
class FocusColumn:
    name: str
    kind: Kind
    level: Level
    #: FOCUS allows nulls in this column.
    nullable: bool
    focus_type: FocusType
    #: The FOCUS version that introduced the column.
    since: str = "1.0"


FOCUS_1_2_COLUMNS: tuple[FocusColumn, ...] = (
    FocusColumn("AvailabilityZone", "Dimension", "Recommended", True, "String"),
    FocusColumn("BilledCost", "Metric", "Mandatory", False, "Decimal"),
    FocusColumn("BillingAccountId", "Dimension", "Mandatory", False, "String"),
    FocusColumn("BillingAccountName", "Dimension", "Mandatory", True, "String"),
    FocusColumn("BillingAccountType", "Dimension", "Conditional", False, "String"),
    FocusColumn("BillingCurrency", "Dimension", "Mandatory", False, "String"),
    FocusColumn("BillingPeriodEnd", "Dimension", "Mandatory", False, "Date/Time"),
    FocusColumn("BillingPeriodStart", "Dimension", "Mandatory", False, "Date/Time"),
    FocusColumn("CapacityReservationId", "Dimension", "Conditional", True, "String"),
    FocusColumn("CapacityReservationStatus", "Dimension", "Conditional", True, "String"),
    FocusColumn("ChargeCategory", "Dimension", "Mandatory", False, "String"),
    FocusColumn("ChargeClass", "Dimension", "Mandatory", True, "String"),
    FocusColumn("ChargeDescription", "Dimension", "Mandatory", True, "String"),
    FocusColumn("ChargeFrequency", "Dimension", "Recommended", False, "String"),
    FocusColumn("ChargePeriodEnd", "Dimension", "Mandatory", False, "Date/Time"),
    FocusColumn("ChargePeriodStart", "Dimension", "Mandatory", False, "Date/Time"),
    FocusColumn("CommitmentDiscountCategory", "Dimension", "Conditional", True, "String"),
    FocusColumn("CommitmentDiscountId", "Dimension", "Conditional", True, "String"),
    FocusColumn("CommitmentDiscountName", "Dimension", "Conditional", True, "String"),
    FocusColumn("CommitmentDiscountQuantity", "Metric", "Conditional", True, "Decimal"),
    FocusColumn("CommitmentDiscountStatus", "Dimension", "Conditional", True, "String"),
    FocusColumn("CommitmentDiscountType", "Dimension", "Conditional", True, "String"),
    FocusColumn("CommitmentDiscountUnit", "Dimension", "Conditional", True, "String"),
    FocusColumn("ConsumedQuantity", "Metric", "Conditional", True, "Decimal"),
    FocusColumn("ConsumedUnit", "Dimension", "Conditional", True, "String"),
    FocusColumn("ContractedCost", "Metric", "Mandatory", False, "Decimal"),
    FocusColumn("ContractedUnitPrice", "Metric", "Conditional", True, "Decimal"),
    FocusColumn("EffectiveCost", "Metric", "Mandatory", False, "Decimal"),
    FocusColumn("InvoiceId", "Dimension", "Recommended", True, "String"),
    FocusColumn("InvoiceIssuerName", "Dimension", "Mandatory", False, "String"),
    FocusColumn("ListCost", "Metric", "Mandatory", False, "Decimal"),
    FocusColumn("ListUnitPrice", "Metric", "Conditional", True, "Decimal"),
    FocusColumn("PricingCategory", "Dimension", "Conditional", True, "String"),
    FocusColumn("PricingCurrency", "Dimension", "Conditional", True, "String"),
    FocusColumn("PricingCurrencyContractedUnitPrice", "Metric", "Conditional", True, "Decimal"),
    FocusColumn("PricingCurrencyEffectiveCost", "Metric", "Conditional", True, "Decimal"),
    FocusColumn("PricingCurrencyListUnitPrice", "Metric", "Conditional", True, "Decimal"),
    FocusColumn("PricingQuantity", "Metric", "Mandatory", True, "Decimal"),
    FocusColumn("PricingUnit", "Dimension", "Mandatory", True, "String"),
    FocusColumn("ProviderName", "Dimension", "Mandatory", False, "String"),
    FocusColumn("PublisherName", "Dimension", "Mandatory", False, "String"),
    FocusColumn("RegionId", "Dimension", "Conditional", True, "String"),
    FocusColumn("RegionName", "Dimension", "Conditional", True, "String"),
    FocusColumn("ResourceId", "Dimension", "Conditional", True, "String"),
    FocusColumn("ResourceName", "Dimension", "Conditional", True, "String"),
    FocusColumn("ResourceType", "Dimension", "Conditional", True, "String"),
    FocusColumn("ServiceCategory", "Dimension", "Mandatory", False, "String"),
    FocusColumn("ServiceName", "Dimension", "Mandatory", False, "String"),
    FocusColumn("ServiceSubcategory", "Dimension", "Recommended", False, "String"),
    FocusColumn("SkuId", "Dimension", "Conditional", True, "String"),
    FocusColumn("SkuMeter", "Dimension", "Conditional", True, "String"),
    FocusColumn("SkuPriceDetails", "Dimension", "Conditional", True, "JSON"),
    FocusColumn("SkuPriceId", "Dimension", "Conditional", True, "String"),
    FocusColumn("SubAccountId", "Dimension", "Conditional", True, "String"),
    FocusColumn("SubAccountName", "Dimension", "Conditional", True, "String"),
    FocusColumn("SubAccountType", "Dimension", "Conditional", True, "String"),
    FocusColumn("Tags", "Dimension", "Conditional", True, "JSON"),
)

#: FOCUS 1.3 columns (domain.md §2.4). Written nullable: this table is 1.2 with 1.3 columns ready.
FOCUS_1_3_COLUMNS: tuple[FocusColumn, ...] = (
    FocusColumn("ServiceProviderName", "Dimension", "Mandatory", True, "String", since="1.3"),
    FocusColumn("HostProviderName", "Dimension", "Mandatory", True, "String", since="1.3"),
    FocusColumn("AllocatedMethodId", "Dimension", "Conditional", True, "String", since="1.3"),
    FocusColumn("AllocatedMethodDetails", "Dimension", "Recommended", True, "JSON", since="1.3"),
    FocusColumn("AllocatedResourceId", "Dimension", "Conditional", True, "String", since="1.3"),
    FocusColumn("AllocatedResourceName", "Dimension", "Conditional", True, "String", since="1.3"),
    FocusColumn("AllocatedTags", "Dimension", "Conditional", True, "JSON", since="1.3"),
    FocusColumn("ContractApplied", "Dimension", "Conditional", True, "JSON", since="1.3"),
)

FOCUS_COLUMNS: dict[str, FocusColumn] = {
    column.name: column for column in FOCUS_1_2_COLUMNS + FOCUS_1_3_COLUMNS
}
MANDATORY_1_2: tuple[str, ...] = tuple(c.name for c in FOCUS_1_2_COLUMNS if c.level == "Mandatory")

#: Custom (non-FOCUS) columns must carry this prefix (FOCUS "Custom columns" attribute; rule F27).
CUSTOM_PREFIX = "x_"
