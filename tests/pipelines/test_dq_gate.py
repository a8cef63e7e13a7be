"""The FOCUS DQ gate through the real run service: stage → dq.checks (FOCUS rules + reconciliation) →
publish (replace_partition). An error-severity failure fails the run, skips publish and leaves the
published rows untouched; warnings alone publish."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from billing.focus.schema import (
    FOCUS_STAGING_TABLE,
    FOCUS_STAGING_TABLE_SPEC,
    FOCUS_TABLE,
    FOCUS_TABLE_SPEC,
)
from convergence.warehouse import Field, TableRef, TableSpec
from pipelines.models import DQResult, PipelineRun, StepLog
from pipelines.services import run_execute
from tests.billing.test_focus_rules import NO_CONSUMPTION, clean_row

pytestmark = pytest.mark.django_db

RUN_URL = "/api/v1/pipelines/run/acme/test/focus/gate"
DAY = "2024-03-01"

GATE = """
description: Stage, check and publish one day of FOCUS rows
parameters:
  date: {type: date, required: true}
steps:
  - step_id: stage
    ps_type: gcp.bq_etl
    sql: "SELECT * FROM {tenant_dataset}.focus_input WHERE x_ChargeDate = @date"
    destination:
      dataset_type: tenant_dataset
      table: focus_costs_staging
      write_mode: replace_partition
      partition_field: x_ChargeDate
  - step_id: quality
    ps_type: dq.checks
    table: {dataset_type: tenant_dataset, table: focus_costs_staging}
    where: x_ChargeDate = @date
    checks:
      - {check: focus_rules}
      - check: reconciliation
        raw_table: {dataset_type: tenant_dataset, table: raw_billing}
        raw_amount: net_cost
        raw_day: usage_date
        raw_where: usage_date = @date
  - step_id: publish
    ps_type: gcp.bq_etl
    sql: "SELECT * FROM {tenant_dataset}.focus_costs_staging WHERE x_ChargeDate = @date"
    destination:
      dataset_type: tenant_dataset
      table: focus_costs
      write_mode: replace_partition
      partition_field: x_ChargeDate
"""


@pytest.fixture
def tables(make_tenant, tenant_client, test_pipelines, warehouse) -> dict[str, Any]:
    """The tenant, the gate pipeline, and its tables: two days already published."""
    from pipelines import catalog

    _tenant, raw_key = make_tenant("acme")
    path = test_pipelines / "test" / "focus" / "gate.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GATE)
    catalog.catalog_entries.cache_clear()
    dataset = f"acme_{settings.ENV_SUFFIX}"
    refs = {
        "input": TableRef(dataset, "focus_input"),
        "staging": TableRef(dataset, FOCUS_STAGING_TABLE),
        "published": TableRef(dataset, FOCUS_TABLE),
        "raw": TableRef(dataset, "raw_billing"),
    }
    warehouse.create_table(refs["input"], FOCUS_STAGING_TABLE_SPEC)
    warehouse.create_table(refs["staging"], FOCUS_STAGING_TABLE_SPEC)
    warehouse.create_table(refs["published"], FOCUS_TABLE_SPEC)
    warehouse.create_table(
        refs["raw"], TableSpec(schema=(Field("usage_date", "DATE"), Field("net_cost", "NUMERIC")))
    )
    warehouse.insert_rows(
        refs["published"],
        [
            clean_row(BilledCost="1.5", x_RunId="run-old"),
            clean_row(BilledCost="2.5", x_RunId="run-old"),
            clean_row(BilledCost="4", x_ChargeDate="2024-02-29", x_RunId="run-old"),
        ],
    )
    return {"client": tenant_client(raw_key), "warehouse": warehouse, **refs}


def _published(tables: dict[str, Any]) -> list[dict[str, Any]]:
    ref = tables["published"]
    return (
        tables["warehouse"]
        .query(f"SELECT * FROM {ref.dataset}.{ref.table} ORDER BY x_ChargeDate, x_RunId, BilledCost")
        .rows
    )


def _run_gate(tables: dict[str, Any], django_capture_on_commit_callbacks: Any) -> PipelineRun:
    with django_capture_on_commit_callbacks(execute=False):
        response = tables["client"].post(RUN_URL, {"date": DAY}, format="json")
    assert response.status_code == 202, response.content
    run_id = response.json()["pipeline_logging_id"]
    run_execute(run_id=run_id)
    return PipelineRun.objects.get(pk=run_id)


def _steps(run: PipelineRun) -> list[tuple[str, str]]:
    return list(StepLog.objects.filter(run=run).order_by("position").values_list("step_id", "status"))


def _failed_or_warned(run: PipelineRun) -> list[tuple[str, str, str]]:
    return list(
        DQResult.objects.filter(run=run)
        .exclude(status="PASS")
        .order_by("check_name")
        .values_list("check_name", "status", "observed")
    )


def _stage(tables: dict[str, Any], rows: list[dict[str, Any]], raw_total: str) -> None:
    tables["warehouse"].insert_rows(tables["input"], rows)
    tables["warehouse"].insert_rows(tables["raw"], [{"usage_date": DAY, "net_cost": raw_total}])


def test_failing_error_rule_fails_the_run_and_leaves_published_rows_unchanged(
    tables, django_capture_on_commit_callbacks
) -> None:
    before = _published(tables)
    _stage(
        tables,
        [
            clean_row(BilledCost="7", x_RunId="run-new"),
            clean_row(BilledCost="3", ChargeCategory="usage", x_RunId="run-new", **NO_CONSUMPTION),
        ],
        raw_total="10",
    )
    run = _run_gate(tables, django_capture_on_commit_callbacks)
    assert run.status == "FAILED"
    assert run.error == "step quality: data quality: 1 check(s) failed: focus_rules.F06"
    assert _steps(run) == [("stage", "COMPLETED"), ("quality", "FAILED"), ("publish", "SKIPPED")]
    assert _failed_or_warned(run) == [("focus_rules.F06", "FAIL", "1")]
    assert DQResult.objects.filter(run=run).count() == 29  # 28 rules + reconciliation
    after = _published(tables)
    assert after == before
    assert [(row["x_RunId"], row["BilledCost"]) for row in after] == [
        ("run-old", 4),
        ("run-old", 1.5),
        ("run-old", 2.5),
    ]


def test_failed_reconciliation_blocks_publication(tables, django_capture_on_commit_callbacks) -> None:
    before = _published(tables)
    _stage(tables, [clean_row(BilledCost="7", x_RunId="run-new")], raw_total="7.01")
    run = _run_gate(tables, django_capture_on_commit_callbacks)
    assert run.status == "FAILED"
    assert _steps(run) == [("stage", "COMPLETED"), ("quality", "FAILED"), ("publish", "SKIPPED")]
    assert _failed_or_warned(run) == [("reconciliation", "FAIL", f"{DAY}: 7.000000000")]
    assert DQResult.objects.get(run=run, check_name="reconciliation").expected == "7.010000000"
    assert _published(tables) == before


def test_only_warnings_publish_the_day_and_keep_other_days(
    tables, django_capture_on_commit_callbacks
) -> None:
    _stage(
        tables,
        [
            clean_row(BilledCost="7", x_RunId="run-new"),
            clean_row(BilledCost="3", ChargeDescription="N/A", x_RunId="run-new"),
        ],
        raw_total="10",
    )
    run = _run_gate(tables, django_capture_on_commit_callbacks)
    assert run.status == "COMPLETED", run.error
    assert _steps(run) == [("stage", "COMPLETED"), ("quality", "COMPLETED"), ("publish", "COMPLETED")]
    assert _failed_or_warned(run) == [("focus_rules.F26", "WARN", "1")]
    assert [
        (row["x_ChargeDate"].isoformat(), row["x_RunId"], row["BilledCost"]) for row in _published(tables)
    ] == [
        ("2024-02-29", "run-old", 4),
        (DAY, "run-new", 3),
        (DAY, "run-new", 7),
    ]
