from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tenants.keys import hash_key
from tenants.models import AuditLog, Plan, Tenant, TenantApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-not-used")
    client = Client()
    client.force_login(user)
    return client


def _changelist_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize(
    "url", ["/admin/tenants/tenant/", "/admin/tenants/tenantapikey/", "/admin/tenants/auditlog/"]
)
def test_changelists_do_not_grow_queries_with_rows(staff_client, make_tenant, url) -> None:
    make_tenant("alpha")
    few = _changelist_queries(staff_client, url)
    for name in ("bravo", "charlie", "delta", "echo", "foxtrot"):
        make_tenant(name)
    assert _changelist_queries(staff_client, url) == few


def test_create_tenant_in_admin_runs_onboarding(staff_client, warehouse) -> None:
    response = staff_client.post(
        "/admin/tenants/tenant/add/",
        {
            "tenant_id": "acme",
            "description": "Acme",
            "contact_email": "ops@acme.io",
            "plan": "PROFESSIONAL",
            "subscription_status": "TRIAL",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    tenant = Tenant.objects.get(tenant_id="acme")
    assert tenant.subscription.plan.code == "PROFESSIONAL"
    assert tenant.subscription.status == "TRIAL"
    assert tenant.subscription.trial_ends_at is not None
    assert warehouse.dataset_exists("acme_local")
    entry = AuditLog.objects.get(action="tenant.create")
    assert (entry.actor_type, entry.actor_id) == ("staff", "staff")


def test_generate_key_shows_it_once_and_stores_only_hash(staff_client, make_tenant) -> None:
    make_tenant("acme")
    response = staff_client.post(
        "/admin/tenants/tenantapikey/add/", {"tenant": "acme", "description": "from admin"}, follow=True
    )
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    (message,) = [text for text in shown if "New API key" in text]
    raw = message.split("New API key for acme: ")[1].split(" ")[0]
    key = TenantApiKey.objects.get(description="from admin")
    assert key.key_hash == hash_key(raw)
    assert raw.encode() not in bytes(key.encrypted_key)
    # Not shown again: the key's page and the list never contain it.
    assert raw.encode() not in staff_client.get(f"/admin/tenants/tenantapikey/{key.pk}/change/").content
    assert raw.encode() not in staff_client.get("/admin/tenants/tenantapikey/").content
    assert raw.encode() not in staff_client.get("/admin/tenants/tenantapikey/").content


def test_revoke_action_and_revoked_keys_are_read_only(staff_client, make_tenant) -> None:
    _tenant, raw = make_tenant("acme")
    key = TenantApiKey.objects.get(key_hash=hash_key(raw))
    response = staff_client.post(
        "/admin/tenants/tenantapikey/",
        {"action": "revoke_keys", "_selected_action": [str(key.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.is_active is False and key.revoked_at is not None
    assert AuditLog.objects.filter(action="api_key.revoke", target_id=str(key.pk)).count() == 1
    page = staff_client.get(f"/admin/tenants/tenantapikey/{key.pk}/change/")
    assert page.status_code == 200
    assert b'name="description"' not in page.content  # read-only view
    before = key.description
    staff_client.post(f"/admin/tenants/tenantapikey/{key.pk}/change/", {"description": "changed"})
    key.refresh_from_db()
    assert key.description == before


def test_audit_log_is_read_only(staff_client, make_tenant) -> None:
    make_tenant("acme")
    entry = AuditLog.objects.first()
    assert entry is not None
    assert staff_client.get("/admin/tenants/auditlog/add/").status_code == 403
    assert (
        staff_client.post(f"/admin/tenants/auditlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert AuditLog.objects.filter(pk=entry.pk).exists()
    assert staff_client.get("/admin/tenants/auditlog/?q=acme").status_code == 200


def test_plans_are_seeded_and_editable(staff_client) -> None:
    assert {(p.code, p.daily_limit, p.monthly_limit, p.concurrent_limit) for p in Plan.objects.all()} == {
        ("STARTER", 6, 180, 1),
        ("PROFESSIONAL", 25, 750, 3),
        ("SCALE", 100, 3000, 10),
    }
    plan = Plan.objects.get(code="STARTER")
    response = staff_client.post(
        f"/admin/tenants/plan/{plan.pk}/change/",
        {
            "code": "STARTER",
            "name": "Starter",
            "daily_limit": 8,
            "monthly_limit": 200,
            "concurrent_limit": 2,
            "priority": 1,
        },
    )
    assert response.status_code == 302
    plan.refresh_from_db()
    assert (plan.daily_limit, plan.monthly_limit, plan.concurrent_limit) == (8, 200, 2)


def test_change_subscription_in_admin_goes_through_service(staff_client, make_tenant) -> None:
    tenant, _raw = make_tenant("acme")
    page = staff_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")
    assert page.status_code == 200
    assert b"Generate API key" in page.content
