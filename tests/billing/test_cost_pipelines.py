"""The three provider cost pipelines end to end through the real engine on DuckDB, with ``file://``
sources under a temporary ``SOURCE_FILE_ROOT`` and exports from the sample generators: exact
reconciliation with the generators' own per-day net cost, idempotent re-runs, restatements that replace,
a failing gate that leaves the published rows untouched, and the missing-source error."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.generators.aws import generate_aws, write_aws
from billing.generators.azure import generate_azure, write_azure
from billing.generators.gcp import generate_gcp, write_gcp
from billing.services import source_upsert
from pipelines.engine import PipelineOutcome, StepStatus, execute
from pipelines.loader import load_pipeline
from pipelines.spec import resolve_parameters
from tenants.actors import Actor

# Steps run in their own thread with their own database connection: the source rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

TENANT = "acme"
PIPELINES = {"gcp": "gcp/cost/billing", "aws": "aws/cost/cur", "azure": "azure/cost/cost_details"}
DAY = dt.date(2025, 5, 3)


@pytest.fixture
def tenant(make_tenant: Any, settings: Any, tmp_path: Path) -> Any:
    settings.SOURCE_FILE_ROOT = tmp_path / "exports"
    (settings.SOURCE_FILE_ROOT / TENANT).mkdir(parents=True)
    created, _raw_key = make_tenant(TENANT)
    return created


def _source(tenant: Any, provider: str) -> Path:
    from django.conf import settings

    folder = Path(settings.SOURCE_FILE_ROOT) / TENANT / provider
    folder.mkdir(exist_ok=True)
    source_upsert(tenant=tenant, actor=Actor.system("test"), provider=provider, location=f"file://{folder}")
    return folder


def _export(provider: str, folder: Path, start: dt.date, end: dt.date, *, restated: bool = False) -> Any:
    """Write a generated export into ``folder`` (replacing what was there); its net cost per day."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    if provider == "gcp":
        return write_gcp(generate_gcp(start, end, 12, seed=7, restated=restated), folder).net_cost_by_day
    if provider == "aws":
        return write_aws(generate_aws(start, end, 15, seed=7, restated=restated), folder).net_cost_by_day
    return write_azure(generate_azure(start, end, 15, seed=7, restated=restated), folder).net_cost_by_day


def _run(provider: str, day: dt.date) -> PipelineOutcome:
    pipeline = load_pipeline(PIPELINES[provider])
    parameters = resolve_parameters(pipeline.spec.parameters, {"date": day.isoformat()})
    return execute(pipeline, tenant_id=TENANT, parameters=parameters, sleep=lambda seconds: None)


def _published(warehouse: Any, provider: str) -> dict[dt.date, Decimal]:
    rows = warehouse.query(
        f"SELECT x_ChargeDate AS day, SUM(BilledCost) AS billed FROM `{_dataset()}.focus_costs` "
        f"WHERE x_Provider = '{provider}' GROUP BY day"
    ).rows
    return {row["day"]: row["billed"] for row in rows}


def _count(warehouse: Any, table: str, provider: str) -> int:
    rows = warehouse.query(
        f"SELECT COUNT(*) AS n FROM `{_dataset()}.{table}` WHERE x_Provider = '{provider}'"
    ).rows
    return int(rows[0]["n"])


def _statuses(outcome: PipelineOutcome) -> dict[str, str]:
    return {step.step_id: step.status for step in outcome.steps}


@pytest.mark.parametrize("provider", ["gcp", "aws", "azure"])
def test_pipeline_publishes_exactly_the_generators_net_cost(
    tenant: Any, warehouse: Any, provider: str
) -> None:
    folder = _source(tenant, provider)
    # GCP loads one day; AWS and Azure the billing period (May) containing it, from a two-day export.
    end = DAY if provider == "gcp" else DAY + dt.timedelta(days=1)
    expected = _export(provider, folder, DAY, end)

    outcome = _run(provider, DAY)

    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert _statuses(outcome) == dict.fromkeys(["land", "normalize", "quality", "publish"], "COMPLETED")
    assert _published(warehouse, provider) == expected


@pytest.mark.parametrize("provider", ["gcp", "aws", "azure"])
def test_rerunning_the_period_leaves_counts_and_sums_unchanged(
    tenant: Any, warehouse: Any, provider: str
) -> None:
    folder = _source(tenant, provider)
    expected = _export(provider, folder, DAY, DAY)
    assert _run(provider, DAY).succeeded
    rows = _count(warehouse, "focus_costs", provider)

    second = _run(provider, DAY)

    assert second.succeeded, second.error
    assert _count(warehouse, "focus_costs", provider) == rows
    assert _published(warehouse, provider) == expected


@pytest.mark.parametrize("provider", ["gcp", "aws", "azure"])
def test_restated_export_replaces_the_period_without_duplicates(
    tenant: Any, warehouse: Any, provider: str
) -> None:
    folder = _source(tenant, provider)
    original = _export(provider, folder, DAY, DAY)
    assert _run(provider, DAY).succeeded
    restated = _export(provider, folder, DAY, DAY, restated=True)
    assert restated != original  # the restatement changes the day's net cost

    outcome = _run(provider, DAY)

    assert outcome.succeeded, outcome.error
    assert _published(warehouse, provider) == restated
    raw_rows = {"gcp": "gcp_billing_export", "aws": "aws_cur", "azure": "azure_cost_details"}[provider]
    landed = warehouse.query(f"SELECT COUNT(*) AS n FROM `{_dataset()}.{raw_rows}`").rows[0]["n"]
    assert _count(warehouse, "focus_costs", provider) == landed


def test_gcp_day_run_leaves_other_days_published(tenant: Any, warehouse: Any) -> None:
    folder = _source(tenant, "gcp")
    expected = _export("gcp", folder, DAY, DAY + dt.timedelta(days=1))
    assert _run("gcp", DAY).succeeded
    assert _run("gcp", DAY + dt.timedelta(days=1)).succeeded

    assert _run("gcp", DAY).succeeded

    assert _published(warehouse, "gcp") == expected


def test_failing_gate_leaves_the_published_rows_untouched(tenant: Any, warehouse: Any) -> None:
    folder = _source(tenant, "gcp")
    expected = _export("gcp", folder, DAY, DAY)
    assert _run("gcp", DAY).succeeded
    published_rows = _count(warehouse, "focus_costs", "gcp")
    # Corrupt the next delivery: one row without a currency breaks a FOCUS error rule (BillingCurrency).
    export_file = next(folder.rglob("*.ndjson"))
    lines = export_file.read_text().splitlines()
    lines[0] = lines[0].replace('"currency":"USD"', '"currency":null')
    export_file.write_text("\n".join(lines) + "\n")

    outcome = _run("gcp", DAY)

    assert outcome.status == StepStatus.FAILED
    assert _statuses(outcome) == {
        "land": "COMPLETED",
        "normalize": "COMPLETED",
        "quality": "FAILED",
        "publish": "SKIPPED",
    }
    assert _count(warehouse, "focus_costs", "gcp") == published_rows
    assert _published(warehouse, "gcp") == expected


def test_missing_source_fails_the_first_step_naming_the_provider(tenant: Any, warehouse: Any) -> None:
    outcome = _run("aws", DAY)

    assert outcome.status == StepStatus.FAILED
    assert outcome.steps[0].step_id == "land"
    assert outcome.steps[0].status == StepStatus.FAILED
    assert outcome.steps[0].error.startswith("no aws billing source configured")
    assert [step.status for step in outcome.steps[1:]] == ["SKIPPED"] * 3
    assert not warehouse.table_exists(_table("focus_costs"))


def test_missing_export_file_for_the_day_fails_landing(tenant: Any, warehouse: Any) -> None:
    folder = _source(tenant, "gcp")
    _export("gcp", folder, DAY, DAY)

    outcome = _run("gcp", DAY + dt.timedelta(days=1))

    assert outcome.steps[0].status == StepStatus.FAILED
    assert outcome.steps[0].error == "no gcp export files found for 2025-05-04"
    assert not warehouse.table_exists(_table("focus_costs"))


def test_cur_manifest_limits_the_files_read(tenant: Any, warehouse: Any) -> None:
    folder = _source(tenant, "aws")
    expected = _export("aws", folder, DAY, DAY)
    # A stray file in the period folder that the manifest does not list (a superseded delivery).
    data = folder / "data" / "BILLING_PERIOD=2025-05"
    (data / "old-00001.snappy.parquet").write_bytes((data / "cur2-00001.snappy.parquet").read_bytes())

    outcome = _run("aws", DAY)

    assert outcome.succeeded, outcome.error
    assert _published(warehouse, "aws") == expected


def _table(name: str) -> Any:
    from convergence.warehouse import TableRef

    return TableRef(_dataset(), name)


def _dataset() -> str:
    from django.conf import settings

    return f"{TENANT}_{settings.ENV_SUFFIX}"


def test_shipped_configs_use_the_normalization_module_sql() -> None:
    """The YAML repeats the period predicates and the raw net cost for the DQ step; they must not drift
    from what the processors use."""
    from billing.focus.normalize import PROVIDER_SQL

    for provider, name in PIPELINES.items():
        quality = next(step for step in load_pipeline(name).steps if step.step_id == "quality").raw_config
        reconciliation = next(check for check in quality["checks"] if check["check"] == "reconciliation")
        assert quality["where"] == PROVIDER_SQL[provider].focus_period
        assert reconciliation["raw_where"] == PROVIDER_SQL[provider].raw_period
        assert reconciliation["raw_amount"] == PROVIDER_SQL[provider].raw_net_cost


@pytest.mark.parametrize(("provider", "schema_file"), [("aws", "aws_cur"), ("azure", "azure_cost_details")])
def test_raw_schema_files_match_the_readers(provider: str, schema_file: str) -> None:
    import json

    from django.conf import settings

    from billing.readers import raw_fields
    from convergence.warehouse import Field

    path = Path(settings.PIPELINE_CONFIGS_DIR) / provider / "schemas" / f"{schema_file}.json"
    assert tuple(Field.from_api_repr(item) for item in json.loads(path.read_text())) == raw_fields(provider)


def test_focus_table_has_every_mandatory_column_and_the_contract_columns() -> None:
    from billing.focus.columns import FOCUS_1_2_COLUMNS, FOCUS_1_3_COLUMNS, MANDATORY_1_2
    from billing.focus.schema import FOCUS_FIELDS

    types = {field.name: (field.type, field.mode) for field in FOCUS_FIELDS}
    assert set(MANDATORY_1_2) <= set(types)
    assert {column.name for column in FOCUS_1_2_COLUMNS + FOCUS_1_3_COLUMNS} <= set(types)
    assert types["BilledCost"] == ("NUMERIC", "NULLABLE")
    assert types["ChargePeriodStart"] == ("TIMESTAMP", "NULLABLE")
    assert types["Tags"] == ("STRING", "NULLABLE")
    assert types["x_TagList"] == ("RECORD", "REPEATED")
    assert types["x_ChargeDate"] == ("DATE", "NULLABLE")
    assert types["x_Provider"] == types["x_RunId"] == ("STRING", "NULLABLE")
    custom = [name for name in types if name not in {c.name for c in FOCUS_1_2_COLUMNS + FOCUS_1_3_COLUMNS}]
    assert all(name.startswith("x_") for name in custom)  # FOCUS rule F27


def test_publish_of_a_run_whose_staged_rows_were_replaced_writes_nothing(tenant: Any, warehouse: Any) -> None:
    from billing.processors import FocusPublishProcessor
    from pipelines.engine import RunContext
    from pipelines.processors.base import StepError

    folder = _source(tenant, "gcp")
    expected = _export("gcp", folder, DAY, DAY)
    assert _run("gcp", DAY).succeeded  # staging now holds that run's rows
    published_rows = _count(warehouse, "focus_costs", "gcp")
    pipeline = load_pipeline(PIPELINES["gcp"])
    publish = next(step for step in pipeline.steps if step.step_id == "publish")
    # A run that normalized 12 rows earlier, whose staged rows a later run of the same day replaced.
    context = RunContext(
        pipeline=pipeline,
        tenant_id=TENANT,
        run_id="superseded-run",
        parameters={"date": DAY},
        warehouse=warehouse,
        outputs={"normalize": {"rows": 12}},
    )

    with pytest.raises(StepError, match="another run of this pipeline replaced this run's normalized rows"):
        FocusPublishProcessor().run(context, pipeline.step_config(publish, tenant_id=TENANT))

    assert _count(warehouse, "focus_costs", "gcp") == published_rows
    assert _published(warehouse, "gcp") == expected
