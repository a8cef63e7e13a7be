"""The FOCUS rule set (``dq.checks`` check ``focus_rules``), run through the real engine on DuckDB: every
implemented rule catches a table holding one violating row (or group) and no other rule fires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from billing.focus.rules import FOCUS_RULES, RULES_BY_ID
from billing.focus.schema import FOCUS_FIELDS, FOCUS_STAGING_TABLE, FOCUS_STAGING_TABLE_SPEC
from convergence.warehouse import Field, TableRef, TableSpec
from pipelines.engine import DQRecord, PipelineOutcome, StepStatus
from pipelines.loader import Pipeline, PipelineConfigError
from tests import engine_fixtures
from tests.engine_fixtures import fresh_dataset, make_configs, run_pipeline, write_pipeline

ALL_RULES = [rule.rule_id for rule in FOCUS_RULES]


# The fixtures: the tenant's dataset, its FOCUS staging table and the DQ results a run records.
dataset = engine_fixtures.dataset
staging = engine_fixtures.staging
dq_records = engine_fixtures.dq_records


@pytest.fixture
def configs(settings: Any, tmp_path: Path) -> Path:
    return make_configs(settings, tmp_path)


def clean_row(**overrides: Any) -> dict[str, Any]:
    """A FOCUS 1.2 usage row that passes every rule."""
    row: dict[str, Any] = {
        "BilledCost": "10.000000000",
        "EffectiveCost": "10",
        "ListCost": "12",
        "ContractedCost": "10",
        "ListUnitPrice": "1.2",
        "ContractedUnitPrice": "1.0",
        "PricingQuantity": "10",
        "PricingUnit": "Hours",
        "PricingCategory": "Standard",
        "ConsumedQuantity": "10",
        "ConsumedUnit": "Hours",
        "ChargePeriodStart": "2024-03-01T00:00:00Z",
        "ChargePeriodEnd": "2024-03-01T01:00:00Z",
        "BillingPeriodStart": "2024-03-01T00:00:00Z",
        "BillingPeriodEnd": "2024-04-01T00:00:00Z",
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeFrequency": "Usage-Based",
        "ChargeDescription": "N1 core hours",
        "BillingCurrency": "USD",
        "BillingAccountId": "ba-1",
        "BillingAccountName": "Main",
        "ProviderName": "Google Cloud",
        "PublisherName": "Google Cloud",
        "InvoiceIssuerName": "Google Cloud",
        "ServiceName": "Compute Engine",
        "ServiceCategory": "Compute",
        "ServiceSubcategory": "Virtual Machines",
        "SkuId": "sku-1",
        "SkuPriceId": "sku-1-0",
        "SubAccountId": "project-1",
        "RegionId": "us-central1",
        "Tags": '{"env": "prod", "note": "uses {braces} and [brackets]"}',
        "x_Provider": "gcp",
        "x_ChargeDate": "2024-03-01",
        "x_RunId": "run-1",
        "x_TagList": [{"key": "env", "value": "prod"}],
    }
    row.update(overrides)
    return row


NO_CONSUMPTION = {"ConsumedQuantity": None, "ConsumedUnit": None}

#: Rule → the rows that violate it (and nothing else). Comments say why the extra fields are set.
VIOLATIONS: dict[str, list[dict[str, Any]]] = {
    "F02": [clean_row(BilledCost=None)],
    "F03": [clean_row(ChargePeriodEnd="2024-03-01T00:00:00Z")],
    # A null start: an empty period would also put every charge outside it (F05).
    "F04": [clean_row(BillingPeriodStart=None)],
    "F05": [clean_row(ChargePeriodStart="2024-02-29T23:00:00Z", ChargePeriodEnd="2024-03-01T00:00:00Z")],
    # GCP's view emits lowercase values; a non-Usage row must not carry a consumed quantity (F22).
    "F06": [clean_row(ChargeCategory="usage", **NO_CONSUMPTION)],
    "F07": [clean_row(ChargeClass="Refund")],
    "F08": [clean_row(ChargeFrequency="Daily")],
    "F09": [clean_row(PricingCategory="On-Demand")],
    "F10": [clean_row(CommitmentDiscountId="cd-1")],
    # Its own ServiceName (else F12) and no subcategory (else F11B).
    "F11A": [
        clean_row(ServiceCategory="Compute Services", ServiceName="Other Engine", ServiceSubcategory=None)
    ],
    "F11B": [clean_row(ServiceSubcategory="Relational Databases")],
    "F12": [clean_row(ServiceCategory="Storage", ServiceSubcategory=None)],
    # Its own billing account, else two currencies in one account (F13B).
    "F13A": [clean_row(BillingCurrency="XYZ", BillingAccountId="ba-2")],
    "F13B": [clean_row(BillingCurrency="EUR")],
    "F14": [clean_row(ChargeCategory="Tax", **NO_CONSUMPTION)],
    "F15": [clean_row(PricingQuantity=None, PricingUnit=None)],
    # A correction, which F15 does not ask for a pricing quantity.
    "F16": [clean_row(PricingUnit=None, ChargeClass="Correction")],
    # ListCost follows the price, else F18 also fires.
    "F17": [clean_row(ListUnitPrice="-1.2", ListCost="-12")],
    "F18": [clean_row(ListCost="12.5")],
    "F19": [clean_row(ChargeCategory="Credit", BilledCost="-5", EffectiveCost="-4", **NO_CONSUMPTION)],
    # One-Time (a Usage-Based Purchase breaks F08), billed 0 so F21 holds for the commitment.
    "F20": [
        clean_row(
            ChargeCategory="Purchase",
            ChargeFrequency="One-Time",
            CommitmentDiscountId="cd-9",
            CommitmentDiscountCategory="Spend",
            BilledCost="0",
            **NO_CONSUMPTION,
        )
    ],
    # One commitment: a 100 purchase, 90 of usage.
    "F21": [
        clean_row(
            ChargeCategory="Purchase",
            ChargeFrequency="Recurring",
            CommitmentDiscountId="cd-7",
            CommitmentDiscountCategory="Spend",
            BilledCost="100",
            EffectiveCost="0",
            **NO_CONSUMPTION,
        ),
        clean_row(
            CommitmentDiscountId="cd-7",
            CommitmentDiscountCategory="Spend",
            CommitmentDiscountStatus="Used",
            EffectiveCost="90",
        ),
    ],
    "F22": [
        clean_row(
            CommitmentDiscountId="cd-3", CommitmentDiscountCategory="Usage", CommitmentDiscountStatus="Unused"
        )
    ],
    "F24": [clean_row(Tags='{"env": {"nested": "prod"}}')],
    "F25": [clean_row(SkuPriceDetails='{"CoreCount": 2}', SkuPriceId=None)],
    "F26": [clean_row(ChargeDescription="N/A")],
}


def _pipeline(configs: Path, checks: str, extra: str = "") -> Pipeline:
    return write_pipeline(
        configs,
        f"""
description: FOCUS conformance of the staged rows
parameters:
  date: {{type: date}}
steps:
  - step_id: quality
    ps_type: dq.checks
    table: {{dataset_type: tenant_dataset, table: {FOCUS_STAGING_TABLE}}}
{extra}    checks:
{checks}""",
        "gcp/focus/quality",
    )


def _by_rule(records: list[DQRecord]) -> dict[str, tuple[str, str, str]]:
    return {r.check.removeprefix("focus_rules."): (r.status, r.severity, r.observed) for r in records}


def _passing(*except_rules: str) -> dict[str, tuple[str, str, str]]:
    return {
        rule.rule_id: ("PASS", rule.severity, "0") for rule in FOCUS_RULES if rule.rule_id not in except_rules
    }


ALL_CHECKS = "      - {check: focus_rules}\n"


def test_clean_table_passes_every_rule(configs, warehouse, staging, dq_records) -> None:
    warehouse.insert_rows(staging, [clean_row(), clean_row(BilledCost="2.5", EffectiveCost="2.5")])
    outcome = run_pipeline(_pipeline(configs, ALL_CHECKS))
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert [r.check for r in dq_records] == [f"focus_rules.{rule_id}" for rule_id in ALL_RULES]
    assert _by_rule(dq_records) == _passing()
    assert {(r.table, r.expected, r.message) for r in dq_records} == {(str(staging), "0", "")}
    assert outcome.steps[0].result.outputs == {"checks": 28, "warned": []}


def test_every_implemented_rule_has_a_violation_case() -> None:
    assert sorted(VIOLATIONS) == sorted(set(ALL_RULES) - {"F01", "F27"})


@pytest.mark.parametrize("rule_id", sorted(VIOLATIONS))
def test_rule_catches_its_violating_row_and_no_other_rule_fires(
    rule_id, configs, warehouse, staging, dq_records
) -> None:
    warehouse.insert_rows(staging, [clean_row(), clean_row(SubAccountId="project-2"), *VIOLATIONS[rule_id]])
    outcome = run_pipeline(_pipeline(configs, ALL_CHECKS))
    rule = RULES_BY_ID[rule_id]
    expected = _passing(rule_id)
    expected[rule_id] = ("FAIL" if rule.severity == "error" else "WARN", rule.severity, "1")
    assert _by_rule(dq_records) == expected
    if rule.severity == "error":
        assert outcome.status == StepStatus.FAILED
        assert outcome.steps[0].error == f"data quality: 1 check(s) failed: focus_rules.{rule_id}"
    else:
        assert outcome.status == StepStatus.COMPLETED, outcome.error
        assert outcome.steps[0].result.outputs["warned"] == [f"focus_rules.{rule_id}"]


def test_f01_missing_mandatory_column_fails_and_rules_needing_it_are_skipped(
    configs, warehouse, dataset, dq_records
) -> None:
    schema = tuple(field for field in FOCUS_FIELDS if field.name != "BilledCost")
    warehouse.create_table(TableRef(dataset, FOCUS_STAGING_TABLE), TableSpec(schema=schema))
    warehouse.insert_rows(TableRef(dataset, FOCUS_STAGING_TABLE), [_without(clean_row(), "BilledCost")])
    outcome = run_pipeline(_pipeline(configs, ALL_CHECKS))
    assert outcome.status == StepStatus.FAILED
    results = {r.check: r for r in dq_records}
    f01 = results["focus_rules.F01"]
    assert (f01.status, f01.observed, f01.expected, f01.message) == ("FAIL", "1", "0", "missing: BilledCost")
    skipped = {name for name, r in results.items() if r.observed == "skipped"}
    assert skipped == {f"focus_rules.{rule_id}" for rule_id in ("F02", "F19", "F21")}
    assert results["focus_rules.F02"].status == "PASS"
    assert results["focus_rules.F02"].message == "skipped: the table has no column BilledCost"
    assert [r.check for r in dq_records if r.status != "PASS"] == ["focus_rules.F01"]


def test_f27_column_neither_focus_nor_custom_fails(configs, warehouse, dataset, dq_records) -> None:
    schema = (*FOCUS_FIELDS, Field("cost_center", "STRING"), Field("x_cost_center", "STRING"))
    ref = TableRef(dataset, FOCUS_STAGING_TABLE)
    warehouse.create_table(ref, TableSpec(schema=schema))
    warehouse.insert_rows(ref, [clean_row(cost_center="cc-1", x_cost_center="cc-1")])
    outcome = run_pipeline(_pipeline(configs, ALL_CHECKS))
    assert outcome.status == StepStatus.FAILED
    expected = _passing("F27")
    expected["F27"] = ("FAIL", "error", "1")
    assert _by_rule(dq_records) == expected
    f27 = next(r for r in dq_records if r.check == "focus_rules.F27")
    assert f27.message == "not FOCUS nor x_-prefixed: cost_center"


def _without(row: dict[str, Any], column: str) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != column}


@pytest.mark.parametrize(
    ("tags", "fails"),
    [
        ('{"env": "prod", "cost-center": 42, "critical": true, "owner": null}', False),
        ('{"note": "a {quoted} [value] with \\" escapes"}', False),
        ("{}", False),
        (None, False),
        ("not json", True),
        ("", True),
        ('["env", "prod"]', True),
        ('"env=prod"', True),
        ('{"env": ["prod"]}', True),
        ('{"env": {}}', True),
    ],
)
def test_f24_tags_must_be_a_json_object_with_primitive_values(
    tags, fails, configs, warehouse, staging, dq_records
) -> None:
    warehouse.insert_rows(staging, [clean_row(Tags=tags)])
    run_pipeline(_pipeline(configs, "      - {check: focus_rules, rules: [F24]}\n"))
    assert _by_rule(dq_records) == {"F24": ("FAIL", "error", "1") if fails else ("PASS", "error", "0")}


def test_rows_outside_the_step_where_are_not_checked(configs, warehouse, staging, dq_records) -> None:
    warehouse.insert_rows(
        staging,
        [
            clean_row(),
            clean_row(ChargeCategory="usage", x_Provider="aws", **NO_CONSUMPTION),
            clean_row(ChargeCategory="usage", x_ChargeDate="2024-03-02", **NO_CONSUMPTION),
            clean_row(ChargeFrequency="Daily"),
        ],
    )
    pipeline = _pipeline(
        configs,
        "      - {check: focus_rules, rules: [F06, F08]}\n",
        extra="    where: x_Provider = 'gcp' AND x_ChargeDate = @date\n",
    )
    outcome = run_pipeline(pipeline, date="2024-03-01")
    assert _by_rule(dq_records) == {"F06": ("PASS", "error", "0"), "F08": ("FAIL", "error", "1")}
    assert outcome.status == StepStatus.FAILED


def test_rule_selection_expands_split_ids_and_overrides_change_severity(
    configs, warehouse, staging, dq_records
) -> None:
    warehouse.insert_rows(
        staging,
        [
            clean_row(ServiceSubcategory="Relational Databases"),
            clean_row(ChargePeriodStart="2024-02-29T23:00:00Z", ChargePeriodEnd="2024-03-01T00:00:00Z"),
        ],
    )
    checks = (
        "      - check: focus_rules\n"
        "        name: conformance\n"
        "        rules: [F11, F05]\n"
        "        severity_overrides: {F05: error, F11: error, F11A: warn}\n"
    )
    outcome = run_pipeline(_pipeline(configs, checks))
    assert [(r.check, r.status, r.severity, r.observed) for r in dq_records] == [
        ("conformance.F05", "FAIL", "error", "1"),
        ("conformance.F11A", "PASS", "warn", "0"),
        ("conformance.F11B", "FAIL", "error", "1"),
    ]
    assert outcome.steps[0].error == "data quality: 2 check(s) failed: conformance.F05, conformance.F11B"


def test_all_row_and_aggregate_rules_run_in_one_query(configs, warehouse, staging, monkeypatch) -> None:
    warehouse.insert_rows(staging, [clean_row()])
    sent: list[str] = []
    original = type(warehouse).query

    def recording(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(sql)
        return original(self, sql, *args, **kwargs)

    monkeypatch.setattr(type(warehouse), "query", recording)
    outcome = run_pipeline(_pipeline(configs, ALL_CHECKS))
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert len(sent) == 1
    assert sent[0].count(f"FROM `{staging.dataset}`.`{staging.table}`") == 1
    # The DuckDB rewrite of F24's JSON parse; BigQuery gets SAFE.PARSE_JSON.
    assert "SAFE_CAST(Tags AS JSON)" in sent[0]
    assert "PARSE_JSON" not in sent[0]


# --- validation -------------------------------------------------------------------------------------
def _validation_errors(configs: Path, checks: str) -> list[tuple[str, str]]:
    with pytest.raises(PipelineConfigError) as caught:
        _pipeline(configs, checks)
    return caught.value.errors


def test_unknown_rule_id_is_refused(configs) -> None:
    errors = _validation_errors(configs, "      - {check: focus_rules, rules: [F06, F99]}\n")
    assert len(errors) == 1
    path, message = errors[0]
    assert path == "steps[0].checks[0].rules"
    assert message.startswith("unknown FOCUS rule 'F99' (known: F01, F02, ")


def test_not_implemented_rule_says_why(configs) -> None:
    errors = _validation_errors(configs, "      - {check: focus_rules, rules: [F28]}\n")
    assert errors == [
        ("steps[0].checks[0].rules", "FOCUS rule F28 is not implemented: needs the provider's invoice totals")
    ]


def test_unknown_override_and_check_level_severity_are_refused(configs) -> None:
    errors = _validation_errors(configs, "      - {check: focus_rules, severity_overrides: {F5: warn}}\n")
    assert [path for path, _ in errors] == ["steps[0].checks[0].severity_overrides"]
    assert errors[0][1].startswith("unknown FOCUS rule 'F5'")
    errors = _validation_errors(configs, "      - {check: focus_rules, severity: warn}\n")
    assert errors == [
        (
            "steps[0].checks[0]",
            "focus_rules takes each rule's severity; change one with severity_overrides",
        )
    ]


def test_shipped_rule_text_parses_as_bigquery() -> None:
    import sqlglot
    from sqlglot import exp

    for rule in FOCUS_RULES:
        for text in (rule.predicate, rule.having):
            if text:
                sqlglot.parse_one(text, read="bigquery", into=exp.Condition)


def _all_violations_outcome(configs: Path, warehouse: Any, dataset_name: str) -> PipelineOutcome:
    ref = TableRef(dataset_name, FOCUS_STAGING_TABLE)
    warehouse.create_table(ref, FOCUS_STAGING_TABLE_SPEC)
    rows = [clean_row()] + [row for rule_id in sorted(VIOLATIONS) for row in VIOLATIONS[rule_id]]
    warehouse.insert_rows(ref, rows)
    return run_pipeline(_pipeline(configs, ALL_CHECKS), warehouse)


def _every_rule_fires_once() -> dict[str, tuple[str, str, str]]:
    expected = {
        rule.rule_id: ("FAIL" if rule.severity == "error" else "WARN", rule.severity, "1")
        for rule in FOCUS_RULES
    }
    expected["F01"] = expected["F27"] = ("PASS", "error", "0")
    return expected


def test_each_violation_counts_once_in_a_table_holding_them_all(
    configs, warehouse, dataset, dq_records
) -> None:
    outcome = _all_violations_outcome(configs, warehouse, dataset)
    assert outcome.status == StepStatus.FAILED
    assert _by_rule(dq_records) == _every_rule_fires_once()


@pytest.mark.bigquery
def test_the_bigquery_sql_runs_on_the_bigquery_emulator(
    configs, settings, bigquery_warehouse, dq_records
) -> None:
    """The BigQuery text (SAFE.PARSE_JSON, COUNTIF, raw-string regexes) through the BigQuery adapter."""
    with fresh_dataset(bigquery_warehouse, settings) as name:
        outcome = _all_violations_outcome(configs, bigquery_warehouse, name)
    assert outcome.status == StepStatus.FAILED
    assert _by_rule(dq_records) == _every_rule_fires_once()
