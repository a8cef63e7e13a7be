"""``dq.checks`` check ``reconciliation``: per UTC day, SUM(BilledCost) of the FOCUS rows against the raw
export's net cost, run through the real engine on DuckDB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from billing.focus.schema import FOCUS_STAGING_TABLE, FOCUS_STAGING_TABLE_SPEC
from convergence.warehouse import Field, TableRef, TableSpec
from pipelines.engine import DQRecord, StepStatus
from pipelines.loader import Pipeline, PipelineConfigError
from tests import engine_fixtures
from tests.engine_fixtures import fresh_dataset, make_configs, run_pipeline, write_pipeline

#: The GCP export's shape where it matters here: FLOAT cost, credits as a repeated record.
RAW_SCHEMA = [
    {"name": "usage_start_time", "type": "TIMESTAMP"},
    {"name": "cost", "type": "FLOAT"},
    {"name": "credits", "type": "RECORD", "mode": "REPEATED", "fields": [
        {"name": "name", "type": "STRING"},
        {"name": "amount", "type": "FLOAT"},
    ]},
]  # fmt: skip
NET_COST = "cost + IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0)"


# The fixtures: the tenant's dataset, its FOCUS staging table and the DQ results a run records.
dataset = engine_fixtures.dataset
staging = engine_fixtures.staging
dq_records = engine_fixtures.dq_records


@pytest.fixture
def configs(settings: Any, tmp_path: Path) -> Path:
    return make_configs(settings, tmp_path, {"raw_billing": RAW_SCHEMA})


@pytest.fixture
def raw(warehouse: Any, dataset: str) -> TableRef:
    ref = TableRef(dataset, "raw_billing")
    warehouse.create_table(ref, TableSpec(schema=tuple(Field.from_api_repr(item) for item in RAW_SCHEMA)))
    return ref


def raw_row(day: str, cost: float, *credits: float) -> dict[str, Any]:
    return {
        "usage_start_time": f"{day}T05:00:00Z",
        "cost": cost,
        "credits": [{"name": "promo", "amount": amount} for amount in credits],
    }


def focus_row(day: str, billed: str, provider: str = "gcp") -> dict[str, Any]:
    return {
        "BilledCost": billed,
        "ChargePeriodStart": f"{day}T05:00:00Z",
        "x_ChargeDate": day,
        "x_Provider": provider,
    }


def _check(**options: Any) -> str:
    keys = {
        "check": "reconciliation",
        "raw_table": {"dataset_type": "tenant_dataset", "table": "raw_billing"},
        "raw_amount": NET_COST,
        "raw_day": "DATE(usage_start_time)",
        **options,
    }
    return f"      - {json.dumps(keys)}\n"


def _pipeline(configs: Path, checks: str, where: str = "x_Provider = 'gcp'") -> Pipeline:
    return write_pipeline(
        configs,
        f"""
description: Reconcile the staged FOCUS rows with the raw export
parameters:
  date: {{type: date}}
steps:
  - step_id: quality
    ps_type: dq.checks
    table: {{dataset_type: tenant_dataset, table: {FOCUS_STAGING_TABLE}}}
    where: "{where}"
    checks:
{checks}""",
        "gcp/focus/reconcile",
    )


def _result(records: list[DQRecord]) -> tuple[str, str, str, str, str]:
    assert len(records) == 1
    record = records[0]
    return (record.check, record.status, record.observed, record.expected, record.message)


def _load(warehouse: Any, staging: TableRef, raw: TableRef, focus_rows: list, raw_rows: list) -> None:
    warehouse.insert_rows(staging, focus_rows)
    warehouse.insert_rows(raw, raw_rows)


def test_equal_daily_totals_pass_with_credits_netted(configs, warehouse, staging, raw, dq_records) -> None:
    _load(
        warehouse,
        staging,
        raw,
        # 0.1 + 0.2 as floats is 0.30000000000000004; each row is cast to NUMERIC before summing.
        [
            focus_row("2024-03-01", "7.75"),
            focus_row("2024-03-02", "0.3"),
            focus_row("2024-03-02", "99", "aws"),
        ],
        [raw_row("2024-03-01", 10.0, -2.0, -0.25), raw_row("2024-03-02", 0.1), raw_row("2024-03-02", 0.2)],
    )
    outcome = run_pipeline(_pipeline(configs, _check()))
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert _result(dq_records) == (
        "reconciliation",
        "PASS",
        "2024-03-01: 7.750000000",
        "7.750000000",
        "2 day(s) reconciled (raw net within 1E-9 relative)",
    )


def test_a_day_off_by_more_than_the_tolerance_fails_naming_that_day(
    configs, warehouse, staging, raw, dq_records
) -> None:
    _load(
        warehouse,
        staging,
        raw,
        [focus_row("2024-03-01", "7.75"), focus_row("2024-03-02", "10.01")],
        [raw_row("2024-03-01", 7.75), raw_row("2024-03-02", 10.0)],
    )
    outcome = run_pipeline(_pipeline(configs, _check()))
    assert outcome.status == StepStatus.FAILED
    assert outcome.steps[0].error == "data quality: 1 check(s) failed: reconciliation"
    assert _result(dq_records) == (
        "reconciliation",
        "FAIL",
        "2024-03-02: 10.010000000",
        "10.000000000",
        "1 of 2 day(s) off: 2024-03-02",
    )


def test_a_day_missing_from_the_focus_rows_fails(configs, warehouse, staging, raw, dq_records) -> None:
    _load(
        warehouse,
        staging,
        raw,
        [focus_row("2024-03-01", "7.75")],
        [raw_row("2024-03-01", 7.75), raw_row("2024-03-02", 10.25)],
    )
    run_pipeline(_pipeline(configs, _check()))
    assert _result(dq_records)[1:] == (
        "FAIL",
        "2024-03-02: no rows",
        "10.250000000",
        "1 of 2 day(s) off: 2024-03-02",
    )


def test_a_day_missing_from_the_raw_export_fails(configs, warehouse, staging, raw, dq_records) -> None:
    _load(
        warehouse,
        staging,
        raw,
        [focus_row("2024-03-01", "7.75"), focus_row("2024-03-03", "5")],
        [raw_row("2024-03-01", 7.75)],
    )
    run_pipeline(_pipeline(configs, _check()))
    assert _result(dq_records)[1:] == (
        "FAIL",
        "2024-03-03: 5.000000000",
        "no rows",
        "1 of 2 day(s) off: 2024-03-03",
    )


@pytest.mark.parametrize(
    ("billed", "observed", "status"),
    [
        # Exactly tolerance x raw away (1e-9 x 1e9 = 1): the bound is inclusive.
        ("1000000001", "1000000001.000000000", "PASS"),
        ("999999999", "999999999.000000000", "PASS"),
        # One NUMERIC unit past the bound.
        ("1000000001.000000001", "1000000001.000000001", "FAIL"),
        ("999999998.999999999", "999999998.999999999", "FAIL"),
    ],
)
def test_difference_of_exactly_the_tolerance_passes(
    billed, observed, status, configs, warehouse, staging, raw, dq_records
) -> None:
    _load(warehouse, staging, raw, [focus_row("2024-03-01", billed)], [raw_row("2024-03-01", 1e9)])
    run_pipeline(_pipeline(configs, _check()))
    assert _result(dq_records)[1:4] == (status, f"2024-03-01: {observed}", "1000000000.000000000")


@pytest.mark.parametrize(("billed", "status"), [("0", "PASS"), ("0.000000001", "FAIL")])
def test_a_raw_total_of_zero_needs_exactly_zero(
    billed, status, configs, warehouse, staging, raw, dq_records
) -> None:
    _load(warehouse, staging, raw, [focus_row("2024-03-01", billed)], [raw_row("2024-03-01", 5.0, -5.0)])
    run_pipeline(_pipeline(configs, _check()))
    assert _result(dq_records)[1] == status
    assert dq_records[0].expected == "0.000000000"


def test_raw_where_and_step_where_limit_both_sides_to_the_run(
    configs, warehouse, staging, raw, dq_records
) -> None:
    _load(
        warehouse,
        staging,
        raw,
        [focus_row("2024-03-01", "4"), focus_row("2024-03-02", "1"), focus_row("2024-03-01", "3", "aws")],
        [raw_row("2024-03-01", 4.0), raw_row("2024-03-02", 2.0)],
    )
    pipeline = _pipeline(
        configs,
        _check(raw_where="DATE(usage_start_time) = @date", severity="warn", name="gcp_net_cost"),
        where="x_Provider = 'gcp' AND x_ChargeDate = @date",
    )
    outcome = run_pipeline(pipeline, date="2024-03-01")
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert _result(dq_records)[:4] == ("gcp_net_cost", "PASS", "2024-03-01: 4.000000000", "4.000000000")
    dq_records.clear()
    outcome = run_pipeline(pipeline, date="2024-03-02")
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert _result(dq_records)[:4] == ("gcp_net_cost", "WARN", "2024-03-02: 1.000000000", "2.000000000")
    assert dq_records[0].severity == "warn"


def test_no_rows_on_either_side_passes(configs, warehouse, staging, raw, dq_records) -> None:
    outcome = run_pipeline(_pipeline(configs, _check()))
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert _result(dq_records)[1:4] == ("PASS", "no rows", "no rows")


def test_unknown_raw_column_fails_the_step_with_a_clear_message(
    configs, warehouse, staging, raw, dq_records
) -> None:
    _load(warehouse, staging, raw, [focus_row("2024-03-01", "1")], [raw_row("2024-03-01", 1.0)])
    outcome = run_pipeline(_pipeline(configs, _check(raw_amount="net_cost + cost")))
    assert outcome.status == StepStatus.FAILED
    assert outcome.steps[0].error == (
        f"reconciliation: raw_amount reads unknown column(s) net_cost of {raw.dataset}.raw_billing"
    )
    assert dq_records == []


# --- validation -------------------------------------------------------------------------------------
def _errors(configs: Path, checks: str) -> list[tuple[str, str]]:
    with pytest.raises(PipelineConfigError) as caught:
        _pipeline(configs, checks)
    return caught.value.errors


def test_validation_rejects_unknown_raw_columns_given_the_schema_file(configs) -> None:
    errors = _errors(
        configs, _check(raw_amount="net_cost + IFNULL(cost, 0)", raw_schema_file="schemas/raw_billing.json")
    )
    assert errors == [
        (
            "steps[0].checks[0]",
            "raw_amount: unknown column(s) net_cost (not in schemas/raw_billing.json)",
        )
    ]
    errors = _errors(
        configs, _check(raw_where="DATE(usage_end_time) = @date", raw_schema_file="schemas/raw_billing.json")
    )
    assert errors == [
        (
            "steps[0].checks[0]",
            "raw_where: unknown column(s) usage_end_time (not in schemas/raw_billing.json)",
        )
    ]


def test_validation_accepts_the_gcp_net_cost_against_the_schema_file(configs) -> None:
    pipeline = _pipeline(configs, _check(raw_schema_file="schemas/raw_billing.json"))
    assert [step.step_id for step in pipeline.steps] == ["quality"]


def test_validation_rejects_aggregates_bad_sql_undeclared_parameters_and_other_datasets(configs) -> None:
    assert _errors(configs, _check(raw_amount="SUM(cost)")) == [
        (
            "steps[0].checks[0].raw_amount",
            "must be a per-row expression (the check sums it per day), not an aggregate",
        )
    ]
    assert _errors(configs, _check(raw_where="usage_date = @day")) == [
        ("steps[0].checks[0].raw_where", "parameter @day is not declared")
    ]
    errors = _errors(configs, _check(raw_where="cost > (SELECT MAX(cost) FROM other_dataset.raw_billing)"))
    assert errors == [
        (
            "steps[0].checks[0].raw_where",
            "SQL references dataset 'other_dataset' (only {tenant_dataset} allowed)",
        )
    ]
    assert _errors(configs, _check(focus_amount="Billed Cost")) == [
        ("steps[0].checks[0].focus_amount", "invalid identifier 'Billed Cost'")
    ]
    errors = _errors(configs, _check(tolerance=2))
    assert [path for path, _ in errors] == ["steps[0].checks[0].tolerance"]
    errors = _errors(configs, _check(raw_day="DATE(usage_start_time"))
    assert [path for path, _ in errors] == ["steps[0].checks[0].raw_day"]
    assert errors[0][1].startswith("SQL does not parse")


@pytest.mark.bigquery
def test_reconciliation_sql_runs_on_the_bigquery_emulator(
    configs, settings, bigquery_warehouse, dq_records
) -> None:
    """UNNEST credits, NUMERIC casts of FLOAT costs and the FULL OUTER JOIN through the BigQuery adapter."""
    with fresh_dataset(bigquery_warehouse, settings) as name:
        staging_ref, raw_ref = TableRef(name, FOCUS_STAGING_TABLE), TableRef(name, "raw_billing")
        bigquery_warehouse.create_table(staging_ref, FOCUS_STAGING_TABLE_SPEC)
        bigquery_warehouse.create_table(
            raw_ref, TableSpec(schema=tuple(Field.from_api_repr(item) for item in RAW_SCHEMA))
        )
        _load(
            bigquery_warehouse,
            staging_ref,
            raw_ref,
            [focus_row("2024-03-01", "7.75"), focus_row("2024-03-02", "0.3"), focus_row("2024-03-03", "1")],
            [
                raw_row("2024-03-01", 10.0, -2.0, -0.25),
                raw_row("2024-03-02", 0.1),
                raw_row("2024-03-02", 0.2),
            ],
        )
        outcome = run_pipeline(_pipeline(configs, _check()), bigquery_warehouse)
    assert outcome.status == StepStatus.FAILED
    assert _result(dq_records)[1:] == (
        "FAIL",
        "2024-03-03: 1.000000000",
        "no rows",
        "1 of 3 day(s) off: 2024-03-03",
    )


def test_validate_pipelines_command_reports_each_bad_check(configs, capsys) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    checks = (
        "      - {check: focus_rules, rules: [F06, F30]}\n"
        + _check(raw_amount="net_cost", raw_schema_file="schemas/raw_billing.json")
        + _check(raw_where="usage_date = @day")
    )
    path = configs / "gcp" / "focus" / "reconcile.yml"
    with pytest.raises(PipelineConfigError):
        _pipeline(configs, checks)
    capsys.readouterr()
    with pytest.raises(CommandError, match=r"^3 error\(s\) in 1 file\(s\)$"):
        call_command("validate_pipelines", str(path))
    lines = capsys.readouterr().out.splitlines()
    assert [line.removeprefix(f"{path}: ").split(": ", 1)[0] for line in lines] == [
        "steps[0].checks[0].rules",
        "steps[0].checks[1]",
        "steps[0].checks[2].raw_where",
    ]
    assert lines[1].endswith("raw_amount: unknown column(s) net_cost (not in schemas/raw_billing.json)")
    assert lines[2].endswith("parameter @day is not declared")
