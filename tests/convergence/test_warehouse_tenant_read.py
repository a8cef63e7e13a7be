"""``read_table_as_tenant``: a table outside Convergence's datasets is read with a client built from the
tenant's service account key, never with the warehouse's own client, against the local BigQuery
emulator (which ignores auth, so the tests check which identity the client was built from), plus the
tenant-safe error mapping."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from convergence.warehouse import Field, TableRef, TableSpec, WarehouseError
from convergence.warehouse.base import NotFoundError
from tests.bq_emulator import PROJECT

DAY = dt.date(2025, 5, 3)
SCHEMA = (
    Field("usage_start_time", "TIMESTAMP"),
    Field("cost", "NUMERIC"),
    Field("sku", "STRING"),
    Field("labels", "RECORD", "REPEATED", (Field("key", "STRING"), Field("value", "STRING"))),
)


@functools.cache
def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def gcp_service_account(email: str = "billing-reader@acme-billing.iam.gserviceaccount.com") -> dict[str, Any]:
    """A throwaway service account key JSON (a fresh RSA key, never valid at Google) that
    ``google.oauth2.service_account`` accepts and ``billing.sources`` validates."""
    return {
        "type": "service_account",
        "project_id": email.split("@")[1].split(".")[0],
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": _private_key_pem(),
        "client_email": email,
        "client_id": "123456789012345678901",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def export_table(bigquery_warehouse: Any) -> Iterator[str]:
    """``test-project.<dataset>.export`` on the emulator: two rows on DAY, one the day after."""
    dataset = f"tenant_export_{uuid.uuid4().hex[:8]}"
    bigquery_warehouse.create_dataset(dataset)
    ref = TableRef(dataset, "export")
    bigquery_warehouse.create_table(ref, TableSpec(schema=SCHEMA))
    bigquery_warehouse.insert_rows(
        ref,
        [
            {
                "usage_start_time": dt.datetime(2025, 5, 3, 1, tzinfo=dt.UTC),
                "cost": Decimal("1.250000001"),
                "sku": "a",
                "labels": [{"key": "team", "value": "data"}],
            },
            {
                "usage_start_time": dt.datetime(2025, 5, 3, 23, tzinfo=dt.UTC),
                "cost": Decimal("2.5"),
                "sku": "b",
                "labels": [],
            },
            {
                "usage_start_time": dt.datetime(2025, 5, 4, 0, tzinfo=dt.UTC),
                "cost": Decimal("9"),
                "sku": "c",
                "labels": [],
            },
        ],
    )
    try:
        yield f"{PROJECT}.{dataset}.export"
    finally:
        bigquery_warehouse.drop_dataset(dataset, delete_contents=True)


@pytest.fixture
def tenant_clients(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every client ``tenant_client`` builds, in order."""
    from convergence.warehouse import bigquery

    built: list[Any] = []
    original = bigquery.tenant_client

    def spy(**kwargs: Any) -> Any:
        client = original(**kwargs)
        built.append(client)
        return client

    monkeypatch.setattr(bigquery, "tenant_client", spy)
    return built


def _read(warehouse: Any, table: str, secret: dict[str, Any]) -> Any:
    return warehouse.read_table_as_tenant(
        table=table,
        columns=["usage_start_time", "cost", "sku", "labels"],
        where="DATE(usage_start_time) = @date",
        params={"date": DAY},
        service_account_info=secret,
    )


@pytest.mark.bigquery
def test_reads_the_days_rows_with_a_client_built_from_the_tenants_key(
    bigquery_warehouse: Any, export_table: str, tenant_clients: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = gcp_service_account()
    server_calls: list[str] = []

    with monkeypatch.context() as patch:
        # The warehouse's own client (the server identity) must not be touched by the read.
        patch.setattr(type(bigquery_warehouse), "_client", lambda self: server_calls.append("client"))
        arrow = _read(bigquery_warehouse, export_table, secret)

    rows = sorted(arrow.to_pylist(), key=lambda row: row["sku"])
    assert rows == [
        {
            "usage_start_time": dt.datetime(2025, 5, 3, 1, tzinfo=dt.UTC),
            "cost": Decimal("1.250000001"),
            "sku": "a",
            "labels": [{"key": "team", "value": "data"}],
        },
        {
            "usage_start_time": dt.datetime(2025, 5, 3, 23, tzinfo=dt.UTC),
            "cost": Decimal("2.5"),
            "sku": "b",
            "labels": [],
        },
    ]
    # One client, acting as the tenant's service account in the table's project; the server's never.
    assert len(tenant_clients) == 1
    client = tenant_clients[0]
    assert client.project == PROJECT
    assert client._credentials.service_account_email == secret["client_email"]
    assert server_calls == []


@pytest.mark.bigquery
def test_the_tenants_key_signs_the_requests(
    bigquery_warehouse: Any, export_table: str, tenant_clients: list[Any]
) -> None:
    """Against the emulator the credentials sign their own JWT (no call to Google's token endpoint): the
    token sent is signed by the tenant's key and names its service account."""
    import google.auth.crypt
    import google.auth.jwt
    from cryptography.hazmat.primitives import serialization

    secret = gcp_service_account("other-reader@globex-billing.iam.gserviceaccount.com")
    _read(bigquery_warehouse, export_table, secret)

    token = tenant_clients[0]._credentials.token
    public_pem = (
        serialization.load_pem_private_key(secret["private_key"].encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = google.auth.jwt.decode(token, certs=[public_pem], verify=True)
    assert claims["iss"] == claims["sub"] == secret["client_email"]


@pytest.mark.bigquery
def test_a_malformed_key_fails_before_any_request(
    bigquery_warehouse: Any, export_table: str, tenant_clients: list[Any]
) -> None:
    secret = {
        **gcp_service_account(),
        "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    }

    with pytest.raises(WarehouseError) as raised:
        _read(bigquery_warehouse, export_table, secret)

    assert raised.value.message == "the GCP credential is not a usable service account key"
    assert not raised.value.retryable
    assert "AAAA" not in str(raised.value)
    assert tenant_clients == []


@pytest.mark.bigquery
def test_a_missing_table_is_not_found_naming_only_the_table(bigquery_warehouse: Any) -> None:
    table = f"{PROJECT}.no_such_dataset_{uuid.uuid4().hex[:8]}.export"

    with pytest.raises(NotFoundError) as raised:
        _read(bigquery_warehouse, table, gcp_service_account())

    assert raised.value.message == f"the table {table} does not exist or the GCP credential cannot see it"
    assert not raised.value.retryable


@pytest.mark.parametrize(
    "table",
    ["dataset.table", "Bad_Project.ds.t", "acme-billing.ds.t`; DROP", "acme-billing.d s.t", "a.b.c.d"],
)
def test_a_malformed_table_name_is_refused(table: str) -> None:
    from convergence.warehouse.bigquery import BigQueryWarehouse

    with pytest.raises(WarehouseError, match=r"must be a BigQuery table project\.dataset\.table"):
        _read(
            BigQueryWarehouse(project=PROJECT, api_endpoint="http://127.0.0.1:9"),
            table,
            gcp_service_account(),
        )


def test_duckdb_cannot_read_as_a_tenant() -> None:
    from convergence.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(":memory:")
    with pytest.raises(WarehouseError, match="cannot read tables as a tenant"):
        _read(warehouse, "acme-billing.billing.export", gcp_service_account())


def _forbidden(reason: str) -> Exception:
    from google.api_core import exceptions

    return exceptions.Forbidden(
        "Access Denied: Table acme-billing:billing.export", errors=[{"reason": reason}]
    )


@pytest.mark.parametrize(
    ("make_error", "message", "retryable"),
    [
        (
            lambda: _forbidden("accessDenied"),
            "the GCP credential cannot read acme-billing.billing.export",
            False,
        ),
        (
            lambda: _forbidden("rateLimitExceeded"),
            "BigQuery is throttling reads of acme-billing.billing.export; try again later",
            True,
        ),
        (
            lambda: __import__("google.auth.exceptions").auth.exceptions.RefreshError("invalid_grant"),
            "the GCP credential was refused by Google (deleted or disabled key?)",
            False,
        ),
        (
            lambda: __import__("requests").ConnectionError("HTTPSConnectionPool(host='10.0.0.1')"),
            "BigQuery could not be reached to read acme-billing.billing.export; try again later",
            True,
        ),
        (
            lambda: __import__("google.api_core.exceptions").api_core.exceptions.ServiceUnavailable("down"),
            "BigQuery could not be reached to read acme-billing.billing.export; try again later",
            True,
        ),
    ],
)
def test_errors_are_tenant_safe(make_error: Any, message: str, retryable: bool) -> None:
    from convergence.warehouse.bigquery import _tenant_read_error

    error = _tenant_read_error(make_error(), "acme-billing.billing.export")

    assert (error.message, error.retryable) == (message, retryable)
