from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _assert_envelope(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["details"], dict)


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v1/admin/tenants/", "/health/", "/api/v2/x"])
def test_unknown_urls_are_json_404(path: str) -> None:
    _assert_envelope(APIClient().get(path), 404, "not_found")


def test_method_not_allowed_is_json_405(admin_client) -> None:
    _assert_envelope(admin_client.put("/api/v1/admin/tenants", {}, format="json"), 405, "method_not_allowed")


def test_malformed_json_is_400(admin_client) -> None:
    response = admin_client.post(
        "/api/v1/admin/tenants", data='{"tenant_id": ', content_type="application/json"
    )
    _assert_envelope(response, 400, "invalid_request")
    assert "line" not in response.json()["error"]["message"].lower()


def test_deeply_nested_json_is_400_not_500(admin_client) -> None:
    from tenants.models import Tenant

    body = '{"tenant_id": "deep", "description": ' + "[" * 5000 + "]" * 5000 + "}"
    response = admin_client.post("/api/v1/admin/tenants", data=body, content_type="application/json")

    _assert_envelope(response, 400, "invalid_request")
    assert not Tenant.objects.filter(tenant_id="deep").exists()


def test_body_over_limit_is_413(admin_client, settings) -> None:
    settings.MAX_BODY_BYTES = 2048
    response = admin_client.post(
        "/api/v1/admin/tenants", data='{"description": "' + "x" * 4096 + '"}', content_type="application/json"
    )
    _assert_envelope(response, 413, "payload_too_large")


def test_request_id_is_echoed() -> None:
    response = APIClient().get("/health", HTTP_X_REQUEST_ID="req-12345678")
    assert response["X-Request-ID"] == "req-12345678"


def test_schema_is_served() -> None:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/admin/tenants" in schema["paths"]
    assert "/api/v1/tenants/{tenant_id}" in schema["paths"]


def test_docs_page_is_served() -> None:
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    # The UI's assets come from this server (drf-spectacular-sidecar), never a CDN: it works offline.
    assert b"cdn.jsdelivr.net" not in response.content
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in response.content
