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


# --- GCP export table sources ("bq") ---------------------------------------------------------------------


def _gcp_export_into(warehouse: Any, ref: Any, tmp_path: Path, start: dt.date, end: dt.date) -> Any:
    """Load a generated GCP export for ``start``..``end`` into the export table ``ref``; its summary."""
    from billing.generators.gcp import GCP_BILLING_EXPORT_SCHEMA
    from convergence.warehouse import Field, FileFormat, TableSpec

    summary = write_gcp(generate_gcp(start, end, 12, seed=7), tmp_path / "export")
    spec = TableSpec(schema=tuple(Field.from_api_repr(field) for field in GCP_BILLING_EXPORT_SCHEMA))
    warehouse.create_dataset(ref.dataset, exists_ok=True)
    for path in summary.files:
        warehouse.load_file(str(path), ref, file_format=FileFormat.NDJSON, spec=spec)
    return summary


def _raw_rows(warehouse: Any, table_sql: str, day: dt.date) -> list[str]:
    """The raw columns of ``day``'s rows, each as canonical JSON, sorted: comparable across tables."""
    import json

    from billing.readers import raw_fields
    from convergence.warehouse import ScalarParam

    columns = ", ".join(f"`{field.name}`" for field in raw_fields("gcp"))
    rows = warehouse.query(
        f"SELECT {columns} FROM {table_sql} WHERE DATE(usage_start_time) = @date",
        {"date": ScalarParam("DATE", day)},
    ).rows
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)


def test_gcp_table_source_on_duckdb_reads_the_local_table_without_a_credential(
    tenant: Any, warehouse: Any, tmp_path: Path
) -> None:
    """The embedded warehouse (development, demo) keeps reading a table source from itself."""
    from convergence.warehouse import TableRef

    export = TableRef("billing_export", "gcp_billing_export_v1_test")
    summary = _gcp_export_into(
        warehouse, export, tmp_path, DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    )
    source_upsert(
        tenant=tenant,
        actor=Actor.system("test"),
        provider="gcp",
        location="acme-billing.billing_export.gcp_billing_export_v1_test",
    )

    outcome = _run("gcp", DAY)

    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert outcome.outputs("land")["rows"] == 12
    assert _raw_rows(warehouse, f"`{_dataset()}`.`gcp_billing_export`", DAY) == _raw_rows(
        warehouse, f"`{export.dataset}`.`{export.table}`", DAY
    )
    assert _published(warehouse, "gcp") == {DAY: summary.net_cost_by_day[DAY]}


@pytest.fixture
def bq_tenant(settings: Any, bq_emulator: str, bigquery_warehouse: Any, make_tenant: Any) -> Any:
    """A tenant on a BigQuery warehouse (the session's emulator), with its dataset there."""
    import uuid

    from convergence.warehouse import get_warehouse
    from tests.bq_emulator import PROJECT

    settings.WAREHOUSE_URL = f"bigquery://{PROJECT}"
    settings.BIGQUERY_API_ENDPOINT = bq_emulator
    get_warehouse.cache_clear()
    created, _raw_key = make_tenant(f"bq{uuid.uuid4().hex[:10]}")
    try:
        yield created
    finally:
        bigquery_warehouse.drop_dataset(created.dataset_id, delete_contents=True)
        get_warehouse.cache_clear()


@pytest.fixture
def bq_export(bigquery_warehouse: Any, tmp_path: Path) -> Any:
    """A GCP billing export table on the emulator (outside any Convergence dataset): 3 days, 12 rows each."""
    import uuid

    from convergence.warehouse import TableRef

    ref = TableRef(f"billing_export_{uuid.uuid4().hex[:8]}", "gcp_billing_export_v1_0123")
    summary = _gcp_export_into(
        bigquery_warehouse, ref, tmp_path, DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    )
    try:
        yield ref, summary
    finally:
        bigquery_warehouse.drop_dataset(ref.dataset, delete_contents=True)


def _run_for(tenant: Any, provider: str, day: dt.date) -> PipelineOutcome:
    pipeline = load_pipeline(PIPELINES[provider])
    parameters = resolve_parameters(pipeline.spec.parameters, {"date": day.isoformat()})
    return execute(pipeline, tenant_id=tenant.tenant_id, parameters=parameters, sleep=lambda seconds: None)


@pytest.mark.bigquery
def test_gcp_table_source_on_bigquery_is_read_with_the_tenants_credential(
    bq_tenant: Any, bq_export: Any, bigquery_warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convergence.warehouse import bigquery
    from tenants.services import credential_create
    from tests.bq_emulator import PROJECT
    from tests.convergence.test_warehouse_tenant_read import gcp_service_account

    export, summary = bq_export
    location = f"{PROJECT}.{export.dataset}.{export.table}"
    secret = gcp_service_account(
        f"billing@{bq_tenant.tenant_id.replace('_', '-')}-costs.iam.gserviceaccount.com"
    )
    credential = credential_create(
        tenant=bq_tenant, actor=Actor.system("test"), provider="gcp", name="billing", secret=secret
    )
    source_upsert(
        tenant=bq_tenant,
        actor=Actor.system("test"),
        provider="gcp",
        location=location,
        credential_id=credential.pk,
    )
    # Spy on the tenant clients built and on every SQL text the server's own client runs.
    tenant_clients: list[Any] = []
    server_sql: list[str] = []
    build, run = bigquery.tenant_client, bigquery.BigQueryWarehouse._run

    def spy_build(**kwargs: Any) -> Any:
        tenant_clients.append(build(**kwargs))
        return tenant_clients[-1]

    def spy_run(self: Any, sql: str, config: Any) -> Any:
        server_sql.append(sql)
        return run(self, sql, config)

    with monkeypatch.context() as patch:
        patch.setattr(bigquery, "tenant_client", spy_build)
        patch.setattr(bigquery.BigQueryWarehouse, "_run", spy_run)
        outcome = _run_for(bq_tenant, "gcp", DAY)

    land = outcome.steps[0]
    assert land.step_id == "land"
    assert land.status == StepStatus.COMPLETED, land.error
    assert outcome.outputs("land")["rows"] == 12
    raw = f"`{bq_tenant.dataset_id}`.`gcp_billing_export`"
    expected = _raw_rows(bigquery_warehouse, f"`{export.dataset}`.`{export.table}`", DAY)
    assert len(expected) == 12
    assert _raw_rows(bigquery_warehouse, raw, DAY) == expected
    total = bigquery_warehouse.query(f"SELECT COUNT(*) AS n FROM {raw}").rows[0]["n"]
    assert total == 12  # only the run's day, not the export's other days
    # The export was read by one client built from the tenant's key, in the table's project; the server's
    # client never named the export's dataset.
    assert [client._credentials.service_account_email for client in tenant_clients] == [
        secret["client_email"]
    ]
    assert [client.project for client in tenant_clients] == [PROJECT]
    assert server_sql, "the server client still writes the tenant's raw table"
    assert not [sql for sql in server_sql if export.dataset in sql]
    # And the rest of the pipeline publishes exactly the generator's net cost of the day.
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    published = bigquery_warehouse.query(
        f"SELECT SUM(BilledCost) AS billed FROM `{bq_tenant.dataset_id}`.`focus_costs` "
        "WHERE x_Provider = 'gcp'"
    ).rows
    assert published == [{"billed": summary.net_cost_by_day[DAY]}]


@pytest.mark.bigquery
def test_gcp_table_source_on_bigquery_without_a_credential_fails_landing(
    bq_tenant: Any, bq_export: Any, bigquery_warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table source stored without a credential (before this rule, or while the server ran DuckDB) is
    not read with the server's identity: the land step fails, not retryably, and reads nothing."""
    from billing.models import BillingSource
    from convergence.warehouse import bigquery
    from tests.bq_emulator import PROJECT

    export, _summary = bq_export
    BillingSource.objects.create(
        tenant=bq_tenant, provider="gcp", location=f"{PROJECT}.{export.dataset}.{export.table}"
    )
    server_sql: list[str] = []
    run = bigquery.BigQueryWarehouse._run
    with monkeypatch.context() as patch:
        patch.setattr(
            bigquery.BigQueryWarehouse,
            "_run",
            lambda self, sql, config: server_sql.append(sql) or run(self, sql, config),
        )
        outcome = _run_for(bq_tenant, "gcp", DAY)

    land = outcome.steps[0]
    assert land.status == StepStatus.FAILED
    assert "a BigQuery table source needs a gcp credential" in (land.error or "")
    assert land.attempts == 1
    assert not [sql for sql in server_sql if export.dataset in sql]
