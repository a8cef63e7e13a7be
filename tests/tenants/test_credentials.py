"""Cloud credentials API: create, list metadata, delete; secrets encrypted through the KMS adapter and
never returned, logged or audited."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.db import connection

from billing.models import BillingSource
from billing.sources import SourceError, credential_secret
from tenants.models import AuditLog, CloudCredential

pytestmark = pytest.mark.django_db

AWS_SECRET = {
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
AZURE_SECRET = {"account_name": "acmecosts", "account_key": "c2VjcmV0LWF6dXJlLWtleS0xMjM0NTY3ODkw"}
GCP_SECRET = {
    "type": "service_account",
    "project_id": "acme-billing",
    "private_key_id": "0123456789abcdef",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQ\n-----END PRIVATE KEY-----\n",
    "client_email": "exporter@acme-billing.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
}


@pytest.fixture
def acme(make_tenant: Any, tenant_client: Any) -> Any:
    _tenant, key = make_tenant("acme")
    return tenant_client(key)


def _create(client: Any, provider: str = "aws", name: str = "main", secret: Any = None) -> Any:
    body = {"provider": provider, "name": name, "secret": AWS_SECRET if secret is None else secret}
    return client.post("/api/v1/tenants/acme/credentials", body, format="json")


def test_create_returns_metadata_only_and_stores_an_envelope(acme: Any) -> None:
    response = _create(acme)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "provider", "name", "fingerprint", "created_at"}
    assert (body["provider"], body["name"]) == ("aws", "main")
    assert body["fingerprint"].startswith("hmac-sha256:") and len(body["fingerprint"]) == 28
    assert AWS_SECRET["secret_access_key"].encode() not in response.content
    row = CloudCredential.objects.get(pk=body["id"])
    assert row.tenant_id == "acme"
    envelope = bytes(row.encrypted_secret)
    assert AWS_SECRET["secret_access_key"].encode() not in envelope
    assert AWS_SECRET["access_key_id"].encode() not in envelope
    assert credential_secret(tenant_id="acme", credential_id=row.pk) == AWS_SECRET


def test_create_writes_an_audit_entry_without_the_secret(acme: Any) -> None:
    response = _create(acme)

    entry = AuditLog.objects.get(action="credential.create")
    assert (entry.tenant_id, entry.target_type, entry.target_id) == (
        "acme",
        "cloud_credential",
        str(response.json()["id"]),
    )
    assert entry.details == {"provider": "aws", "name": "main", "fingerprint": response.json()["fingerprint"]}
    assert AWS_SECRET["secret_access_key"] not in json.dumps(entry.details)


def test_secret_never_reaches_logs(acme: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert _create(acme).status_code == 201
        assert _create(acme, name="main").status_code == 409

    assert AWS_SECRET["secret_access_key"] not in caplog.text


def test_fingerprint_is_stable_for_equal_secrets_and_differs_otherwise(acme: Any) -> None:
    first = _create(acme, name="one").json()["fingerprint"]
    same = _create(acme, name="two", secret=dict(reversed(list(AWS_SECRET.items())))).json()["fingerprint"]
    other = _create(acme, name="three", secret={**AWS_SECRET, "secret_access_key": "x" * 40}).json()[
        "fingerprint"
    ]

    assert first == same
    assert other != first


def test_list_shows_metadata_of_own_credentials_only(acme: Any, make_tenant: Any, tenant_client: Any) -> None:
    _globex, globex_key = make_tenant("globex")
    globex = tenant_client(globex_key)
    _create(acme, "aws", "main")
    _create(acme, "azure", "storage", AZURE_SECRET)
    globex.post(
        "/api/v1/tenants/globex/credentials",
        {"provider": "gcp", "name": "theirs", "secret": GCP_SECRET},
        format="json",
    )

    response = acme.get("/api/v1/tenants/acme/credentials")

    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["previous"]) == (2, None, None)
    assert [(item["provider"], item["name"]) for item in body["results"]] == [
        ("aws", "main"),
        ("azure", "storage"),
    ]
    assert all(
        set(item) == {"id", "provider", "name", "fingerprint", "created_at"} for item in body["results"]
    )
    for secret in (AWS_SECRET["secret_access_key"], AZURE_SECRET["account_key"], "theirs"):
        assert secret.encode() not in response.content


@pytest.mark.parametrize(
    ("provider", "secret", "message"),
    [
        ("aws", {"access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "secret_access_key is required"),
        ("aws", {**AWS_SECRET, "endpoint_url": "https://evil.example.com"}, "endpoint_url is not accepted"),
        ("aws", {**AWS_SECRET, "region": "mars"}, "region must be an AWS region name such as eu-west-1"),
        ("aws", {**AWS_SECRET, "proxy": "http://evil"}, "proxy is not an accepted key"),
        ("azure", {"account_name": "acmecosts"}, "give exactly one of account_key or sas_token"),
        (
            "azure",
            {"account_name": "acmecosts", "account_key": "a2V5", "sas_token": "sv=2024&sig=x"},
            "give exactly one of account_key or sas_token",
        ),
        (
            "azure",
            {
                "connection_string": "DefaultEndpointsProtocol=https;AccountName=acmecosts;AccountKey=a2V5;"
                "BlobEndpoint=https://evil.example.com/"
            },
            "BlobEndpoint must be https://{AccountName}.blob.core.windows.net",
        ),
        (
            "azure",
            {"connection_string": "AccountName=acmecosts;AccountKey=a2V5;EndpointSuffix=evil.example.com"},
            "EndpointSuffix must be core.windows.net",
        ),
        (
            "azure",
            {"connection_string": "UseDevelopmentStorage=true"},
            "UseDevelopmentStorage is not accepted",
        ),
        ("gcp", {**GCP_SECRET, "type": "external_account"}, 'type must be "service_account"'),
        ("gcp", {**GCP_SECRET, "token_uri": "https://evil.example.com/token"}, "token_uri must be Google's"),
        ("gcp", {k: v for k, v in GCP_SECRET.items() if k != "private_key"}, "private_key must be a PEM"),
        # JSON arrays/objects where a string is expected (unhashable: once a 500).
        ("gcp", {**GCP_SECRET, "token_uri": ["https://oauth2.googleapis.com/token"]}, "token_uri must be"),
        ("gcp", {**GCP_SECRET, "token_uri": {"url": "https://oauth2.googleapis.com/token"}}, "token_uri"),
        ("gcp", {**GCP_SECRET, "universe_domain": ["googleapis.com"]}, "universe_domain must be"),
        ("aws", [], "must be a non-empty JSON object"),
        ("aws", {}, "must be a non-empty JSON object"),
    ],
)
def test_invalid_secret_is_400_and_stores_nothing(
    acme: Any, provider: str, secret: Any, message: str
) -> None:
    response = _create(acme, provider, "bad", secret)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert any(item.startswith(message) for item in error["details"]["secret"]), error
    assert CloudCredential.objects.count() == 0
    assert not AuditLog.objects.filter(action="credential.create").exists()


def test_endpoint_url_of_the_configured_emulator_is_accepted(acme: Any, settings: Any) -> None:
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:5000"

    response = _create(acme, secret={**AWS_SECRET, "endpoint_url": "http://127.0.0.1:5000/"})

    assert response.status_code == 201, response.content


def test_valid_azure_connection_string_and_gcp_service_account_are_accepted(acme: Any) -> None:
    azure = {
        "connection_string": "DefaultEndpointsProtocol=https;AccountName=acmecosts;"
        "AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net;BlobEndpoint=https://acmecosts.blob.core.windows.net/"
    }

    assert _create(acme, "azure", "conn", azure).status_code == 201
    assert _create(acme, "gcp", "sa", GCP_SECRET).status_code == 201
    assert CloudCredential.objects.filter(tenant_id="acme").count() == 2


def test_secret_over_64_kib_is_refused(acme: Any) -> None:
    response = _create(acme, secret={**AWS_SECRET, "session_token": "x" * (64 * 1024)})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"secret": ["must be at most 64 KiB as JSON"]}
    assert CloudCredential.objects.count() == 0


def test_duplicate_name_for_the_same_provider_is_409(acme: Any) -> None:
    assert _create(acme, "aws", "main").status_code == 201

    duplicate = _create(acme, "aws", "main")
    other_provider = _create(acme, "azure", "main", AZURE_SECRET)

    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "conflict"
    assert other_provider.status_code == 201
    assert CloudCredential.objects.filter(tenant_id="acme", name="main").count() == 2


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "oracle", "name": "x", "secret": AWS_SECRET},
        {"provider": "aws", "name": "", "secret": AWS_SECRET},
        {"provider": "aws", "name": "bad\nname", "secret": AWS_SECRET},
        {"provider": "aws", "name": "x" * 101, "secret": AWS_SECRET},
        {"provider": "aws", "name": "x"},
        {"provider": "aws", "name": "x", "secret": AWS_SECRET, "fingerprint": "mine"},
    ],
)
def test_malformed_request_is_400(acme: Any, body: dict[str, Any]) -> None:
    response = acme.post("/api/v1/tenants/acme/credentials", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert CloudCredential.objects.count() == 0


def test_delete_removes_the_credential_and_audits(acme: Any) -> None:
    credential_id = _create(acme).json()["id"]

    response = acme.delete(f"/api/v1/tenants/acme/credentials/{credential_id}")

    assert response.status_code == 204
    assert not CloudCredential.objects.filter(pk=credential_id).exists()
    entry = AuditLog.objects.get(action="credential.delete")
    assert (entry.tenant_id, entry.target_id, entry.details["name"]) == ("acme", str(credential_id), "main")


def test_delete_of_another_tenants_credential_is_404_and_keeps_it(
    acme: Any, make_tenant: Any, tenant_client: Any
) -> None:
    _globex, globex_key = make_tenant("globex")
    theirs = tenant_client(globex_key).post(
        "/api/v1/tenants/globex/credentials",
        {"provider": "aws", "name": "x", "secret": AWS_SECRET},
        format="json",
    )

    response = acme.delete(f"/api/v1/tenants/acme/credentials/{theirs.json()['id']}")

    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "Credential not found", "details": {}}
    assert CloudCredential.objects.filter(pk=theirs.json()["id"], tenant_id="globex").exists()
    assert not AuditLog.objects.filter(action="credential.delete").exists()


@pytest.mark.parametrize("credential_id", ["0", "abc", "-1", "1.0", "99999999999999999999999"])
def test_delete_with_a_malformed_or_unknown_id_is_404(acme: Any, credential_id: str) -> None:
    response = acme.delete(f"/api/v1/tenants/acme/credentials/{credential_id}")

    assert response.status_code == 404


def test_delete_of_a_credential_used_by_a_source_is_409(acme: Any) -> None:
    credential_id = _create(acme).json()["id"]
    put = acme.put(
        "/api/v1/tenants/acme/sources/aws",
        {"location": "s3://acme-cur/cur", "credential_id": credential_id},
        format="json",
    )
    assert put.status_code == 200, put.content

    response = acme.delete(f"/api/v1/tenants/acme/credentials/{credential_id}")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert "used by the aws billing source" in error["message"]
    assert error["details"] == {"sources": ["aws"]}
    assert CloudCredential.objects.filter(pk=credential_id).exists()
    assert BillingSource.objects.get(tenant_id="acme", provider="aws").credential_id == credential_id


def test_envelope_moved_to_another_row_does_not_decrypt(acme: Any) -> None:
    first = _create(acme, name="one").json()["id"]
    second = _create(acme, name="two", secret={**AWS_SECRET, "secret_access_key": "y" * 40}).json()["id"]
    envelope = CloudCredential.objects.get(pk=first).encrypted_secret
    CloudCredential.objects.filter(pk=second).update(encrypted_secret=envelope)

    with pytest.raises(SourceError) as caught:
        credential_secret(tenant_id="acme", credential_id=second)

    assert caught.value.retryable is False
    assert caught.value.message == "The source's credential could not be decrypted; store it again"


def test_plaintext_is_nowhere_in_the_credentials_table(acme: Any) -> None:
    _create(acme)

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenants_cloudcredential")
        rows = cursor.fetchall()

    dumped = repr(
        [[bytes(value) if isinstance(value, memoryview) else value for value in row] for row in rows]
    )
    assert AWS_SECRET["secret_access_key"] not in dumped
    assert len(rows) == 1


def test_list_is_paginated_like_every_list(acme: Any) -> None:
    for index in range(3):
        _create(acme, name=f"key-{index}", secret={**AWS_SECRET, "secret_access_key": f"s{index}" * 20})

    response = acme.get("/api/v1/tenants/acme/credentials?page_size=2&page=2")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [item["name"] for item in body["results"]] == ["key-2"]
    assert body["next"] is None and body["previous"] is not None
    assert "X-Quota-Daily-Remaining" in response


@pytest.mark.parametrize(
    "raw_secret",
    [
        '{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "\\ud800"}',
        '{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "abc", "\\udfff": 1}',
    ],
)
def test_secret_with_an_unpaired_surrogate_is_400_not_500(acme: Any, raw_secret: str) -> None:
    body = f'{{"provider": "aws", "name": "x", "secret": {raw_secret}}}'

    response = acme.generic(
        "POST", "/api/v1/tenants/acme/credentials", body.encode(), content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {
        "secret": ["must not contain unpaired surrogate characters"]
    }
    assert CloudCredential.objects.count() == 0


def test_kms_outage_on_create_is_503_and_stores_nothing(acme: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from convergence.kms import KmsError, get_kms

    def unavailable(*args: Any, **kwargs: Any) -> bytes:
        raise KmsError("projects/p/locations/l/keyRings/r/cryptoKeys/k: deadline exceeded")

    monkeypatch.setattr(get_kms(), "encrypt", unavailable)

    response = _create(acme)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert b"keyRings" not in response.content
    assert "X-Quota-Daily-Limit" in response
    assert CloudCredential.objects.count() == 0
    assert not AuditLog.objects.filter(action="credential.create").exists()


def test_delete_that_loses_a_race_with_another_delete_is_404(
    acme: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenants import selectors

    credential_id = _create(acme).json()["id"]
    looked_up = selectors.credential_get

    def lookup_then_concurrent_delete(**kwargs: Any) -> Any:
        found = looked_up(**kwargs)
        CloudCredential.objects.filter(pk=credential_id).delete()  # the other request commits first
        return found

    monkeypatch.setattr(selectors, "credential_get", lookup_then_concurrent_delete)

    response = acme.delete(f"/api/v1/tenants/acme/credentials/{credential_id}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not AuditLog.objects.filter(action="credential.delete").exists()
