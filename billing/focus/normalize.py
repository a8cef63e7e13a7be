"""Provider raw export → FOCUS 1.2 rows: one BigQuery Standard SQL SELECT per provider.

``normalize_sql(provider, raw_table)`` returns a SELECT over the raw landing table producing every
``focus_costs`` column in table order (unmapped columns as typed NULLs), for the run's day (GCP: usage
date ``@date``) or billing period (AWS, Azure: the calendar month containing ``@date``), with
``x_RunId = @_run_id``. The mapping follows domain.md §2.5 with its marked choices:

- GCP: BilledCost = EffectiveCost = ``cost + SUM(credits.amount)`` (net of credits; the credits sum is
  written as ``(SELECT SUM(c.amount) FROM UNNEST(credits) AS c)``, which the DuckDB backend rewrites to
  ``list_sum(list_transform(...))``); ListCost = ``cost_at_list``; ContractedCost = ``cost``;
  BillingPeriodStart = the invoice month's first day, BillingPeriodEnd = the next month's first day
  (exclusive, 00:00 UTC, like the usage timestamps the export is keyed on); ``cost_type`` regular → Usage,
  tax → Tax, adjustment and rounding error → Adjustment (proper case); ChargeClass Correction when
  ``adjustment_info.id`` is set; Tags = resource labels plus system labels (keys already provider-prefixed).
- AWS (CUR 2.0): BilledCost = ``line_item_net_unblended_cost`` if not null else
  ``line_item_unblended_cost``; EffectiveCost per line item type (savings plan / reservation
  amortization); ``user_`` tag prefixes stripped, ``aws_`` tags kept prefixed.
- Azure (cost details, actual or amortized): BilledCost = CostInBillingCurrency, 0 for usage covered by a
  reservation or savings plan (amortized rows; billed on the purchase); EffectiveCost =
  CostInBillingCurrency, 0 for reservation / savings plan purchases and refunds; BillingPeriodEnd =
  BillingPeriodEndDate + 1 day; ChargePeriod = Date .. Date + 1 day.

``raw_net_cost_sql(provider)`` is the same BilledCost as an expression over one raw row: what the
reconciliation check compares ``SUM(BilledCost)`` with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from billing.focus.schema import FOCUS_FIELDS, FOCUS_VERSION

# --- lookup tables (domain.md §2.5: FOCUS ServiceCategory, one value per ServiceName) ------------------
GCP_SERVICE_CATEGORIES: dict[str, str] = {
    "Compute Engine": "Compute",
    "Kubernetes Engine": "Compute",
    "Cloud Run": "Compute",
    "Cloud Functions": "Compute",
    "App Engine": "Compute",
    "BigQuery": "Analytics",
    "Dataflow": "Analytics",
    "Dataproc": "Analytics",
    "Looker": "Analytics",
    "Cloud Storage": "Storage",
    "Filestore": "Storage",
    "Cloud SQL": "Databases",
    "Cloud Spanner": "Databases",
    "Cloud Bigtable": "Databases",
    "Cloud Firestore": "Databases",
    "Memorystore for Redis": "Databases",
    "Networking": "Networking",
    "Cloud DNS": "Networking",
    "Cloud CDN": "Networking",
    "Cloud Load Balancing": "Networking",
    "Cloud Logging": "Management and Governance",
    "Cloud Monitoring": "Management and Governance",
    "Stackdriver Logging": "Management and Governance",
    "Stackdriver Monitoring": "Management and Governance",
    "Security Command Center": "Security",
    "Cloud Key Management Service (KMS)": "Security",
    "Secret Manager": "Security",
    "Cloud Pub/Sub": "Integration",
    "Vertex AI": "AI and Machine Learning",
    "Cloud Build": "Developer Tools",
    "Artifact Registry": "Developer Tools",
}
AWS_SERVICE_CATEGORIES: dict[str, str] = {
    "AmazonEC2": "Compute",
    "AWSLambda": "Compute",
    "AmazonECS": "Compute",
    "AmazonEKS": "Compute",
    "AmazonLightsail": "Compute",
    "ComputeSavingsPlans": "Compute",
    "AmazonS3": "Storage",
    "AmazonEFS": "Storage",
    "AmazonGlacier": "Storage",
    "AWSBackup": "Storage",
    "AmazonRDS": "Databases",
    "AmazonDynamoDB": "Databases",
    "AmazonElastiCache": "Databases",
    "AmazonDocDB": "Databases",
    "AmazonRedshift": "Analytics",
    "AmazonAthena": "Analytics",
    "AWSGlue": "Analytics",
    "AmazonKinesis": "Analytics",
    "AmazonES": "Analytics",
    "AmazonQuickSight": "Analytics",
    "AWSDataTransfer": "Networking",
    "AmazonVPC": "Networking",
    "AmazonCloudFront": "Networking",
    "AmazonRoute53": "Networking",
    "AWSELB": "Networking",
    "AmazonApiGateway": "Networking",
    "AmazonCloudWatch": "Management and Governance",
    "AWSCloudTrail": "Management and Governance",
    "AWSConfig": "Management and Governance",
    "AWSCostExplorer": "Management and Governance",
    "AWSSystemsManager": "Management and Governance",
    "awskms": "Security",
    "AWSSecretsManager": "Security",
    "AmazonGuardDuty": "Security",
    "AWSSecurityHub": "Security",
    "AWSShield": "Security",
    "AWSWAF": "Security",
    "AmazonCognito": "Identity",
    "AmazonSNS": "Integration",
    "AWSQueueService": "Integration",
    "AmazonSQS": "Integration",
    "AWSEvents": "Integration",
    "AmazonSageMaker": "AI and Machine Learning",
    "AmazonBedrock": "AI and Machine Learning",
    "AmazonECR": "Developer Tools",
    "AWSCodeBuild": "Developer Tools",
    "AWSIoT": "Internet of Things",
}
#: Azure MeterCategory → ServiceCategory.
AZURE_SERVICE_CATEGORIES: dict[str, str] = {
    "Virtual Machines": "Compute",
    "Virtual Machines Licenses": "Compute",
    "Container Instances": "Compute",
    "Azure Kubernetes Service": "Compute",
    "Functions": "Compute",
    "Azure App Service": "Web",
    "Storage": "Storage",
    "Backup": "Storage",
    "SQL Database": "Databases",
    "SQL Managed Instance": "Databases",
    "Azure Database for MySQL": "Databases",
    "Azure Database for PostgreSQL": "Databases",
    "Azure Cosmos DB": "Databases",
    "Redis Cache": "Databases",
    "Bandwidth": "Networking",
    "Virtual Network": "Networking",
    "Load Balancer": "Networking",
    "VPN Gateway": "Networking",
    "Application Gateway": "Networking",
    "Azure DNS": "Networking",
    "Azure Front Door Service": "Networking",
    "Log Analytics": "Management and Governance",
    "Azure Monitor": "Management and Governance",
    "Advanced Data Security": "Security",
    "Advanced Threat Protection": "Security",
    "Microsoft Defender for Cloud": "Security",
    "Key Vault": "Security",
    "Azure Synapse Analytics": "Analytics",
    "Azure Data Factory v2": "Analytics",
    "Azure Databricks": "Analytics",
    "Cognitive Services": "AI and Machine Learning",
    "Azure OpenAI Service": "AI and Machine Learning",
    "Event Hubs": "Integration",
    "Service Bus": "Integration",
    "Logic Apps": "Integration",
    "IoT Hub": "Internet of Things",
}
GCP_REGION_NAMES: dict[str, str] = {
    "us-central1": "Iowa",
    "us-east1": "South Carolina",
    "us-east4": "Northern Virginia",
    "us-west1": "Oregon",
    "us-west2": "Los Angeles",
    "europe-west1": "Belgium",
    "europe-west2": "London",
    "europe-west3": "Frankfurt",
    "europe-west4": "Netherlands",
    "asia-east1": "Taiwan",
    "asia-northeast1": "Tokyo",
    "asia-southeast1": "Singapore",
    "australia-southeast1": "Sydney",
}
AZURE_REGION_NAMES: dict[str, str] = {
    "eastus": "East US",
    "eastus2": "East US 2",
    "centralus": "Central US",
    "westus": "West US",
    "westus2": "West US 2",
    "westus3": "West US 3",
    "northeurope": "North Europe",
    "westeurope": "West Europe",
    "uksouth": "UK South",
    "ukwest": "UK West",
    "canadacentral": "Canada Central",
    "japaneast": "Japan East",
    "australiaeast": "Australia East",
}

_BIGQUERY_NULL_TYPES = {"STRING": "STRING", "NUMERIC": "NUMERIC", "TIMESTAMP": "TIMESTAMP", "DATE": "DATE"}


def _literal(text: str) -> str:
    """A BigQuery string literal for a constant from this module (never caller input)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lookup(expression: str, table: Mapping[str, str], default: str | None) -> str:
    """``CASE <expression> WHEN 'k' THEN 'v' ... ELSE <default> END`` from a constant lookup table."""
    branches = " ".join(f"WHEN {_literal(key)} THEN {_literal(value)}" for key, value in table.items())
    fallback = _literal(default) if default is not None else "CAST(NULL AS STRING)"
    return f"CASE {expression} {branches} ELSE {fallback} END"


def _tags_json(array: str) -> str:
    """A JSON object text from an ``ARRAY<STRUCT<key, value>>`` (NULL when empty), keys in array order:
    ``{"k":"v",...}``, each key and value exactly as ``TO_JSON_STRING`` writes it, a NULL value as ``null``.

    One ``STRING_AGG`` over the array in offset order. The DuckDB backend rewrites this shape to
    ``list_aggregate(list_transform(...), 'string_agg', ',')`` (no correlated join), which is ~4x faster
    there than the earlier ``REGEXP_REPLACE`` over ``TO_JSON_STRING(array)`` and gives the same text.
    ``IFNULL(..., 'null')`` is a no-op on BigQuery (``TO_JSON_STRING(NULL)`` is ``'null'``) but not on
    DuckDB (``to_json(NULL)`` is NULL). A NULL element or one without a key (never in an export) is written
    whole, as ``TO_JSON_STRING`` writes it, which is what the regular-expression form left in place."""
    entry = (
        "IF(t.key IS NULL, IFNULL(TO_JSON_STRING(t), 'null'), "
        "CONCAT(TO_JSON_STRING(t.key), ':', IFNULL(TO_JSON_STRING(t.value), 'null')))"
    )
    aggregate = f"SELECT STRING_AGG({entry}, ',' ORDER BY o) FROM UNNEST({array}) AS t WITH OFFSET AS o"
    return f"CONCAT('{{', ({aggregate}), '}}')"


@dataclass(frozen=True)
class ProviderSql:
    """What the pipeline needs per provider, all BigQuery SQL over the named table's columns:
    ``raw_period`` selects the run's rows in the raw table (also its replace predicate), ``focus_period``
    the provider's rows of the run in the FOCUS tables (replace predicate of staging and publish)."""

    raw_period: str
    focus_period: str
    raw_net_cost: str


_MONTH_START = "DATE_TRUNC(@date, MONTH)"
PROVIDER_SQL: dict[str, ProviderSql] = {
    "gcp": ProviderSql(
        raw_period="DATE(usage_start_time) = @date",
        focus_period="x_Provider = 'gcp' AND x_ChargeDate = @date",
        raw_net_cost=(
            "CAST(cost AS NUMERIC) + IFNULL(CAST((SELECT SUM(c.amount) FROM UNNEST(credits) AS c) AS "
            "NUMERIC), 0)"
        ),
    ),
    "aws": ProviderSql(
        raw_period=f"bill_billing_period_start_date = TIMESTAMP({_MONTH_START})",
        focus_period=f"x_Provider = 'aws' AND BillingPeriodStart = TIMESTAMP({_MONTH_START})",
        raw_net_cost="CAST(IFNULL(line_item_net_unblended_cost, line_item_unblended_cost) AS NUMERIC)",
    ),
    "azure": ProviderSql(
        raw_period=f"BillingPeriodStartDate = {_MONTH_START}",
        focus_period=f"x_Provider = 'azure' AND BillingPeriodStart = TIMESTAMP({_MONTH_START})",
        raw_net_cost=(
            "CASE WHEN ChargeType = 'Usage' AND PricingModel IN ('Reservation', 'SavingsPlan') "
            "THEN CAST(0 AS NUMERIC) ELSE CostInBillingCurrency END"
        ),
    ),
}


def _gcp_columns() -> dict[str, str]:
    tax = "r.cost_type = 'tax'"
    regular = "r.cost_type = 'regular'"
    credits = "IFNULL(CAST((SELECT SUM(c.amount) FROM UNNEST(r.credits) AS c) AS NUMERIC), 0)"
    net = f"CAST(r.cost AS NUMERIC) + {credits}"
    priced = (
        f"NOT ({tax}) AND r.usage.pricing_unit IS NOT NULL AND r.usage.amount_in_pricing_units IS NOT NULL"
    )
    invoice_month = "IFNULL(PARSE_DATE('%Y%m', r.invoice.month), DATE_TRUNC(DATE(r.usage_start_time), MONTH))"
    publisher = (
        "CASE WHEN r.transaction_type IS NULL OR r.transaction_type = 'GOOGLE' THEN 'Google Cloud' "
        "ELSE IFNULL(r.seller_name, 'Google Cloud') END"
    )
    tag_list = "ARRAY_CONCAT(r.labels, r.system_labels)"
    return {
        "AvailabilityZone": "r.location.zone",
        "BilledCost": net,
        "BillingAccountId": "r.billing_account_id",
        "BillingAccountType": "'Billing Account'",
        "BillingCurrency": "r.currency",
        "BillingPeriodEnd": f"TIMESTAMP(DATE_ADD({invoice_month}, INTERVAL 1 MONTH))",
        "BillingPeriodStart": f"TIMESTAMP({invoice_month})",
        "ChargeCategory": (
            "CASE r.cost_type WHEN 'regular' THEN 'Usage' WHEN 'tax' THEN 'Tax' ELSE 'Adjustment' END"
        ),
        "ChargeClass": "CASE WHEN r.adjustment_info.id IS NOT NULL THEN 'Correction' END",
        "ChargeDescription": "r.sku.description",
        "ChargeFrequency": f"CASE WHEN {regular} THEN 'Usage-Based' ELSE 'One-Time' END",
        "ChargePeriodEnd": "r.usage_end_time",
        "ChargePeriodStart": "r.usage_start_time",
        "ConsumedQuantity": f"CASE WHEN {regular} THEN CAST(r.usage.amount AS NUMERIC) END",
        "ConsumedUnit": f"CASE WHEN {regular} AND r.usage.amount IS NOT NULL THEN r.usage.unit END",
        "ContractedCost": "CAST(r.cost AS NUMERIC)",
        "ContractedUnitPrice": f"CASE WHEN NOT ({tax}) THEN r.price.effective_price END",
        "EffectiveCost": net,
        "InvoiceIssuerName": "'Google Cloud'",
        "ListCost": "CAST(IFNULL(r.cost_at_list, r.cost) AS NUMERIC)",
        "ListUnitPrice": f"CASE WHEN NOT ({tax}) THEN r.price.list_price END",
        "PricingCategory": (
            f"CASE WHEN {tax} THEN NULL WHEN STARTS_WITH(r.sku.description, 'Commitment') THEN 'Committed' "
            "ELSE 'Standard' END"
        ),
        "PricingQuantity": f"CASE WHEN {priced} THEN CAST(r.usage.amount_in_pricing_units AS NUMERIC) END",
        "PricingUnit": f"CASE WHEN {priced} THEN r.usage.pricing_unit END",
        "ProviderName": "'Google Cloud'",
        "PublisherName": publisher,
        "RegionId": "r.location.region",
        "RegionName": _lookup("r.location.region", GCP_REGION_NAMES, None),
        "ServiceCategory": _lookup("r.service.description", GCP_SERVICE_CATEGORIES, "Other"),
        "ServiceName": "r.service.description",
        "SkuId": f"CASE WHEN NOT ({tax}) THEN r.sku.id END",
        "SubAccountId": "r.project.id",
        "SubAccountName": "r.project.name",
        "SubAccountType": "CASE WHEN r.project.id IS NOT NULL THEN 'Project' END",
        "Tags": _tags_json(tag_list),
        "ServiceProviderName": publisher,
        "HostProviderName": "'Google Cloud'",
        "x_TagList": tag_list,
        "x_ChargeDate": "DATE(r.usage_start_time)",
        "x_ServiceCode": "r.service.id",
        "x_CostType": "r.cost_type",
        "x_CreditAmount": credits,
        "x_CostBeforeCredits": "CAST(r.cost AS NUMERIC)",
        "x_ExportTime": "r.export_time",
        "x_InvoiceMonth": "r.invoice.month",
    }


_AWS_TYPE = "r.line_item_line_item_type"
_AWS_CATEGORY = (
    f"CASE WHEN {_AWS_TYPE} = 'Tax' THEN 'Tax' "
    f"WHEN {_AWS_TYPE} IN ('Fee', 'RIFee', 'SavingsPlanUpfrontFee', 'SavingsPlanRecurringFee') THEN "
    f"'Purchase' "
    f"WHEN {_AWS_TYPE} = 'Credit' THEN 'Credit' "
    f"WHEN {_AWS_TYPE} = 'Refund' THEN 'Adjustment' "
    "ELSE 'Usage' END"
)


def _aws_columns() -> dict[str, str]:
    billed = "CAST(IFNULL(r.line_item_net_unblended_cost, r.line_item_unblended_cost) AS NUMERIC)"
    effective = (
        f"CASE {_AWS_TYPE} "
        "WHEN 'SavingsPlanCoveredUsage' THEN CAST(IFNULL(r.savings_plan_savings_plan_effective_cost, 0) AS "
        "NUMERIC) "
        "WHEN 'SavingsPlanNegation' THEN CAST(0 AS NUMERIC) "
        "WHEN 'SavingsPlanUpfrontFee' THEN CAST(0 AS NUMERIC) "
        "WHEN 'SavingsPlanRecurringFee' THEN CAST(IFNULL(r.savings_plan_total_commitment_to_date, 0) "
        "- IFNULL(r.savings_plan_used_commitment, 0) AS NUMERIC) "
        "WHEN 'DiscountedUsage' THEN CAST(IFNULL(r.reservation_effective_cost, 0) AS NUMERIC) "
        "WHEN 'RIFee' THEN CAST(IFNULL(r.reservation_unused_amortized_upfront_fee_for_billing_period, 0) "
        "+ IFNULL(r.reservation_unused_recurring_fee, 0) AS NUMERIC) "
        f"ELSE {billed} END"
    )
    tax = f"{_AWS_TYPE} = 'Tax'"
    priced = (
        f"NOT ({tax}) AND NULLIF(r.pricing_unit, '') IS NOT NULL AND r.line_item_usage_amount IS NOT NULL"
    )
    commitment_id = (
        "IFNULL(NULLIF(r.savings_plan_savings_plan_a_r_n, ''), NULLIF(r.reservation_reservation_a_r_n, ''))"
    )
    is_savings_plan = "NULLIF(r.savings_plan_savings_plan_a_r_n, '') IS NOT NULL"
    product_name = "(SELECT p.value FROM UNNEST(r.product) AS p WHERE p.key = 'product_name' LIMIT 1)"
    service_name = f"IFNULL({product_name}, r.line_item_product_code)"
    tag_list = (
        "ARRAY(SELECT AS STRUCT IF(STARTS_WITH(t.key, 'user_'), SUBSTR(t.key, 6), t.key) AS key, "
        "t.value AS value FROM UNNEST(r.resource_tags) AS t)"
    )
    return {
        "AvailabilityZone": "NULLIF(r.line_item_availability_zone, '')",
        "BilledCost": billed,
        "BillingAccountId": "r.bill_payer_account_id",
        "BillingAccountName": "r.bill_payer_account_name",
        "BillingAccountType": "'Management Account'",
        "BillingCurrency": "r.line_item_currency_code",
        "BillingPeriodEnd": "r.bill_billing_period_end_date",
        "BillingPeriodStart": "r.bill_billing_period_start_date",
        "ChargeCategory": _AWS_CATEGORY,
        "ChargeClass": f"CASE WHEN {_AWS_TYPE} = 'Refund' THEN 'Correction' END",
        "ChargeDescription": "NULLIF(r.line_item_line_item_description, '')",
        "ChargeFrequency": (
            f"CASE WHEN {_AWS_TYPE} IN ('RIFee', 'SavingsPlanRecurringFee') THEN 'Recurring' "
            f"WHEN r.bill_bill_type IN ('Purchase', 'Refund') OR {_AWS_TYPE} IN "
            "('Fee', 'SavingsPlanUpfrontFee', 'Tax', 'Credit') THEN 'One-Time' ELSE 'Usage-Based' END"
        ),
        "ChargePeriodEnd": "r.line_item_usage_end_date",
        "ChargePeriodStart": "r.line_item_usage_start_date",
        "CommitmentDiscountCategory": (
            f"CASE WHEN {commitment_id} IS NULL THEN NULL WHEN {is_savings_plan} THEN 'Spend' ELSE 'Usage' "
            f"END"
        ),
        "CommitmentDiscountId": commitment_id,
        "CommitmentDiscountStatus": (
            f"CASE WHEN {commitment_id} IS NOT NULL AND ({_AWS_CATEGORY}) = 'Usage' THEN 'Used' END"
        ),
        "CommitmentDiscountType": (
            f"CASE WHEN {commitment_id} IS NULL THEN NULL WHEN {is_savings_plan} THEN 'Savings Plan' "
            "ELSE 'Reserved Instances (RI)' END"
        ),
        "ConsumedQuantity": (
            f"CASE WHEN ({_AWS_CATEGORY}) = 'Usage' THEN CAST(r.line_item_usage_amount AS NUMERIC) END"
        ),
        "ConsumedUnit": (
            f"CASE WHEN ({_AWS_CATEGORY}) = 'Usage' AND r.line_item_usage_amount IS NOT NULL "
            "THEN NULLIF(r.pricing_unit, '') END"
        ),
        "ContractedCost": "CAST(r.line_item_unblended_cost AS NUMERIC)",
        "EffectiveCost": effective,
        "InvoiceId": "NULLIF(r.bill_invoice_id, '')",
        "InvoiceIssuerName": "IFNULL(NULLIF(r.bill_invoicing_entity, ''), 'AWS')",
        "ListCost": "CAST(IFNULL(r.pricing_public_on_demand_cost, r.line_item_unblended_cost) AS NUMERIC)",
        "ListUnitPrice": (
            f"CASE WHEN NOT ({tax}) THEN SAFE_CAST(NULLIF(r.pricing_public_on_demand_rate, '') AS NUMERIC) "
            f"END"
        ),
        "PricingCategory": (
            f"CASE WHEN {tax} THEN NULL WHEN {_AWS_TYPE} IN ('SavingsPlanCoveredUsage', 'DiscountedUsage') "
            "THEN 'Committed' WHEN r.pricing_term = 'OnDemand' THEN 'Standard' "
            "WHEN r.pricing_term = 'Reserved' THEN 'Committed' WHEN r.pricing_term = 'Spot' THEN 'Dynamic' "
            "END"
        ),
        "PricingQuantity": f"CASE WHEN {priced} THEN CAST(r.line_item_usage_amount AS NUMERIC) END",
        "PricingUnit": f"CASE WHEN {priced} THEN r.pricing_unit END",
        "ProviderName": "'AWS'",
        "PublisherName": "IFNULL(NULLIF(r.line_item_legal_entity, ''), 'AWS')",
        "RegionId": "NULLIF(r.product_region_code, '')",
        "RegionName": "NULLIF(r.product_location, '')",
        "ResourceId": "NULLIF(r.line_item_resource_id, '')",
        "ServiceCategory": _lookup("r.line_item_product_code", AWS_SERVICE_CATEGORIES, "Other"),
        "ServiceName": service_name,
        "SkuId": f"CASE WHEN NOT ({tax}) THEN NULLIF(r.product_sku, '') END",
        "SkuPriceId": f"CASE WHEN NOT ({tax}) THEN NULLIF(r.pricing_rate_id, '') END",
        "SubAccountId": "r.line_item_usage_account_id",
        "SubAccountName": "r.line_item_usage_account_name",
        "SubAccountType": "'Account'",
        "Tags": _tags_json(tag_list),
        "ServiceProviderName": "IFNULL(NULLIF(r.line_item_legal_entity, ''), 'AWS')",
        "HostProviderName": "'AWS'",
        "x_TagList": tag_list,
        "x_ChargeDate": "DATE(r.line_item_usage_start_date)",
        "x_ServiceCode": "r.line_item_product_code",
        "x_CostType": _AWS_TYPE,
        "x_UsageType": "NULLIF(r.line_item_usage_type, '')",
        "x_Operation": "NULLIF(r.line_item_operation, '')",
    }


_AZURE_CATEGORY = (
    "CASE WHEN r.ChargeType IN ('Usage', 'Purchase', 'Credit', 'Tax') THEN r.ChargeType "
    "WHEN r.ChargeType IN ('UnusedReservation', 'UnusedSavingsPlan') THEN 'Usage' "
    "WHEN r.ChargeType = 'Refund' THEN 'Purchase' ELSE 'Adjustment' END"
)


def _azure_columns() -> dict[str, str]:
    committed = "r.PricingModel IN ('Reservation', 'SavingsPlan')"
    tax = "r.ChargeType = 'Tax'"
    commitment_id = "IFNULL(r.BenefitId, r.ReservationId)"
    is_savings_plan = f"STRPOS(LOWER({commitment_id}), '/microsoft.billingbenefits/') > 0"
    priced = f"NOT ({tax}) AND r.Quantity IS NOT NULL AND r.UnitOfMeasure IS NOT NULL"
    region = "LOWER(REPLACE(r.ResourceLocation, ' ', ''))"
    service_name = "IFNULL(r.MeterCategory, IFNULL(r.ProductName, IFNULL(r.PublisherName, 'Unknown')))"
    is_mca = "r.Provider IS NOT NULL"
    # Unit prices describe usage and purchases; refunds, credits and adjustments carry negative ones.
    unit_priced = "r.ChargeType IN ('Usage', 'Purchase', 'UnusedReservation', 'UnusedSavingsPlan')"
    return {
        "AvailabilityZone": "r.AvailabilityZone",
        "BilledCost": f"CASE WHEN r.ChargeType = 'Usage' AND {committed} THEN CAST(0 AS NUMERIC) "
        "ELSE r.CostInBillingCurrency END",
        "BillingAccountId": f"CASE WHEN {is_mca} THEN IFNULL(r.BillingProfileId, r.BillingAccountId) "
        "ELSE r.BillingAccountId END",
        "BillingAccountName": f"CASE WHEN {is_mca} THEN IFNULL(r.BillingProfileName, r.BillingAccountName) "
        "ELSE r.BillingAccountName END",
        "BillingAccountType": f"CASE WHEN {is_mca} THEN 'Billing Profile' ELSE 'Enrollment' END",
        "BillingCurrency": "r.BillingCurrencyCode",
        "BillingPeriodEnd": "TIMESTAMP(DATE_ADD(r.BillingPeriodEndDate, INTERVAL 1 DAY))",
        "BillingPeriodStart": "TIMESTAMP(r.BillingPeriodStartDate)",
        "ChargeCategory": _AZURE_CATEGORY,
        "ChargeClass": "CASE WHEN r.ChargeType = 'Refund' THEN 'Correction' END",
        "ChargeDescription": "r.ProductName",
        "ChargeFrequency": (
            "CASE WHEN r.Frequency = 'OneTime' THEN 'One-Time' WHEN r.Frequency = 'Recurring' THEN "
            "'Recurring' "
            "WHEN r.ChargeType IN ('Purchase', 'Refund') THEN 'One-Time' ELSE 'Usage-Based' END"
        ),
        "ChargePeriodEnd": "TIMESTAMP(DATE_ADD(r.Date, INTERVAL 1 DAY))",
        "ChargePeriodStart": "TIMESTAMP(r.Date)",
        "CommitmentDiscountCategory": (
            f"CASE WHEN {commitment_id} IS NULL THEN NULL WHEN {is_savings_plan} THEN 'Spend' ELSE 'Usage' "
            f"END"
        ),
        "CommitmentDiscountId": commitment_id,
        "CommitmentDiscountName": f"CASE WHEN {commitment_id} IS NOT NULL "
        "THEN IFNULL(r.BenefitName, r.ReservationName) END",
        "CommitmentDiscountStatus": (
            f"CASE WHEN {commitment_id} IS NULL THEN NULL "
            "WHEN r.ChargeType IN ('UnusedReservation', 'UnusedSavingsPlan') THEN 'Unused' "
            f"WHEN ({_AZURE_CATEGORY}) = 'Usage' THEN 'Used' END"
        ),
        "CommitmentDiscountType": (
            f"CASE WHEN {commitment_id} IS NULL THEN NULL WHEN {is_savings_plan} THEN 'Savings Plan' "
            "ELSE 'Reservation' END"
        ),
        "ConsumedQuantity": "CASE WHEN r.ChargeType = 'Usage' THEN r.Quantity END",
        "ConsumedUnit": "CASE WHEN r.ChargeType = 'Usage' AND r.Quantity IS NOT NULL THEN r.UnitOfMeasure "
        "END",
        "ContractedCost": (
            "IFNULL(r.UnitPrice * r.Quantity * IFNULL(r.ExchangeRatePricingToBilling, 1), "
            "r.CostInBillingCurrency)"
        ),
        "ContractedUnitPrice": f"CASE WHEN {unit_priced} THEN r.UnitPrice END",
        "EffectiveCost": (
            f"CASE WHEN r.ChargeType IN ('Purchase', 'Refund') AND {committed} THEN CAST(0 AS NUMERIC) "
            "ELSE r.CostInBillingCurrency END"
        ),
        "InvoiceId": "r.InvoiceId",
        "InvoiceIssuerName": "IFNULL(r.ResellerName, 'Microsoft')",
        "ListCost": (
            "IFNULL(r.PaygCostInBillingCurrency, IFNULL(r.PayGPrice * r.Quantity, r.CostInBillingCurrency))"
        ),
        "ListUnitPrice": f"CASE WHEN {unit_priced} THEN r.PayGPrice END",
        "PricingCategory": (
            f"CASE WHEN {tax} THEN NULL WHEN r.PricingModel IN ('OnDemand', 'On Demand') THEN 'Standard' "
            f"WHEN r.PricingModel = 'Spot' THEN 'Dynamic' WHEN {committed} THEN 'Committed' END"
        ),
        "PricingCurrency": "r.PricingCurrency",
        "PricingQuantity": f"CASE WHEN {priced} THEN r.Quantity END",
        "PricingUnit": f"CASE WHEN {priced} THEN r.UnitOfMeasure END",
        "ProviderName": "'Microsoft'",
        "PublisherName": "IFNULL(r.PublisherName, 'Microsoft')",
        "RegionId": region,
        "RegionName": f"IFNULL({_lookup(region, AZURE_REGION_NAMES, None)}, r.ResourceLocation)",
        "ResourceId": "r.ResourceId",
        "ResourceName": "r.ResourceName",
        "ServiceCategory": _lookup(service_name, AZURE_SERVICE_CATEGORIES, "Other"),
        "ServiceName": service_name,
        "SkuId": f"CASE WHEN NOT ({tax}) THEN r.PartNumber END",
        "SkuMeter": "r.MeterName",
        "SubAccountId": "r.SubscriptionId",
        "SubAccountName": "r.SubscriptionName",
        "SubAccountType": "CASE WHEN r.SubscriptionId IS NOT NULL THEN 'Subscription' END",
        "Tags": "r.Tags",
        "ServiceProviderName": "IFNULL(r.PublisherName, 'Microsoft')",
        "HostProviderName": "'Microsoft'",
        "x_TagList": "r.TagList",
        "x_ChargeDate": "r.Date",
        "x_ServiceCode": "r.ConsumedService",
        "x_CostType": "r.ChargeType",
        "x_UsageType": "r.MeterSubCategory",
        "x_ResourceGroupName": "r.ResourceGroup",
    }


_COLUMNS = {"gcp": _gcp_columns, "aws": _aws_columns, "azure": _azure_columns}


def normalize_sql(provider: str, raw_table: str) -> str:
    """The SELECT normalizing ``provider``'s raw rows of the run (``@date``) into FOCUS columns, in
    ``focus_costs`` order. ``raw_table`` is a backtick-quoted ``dataset.table``. Uses ``@date`` and
    ``@_run_id`` (STRING)."""
    mapped = _COLUMNS[provider]()
    mapped.update(
        {"x_Provider": _literal(provider), "x_RunId": "@_run_id", "x_FocusVersion": _literal(FOCUS_VERSION)}
    )
    known = {field.name for field in FOCUS_FIELDS}
    unknown = sorted(set(mapped) - known)
    if unknown:
        raise ValueError(f"{provider} mapping names unknown FOCUS columns: {', '.join(unknown)}")
    select = []
    for field in FOCUS_FIELDS:
        expression = mapped.get(field.name)
        if expression is None:
            if field.mode == "REPEATED":
                expression = "[]"
            else:
                expression = f"CAST(NULL AS {_BIGQUERY_NULL_TYPES[field.type]})"
        elif field.type == "NUMERIC" and not expression.startswith("CAST("):
            # Products of NUMERICs widen the scale on DuckDB; the column is NUMERIC(38, 9) either way.
            expression = f"CAST({expression} AS NUMERIC)"
        select.append(f"  {expression} AS `{field.name}`")
    where = PROVIDER_SQL[provider].raw_period
    qualified_where = _qualify(where)
    return "SELECT\n" + ",\n".join(select) + f"\nFROM {raw_table} AS r\nWHERE {qualified_where}"


def _qualify(predicate: str) -> str:
    """The raw-period predicate with every column qualified by the row alias ``r`` (GCP's
    ``DATE(usage_start_time) = @date`` → ``DATE(r.usage_start_time) = @date``)."""
    condition = sqlglot.parse_one(predicate, read="bigquery", into=exp.Condition)
    for column in condition.find_all(exp.Column):
        column.set("table", exp.to_identifier("r"))
    return condition.sql(dialect="bigquery")
