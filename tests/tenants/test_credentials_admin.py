"""Admin pages for cloud credentials and billing sources: metadata and fingerprint only, never the secret
or its envelope; read-only for staff."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.models import BillingSource
from tenants.actors import Actor
from tenants.models import CloudCredential
from tenants.services import credential_create

pytestmark = pytest.mark.django_db

SECRET = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI-admin-page-canary-KEY"}


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-not-used")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def credential(make_tenant: Any) -> CloudCredential:
    tenant, _key = make_tenant("acme")
    created = credential_create(
        tenant=tenant, actor=Actor.system("test"), provider="aws", name="main", secret=SECRET
    )
    BillingSource.objects.create(
        tenant=tenant, provider="aws", location="s3://acme-cur/cur", credential=created
    )
    return created


def _forbidden_fragments(credential: CloudCredential) -> list[bytes]:
    envelope = bytes(CloudCredential.objects.get(pk=credential.pk).encrypted_secret)
    return [
        SECRET["secret_access_key"].encode(),
        SECRET["access_key_id"].encode(),
        base64.b64encode(envelope)[:24],
        envelope.hex()[:24].encode(),
        str(credential.secret_id).encode(),
    ]


@pytest.mark.parametrize(
    "url",
    [
        "/admin/tenants/cloudcredential/",
        "/admin/tenants/cloudcredential/{pk}/change/",
        "/admin/billing/billingsource/",
        "/admin/billing/billingsource/{source}/change/",
        "/admin/tenants/auditlog/",
    ],
)
def test_admin_pages_show_metadata_but_never_the_secret_or_envelope(
    staff_client: Client, credential: CloudCredential, url: str
) -> None:
    source = BillingSource.objects.get(tenant_id="acme")

    response = staff_client.get(url.format(pk=credential.pk, source=source.pk))

    assert response.status_code == 200
    for fragment in _forbidden_fragments(credential):
        assert fragment not in response.content, fragment
    if "auditlog" not in url:
        assert credential.fingerprint.encode() in response.content


def test_credential_admin_never_loads_the_envelope(staff_client: Client, credential: CloudCredential) -> None:
    with CaptureQueriesContext(connection) as queries:
        staff_client.get("/admin/tenants/cloudcredential/")
        staff_client.get("/admin/billing/billingsource/")

    assert not [query["sql"] for query in queries.captured_queries if "encrypted_secret" in query["sql"]]


@pytest.mark.parametrize(
    ("url", "method"),
    [
        ("/admin/tenants/cloudcredential/add/", "get"),
        ("/admin/tenants/cloudcredential/{pk}/delete/", "post"),
        ("/admin/billing/billingsource/add/", "get"),
        ("/admin/billing/billingsource/{source}/delete/", "post"),
    ],
)
def test_staff_cannot_add_or_delete_credentials_or_sources(
    staff_client: Client, credential: CloudCredential, url: str, method: str
) -> None:
    source = BillingSource.objects.get(tenant_id="acme")

    response = getattr(staff_client, method)(url.format(pk=credential.pk, source=source.pk), {"post": "yes"})

    assert response.status_code == 403
    assert CloudCredential.objects.filter(pk=credential.pk).exists()
    assert BillingSource.objects.filter(pk=source.pk).exists()


def test_change_form_post_does_not_alter_the_credential(
    staff_client: Client, credential: CloudCredential
) -> None:
    before = CloudCredential.objects.filter(pk=credential.pk).values().get()

    response = staff_client.post(
        f"/admin/tenants/cloudcredential/{credential.pk}/change/", {"name": "renamed", "fingerprint": "x"}
    )

    assert response.status_code == 403
    assert CloudCredential.objects.filter(pk=credential.pk).values().get() == before


def _changelist_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("url", ["/admin/tenants/cloudcredential/", "/admin/billing/billingsource/"])
def test_changelists_do_not_grow_queries_with_rows(
    staff_client: Client, credential: CloudCredential, make_tenant: Any, url: str
) -> None:
    few = _changelist_queries(staff_client, url)
    for tenant_id in ("bravo", "charlie", "delta"):
        tenant, _key = make_tenant(tenant_id)
        created = credential_create(
            tenant=tenant, actor=Actor.system("test"), provider="aws", name="main", secret=SECRET
        )
        BillingSource.objects.create(
            tenant=tenant, provider="aws", location="s3://x-cur/cur", credential=created
        )

    assert _changelist_queries(staff_client, url) == few
