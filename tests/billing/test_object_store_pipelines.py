"""The AWS and Azure cost pipelines reading their exports from object stores through the real client
libraries: boto3 against moto's S3 server and azure-storage-blob against Azurite. The export is placed by
``generate_sample_exports --tenant`` (where the tenant's source points, with the tenant's credential) and
the published FOCUS rows must equal the generator's own net cost per day, exactly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from billing.generators.aws import generate_aws
from billing.generators.azure import generate_azure
from billing.services import source_upsert
from pipelines.engine import StepStatus, execute
from pipelines.loader import load_pipeline
from pipelines.spec import resolve_parameters
from tenants.actors import Actor
from tenants.services import credential_create
from tests.object_stores import AWS_TEST_SECRET, AZURITE_ACCOUNT, AZURITE_KEY, AzureStore, S3Store

# Steps run in their own thread with their own database connection: the source rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

START, END = dt.date(2025, 5, 30), dt.date(2025, 6, 1)  # two billing periods
ROWS_PER_DAY, SEED = 15, 3


def _generate(provider: str) -> None:
    call_command(
        "generate_sample_exports",
        "--provider",
        provider,
        "--start",
        START.isoformat(),
        "--end",
        END.isoformat(),
        "--rows-per-day",
        str(ROWS_PER_DAY),
        "--seed",
        str(SEED),
        "--tenant",
        "acme",
        stdout=None,
    )


def _run_periods(provider: str, pipeline_name: str) -> None:
    pipeline = load_pipeline(pipeline_name)
    for day in (START, END):  # one run per billing period (May, June)
        parameters = resolve_parameters(pipeline.spec.parameters, {"date": day.isoformat()})
        outcome = execute(pipeline, tenant_id="acme", parameters=parameters, sleep=lambda seconds: None)
        assert outcome.status == StepStatus.COMPLETED, outcome.error


def _net_cost_by_day(export: Any) -> dict[dt.date, Decimal]:
    """The generator's own per-day net cost (it knows it once every row has been produced)."""
    for _row in export:
        pass
    return dict(export.net_cost_by_day)


def _published(warehouse: Any, tenant: Any, provider: str) -> dict[dt.date, Decimal]:
    rows = warehouse.query(
        f"SELECT x_ChargeDate AS day, SUM(BilledCost) AS billed FROM `{tenant.dataset_id}.focus_costs` "
        "WHERE x_Provider = @provider GROUP BY day",
        {"provider": provider},
    ).rows
    return {row["day"]: row["billed"] for row in rows}


def test_aws_pipeline_reads_cur_from_s3_and_reconciles_exactly(
    make_tenant: Any, warehouse: Any, s3_store: S3Store
) -> None:
    tenant, _key = make_tenant("acme")
    s3_store.client.create_bucket(Bucket="acme-cur")
    credential = credential_create(
        tenant=tenant, actor=Actor.system("test"), provider="aws", name="cur", secret=AWS_TEST_SECRET
    )
    source_upsert(
        tenant=tenant,
        actor=Actor.system("test"),
        provider="aws",
        location="s3://acme-cur/exports/cur2",
        credential_id=credential.pk,
    )
    _generate("aws")

    _run_periods("aws", "aws/cost/cur")

    expected = _net_cost_by_day(generate_aws(START, END, ROWS_PER_DAY, seed=SEED))
    assert _published(warehouse, tenant, "aws") == expected
    assert len(expected) == 3


def test_azure_pipeline_reads_cost_details_from_azurite_and_reconciles_exactly(
    make_tenant: Any, warehouse: Any, azure_store: AzureStore
) -> None:
    tenant, _key = make_tenant("acme")
    container = azure_store.container()
    credential = credential_create(
        tenant=tenant,
        actor=Actor.system("test"),
        provider="azure",
        name="costs",
        secret={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
    )
    source_upsert(
        tenant=tenant,
        actor=Actor.system("test"),
        provider="azure",
        location=f"az://{container}/exports",
        credential_id=credential.pk,
    )
    _generate("azure")

    _run_periods("azure", "azure/cost/cost_details")

    expected = _net_cost_by_day(generate_azure(START, END, ROWS_PER_DAY, seed=SEED))
    assert _published(warehouse, tenant, "azure") == expected
    assert len(expected) == 3
