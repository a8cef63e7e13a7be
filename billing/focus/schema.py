"""The ``focus_costs`` / ``focus_costs_staging`` table schema, built from the FOCUS column registry.

Every FOCUS 1.2 column (``FOCUS_1_2_COLUMNS``) with its PascalCase name, then the FOCUS 1.3 additions
(all nullable until the table moves to 1.3), then the custom ``x_`` columns. Types map FOCUS types onto
BigQuery: Decimal → NUMERIC, Date/Time → TIMESTAMP (UTC), String → STRING, JSON → STRING holding a JSON
object (``Tags``: ``{"env": "prod"}``; BigQuery's JSON type is not comparable or groupable, and the
cost API groups by tag values through ``x_TagList``).

Every column is NULLABLE on purpose, the FOCUS-mandatory ones included: a null BilledCost must reach the
``dq.checks`` step and fail rule F02 there (recorded, visible to the tenant, blocking publish), instead
of failing the normalize INSERT with an engine error nobody can act on.

Contract columns other helpers rely on (API, admin, DQ): the FOCUS names, ``x_Provider`` ('gcp' |
'aws' | 'azure'), ``x_TagList`` (same tags as ``Tags`` as ``ARRAY<STRUCT<key, value>>``),
``x_ChargeDate`` (UTC date of ChargePeriodStart; the partition column) and ``x_RunId``."""

from __future__ import annotations

from billing.focus.columns import CUSTOM_PREFIX, FOCUS_1_2_COLUMNS, FOCUS_1_3_COLUMNS, FocusColumn
from convergence.warehouse import Field, TableSpec

FOCUS_TABLE = "focus_costs"
FOCUS_STAGING_TABLE = "focus_costs_staging"
#: FOCUS version the rows conform to (written into ``x_FocusVersion``).
FOCUS_VERSION = "1.2"
PROVIDERS = ("gcp", "aws", "azure")

_BIGQUERY_TYPES = {"String": "STRING", "Decimal": "NUMERIC", "Date/Time": "TIMESTAMP", "JSON": "STRING"}


def _focus_field(column: FocusColumn) -> Field:
    return Field(
        name=column.name,
        type=_BIGQUERY_TYPES[column.focus_type],
        description=f"FOCUS {column.since} {column.level} {column.kind}",
    )


#: Custom columns: (name, BigQuery type, mode, sub-fields, description).
CUSTOM_FIELDS: tuple[Field, ...] = (
    Field("x_Provider", "STRING", description="Provider key: gcp, aws or azure"),
    Field(
        "x_TagList",
        "RECORD",
        "REPEATED",
        (Field("key", "STRING"), Field("value", "STRING")),
        description="Tags as key/value pairs (same content as Tags), for parameterized tag lookups",
    ),
    Field("x_ChargeDate", "DATE", description="UTC date of ChargePeriodStart (partition column)"),
    Field("x_RunId", "STRING", description="Pipeline run that produced the row"),
    Field("x_FocusVersion", "STRING", description="FOCUS version the row conforms to"),
    Field("x_ServiceCode", "STRING", description="Provider service id (GCP service.id, AWS product code, …)"),
    Field("x_CostType", "STRING", description="Provider charge type (cost_type, line item type, ChargeType)"),
    Field("x_UsageType", "STRING", description="Provider usage type / meter (AWS usage type, Azure meter)"),
    Field("x_Operation", "STRING", description="AWS operation"),
    Field("x_CreditAmount", "NUMERIC", description="GCP: sum of credits (negative) included in BilledCost"),
    Field("x_CostBeforeCredits", "NUMERIC", description="GCP: cost before credits"),
    Field("x_ExportTime", "TIMESTAMP", description="GCP export_time of the row"),
    Field("x_ResourceGroupName", "STRING", description="Azure resource group"),
    Field("x_InvoiceMonth", "STRING", description="GCP invoice.month (YYYYMM)"),
)


def focus_fields() -> tuple[Field, ...]:
    """Every column of the FOCUS table, in table order: FOCUS 1.2, FOCUS 1.3, then ``x_`` columns."""
    fields = [_focus_field(column) for column in FOCUS_1_2_COLUMNS + FOCUS_1_3_COLUMNS]
    fields.extend(CUSTOM_FIELDS)
    assert all(f.name.startswith(CUSTOM_PREFIX) for f in CUSTOM_FIELDS)
    return tuple(fields)


FOCUS_FIELDS: tuple[Field, ...] = focus_fields()
FOCUS_COLUMN_NAMES: tuple[str, ...] = tuple(field.name for field in FOCUS_FIELDS)

#: The published table: partitioned by charge date, clustered for the cost API's usual filters.
FOCUS_TABLE_SPEC = TableSpec(
    schema=FOCUS_FIELDS,
    partition_field="x_ChargeDate",
    clustering=("x_Provider", "SubAccountId", "ServiceName"),
    description=f"FOCUS {FOCUS_VERSION} cost and usage rows (published after the FOCUS DQ gate)",
)

#: The staging table: same columns; a run's rows are found by x_RunId.
FOCUS_STAGING_TABLE_SPEC = TableSpec(
    schema=FOCUS_FIELDS,
    partition_field="x_ChargeDate",
    clustering=("x_Provider", "x_RunId"),
    description="FOCUS rows normalized by a run, checked by DQ before they are published",
)
