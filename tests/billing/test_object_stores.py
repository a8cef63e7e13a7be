"""Reading billing sources from object stores: boto3 against a real moto S3 server and azure-storage-blob
against a real Azurite, both over HTTP (tests/object_stores.py starts them)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from billing.sources import ResolvedSource, SourceError, fetch_files
from tenants.actors import Actor
from tenants.models import CloudCredential
from tenants.services import credential_create
from tests.object_stores import AWS_TEST_SECRET, AZURITE_ACCOUNT, AZURITE_KEY, AzureStore, S3Store

pytestmark = pytest.mark.django_db

PERIOD = "data/BILLING_PERIOD=2025-11"


@pytest.fixture
def acme(make_tenant: Any) -> Any:
    tenant, _key = make_tenant("acme")
    return tenant


def _credential(tenant: Any, provider: str, secret: dict[str, Any], name: str = "main") -> CloudCredential:
    return credential_create(
        tenant=tenant, actor=Actor.system("test"), provider=provider, name=name, secret=secret
    )


def _tree(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


# --- S3 -------------------------------------------------------------------------------------------


def test_s3_fetch_downloads_matching_objects_of_the_subpath_in_key_order(
    acme: Any, s3_store: S3Store, tmp_path: Path
) -> None:
    s3_store.client.create_bucket(Bucket="acme-cur")
    objects = {
        f"cur/{PERIOD}/b-00002.snappy.parquet": b"second",
        f"cur/{PERIOD}/a-00001.snappy.parquet": b"first",
        f"cur/{PERIOD}/nested/c-00003.snappy.parquet": b"third",
        f"cur/{PERIOD}/notes.txt": b"not an export file",
        "cur/data/BILLING_PERIOD=2025-110/x.snappy.parquet": b"a sibling prefix, not this period",
        "cur/data/BILLING_PERIOD=2025-10/old.snappy.parquet": b"another period",
        f"other/{PERIOD}/z.snappy.parquet": b"outside the location",
    }
    for key, body in objects.items():
        s3_store.put("acme-cur", key, body)
    credential = _credential(acme, "aws", AWS_TEST_SECRET)
    source = ResolvedSource("aws", "s3://acme-cur/cur", "s3", credential.pk)
    dest = tmp_path / "download"

    paths = fetch_files(source=source, tenant_id="acme", subpath=PERIOD, dest=dest, suffixes=(".parquet",))

    assert [path.relative_to(dest).as_posix() for path in paths] == [
        f"{PERIOD}/a-00001.snappy.parquet",
        f"{PERIOD}/b-00002.snappy.parquet",
        f"{PERIOD}/nested/c-00003.snappy.parquet",
    ]
    assert [path.read_bytes() for path in paths] == [b"first", b"second", b"third"]
    assert _tree(dest) == [path.relative_to(dest).as_posix() for path in paths]


def test_s3_fetch_of_a_missing_prefix_is_empty(acme: Any, s3_store: S3Store, tmp_path: Path) -> None:
    s3_store.client.create_bucket(Bucket="acme-cur")
    credential = _credential(acme, "aws", AWS_TEST_SECRET)
    source = ResolvedSource("aws", "s3://acme-cur/cur", "s3", credential.pk)

    paths = fetch_files(
        source=source, tenant_id="acme", subpath=PERIOD, dest=tmp_path / "d", suffixes=(".parquet",)
    )

    assert paths == []


def test_s3_fetch_of_a_missing_bucket_is_a_permanent_error_without_secrets(
    acme: Any, s3_store: S3Store, tmp_path: Path
) -> None:
    credential = _credential(acme, "aws", AWS_TEST_SECRET)
    source = ResolvedSource("aws", "s3://no-such-bucket/cur", "s3", credential.pk)

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".parquet",))

    assert caught.value.retryable is False
    assert caught.value.message == "S3 bucket of s3://no-such-bucket/cur does not exist"
    assert AWS_TEST_SECRET["secret_access_key"] not in str(caught.value)
    assert s3_store.endpoint not in caught.value.message


def test_s3_object_key_escaping_the_download_folder_is_refused(
    acme: Any, s3_store: S3Store, tmp_path: Path
) -> None:
    s3_store.client.create_bucket(Bucket="acme-cur")
    s3_store.put("acme-cur", "cur/data/../../../escaped.parquet", b"payload")
    credential = _credential(acme, "aws", AWS_TEST_SECRET)
    source = ResolvedSource("aws", "s3://acme-cur/cur", "s3", credential.pk)
    dest = tmp_path / "a" / "b" / "download"

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=dest, suffixes=(".parquet",))

    assert caught.value.retryable is False
    assert "cannot be stored safely" in caught.value.message
    assert _tree(tmp_path) == []


def test_s3_unreachable_endpoint_is_retryable(acme: Any, settings: Any, tmp_path: Path) -> None:
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    credential = _credential(acme, "aws", AWS_TEST_SECRET)
    source = ResolvedSource("aws", "s3://acme-cur/cur", "s3", credential.pk)

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".parquet",))

    assert caught.value.retryable is True
    assert caught.value.message == "Could not reach S3 reading s3://acme-cur/cur"


def test_object_store_source_without_credential_is_refused_before_any_request(
    acme: Any, s3_store: S3Store, tmp_path: Path
) -> None:
    source = ResolvedSource("aws", "s3://acme-cur/cur", "s3", None)

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".parquet",))

    assert caught.value.message == "The aws source has no credential: set credential_id on it"
    assert not (tmp_path / "d").exists()


def test_another_tenants_credential_is_not_usable(
    acme: Any, make_tenant: Any, s3_store: S3Store, tmp_path: Path
) -> None:
    globex, _key = make_tenant("globex")
    s3_store.client.create_bucket(Bucket="acme-cur")
    s3_store.put("acme-cur", "cur/a.parquet", b"acme data")
    foreign = _credential(globex, "aws", AWS_TEST_SECRET)
    source = ResolvedSource("aws", "s3://acme-cur/cur", "s3", foreign.pk)

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".parquet",))

    assert caught.value.message == "The source's credential no longer exists"
    assert not (tmp_path / "d").exists()


# --- Azure ----------------------------------------------------------------------------------------

AZURE_MONTH = "20251101-20251130"


def _azure_layout(store: AzureStore, container: str, prefix: str) -> None:
    store.put(container, f"{prefix}/{AZURE_MONTH}/part_0_0002.csv", b"two")
    store.put(container, f"{prefix}/{AZURE_MONTH}/part_0_0001.csv", b"one")
    store.put(container, f"{prefix}/{AZURE_MONTH}/manifest.json", b"{}")
    store.put(container, f"{prefix}/20251001-20251031/part_0_0001.csv", b"october")
    store.put(container, f"{prefix}-other/{AZURE_MONTH}/part_0_0001.csv", b"sibling prefix")


@pytest.mark.parametrize(
    "secret_kind", ["connection_string", "account_key", "sas_token"], ids=lambda kind: f"with_{kind}"
)
def test_azure_fetch_downloads_matching_blobs_in_name_order(
    acme: Any, azure_store: AzureStore, tmp_path: Path, secret_kind: str
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = azure_store.container()
    _azure_layout(azure_store, container, "exports/costs")
    secret: dict[str, Any] = {
        "connection_string": {"connection_string": azure_store.connection_string},
        "account_key": {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        "sas_token": {
            "account_name": AZURITE_ACCOUNT,
            "sas_token": generate_container_sas(
                AZURITE_ACCOUNT,
                container,
                account_key=AZURITE_KEY,
                permission=ContainerSasPermissions(read=True, list=True),
                expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
            ),
        },
    }[secret_kind]
    credential = _credential(acme, "azure", secret)
    source = ResolvedSource("azure", f"az://{container}/exports/costs", "az", credential.pk)
    dest = tmp_path / "download"

    paths = fetch_files(source=source, tenant_id="acme", subpath=AZURE_MONTH, dest=dest, suffixes=(".csv",))

    assert [path.relative_to(dest).as_posix() for path in paths] == [
        f"{AZURE_MONTH}/part_0_0001.csv",
        f"{AZURE_MONTH}/part_0_0002.csv",
    ]
    assert [path.read_bytes() for path in paths] == [b"one", b"two"]
    assert _tree(dest) == [f"{AZURE_MONTH}/part_0_0001.csv", f"{AZURE_MONTH}/part_0_0002.csv"]


def test_azure_fetch_through_a_blob_url_on_the_emulator_endpoint(
    acme: Any, azure_store: AzureStore, tmp_path: Path
) -> None:
    container = azure_store.container()
    _azure_layout(azure_store, container, "exports/costs")
    credential = _credential(acme, "azure", {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
    location = f"{azure_store.account_url}/{container}/exports/costs"
    source = ResolvedSource("azure", location, "az", credential.pk)

    paths = fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".csv",))

    assert [path.read_bytes() for path in paths] == [b"october", b"one", b"two"]


def test_azure_wrong_account_key_is_a_permanent_error(
    acme: Any, azure_store: AzureStore, tmp_path: Path
) -> None:
    """Azure answers a bad signature with 403 AuthenticationFailed, Azurite with AuthorizationFailure:
    both are permanent and name the key as a cause."""
    container = azure_store.container()
    _azure_layout(azure_store, container, "exports")
    wrong_key = "A" * 86 + "=="
    credential = _credential(acme, "azure", {"account_name": AZURITE_ACCOUNT, "account_key": wrong_key})
    source = ResolvedSource("azure", f"az://{container}/exports", "az", credential.pk)

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".csv",))

    assert caught.value.retryable is False
    assert caught.value.message == (
        f"Access denied reading container {container!r} under 'exports': check the credential's key "
        "or SAS token and that it grants list and read"
    )
    assert wrong_key not in str(caught.value)
    assert not list((tmp_path / "d").rglob("*.csv"))


def test_azure_missing_container_is_a_permanent_error(
    acme: Any, azure_store: AzureStore, tmp_path: Path
) -> None:
    credential = _credential(acme, "azure", {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
    source = ResolvedSource("azure", "az://no-such-container/exports", "az", credential.pk)

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".csv",))

    assert caught.value.retryable is False
    assert (
        caught.value.message
        == "The Azure container of container 'no-such-container' under 'exports' does not exist"
    )


def test_azure_blob_url_of_another_account_than_the_credential_is_refused(
    acme: Any, azure_store: AzureStore, tmp_path: Path
) -> None:
    credential = _credential(acme, "azure", {"account_name": "otheraccount", "account_key": AZURITE_KEY})
    location = f"{azure_store.account_url}/somecontainer/exports"
    source = ResolvedSource("azure", location, "az", credential.pk)

    with pytest.raises(SourceError) as caught:
        fetch_files(source=source, tenant_id="acme", dest=tmp_path / "d", suffixes=(".csv",))

    assert caught.value.message == (
        "The credential is for storage account 'otheraccount', the source names 'devstoreaccount1'"
    )
