"""``generate_sample_exports --tenant``: the export lands where the tenant's source points (file://
folder, moto S3, Azurite, or the GCP export table in the warehouse)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from billing.generators.gcp import TABLE_NAME
from billing.models import BillingSource
from billing.sources import ResolvedSource, fetch_files
from convergence.warehouse import TableRef
from tenants.actors import Actor
from tenants.services import credential_create
from tests.object_stores import AWS_TEST_SECRET, AZURITE_ACCOUNT, AZURITE_KEY, AzureStore, S3Store

pytestmark = pytest.mark.django_db

RANGE = ("--start", "2025-11-29", "--end", "2025-12-01", "--rows-per-day", "6")


@pytest.fixture
def acme(make_tenant: Any, source_file_root: Path) -> Any:
    tenant, _key = make_tenant("acme")
    return tenant


def _run(provider: str, tenant: str = "acme", *extra: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(
        "generate_sample_exports", "--provider", provider, *RANGE, "--tenant", tenant, *extra, stdout=out
    )
    return out.getvalue().strip()


def _tree(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def _reference(provider: str, tmp_path: Path) -> list[str]:
    """The files the generator writes with --out, as relative paths."""
    out = tmp_path / f"reference-{provider}"
    call_command("generate_sample_exports", "--provider", provider, *RANGE, "--out", str(out), stdout=None)
    return _tree(out)


def test_file_source_gets_the_generators_layout(acme: Any, source_file_root: Path, tmp_path: Path) -> None:
    folder = source_file_root / "acme" / "aws-cur"
    BillingSource.objects.create(tenant=acme, provider="aws", location=f"file://{folder}")

    line = _run("aws")

    assert _tree(folder) == _reference("aws", tmp_path)
    assert "data/BILLING_PERIOD=2025-11/cur2-00001.snappy.parquet" in _tree(folder)
    assert line.startswith("aws: wrote 4 file(s), 18 rows, net cost ")
    assert line.endswith(f" in file://{folder}")


def test_s3_source_gets_the_same_layout_under_its_prefix(
    acme: Any, s3_store: S3Store, tmp_path: Path
) -> None:
    s3_store.client.create_bucket(Bucket="acme-cur")
    credential = credential_create(
        tenant=acme, actor=Actor.system("test"), provider="aws", name="main", secret=AWS_TEST_SECRET
    )
    BillingSource.objects.create(
        tenant=acme, provider="aws", location="s3://acme-cur/exports/cur2", credential=credential
    )

    line = _run("aws")

    expected = _reference("aws", tmp_path)
    assert s3_store.keys("acme-cur") == [f"exports/cur2/{name}" for name in expected]
    assert line.endswith(" to s3://acme-cur/exports/cur2")
    # What was placed is what the pipelines' reader finds for the period.
    source = ResolvedSource("aws", "s3://acme-cur/exports/cur2", "s3", credential.pk)
    found = fetch_files(
        source=source,
        tenant_id="acme",
        subpath="data/BILLING_PERIOD=2025-12",
        dest=tmp_path / "fetched",
        suffixes=(".parquet",),
    )
    assert [path.relative_to(tmp_path / "fetched").as_posix() for path in found] == [
        "data/BILLING_PERIOD=2025-12/cur2-00001.snappy.parquet"
    ]


def test_azure_source_gets_the_same_layout_under_its_prefix(
    acme: Any, azure_store: AzureStore, tmp_path: Path
) -> None:
    container = azure_store.container()
    credential = credential_create(
        tenant=acme,
        actor=Actor.system("test"),
        provider="azure",
        name="main",
        secret={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
    )
    BillingSource.objects.create(
        tenant=acme, provider="azure", location=f"az://{container}/costs", credential=credential
    )

    line = _run("azure")

    expected = _reference("azure", tmp_path)
    assert azure_store.names(container) == [f"costs/{name}" for name in expected]
    assert line.startswith("azure: uploaded 2 file(s), 18 rows, net cost ")
    reference_bytes = (tmp_path / "reference-azure" / expected[0]).read_bytes()
    assert azure_store.get(container, f"costs/{expected[0]}") == reference_bytes


def test_gcp_table_source_is_loaded_into_the_warehouse(acme: Any, warehouse: Any, tmp_path: Path) -> None:
    BillingSource.objects.create(
        tenant=acme, provider="gcp", location="acme-billing.billing_export.gcp_billing_export_v1_test"
    )

    line = _run("gcp")

    ref = TableRef("billing_export", "gcp_billing_export_v1_test")
    rows = warehouse.query(f"SELECT COUNT(*) AS n, SUM(cost) AS cost FROM {ref}").rows
    assert rows[0]["n"] == 18
    assert line.startswith("gcp: loaded 3 file(s), 18 rows, net cost ")
    assert line.endswith(" into acme-billing.billing_export.gcp_billing_export_v1_test")
    _reference("gcp", tmp_path)
    expected_cost = sum(
        Decimal(str(json.loads(line)["cost"]))
        for path in sorted((tmp_path / "reference-gcp").rglob("*.ndjson"))
        for line in path.read_text().splitlines()
    )
    # cost is FLOAT64 in the export schema: the warehouse sum carries float noise past 6 decimals.
    assert round(Decimal(str(rows[0]["cost"])), 6) == expected_cost


def test_gcp_file_source_gets_one_ndjson_per_day(acme: Any, source_file_root: Path) -> None:
    folder = source_file_root / "acme" / "gcp"
    BillingSource.objects.create(tenant=acme, provider="gcp", location=f"file://{folder}")

    _run("gcp")

    assert _tree(folder) == [f"{TABLE_NAME}/{day}.ndjson" for day in ("20251129", "20251130", "20251201")]


def test_unknown_tenant_is_a_one_line_error(source_file_root: Path, db: Any) -> None:
    with pytest.raises(CommandError) as caught:
        _run("gcp", "ghost")

    assert str(caught.value) == "tenant 'ghost' does not exist"
    assert _tree(source_file_root) == []


def test_missing_source_is_a_one_line_error(acme: Any, source_file_root: Path) -> None:
    with pytest.raises(CommandError) as caught:
        _run("azure")

    assert str(caught.value) == "tenant 'acme' has no azure billing source: set one first"
    assert _tree(source_file_root) == []


def test_upload_failure_is_a_one_line_error(acme: Any, s3_store: S3Store) -> None:
    credential = credential_create(
        tenant=acme, actor=Actor.system("test"), provider="aws", name="main", secret=AWS_TEST_SECRET
    )
    BillingSource.objects.create(
        tenant=acme, provider="aws", location="s3://no-such-bucket/cur", credential=credential
    )

    with pytest.raises(CommandError) as caught:
        _run("aws")

    assert str(caught.value) == "S3 bucket of s3://no-such-bucket/cur does not exist"


def test_command_exits_non_zero_from_the_shell(acme: Any) -> None:
    from django.core.management import ManagementUtility

    utility = ManagementUtility(
        ["manage.py", "generate_sample_exports", "--provider", "gcp", *RANGE, "--tenant", "acme"]
    )
    with pytest.raises(SystemExit) as caught:
        utility.execute()

    assert caught.value.code == 1
