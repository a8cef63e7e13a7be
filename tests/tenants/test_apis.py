from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tenants.keys import hash_key
from tenants.models import AuditLog, Subscription, Tenant, TenantApiKey, TenantUsage

pytestmark = pytest.mark.django_db


def test_health_is_public() -> None:
    from rest_framework.test import APIClient

    response = APIClient().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0"}


def test_create_tenant_creates_subscription_usage_and_dataset(admin_client, warehouse) -> None:
    response = admin_client.post(
        "/api/v1/admin/tenants",
        {"tenant_id": "acme", "contact_email": "ops@acme.io"},
        format="json",
        HTTP_X_USER_ID="alice",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tenant_id"] == "acme"
    assert body["dataset_id"] == "acme_local"
    assert body["subscription"] == {
        "plan": "STARTER",
        "status": "ACTIVE",
        "daily_limit": 6,
        "monthly_limit": 180,
        "concurrent_limit": 1,
        "current_period_start": body["subscription"]["current_period_start"],
    }
    assert body["usage"] == {"runs_today": 0, "runs_this_period": 0, "running": 0}
    assert warehouse.dataset_exists("acme_local")
    assert Subscription.objects.get(tenant_id="acme").plan.code == "STARTER"
    assert TenantUsage.objects.filter(tenant_id="acme").count() == 1
    entry = AuditLog.objects.get(action="tenant.create")
    assert (entry.tenant_id, entry.user_id, entry.actor_type, entry.target_id) == (
        "acme",
        "alice",
        "admin_key",
        "acme",
    )
    assert entry.request_id == response["X-Request-ID"]


@pytest.mark.parametrize(
    "tenant_id", ["Abc", "ab", "1abc", "a;drop", "a" * 51, "abc-def", "_abc", "", "abc\n", "ab\u00e9c"]
)
def test_invalid_tenant_ids_are_400_and_create_nothing(admin_client, warehouse, tenant_id) -> None:
    response = admin_client.post("/api/v1/admin/tenants", {"tenant_id": tenant_id}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid_tenant_id", "invalid_request"}
    if tenant_id:
        assert response.json()["error"]["code"] == "invalid_tenant_id"
        assert "tenant_id" in response.json()["error"]["details"]
    assert Tenant.objects.count() == 0
    assert [name for name in warehouse.list_datasets() if name != "tenants"] == []


def test_duplicate_tenant_is_409(admin_client, make_tenant) -> None:
    make_tenant("acme")
    response = admin_client.post("/api/v1/admin/tenants", {"tenant_id": "acme"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "tenant_exists"
    assert Tenant.objects.count() == 1


def test_warehouse_failure_during_onboarding_leaves_nothing(admin_client, warehouse, monkeypatch) -> None:
    from convergence.warehouse import WarehouseError

    real_create = warehouse.create_dataset

    def create_then_fail(dataset, **kwargs):
        real_create(dataset, **kwargs)  # the dataset exists, then the call "fails"
        raise WarehouseError("backend timed out", retryable=False)

    monkeypatch.setattr(warehouse, "create_dataset", create_then_fail)
    response = admin_client.post("/api/v1/admin/tenants", {"tenant_id": "acme"}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert not Tenant.objects.filter(tenant_id="acme").exists()
    assert not Subscription.objects.exists()
    assert not TenantUsage.objects.exists()
    assert not TenantApiKey.objects.exists()
    assert not AuditLog.objects.filter(action="tenant.create").exists()
    assert not warehouse.dataset_exists("acme_local")


def test_unknown_fields_are_rejected(admin_client) -> None:
    response = admin_client.post(
        "/api/v1/admin/tenants", {"tenant_id": "acme", "dataset_id": "evil"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"dataset_id": ["Unknown field."]}
    assert Tenant.objects.count() == 0


def test_patch_tenant_changes_plan_and_status(admin_client, make_tenant) -> None:
    make_tenant("acme")
    response = admin_client.patch(
        "/api/v1/admin/tenants/acme", {"plan": "SCALE", "subscription_status": "SUSPENDED"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["subscription"]["plan"] == "SCALE"
    assert response.json()["subscription"]["status"] == "SUSPENDED"
    assert response.json()["subscription"]["concurrent_limit"] == 10
    assert AuditLog.objects.filter(action="tenant.update", tenant_id="acme").count() == 1


def test_list_tenants_is_paginated(admin_client, make_tenant) -> None:
    for name in ("alpha", "bravo", "charlie"):
        make_tenant(name)
    response = admin_client.get("/api/v1/admin/tenants?page_size=2")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [t["tenant_id"] for t in body["results"]] == ["alpha", "bravo"]
    assert body["next"] is not None


def test_api_key_lifecycle(admin_client, make_tenant, tenant_client) -> None:
    make_tenant("acme")
    created = admin_client.post(
        "/api/v1/admin/api-keys", {"tenant_id": "acme", "description": "ci"}, format="json"
    )
    assert created.status_code == 201
    body = created.json()
    raw = body["api_key"]
    assert raw.startswith("sk_acme_") and len(raw) == len("sk_acme_") + 32
    assert body["tenant_api_key_hash"] == hash_key(raw)
    assert set(body) == {
        "api_key",
        "tenant_api_key_hash",
        "tenant_api_key_id",
        "tenant_id",
        "description",
        "created_at",
        "expires_at",
    }

    assert tenant_client(raw).get("/api/v1/tenants/acme").status_code == 200

    listed = admin_client.get("/api/v1/admin/api-keys?tenant_id=acme").json()
    assert listed["count"] == 2
    assert all("api_key" not in item and "encrypted_key" not in item for item in listed["results"])

    revoked = admin_client.delete(f"/api/v1/admin/api-keys/{body['tenant_api_key_hash']}")
    assert revoked.status_code == 200
    assert revoked.json()["is_active"] is False
    again = admin_client.delete(f"/api/v1/admin/api-keys/{body['tenant_api_key_hash']}")
    assert again.json() == revoked.json()
    assert AuditLog.objects.filter(action="api_key.revoke").count() == 1

    response = tenant_client(raw).get("/api/v1/tenants/acme")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_api_key_for_unknown_tenant_is_404(admin_client, db) -> None:
    response = admin_client.post("/api/v1/admin/api-keys", {"tenant_id": "ghost"}, format="json")
    assert response.status_code == 404
    assert TenantApiKey.objects.count() == 0


def test_api_key_expiring_in_the_past_is_400(admin_client, make_tenant) -> None:
    make_tenant("acme")
    before = TenantApiKey.objects.count()
    past = (timezone.now() - dt.timedelta(minutes=1)).isoformat()
    response = admin_client.post(
        "/api/v1/admin/api-keys", {"tenant_id": "acme", "expires_at": past}, format="json"
    )
    assert response.status_code == 400
    assert "expires_at" in response.json()["error"]["details"]
    assert TenantApiKey.objects.count() == before


def test_revoke_unknown_hash_is_404(admin_client, db) -> None:
    response = admin_client.delete("/api/v1/admin/api-keys/" + "0" * 64)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_tenant_get_has_quota_headers(make_tenant, tenant_client) -> None:
    _tenant, raw = make_tenant("acme", plan="PROFESSIONAL")
    response = tenant_client(raw).get("/api/v1/tenants/acme")
    assert response.status_code == 200
    assert response["X-Quota-Daily-Limit"] == "25"
    assert response["X-Quota-Daily-Remaining"] == "25"
    assert response["X-Quota-Monthly-Remaining"] == "750"
    assert response["X-Quota-Concurrent-Limit"] == "3"


def test_last_used_at_written_at_most_once_per_interval(
    make_tenant, tenant_client, django_assert_num_queries
) -> None:
    _tenant, raw = make_tenant("acme")
    client = tenant_client(raw)
    client.get("/api/v1/tenants/acme")
    first = TenantApiKey.objects.get(key_hash=hash_key(raw)).last_used_at
    assert first is not None
    client.get("/api/v1/tenants/acme")
    assert TenantApiKey.objects.get(key_hash=hash_key(raw)).last_used_at == first


def test_user_id_over_128_chars_is_400(make_tenant, tenant_client) -> None:
    _tenant, raw = make_tenant("acme")
    response = tenant_client(raw).get("/api/v1/tenants/acme", HTTP_X_USER_ID="u" * 129)
    assert response.status_code == 400
    assert "X-User-ID" in response.json()["error"]["details"]


def test_bootstrap_twice(admin_client, warehouse) -> None:
    first = admin_client.post("/api/v1/admin/bootstrap", {}, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["dataset_created"] is True
    assert first.json()["tables_created"] == 11
    second = admin_client.post("/api/v1/admin/bootstrap", {}, format="json")
    assert second.json()["status"] == "SUCCESS"
    assert (
        second.json()["dataset_created"],
        second.json()["tables_created"],
        second.json()["tables_existing"],
    ) == (False, 0, 11)
    assert len(warehouse.list_tables("tenants")) == 11
    forced = admin_client.post("/api/v1/admin/bootstrap", {"force_recreate_tables": True}, format="json")
    assert (forced.json()["tables_created"], forced.json()["tables_existing"]) == (11, 0)
