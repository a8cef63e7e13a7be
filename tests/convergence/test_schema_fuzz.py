"""Property-based fuzz of the OpenAPI schema the app serves: every operation, positive and negative
data, with an admin key, a tenant key and no key. No response may be a 5xx, every 4xx is the error
envelope of API.md, and every response conforms to the schema (status code, content type, body).

The app runs in-process through its WSGI handler (schemathesis' WSGI transport), inside the test's
database transaction, so nothing outlives a test: Postgres rows roll back and the autouse fixture gives
each test a fresh in-memory warehouse."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipelines.models import PipelineRun, RunStatus
from tenants.actors import Actor
from tenants.authentication import AdminApi, TenantApi
from tenants.models import Tenant
from tenants.services import api_key_create
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.django_db

SCHEMA_PATH = "/api/schema/?format=json"
MAX_EXAMPLES = 25
# With a key of the wrong kind (or none) every case is refused before its input is read: a few do.
REFUSED_EXAMPLES = 8
SCHEMES = {"X-Admin-Key": "AdminKey", "X-API-Key": "TenantKey"}
AUTH_HEADERS = ("X-Admin-Key", "X-API-Key")
# Positive cases of these operations name the real tenant (a made-up one would only ever be a 404).
REAL_TENANT_REFERENCES = {"admin_api_keys_create": "body", "admin_api_keys_list": "query"}
SCHEMA_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """Django's WSGI handler, called in-process. Like Django's test client, it must not run
    ``close_old_connections`` around requests: that would close the connection holding the test's
    transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def unhandled_exceptions() -> Iterator[list[str]]:
    """Exceptions a view did not handle (Django still answers them with the JSON 500)."""
    captured: list[str] = []

    def _record(sender: Any, request: Any = None, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        captured.append(f"{getattr(request, 'method', '?')} {getattr(request, 'path', '?')}: {exc!r}")

    got_request_exception.connect(_record)
    try:
        yield captured
    finally:
        got_request_exception.disconnect(_record)


def _envelope_problem(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return f"body is not JSON: {body[:200]!r}"
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) != {"error"} or not isinstance(error, dict):
        return f"body is not the error envelope: {data!r:.300}"
    if set(error) != {"code", "message", "details"}:
        return f"error keys are {sorted(error)}"
    if not (isinstance(error["code"], str) and error["code"]):
        return f"error.code is {error['code']!r}"
    if not isinstance(error["message"], str):
        return f"error.message is {error['message']!r}"
    if not isinstance(error["details"], dict):
        return f"error.details is {error['details']!r}"
    return None


def _response_problems(case: Any, response: Any) -> list[str]:
    problems: list[str] = []
    status = response.status_code
    readiness = case.operation.definition.raw.get("operationId") == "health_ready"
    if status >= 500 and not (readiness and status == 503):
        problems.append(f"server error {status}: {response.content[:300]!r}")
    if 400 <= status < 600 and not readiness:
        envelope = _envelope_problem(response.content)
        if envelope:
            problems.append(f"{status} {envelope}")
    try:
        case.validate_response(response, checks=SCHEMA_CHECKS)
    except FailureGroup as group:
        problems.extend(f"{status} {failure.title}: {str(failure)[:400]}" for failure in group.exceptions)
    return problems


def _fuzz_operation(
    operation: Any, mode: GenerationMode, *, headers: dict[str, str], path_values: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """Up to MAX_EXAMPLES cases of one operation; returns (requests sent, problems by summary)."""
    sent = 0
    problems: dict[str, str] = {}
    positive = mode is GenerationMode.POSITIVE
    operation_id = operation.definition.raw.get("operationId")
    required = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
    presented = {SCHEMES[name] for name in headers}
    examples = MAX_EXAMPLES if not required or required & presented else REFUSED_EXAMPLES
    # Positive data targets the real objects; negative data makes up its own (bad) values.
    known = {
        param.name: path_values[param.name]
        for param in operation.path_parameters
        if param.name in path_values
    }
    path_parameters = known if positive and known else None

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: Any) -> None:
        nonlocal sent
        for name in AUTH_HEADERS:  # the run's own key (or none), never a generated one
            (case.headers or {}).pop(name, None)
        if positive and operation_id in REAL_TENANT_REFERENCES:
            target = case.body if REAL_TENANT_REFERENCES[operation_id] == "body" else case.query
            if isinstance(target, dict):
                target["tenant_id"] = path_values["tenant_id"]
        response = case.call(headers=headers)
        sent += 1
        for problem in _response_problems(case, response):
            key = f"{operation.label} [{mode.value}] {problem.splitlines()[0][:160]}"
            problems.setdefault(key, f"{key}\n    {problem}\n    {case.as_curl_command()}")

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no inputs, or only free-form strings).
        if positive:
            problems[f"{operation.label}: no positive case could be generated"] = operation.label
    return sent, problems


def _fuzz(
    schema: Any, *, headers: dict[str, str], path_values: dict[str, str]
) -> tuple[dict[str, int], list[str]]:
    """Every operation in both generation modes; returns (requests sent per operation, problems)."""
    sent: dict[str, int] = {}
    problems: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            count, found = _fuzz_operation(operation, mode, headers=headers, path_values=path_values)
            sent[operation.label] = sent.get(operation.label, 0) + count
            problems.update(found)
    return sent, sorted(problems.values())


def _api_v1_views() -> dict[str, type]:
    """``{OpenAPI path: view class}`` for every route under /api/v1, from the URL resolver."""
    found: dict[str, type] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern) and (prefix + str(entry.pattern)).startswith("api/v1/"):
                path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", prefix + str(entry.pattern))
                found[path] = entry.callback.view_class  # type: ignore[attr-defined]

    walk(get_resolver().url_patterns, "")
    return found


@pytest.mark.parametrize("auth", ["admin_key", "tenant_key", "no_key"])
def test_schema_fuzz_finds_no_server_error_and_only_enveloped_4xx(
    auth: str, wsgi_app: WSGIHandler, make_tenant: Any, unhandled_exceptions: list[str]
) -> None:
    assert Tenant.objects.count() == 0  # nothing left behind by an earlier fuzz run
    tenant, raw_key = make_tenant("acme")
    # A second key, so that revoking through the fuzz never locks the tenant-key run out.
    spare_key, _spare_raw = api_key_create(tenant=tenant, actor=Actor.system("test"))
    run = PipelineRun.objects.create(
        tenant=tenant,
        pipeline="gcp/cost/billing",
        pipeline_id="acme_gcp_cost_billing",
        status=RunStatus.PENDING,
    )
    headers = {"admin_key": {"X-Admin-Key": ADMIN_KEY}, "tenant_key": {"X-API-Key": raw_key}, "no_key": {}}[
        auth
    ]
    path_values = {
        "tenant_id": "acme",
        "key_hash": spare_key.key_hash,
        "run_id": str(run.pk),
        "provider": "gcp",
        "domain": "cost",
        "pipeline": "billing",
    }
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, wsgi_app)

    sent, problems = _fuzz(schema, headers=headers, path_values=path_values)

    assert problems == [], f"{len(problems)} problem(s) with {auth}:\n" + "\n".join(problems[:20])
    assert unhandled_exceptions == []
    assert sorted(sent) == sorted(result.ok().label for result in schema.get_all_operations())
    assert [label for label, count in sent.items() if count == 0] == []  # every operation was called


def test_schema_covers_every_api_v1_route(wsgi_app: WSGIHandler) -> None:
    """The fuzz walks the schema, so every route under /api/v1 must be in it (and nothing else)."""
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, wsgi_app).raw_schema
    documented = {path for path in schema["paths"] if path.startswith("/api/v1/")}
    assert documented == set(_api_v1_views())


def test_schema_declares_the_key_scheme_of_every_api_v1_operation(wsgi_app: WSGIHandler) -> None:
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, wsgi_app).raw_schema
    assert schema["components"]["securitySchemes"] == {
        "AdminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key"},
        "TenantKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    views = _api_v1_views()
    documented = {
        f"{method.upper()} {path}": operation.get("security")
        for path, item in schema["paths"].items()
        if path in views
        for method, operation in item.items()
    }
    expected = {
        f"{method.upper()} {path}": [{"AdminKey": []}] if issubclass(view, AdminApi) else [{"TenantKey": []}]
        for path, view in views.items()
        for method in ("get", "post", "put", "patch", "delete")
        if hasattr(view, method)
    }
    assert documented == expected
    assert all(issubclass(view, AdminApi | TenantApi) for view in views.values())


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize(
    "path", ["/nope", "/api/v1/nope", "/api/v1/admin/tenants/", "/api/v1/pipelines/run/acme/GCP/cost/billing"]
)
def test_write_to_unknown_url_is_json_404_with_csrf_checks_on(method: str, path: str) -> None:
    """Found by the fuzz: Django's test client skips CSRF checks, a real WSGI server does not, and the
    catch-all 404 route used to answer unsafe methods with Django's HTML CSRF 403 page."""
    response = getattr(Client(enforce_csrf_checks=True), method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": "Not found", "details": {}}}
