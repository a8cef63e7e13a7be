"""The FOCUS data-quality rule set (domain.md §2.6): F01-F27 where computable from the data, as data.

Each rule is a schema rule (reads the table's column list), a row rule (a BigQuery boolean over one row:
the row fails when it is TRUE; NULL does not fail) or an aggregate rule (groups of rows: a group fails
when ``having`` is TRUE). ``dq.checks`` (check ``focus_rules``) turns the selected rules into one scan
of the table and one DQ result per rule; this module only says what the rules are.

Rules marked "E / W" in §2.6 are split into two ids with their own severities: F11A (ServiceCategory,
error) / F11B (ServiceSubcategory, warn) and F13A (ISO 4217, error) / F13B (one currency per billing
account and period, warn). Selecting ``F11`` or ``F13`` selects both.

Predicates add ``IS NULL`` where FOCUS 1.2 says the column is Mandatory and never null (ChargeCategory,
BillingCurrency, ServiceCategory, BillingPeriodStart/End), so a missing value fails the rule that owns
the column; Recommended/Conditional columns (ChargeFrequency, PricingCategory, ...) may be null.

Not implemented, on purpose:

- F23 (non-zero BilledCost on third-party-paid marketplace rows): FOCUS 1.2 has no column saying who
  paid a charge and the normalized table carries no provider flag for it, so it is not computable.
- F28 (``SUM(BilledCost)`` per InvoiceId vs the provider's invoice total): needs an invoice feed.
- F29 (DateTime serialisation: UTC, ``Z``, no sub-seconds): a property of exported text; the warehouse
  stores TIMESTAMP values, which have no format to check.
- KeyValueFormat's "unique keys" for Tags (F24): JSON parsers keep one of the duplicates silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warn"]
RuleKind = Literal["schema", "row", "aggregate"]

CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
CHARGE_FREQUENCIES = ("One-Time", "Recurring", "Usage-Based")
PRICING_CATEGORIES = ("Standard", "Dynamic", "Committed", "Other")
COMMITMENT_DISCOUNT_STATUSES = ("Used", "Unused")
COMMITMENT_DISCOUNT_CATEGORIES = ("Spend", "Usage")

#: FOCUS 1.2 ServiceCategory values (domain.md §2.2: all 19).
SERVICE_CATEGORIES = (
    "AI and Machine Learning",
    "Analytics",
    "Business Applications",
    "Compute",
    "Databases",
    "Developer Tools",
    "Multicloud",
    "Identity",
    "Integration",
    "Internet of Things",
    "Management and Governance",
    "Media",
    "Migration",
    "Mobile",
    "Networking",
    "Security",
    "Storage",
    "Web",
    "Other",
)

#: ServiceSubcategory values of the Compute category, the only category domain.md §2.2 lists (FOCUS_Spec
#: ``servicesubcategory.md`` has about 80 values over all categories; the others are not checked).
COMPUTE_SUBCATEGORIES = (
    "Containers",
    "End User Computing",
    "Quantum Compute",
    "Serverless Compute",
    "Virtual Machines",
    "Other (Compute)",
)

#: ISO 4217 List One active currency codes (as published mid-2025: ZWG, SLE, VED and XCG included;
#: HRK, SLL, ZWL, CUC withdrawn). FOCUS CurrencyFormat asks for national currencies, so fund codes
#: (BOV, CLF, CHE, ...), precious metals, XDR/XSU/XUA and the test codes XTS/XXX are left out.
ISO_4217_CURRENCIES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
    STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD
    XCG XOF XPF YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905 - 157 codes read better as a block than as a list literal
)

#: Placeholders FOCUS null handling forbids in string columns (F26), compared after trimming.
STRING_PLACEHOLDERS = ("", "N/A", "n/a", "NA", "null", "NULL", "None")

#: Relative tolerance of the cost equalities providers round (F18, F21), as a multiplier so the
#: comparison stays in NUMERIC: ``|a - b| * 1000000 > GREATEST(|b|, 1)`` (below 1, 1e-6 absolute).
TOLERANCE_FACTOR = 1_000_000

#: A JSON string literal (quotes and escapes included), as an RE2 pattern for BigQuery and DuckDB.
_JSON_STRING_RE = r'"(?:[^"\\]|\\.)*"'


def sql_strings(values: Iterable[str]) -> str:
    """``'a', 'b'``: an ``IN (...)`` list of this module's constants, which hold no quote or backslash."""
    listed = list(values)
    if any("'" in value or "\\" in value for value in listed):
        raise ValueError("a rule constant holds a quote or backslash")
    return ", ".join(f"'{value}'" for value in listed)


@dataclass(frozen=True)
class FocusRule:
    """One rule. ``columns`` are the columns it reads: a rule whose columns are not all in the table is
    not applicable and reported as skipped (F01 reports missing Mandatory columns). ``predicate`` is a
    row rule's failure condition; an aggregate rule counts the groups of ``group_by`` (rows limited by
    ``predicate`` when set) for which ``having`` holds."""

    rule_id: str
    description: str
    severity: Severity
    kind: RuleKind
    columns: tuple[str, ...] = ()
    predicate: str = ""
    group_by: tuple[str, ...] = ()
    having: str = ""
    #: The domain.md §2.6 id this rule implements (F11 for F11A and F11B).
    family: str = ""
    focus_version: str = "1.2"

    @property
    def family_id(self) -> str:
        return self.family or self.rule_id


def _tolerance_exceeded(computed: str, reported: str) -> str:
    return f"ABS({computed} - {reported}) * {TOLERANCE_FACTOR} > GREATEST(ABS({reported}), 1)"


def placeholder_predicate(string_columns: Sequence[str]) -> str:
    """F26 over the table's own STRING columns (known only once the table is described)."""
    placeholders = sql_strings(STRING_PLACEHOLDERS)
    return " OR ".join(f"TRIM(`{column}`) IN ({placeholders})" for column in string_columns)


# F24 in BigQuery terms. ``SAFE.PARSE_JSON`` has no DuckDB translation in sqlglot; the check's SQL
# builder rewrites it for DuckDB. Outside JSON string literals, ``{`` and ``[`` only open objects and
# arrays, so a primitive-valued object has exactly one of them once its strings are blanked out.
_TAGS_PREDICATE = (
    "Tags IS NOT NULL AND ("
    "COALESCE(LOWER(JSON_TYPE(SAFE.PARSE_JSON(Tags))), '') != 'object' "
    f"OR LENGTH(REGEXP_REPLACE(REGEXP_REPLACE(Tags, r'{_JSON_STRING_RE}', '\"\"'), r'[^\\[{{]', '')) > 1)"
)

FOCUS_RULES: tuple[FocusRule, ...] = (
    FocusRule("F01", "a FOCUS 1.2 Mandatory column is missing from the table", "error", "schema"),
    FocusRule(
        "F02",
        "a cost column (Billed, Effective, List, Contracted) is null",
        "error",
        "row",
        ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"),
        "BilledCost IS NULL OR EffectiveCost IS NULL OR ListCost IS NULL OR ContractedCost IS NULL",
    ),
    FocusRule(
        "F03",
        "the charge period is null or does not end after it starts",
        "error",
        "row",
        ("ChargePeriodStart", "ChargePeriodEnd"),
        "ChargePeriodStart IS NULL OR ChargePeriodEnd IS NULL OR ChargePeriodStart >= ChargePeriodEnd",
    ),
    FocusRule(
        "F04",
        "the billing period is null or does not end after it starts",
        "error",
        "row",
        ("BillingPeriodStart", "BillingPeriodEnd"),
        "BillingPeriodStart IS NULL OR BillingPeriodEnd IS NULL OR BillingPeriodStart >= BillingPeriodEnd",
    ),
    FocusRule(
        "F05",
        "a charge starts outside its billing period (corrections excepted)",
        "warn",
        "row",
        ("ChargePeriodStart", "BillingPeriodStart", "BillingPeriodEnd", "ChargeClass"),
        "(ChargeClass IS NULL OR ChargeClass != 'Correction') "
        "AND (ChargePeriodStart < BillingPeriodStart OR ChargePeriodStart >= BillingPeriodEnd)",
    ),
    FocusRule(
        "F06",
        "ChargeCategory is null or not a FOCUS value",
        "error",
        "row",
        ("ChargeCategory",),
        f"ChargeCategory IS NULL OR ChargeCategory NOT IN ({sql_strings(CHARGE_CATEGORIES)})",
    ),
    FocusRule(
        "F07",
        "ChargeClass is neither null nor 'Correction'",
        "error",
        "row",
        ("ChargeClass",),
        "ChargeClass IS NOT NULL AND ChargeClass != 'Correction'",
    ),
    FocusRule(
        "F08",
        "ChargeFrequency is not a FOCUS value, or is Usage-Based on a Purchase",
        "error",
        "row",
        ("ChargeFrequency", "ChargeCategory"),
        f"ChargeFrequency NOT IN ({sql_strings(CHARGE_FREQUENCIES)}) "
        "OR (ChargeCategory = 'Purchase' AND ChargeFrequency = 'Usage-Based')",
    ),
    FocusRule(
        "F09",
        "PricingCategory is not a FOCUS value",
        "error",
        "row",
        ("PricingCategory",),
        f"PricingCategory IS NOT NULL AND PricingCategory NOT IN ({sql_strings(PRICING_CATEGORIES)})",
    ),
    FocusRule(
        "F10",
        "commitment discount status or category invalid, or category null iff id null violated",
        "error",
        "row",
        ("CommitmentDiscountStatus", "CommitmentDiscountCategory", "CommitmentDiscountId"),
        f"CommitmentDiscountStatus NOT IN ({sql_strings(COMMITMENT_DISCOUNT_STATUSES)}) "
        f"OR CommitmentDiscountCategory NOT IN ({sql_strings(COMMITMENT_DISCOUNT_CATEGORIES)}) "
        "OR ((CommitmentDiscountId IS NULL) != (CommitmentDiscountCategory IS NULL))",
    ),
    FocusRule(
        "F11A",
        "ServiceCategory is null or not one of the 19 FOCUS values",
        "error",
        "row",
        ("ServiceCategory",),
        f"ServiceCategory IS NULL OR ServiceCategory NOT IN ({sql_strings(SERVICE_CATEGORIES)})",
        family="F11",
    ),
    FocusRule(
        "F11B",
        "ServiceSubcategory does not belong to its ServiceCategory (Compute's list only)",
        "warn",
        "row",
        ("ServiceSubcategory", "ServiceCategory"),
        "ServiceSubcategory IS NOT NULL AND ((ServiceCategory = 'Compute') "
        f"!= (ServiceSubcategory IN ({sql_strings(COMPUTE_SUBCATEGORIES)})))",
        family="F11",
    ),
    FocusRule(
        "F12",
        "a ServiceName maps to more than one ServiceCategory (count of such ServiceNames)",
        "error",
        "aggregate",
        ("ServiceName", "ServiceCategory"),
        group_by=("ServiceName",),
        having="COUNT(DISTINCT ServiceCategory) > 1",
    ),
    FocusRule(
        "F13A",
        "BillingCurrency is null or not an ISO 4217 currency code",
        "error",
        "row",
        ("BillingCurrency",),
        f"BillingCurrency IS NULL OR BillingCurrency NOT IN ({sql_strings(sorted(ISO_4217_CURRENCIES))})",
        family="F13",
    ),
    FocusRule(
        "F13B",
        "a billing account has more than one BillingCurrency in a billing period (count of such groups)",
        "warn",
        "aggregate",
        ("BillingAccountId", "BillingPeriodStart", "BillingCurrency"),
        group_by=("BillingAccountId", "BillingPeriodStart"),
        having="COUNT(DISTINCT BillingCurrency) > 1",
        family="F13",
    ),
    FocusRule(
        "F14",
        "a Tax row has pricing quantity, SKU, SKU price, list unit price or pricing category",
        "error",
        "row",
        ("ChargeCategory", "PricingQuantity", "SkuId", "SkuPriceId", "ListUnitPrice", "PricingCategory"),
        "ChargeCategory = 'Tax' AND (PricingQuantity IS NOT NULL OR SkuId IS NOT NULL "
        "OR SkuPriceId IS NOT NULL OR ListUnitPrice IS NOT NULL OR PricingCategory IS NOT NULL)",
    ),
    FocusRule(
        "F15",
        "a non-correction Usage or Purchase row lacks PricingQuantity or PricingUnit",
        "error",
        "row",
        ("ChargeCategory", "ChargeClass", "PricingQuantity", "PricingUnit"),
        "ChargeCategory IN ('Usage', 'Purchase') AND ChargeClass IS NULL "
        "AND (PricingQuantity IS NULL OR PricingUnit IS NULL)",
    ),
    FocusRule(
        "F16",
        "PricingQuantity and PricingUnit are not both null or both set",
        "error",
        "row",
        ("PricingQuantity", "PricingUnit"),
        "(PricingQuantity IS NULL) != (PricingUnit IS NULL)",
    ),
    FocusRule(
        "F17",
        "a negative ListUnitPrice or ContractedUnitPrice",
        "error",
        "row",
        ("ListUnitPrice", "ContractedUnitPrice"),
        "ListUnitPrice < 0 OR ContractedUnitPrice < 0",
    ),
    FocusRule(
        "F18",
        "ListCost or ContractedCost differs from unit price x PricingQuantity (1e-6 relative)",
        "warn",
        "row",
        (
            "ChargeClass",
            "PricingQuantity",
            "ListUnitPrice",
            "ListCost",
            "ContractedUnitPrice",
            "ContractedCost",
        ),
        "ChargeClass IS NULL AND PricingQuantity IS NOT NULL AND ("
        "(ListUnitPrice IS NOT NULL AND "
        f"{_tolerance_exceeded('ListUnitPrice * PricingQuantity', 'ListCost')}) "
        "OR (ContractedUnitPrice IS NOT NULL AND "
        f"{_tolerance_exceeded('ContractedUnitPrice * PricingQuantity', 'ContractedCost')}))",
    ),
    FocusRule(
        "F19",
        "a Credit row whose EffectiveCost differs from its BilledCost",
        "error",
        "row",
        ("ChargeCategory", "EffectiveCost", "BilledCost"),
        "ChargeCategory = 'Credit' AND EffectiveCost != BilledCost",
    ),
    FocusRule(
        "F20",
        "a commitment Purchase row with a non-zero EffectiveCost",
        "warn",
        "row",
        ("ChargeCategory", "CommitmentDiscountId", "EffectiveCost"),
        "ChargeCategory = 'Purchase' AND CommitmentDiscountId IS NOT NULL AND EffectiveCost != 0",
    ),
    FocusRule(
        "F21",
        "per commitment and billing period with a Purchase row, Usage EffectiveCost differs from Purchase "
        "BilledCost (1e-6 relative; count of such commitments)",
        "warn",
        "aggregate",
        ("CommitmentDiscountId", "BillingPeriodStart", "ChargeCategory", "EffectiveCost", "BilledCost"),
        predicate="CommitmentDiscountId IS NOT NULL",
        group_by=("CommitmentDiscountId", "BillingPeriodStart"),
        # Only groups holding a Purchase row: an upfront purchase amortised over later periods has
        # usage without a purchase in those periods, which is not a mismatch.
        having="COUNTIF(ChargeCategory = 'Purchase') > 0 AND "
        + _tolerance_exceeded(
            "COALESCE(SUM(IF(ChargeCategory = 'Usage', EffectiveCost, 0)), 0)",
            "COALESCE(SUM(IF(ChargeCategory = 'Purchase', BilledCost, 0)), 0)",
        ),
    ),
    FocusRule(
        "F22",
        "ConsumedQuantity set on a non-Usage row or an unused commitment",
        "error",
        "row",
        ("ConsumedQuantity", "ChargeCategory", "CommitmentDiscountStatus"),
        "ConsumedQuantity IS NOT NULL AND (ChargeCategory != 'Usage' OR CommitmentDiscountStatus = 'Unused')",
    ),
    FocusRule(
        "F24",
        "Tags is not a JSON object with primitive values",
        "error",
        "row",
        ("Tags",),
        _TAGS_PREDICATE,
    ),
    FocusRule(
        "F25",
        "SkuPriceDetails is set while SkuPriceId is null",
        "error",
        "row",
        ("SkuPriceDetails", "SkuPriceId"),
        "SkuPriceDetails IS NOT NULL AND SkuPriceId IS NULL",
    ),
    FocusRule(
        "F26",
        "an empty string or placeholder ('N/A', 'null', ...) in a STRING column",
        "warn",
        "row",
    ),
    FocusRule(
        "F27",
        "a column that is neither a FOCUS column nor x_-prefixed",
        "error",
        "schema",
    ),
)

RULES_BY_ID: dict[str, FocusRule] = {rule.rule_id: rule for rule in FOCUS_RULES}
#: Names a config may use: each rule id, and each §2.6 id that was split (F11 → F11A, F11B).
RULE_SELECTORS: dict[str, tuple[str, ...]] = {
    **{rule.rule_id: (rule.rule_id,) for rule in FOCUS_RULES},
    **{
        family: tuple(rule.rule_id for rule in FOCUS_RULES if rule.family == family)
        for family in {rule.family for rule in FOCUS_RULES if rule.family}
    },
}
NOT_IMPLEMENTED = {
    "F23": "needs a provider-specific third-party-paid flag the FOCUS table does not carry",
    "F28": "needs the provider's invoice totals",
    "F29": "a serialisation format check; the warehouse stores TIMESTAMP values",
}


def select_rules(selectors: Iterable[str] | None) -> tuple[FocusRule, ...]:
    """The rules named by ``selectors`` (rule ids or split §2.6 ids) in rule-set order; every rule when
    None. ``KeyError`` names the first unknown selector."""
    if selectors is None:
        return FOCUS_RULES
    wanted: set[str] = set()
    for selector in selectors:
        if selector not in RULE_SELECTORS:
            raise KeyError(selector)
        wanted.update(RULE_SELECTORS[selector])
    return tuple(rule for rule in FOCUS_RULES if rule.rule_id in wanted)


def unknown_selector_message(selector: str) -> str:
    """Why ``selector`` is not a rule: not implemented (with the reason) or unknown."""
    if selector in NOT_IMPLEMENTED:
        return f"FOCUS rule {selector} is not implemented: {NOT_IMPLEMENTED[selector]}"
    return f"unknown FOCUS rule {selector!r} (known: {', '.join(sorted(RULE_SELECTORS))})"
