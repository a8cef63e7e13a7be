"""Billing sources: the API's validation (400 invalid_source), upsert/delete with audit, and the
pipeline-facing contract (resolve_source, fetch_files for file://)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from billing.models import BillingSource
from billing.sources import (
    ResolvedSource,
    SourceError,
    SourceNotConfigured,
    fetch_files,
    resolve_source,
)
from tenants.actors import Actor
from tenants.models import AuditLog
from tenants.services import credential_create
from tests.convergence.test_warehouse_tenant_read import gcp_service_account
from tests.object_stores import AWS_TEST_SECRET

pytestmark = pytest.mark.django_db

AZURE_SECRET = {"account_name": "acmecosts", "account_key": "c2VjcmV0LWF6dXJlLWtleQ=="}


@pytest.fixture
def acme(make_tenant: Any, tenant_client: Any, source_file_root: Path) -> Any:
    _tenant, key = make_tenant("acme")
    return tenant_client(key)


def _credential(tenant_id: str, provider: str, name: str = "main") -> int:
    from tenants.models import Tenant

    secret = {"aws": AWS_TEST_SECRET, "azure": AZURE_SECRET, "gcp": gcp_service_account()}[provider]
    return credential_create(
        tenant=Tenant.objects.get(pk=tenant_id),
        actor=Actor.system("test"),
        provider=provider,
        name=name,
        secret=secret,
    ).pk


def _put(client: Any, provider: str, location: str, credential_id: int | None = None) -> Any:
    body: dict[str, Any] = {"location": location}
    if credential_id is not None:
        body["credential_id"] = credential_id
    return client.put(f"/api/v1/tenants/acme/sources/{provider}", body, format="json")


# --- API: valid sources ---------------------------------------------------------------------------


def test_put_file_source_inside_the_tenant_folder_creates_it(acme: Any, source_file_root: Path) -> None:
    location = f"file://{source_file_root}/acme/gcp"  # need not exist yet

    response = _put(acme, "gcp", location)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"provider", "location", "credential_id", "updated_at"}
    assert (body["provider"], body["location"], body["credential_id"]) == ("gcp", location, None)
    source = BillingSource.objects.get(tenant_id="acme")
    assert (source.provider, source.location) == ("gcp", location)
    entry = AuditLog.objects.get(action="billing_source.create")
    assert entry.details == {"provider": "gcp", "location": location, "credential_id": None}


def test_put_again_replaces_the_source(acme: Any, source_file_root: Path) -> None:
    credential_id = _credential("acme", "aws")
    _put(acme, "aws", "s3://acme-cur/cur", credential_id)

    response = _put(acme, "aws", f"file://{source_file_root}/acme/aws")

    assert response.status_code == 200
    assert BillingSource.objects.filter(tenant_id="acme").count() == 1
    source = BillingSource.objects.get(tenant_id="acme", provider="aws")
    assert (source.location, source.credential_id) == (f"file://{source_file_root}/acme/aws", None)
    assert AuditLog.objects.filter(action="billing_source.update").count() == 1


@pytest.mark.parametrize(
    ("provider", "location"),
    [
        ("aws", "s3://acme-cur"),
        ("aws", "s3://acme.cur-2025/exports/cur2/"),
        ("azure", "az://costexports/acme/daily"),
        ("azure", "https://acmecosts.blob.core.windows.net/costexports/acme"),
    ],
)
def test_object_store_sources_with_a_credential_are_accepted(acme: Any, provider: str, location: str) -> None:
    credential_id = _credential("acme", provider)

    response = _put(acme, provider, location, credential_id)

    assert response.status_code == 200, response.content
    assert response.json()["credential_id"] == credential_id


def test_gcp_export_table_is_accepted(acme: Any) -> None:
    location = "acme-billing.billing_export.gcp_billing_export_v1_012345_6789AB_CDEF01"

    response = _put(acme, "gcp", location)

    assert response.status_code == 200, response.content
    assert resolve_source(tenant_id="acme", provider="gcp") == ResolvedSource("gcp", location, "bq", None)


def test_gcp_export_table_on_a_bigquery_warehouse_needs_a_credential(acme: Any, settings: Any) -> None:
    """On BigQuery the table is read with the tenant's own service account: without one the server's
    identity would read it (and any other table it can reach), so the source is refused."""
    settings.WAREHOUSE_URL = "bigquery://convergence-prod?location=EU"
    location = "acme-billing.billing_export.gcp_billing_export_v1_012345_6789AB_CDEF01"

    _assert_invalid(
        _put(acme, "gcp", location),
        "credential_id",
        "A BigQuery table source needs a credential of provider gcp",
    )


def test_gcp_export_table_on_a_bigquery_warehouse_with_a_gcp_credential_is_accepted(
    acme: Any, settings: Any
) -> None:
    settings.WAREHOUSE_URL = "bigquery://convergence-prod?location=EU"
    location = "acme-billing.billing_export.gcp_billing_export_v1_012345_6789AB_CDEF01"
    credential_id = _credential("acme", "gcp")
    aws_credential = _credential("acme", "aws")

    wrong = _put(acme, "gcp", location, aws_credential)
    response = _put(acme, "gcp", location, credential_id)

    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"] == {
        "credential_id": [f"Credential {aws_credential} is a aws credential"]
    }
    assert response.status_code == 200, response.content
    assert resolve_source(tenant_id="acme", provider="gcp") == ResolvedSource(
        "gcp", location, "bq", credential_id
    )


def test_list_shows_own_sources_in_provider_order(
    acme: Any, make_tenant: Any, source_file_root: Path
) -> None:
    make_tenant("globex")
    BillingSource.objects.create(
        tenant_id="globex", provider="aws", location=f"file://{source_file_root}/globex"
    )
    _put(acme, "gcp", f"file://{source_file_root}/acme/gcp")
    _put(acme, "azure", f"file://{source_file_root}/acme/azure")

    response = acme.get("/api/v1/tenants/acme/sources")

    assert response.status_code == 200
    assert [item["provider"] for item in response.json()] == ["azure", "gcp"]
    assert b"globex" not in response.content


def test_delete_removes_the_source_then_404(acme: Any, source_file_root: Path) -> None:
    _put(acme, "gcp", f"file://{source_file_root}/acme/gcp")

    first = acme.delete("/api/v1/tenants/acme/sources/gcp")
    second = acme.delete("/api/v1/tenants/acme/sources/gcp")

    assert first.status_code == 204
    assert second.status_code == 404
    assert second.json()["error"]["code"] == "not_found"
    assert not BillingSource.objects.exists()
    assert AuditLog.objects.filter(action="billing_source.delete").count() == 1


@pytest.mark.parametrize("method", ["put", "delete"])
def test_unknown_provider_is_404(acme: Any, method: str) -> None:
    response = getattr(acme, method)("/api/v1/tenants/acme/sources/oracle", {"location": "x"}, format="json")

    assert response.status_code == 404
    assert not BillingSource.objects.exists()


# --- API: invalid sources -------------------------------------------------------------------------


def _assert_invalid(response: Any, field: str, message_start: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_source"
    assert list(error["details"]) == [field]
    assert error["details"][field][0].startswith(message_start), error
    assert not BillingSource.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="billing_source").exists()


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("/acme/../globex/gcp", "must not contain '..' segments"),
        ("/acme/%2e%2e/globex", "must not contain '..' segments"),
        ("/globex/gcp", "must be inside file://"),
        ("", "must be inside file://"),
    ],
)
def test_file_source_outside_the_tenant_folder_is_refused(
    acme: Any, source_file_root: Path, suffix: str, message: str
) -> None:
    _assert_invalid(_put(acme, "gcp", f"file://{source_file_root}{suffix}"), "location", message)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("file:///etc", "must be inside file://"),
        ("file://relative/path", "must look like file:///absolute/path"),
        ("file://evil.example.com/srv/exports", "must look like file:///absolute/path"),
        ("file:///srv/exports?x=1", "must look like file:///absolute/path"),
    ],
)
def test_malformed_or_foreign_file_locations_are_refused(acme: Any, location: str, message: str) -> None:
    _assert_invalid(_put(acme, "gcp", location), "location", message)


def test_symlink_out_of_the_tenant_folder_is_refused(
    acme: Any, source_file_root: Path, tmp_path: Path
) -> None:
    (source_file_root / "acme").mkdir()
    (source_file_root / "globex").mkdir()
    os.symlink(tmp_path, source_file_root / "acme" / "outside")
    os.symlink(source_file_root / "globex", source_file_root / "acme" / "neighbour")

    _assert_invalid(
        _put(acme, "gcp", f"file://{source_file_root}/acme/outside"), "location", "must be inside"
    )
    _assert_invalid(
        _put(acme, "gcp", f"file://{source_file_root}/acme/neighbour/x"), "location", "must be inside"
    )


@pytest.mark.parametrize(
    ("provider", "location", "message"),
    [
        ("aws", "s3://Acme_Bucket/cur", "bucket name must be 3-63 characters"),
        ("aws", "s3://ab/cur", "bucket name must be 3-63 characters"),
        ("aws", "s3://192.168.1.10/cur", "bucket name must not be an IP address"),
        ("aws", "s3://acme-cur/a/../b", "prefix must not contain empty, '.' or '..' path segments"),
        ("aws", "s3://user@acme-cur/cur", "must look like s3://bucket/prefix"),
        ("aws", "az://container/x", "a aws source must be s3://bucket/prefix or file:///..."),
        ("aws", "acme-billing.ds.table", "a aws source must be"),
        ("azure", "https://evil.example.com/container/x", "must be az://container/prefix"),
        ("azure", "https://acme.blob.core.windows.net.evil.com/c0ntainer/x", "must be az://container/prefix"),
        (
            "azure",
            "https://evil.com@acmecosts.blob.core.windows.net/costs/x",
            "must be az://container/prefix",
        ),
        ("azure", "https://acmecosts.blob.core.windows.net:8443/costs/x", "must be az://container/prefix"),
        ("azure", "http://acmecosts.blob.core.windows.net/costs/x", "must be az://container/prefix"),
        ("azure", "http://127.0.0.1:10000/devstoreaccount1/costs", "must be az://container/prefix"),
        ("azure", "az://Bad--Name/x", "container name must be 3-63 characters"),
        ("azure", "s3://acme-cur/cur", "a azure source must be"),
        ("gcp", "s3://acme-cur/cur", "a gcp source must be"),
        ("gcp", "acme-billing.billing_export", "must be a BigQuery table project.dataset.table"),
        ("gcp", "Acme.billing_export.t", "project must be a GCP project id"),
        ("gcp", "acme-billing.billing-export.t", "dataset must be letters, digits and underscores"),
        ("gcp", "acme-billing.ds.t;drop", "table must be letters, digits and underscores"),
        ("gcp", " acme-billing.ds.t", "must be 1-2048 characters without surrounding whitespace"),
    ],
)
def test_invalid_locations_are_refused(acme: Any, provider: str, location: str, message: str) -> None:
    credential_id = _credential("acme", provider) if provider in {"aws", "azure"} else None

    _assert_invalid(_put(acme, provider, location, credential_id), "location", message)


@pytest.mark.parametrize(
    "dataset",
    [
        "tenants",
        "TENANTS",
        "acme_local",
        "globex_local",
        "not_yet_a_tenant_local",
        "information_schema",
        # The DuckDB adapter's catalog of every tenant's tables.
        "_convergence_meta",
        # Another environment's tenant datasets, reachable when environments share a warehouse project.
        "globex_stage",
        "globex_prod",
    ],
)
def test_gcp_table_in_one_of_convergences_own_datasets_is_refused(
    acme: Any, make_tenant: Any, dataset: str
) -> None:
    make_tenant("globex")

    _assert_invalid(
        _put(acme, "gcp", f"acme-billing.{dataset}.focus_costs"),
        "location",
        f"dataset {dataset!r} belongs to Convergence itself",
    )


def test_emulator_blob_url_is_accepted_only_when_that_emulator_is_configured(
    acme: Any, settings: Any
) -> None:
    credential_id = _credential("acme", "azure")
    location = "http://127.0.0.1:10000/devstoreaccount1/costs/acme"
    _assert_invalid(_put(acme, "azure", location, credential_id), "location", "must be az://")

    settings.AZURE_BLOB_ENDPOINT = "http://127.0.0.1:10000"
    response = _put(acme, "azure", location, credential_id)

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("provider", "location"), [("aws", "s3://acme-cur/cur"), ("azure", "az://costs/acme")]
)
def test_object_store_source_without_credential_is_refused(acme: Any, provider: str, location: str) -> None:
    _assert_invalid(_put(acme, provider, location), "credential_id", "An ")


def test_another_tenants_credential_reads_like_a_missing_one(acme: Any, make_tenant: Any) -> None:
    make_tenant("globex")
    theirs = _credential("globex", "aws")

    response = _put(acme, "aws", "s3://acme-cur/cur", theirs)
    missing = _put(acme, "aws", "s3://acme-cur/cur", theirs + 1000)

    _assert_invalid(response, "credential_id", f"No credential with id {theirs}")
    assert missing.json()["error"]["details"]["credential_id"] == [f"No credential with id {theirs + 1000}"]


def test_credential_of_another_provider_is_refused(acme: Any) -> None:
    azure_credential = _credential("acme", "azure")

    _assert_invalid(
        _put(acme, "aws", "s3://acme-cur/cur", azure_credential),
        "credential_id",
        f"Credential {azure_credential} is a azure credential",
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"location": None},
        {"location": "s3://acme-cur", "credential_id": "one"},
        {"location": "x", "extra": 1},
    ],
)
def test_malformed_body_is_invalid_request(acme: Any, body: dict[str, Any]) -> None:
    response = acme.put("/api/v1/tenants/acme/sources/aws", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert not BillingSource.objects.exists()


# --- resolve_source -------------------------------------------------------------------------------


def test_resolve_without_a_source_names_the_provider(acme: Any) -> None:
    with pytest.raises(SourceNotConfigured) as caught:
        resolve_source(tenant_id="acme", provider="azure")

    assert caught.value.message == (
        "No azure billing source is configured for this tenant: "
        "set one with PUT /api/v1/tenants/acme/sources/azure"
    )


def test_resolve_returns_scheme_and_credential(acme: Any, make_tenant: Any) -> None:
    make_tenant("globex")
    credential_id = _credential("acme", "aws")
    _put(acme, "aws", "s3://acme-cur/cur", credential_id)
    BillingSource.objects.create(tenant_id="globex", provider="azure", location="az://theirs/x")

    assert resolve_source(tenant_id="acme", provider="aws") == ResolvedSource(
        "aws", "s3://acme-cur/cur", "s3", credential_id
    )
    with pytest.raises(SourceNotConfigured):
        resolve_source(tenant_id="acme", provider="azure")


def test_resolve_refuses_a_table_source_that_became_one_of_our_datasets(acme: Any) -> None:
    BillingSource.objects.create(tenant_id="acme", provider="gcp", location="acme-billing.tenants.runs")

    with pytest.raises(SourceError) as caught:
        resolve_source(tenant_id="acme", provider="gcp")

    assert caught.value.retryable is False
    assert "belongs to Convergence itself" in caught.value.message


# --- fetch_files for file:// ----------------------------------------------------------------------


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _file_source(root: Path, sub: str = "acme/aws") -> ResolvedSource:
    return ResolvedSource("aws", f"file://{root}/{sub}", "file", None)


def test_file_fetch_returns_matching_files_in_place_in_key_order(
    acme: Any, source_file_root: Path, tmp_path: Path
) -> None:
    base = source_file_root / "acme" / "aws"
    period = "data/BILLING_PERIOD=2025-11"
    b = _write(base / period / "b.parquet")
    a = _write(base / period / "a.parquet")
    c = _write(base / period / "sub" / "c.parquet")
    _write(base / period / "notes.txt")
    _write(base / "data/BILLING_PERIOD=2025-10/old.parquet")
    dest = tmp_path / "unused"

    paths = fetch_files(
        source=_file_source(source_file_root),
        tenant_id="acme",
        subpath=period,
        dest=dest,
        suffixes=(".parquet",),
    )

    assert paths == [a, b, c]
    assert not dest.exists()


def test_file_fetch_of_a_missing_folder_is_empty(acme: Any, source_file_root: Path, tmp_path: Path) -> None:
    paths = fetch_files(
        source=_file_source(source_file_root),
        tenant_id="acme",
        subpath="data",
        dest=tmp_path,
        suffixes=(".csv",),
    )

    assert paths == []


def test_file_fetch_refuses_a_symlinked_file_pointing_outside(
    acme: Any, source_file_root: Path, tmp_path: Path
) -> None:
    secret = _write(tmp_path / "server-secret.csv", "do not read")
    base = source_file_root / "acme" / "azure"
    _write(base / "a.csv")
    os.symlink(secret, base / "b.csv")

    with pytest.raises(SourceError) as caught:
        fetch_files(
            source=_file_source(source_file_root, "acme/azure"),
            tenant_id="acme",
            dest=tmp_path,
            suffixes=(".csv",),
        )

    assert caught.value.message == "File 'b.csv' points outside the source"
    assert str(tmp_path) not in caught.value.message


def test_file_fetch_does_not_walk_into_symlinked_folders(
    acme: Any, source_file_root: Path, tmp_path: Path
) -> None:
    _write(tmp_path / "elsewhere" / "x.csv")
    base = source_file_root / "acme" / "azure"
    a = _write(base / "a.csv")
    os.symlink(tmp_path / "elsewhere", base / "linked")

    paths = fetch_files(
        source=_file_source(source_file_root, "acme/azure"),
        tenant_id="acme",
        dest=tmp_path,
        suffixes=(".csv",),
    )

    assert paths == [a]


def test_file_fetch_refuses_another_tenants_folder_even_if_stored(acme: Any, source_file_root: Path) -> None:
    _write(source_file_root / "globex" / "aws" / "a.parquet")

    with pytest.raises(SourceError) as caught:
        fetch_files(
            source=_file_source(source_file_root, "globex/aws"),
            tenant_id="acme",
            dest=source_file_root,
            suffixes=(".parquet",),
        )

    assert caught.value.message == "The source folder is outside this tenant's export folder"


@pytest.mark.parametrize("subpath", ["../globex", "data/../../x", "/etc"])
def test_file_fetch_refuses_a_subpath_escape(acme: Any, source_file_root: Path, subpath: str) -> None:
    with pytest.raises(SourceError):
        fetch_files(
            source=_file_source(source_file_root),
            tenant_id="acme",
            subpath=subpath,
            dest=source_file_root,
            suffixes=(".parquet",),
        )


def test_fetch_from_a_table_source_is_an_error(acme: Any, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        fetch_files(
            source=ResolvedSource("gcp", "p-roject.ds.t", "bq", None),
            tenant_id="acme",
            dest=tmp_path,
            suffixes=(),
        )

    assert caught.value.message == "A bq source has no files to fetch"
