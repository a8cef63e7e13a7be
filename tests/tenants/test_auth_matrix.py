"""Auth matrix (OWASP API2 broken authentication, API5 function-level authorization).

Every route under /api/v1, found by walking Django's URL resolver, times every method its view
implements, times every way of presenting a key (none, malformed, unknown, revoked, expired, another
tenant's, the wrong kind), gives the documented status and error code with a uniform body, a
``WWW-Authenticate`` header on every 401, and changes nothing in the database. Malformed keys are refused
before any SQL. A new route fails the meta-tests until it has a row in ``EXPECTED_ROUTES``."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import BillingSource
from pipelines.models import PipelineRun, RunStatus, Schedule
from tenants import keys
from tenants.actors import Actor
from tenants.authentication import ADMIN_AUTH_HEADER, TENANT_AUTH_HEADER, AdminApi, TenantApi
from tenants.models import TenantApiKey
from tenants.services import (
    admin_key_create,
    admin_key_revoke,
    api_key_create,
    api_key_revoke,
    credential_create,
)
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.django_db

ADMIN = "admin"
TENANT = "tenant"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Route:
    """The checked-in expectation for one route: who may call it, and for each method a body that
    would succeed with the right key (so a refused request that slipped through would show)."""

    audience: str
    bodies: dict[str, dict[str, Any] | None]
    # Tenant routes without ``tenant_id`` in the path must say what another tenant's (valid) key gets:
    # (status, error code), or (2xx, None) when the route has nothing of this tenant's to protect.
    cross_tenant: tuple[int, str | None] | None = None
    # Per-method exceptions to ``cross_tenant`` (a create on a collection succeeds in the caller's tenant).
    cross_tenant_methods: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    # The right-key request runs a real pipeline: the test pipelines (tests/pipeline_fixtures.py).
    needs_pipeline: bool = False
    # Query string of the right-key request, for GET routes whose parameters are required.
    query: str = ""


EXPECTED_ROUTES: dict[str, Route] = {
    "api/v1/admin/bootstrap": Route(ADMIN, {"POST": {"force_recreate_tables": True}}),
    "api/v1/admin/tenants": Route(ADMIN, {"GET": None, "POST": {"tenant_id": "initech", "plan": "SCALE"}}),
    "api/v1/admin/tenants/<str:tenant_id>": Route(
        ADMIN, {"GET": None, "PATCH": {"plan": "SCALE", "subscription_status": "SUSPENDED"}}
    ),
    "api/v1/admin/api-keys": Route(ADMIN, {"GET": None, "POST": {"tenant_id": "acme", "description": "ci"}}),
    "api/v1/admin/api-keys/<str:key_hash>": Route(ADMIN, {"DELETE": None}),
    "api/v1/tenants/<str:tenant_id>": Route(TENANT, {"GET": None}),
    "api/v1/tenants/<str:tenant_id>/credentials": Route(
        TENANT,
        {
            "GET": None,
            "POST": {
                "provider": "aws",
                "name": "ci",
                "secret": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "c2VjcmV0"},
            },
        },
    ),
    "api/v1/tenants/<str:tenant_id>/credentials/<str:credential_id>": Route(TENANT, {"DELETE": None}),
    "api/v1/tenants/<str:tenant_id>/sources": Route(TENANT, {"GET": None}),
    "api/v1/tenants/<str:tenant_id>/sources/<str:provider>": Route(
        TENANT, {"PUT": {"location": "acme-billing.billing_export.gcp_billing_export_v1"}, "DELETE": None}
    ),
    "api/v1/pipelines/catalog": Route(TENANT, {"GET": None}, cross_tenant=(200, None)),
    "api/v1/tenants/<str:tenant_id>/costs": Route(
        TENANT, {"GET": None}, query="start=2025-11-01&end=2025-11-30&group_by=provider"
    ),
    "api/v1/pipelines/run/<str:tenant_id>/<segment:provider>/<segment:domain>/<segment:pipeline>": Route(
        TENANT, {"POST": {"date": "2025-11-19"}}, needs_pipeline=True
    ),
    "api/v1/pipelines/runs": Route(TENANT, {"GET": None}, cross_tenant=(200, None)),
    "api/v1/pipelines/runs/<str:run_id>": Route(TENANT, {"GET": None}, cross_tenant=(404, "not_found")),
    "api/v1/pipelines/runs/<str:run_id>/cancel": Route(
        TENANT, {"POST": None}, cross_tenant=(404, "not_found")
    ),
    "api/v1/pipelines/schedules": Route(
        TENANT,
        {
            "GET": None,
            "POST": {
                "pipeline": "test/engine/ok",
                "cron": "0 2 * * *",
                "timezone": "Europe/Berlin",
                "parameters": {"date": "yesterday"},
                "enabled": True,
            },
        },
        # Another tenant's key lists only its own schedules and creates in its own tenant.
        cross_tenant=(200, None),
        cross_tenant_methods={"POST": (201, None)},
        needs_pipeline=True,
    ),
    "api/v1/pipelines/schedules/<str:schedule_id>": Route(
        TENANT,
        {"GET": None, "PATCH": {"cron": "30 3 * * 1-5", "enabled": False}, "DELETE": None},
        cross_tenant=(404, "not_found"),
        needs_pipeline=True,
    ),
    "api/v1/scheduler/trigger": Route(ADMIN, {"POST": None}),
    "api/v1/scheduler/process-queue": Route(ADMIN, {"POST": None}),
    "api/v1/scheduler/reset-daily-quotas": Route(ADMIN, {"POST": None}),
}


@dataclass(frozen=True)
class World:
    """Tenant ``acme`` (the one in every path) and ``globex``, with keys in every state."""

    key: str  # acme's live key
    key_hash: str
    other_tenant_key: str  # globex's live key
    revoked_key: str
    expired_key: str
    forged_key: str  # names globex but its row belongs to acme
    revoked_admin_key: str
    run_id: str  # a PENDING run of acme
    schedule_id: str  # an enabled schedule of acme
    credential_id: str  # an AWS credential of acme no source uses (acme also has a gcp source)


PATH_VALUES: dict[str, Callable[[World], str]] = {
    "tenant_id": lambda world: "acme",
    "key_hash": lambda world: world.key_hash,
    "run_id": lambda world: world.run_id,
    "schedule_id": lambda world: world.schedule_id,
    "credential_id": lambda world: world.credential_id,
    "provider": lambda world: "gcp",
    "domain": lambda world: "cost",
    "pipeline": lambda world: "billing",
}


@dataclass(frozen=True)
class AuthCase:
    status: int
    code: str
    credentials: Callable[[World], dict[str, str]]
    zero_queries: bool = False  # refused before any SQL
    path_tenant: str | None = None  # replaces tenant_id in the path
    query: Callable[[World], str] | None = None
    needs_tenant_path: bool = False


def _swap_last(raw: str, char: str) -> str:
    return raw[:-1] + char


TENANT_CASES: dict[str, AuthCase] = {
    "no_key": AuthCase(401, "missing_api_key", lambda w: {}, zero_queries=True),
    "empty_key": AuthCase(401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": ""}, zero_queries=True),
    "garbage_key": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": "not-a-key"}, zero_queries=True
    ),
    "truncated_key": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": w.key[:-1]}, zero_queries=True
    ),
    "wrong_prefix_key": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": "pk" + w.key[2:]}, zero_queries=True
    ),
    "uppercase_tenant_key": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": w.key.replace("acme", "ACME")}, zero_queries=True
    ),
    "trailing_newline_key": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": w.key + "\n"}, zero_queries=True
    ),
    "non_base62_key": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": _swap_last(w.key, "-")}, zero_queries=True
    ),
    "unknown_key": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": keys.generate_tenant_key("acme")}
    ),
    "revoked_key": AuthCase(401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": w.revoked_key}),
    "expired_key": AuthCase(401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": w.expired_key}),
    "key_naming_another_tenant_than_its_row": AuthCase(
        401, "invalid_api_key", lambda w: {"HTTP_X_API_KEY": w.forged_key}
    ),
    "other_tenants_key": AuthCase(
        403, "tenant_mismatch", lambda w: {"HTTP_X_API_KEY": w.other_tenant_key}, needs_tenant_path=True
    ),
    "own_key_on_unknown_tenant_path": AuthCase(
        403,
        "tenant_mismatch",
        lambda w: {"HTTP_X_API_KEY": w.key},
        path_tenant="ghost",
        needs_tenant_path=True,
    ),
    "admin_key_only": AuthCase(
        401, "missing_api_key", lambda w: {"HTTP_X_ADMIN_KEY": ADMIN_KEY}, zero_queries=True
    ),
    "key_in_query_string": AuthCase(
        401,
        "missing_api_key",
        lambda w: {},
        query=lambda w: f"api_key={w.key}&x_api_key={w.key}",
        zero_queries=True,
    ),
    "key_as_bearer_token": AuthCase(
        401, "missing_api_key", lambda w: {"HTTP_AUTHORIZATION": f"Bearer {w.key}"}, zero_queries=True
    ),
}

ADMIN_CASES: dict[str, AuthCase] = {
    "no_key": AuthCase(401, "missing_api_key", lambda w: {}, zero_queries=True),
    "empty_key": AuthCase(401, "invalid_admin_key", lambda w: {"HTTP_X_ADMIN_KEY": ""}, zero_queries=True),
    "garbage_key": AuthCase(
        401, "invalid_admin_key", lambda w: {"HTTP_X_ADMIN_KEY": "not-an-admin-key"}, zero_queries=True
    ),
    "near_miss_key": AuthCase(
        401, "invalid_admin_key", lambda w: {"HTTP_X_ADMIN_KEY": ADMIN_KEY + "x"}, zero_queries=True
    ),
    "unknown_admin_key": AuthCase(
        401, "invalid_admin_key", lambda w: {"HTTP_X_ADMIN_KEY": keys.generate_admin_key()}
    ),
    "revoked_admin_key": AuthCase(
        401, "invalid_admin_key", lambda w: {"HTTP_X_ADMIN_KEY": w.revoked_admin_key}
    ),
    "tenant_key_only": AuthCase(
        401, "missing_api_key", lambda w: {"HTTP_X_API_KEY": w.key}, zero_queries=True
    ),
    "tenant_key_as_admin_key": AuthCase(
        401, "invalid_admin_key", lambda w: {"HTTP_X_ADMIN_KEY": w.key}, zero_queries=True
    ),
    "key_in_query_string": AuthCase(
        401, "missing_api_key", lambda w: {}, query=lambda w: f"admin_key={ADMIN_KEY}", zero_queries=True
    ),
    "key_as_bearer_token": AuthCase(
        401, "missing_api_key", lambda w: {"HTTP_AUTHORIZATION": f"Bearer {ADMIN_KEY}"}, zero_queries=True
    ),
}

MESSAGES = {
    (TENANT, "missing_api_key"): "X-API-Key header is required",
    (ADMIN, "missing_api_key"): "X-Admin-Key header is required",
    (TENANT, "invalid_api_key"): "Invalid, revoked or expired API key",
    (ADMIN, "invalid_admin_key"): "Invalid admin key",
    (TENANT, "tenant_mismatch"): "This key belongs to another tenant",
}
AUTH_HEADERS = {TENANT: TENANT_AUTH_HEADER, ADMIN: ADMIN_AUTH_HEADER}


# --- the routes, from the URL resolver ------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    route: str
    method: str
    audience: str
    path_kwargs: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.method} /{self.route}"


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found.extend(_walk(entry.url_patterns, prefix + str(entry.pattern)))
        elif isinstance(entry, URLPattern):
            found.append((prefix + str(entry.pattern), entry))
    return found


def _audience(view_class: type) -> str:
    if issubclass(view_class, AdminApi):
        return ADMIN
    if issubclass(view_class, TenantApi):
        return TENANT
    return "public"


def _api_v1_endpoints() -> list[Endpoint]:
    endpoints = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if not route.startswith("api/v1/"):
            continue
        view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
        assert view_class is not None, f"/{route} is not a class-based view"
        kwargs = tuple(re.findall(r"<(?:\w+:)?(\w+)>", route))
        for method in METHODS:
            if hasattr(view_class, method.lower()):
                endpoints.append(Endpoint(route, method, _audience(view_class), kwargs))
    return endpoints


ENDPOINTS = _api_v1_endpoints()


def _matrix() -> list[Any]:
    params = []
    for endpoint in ENDPOINTS:
        cases = {ADMIN: ADMIN_CASES, TENANT: TENANT_CASES}.get(endpoint.audience, {})
        for name, case in cases.items():
            if case.needs_tenant_path and "tenant_id" not in endpoint.path_kwargs:
                continue
            params.append(pytest.param(endpoint, case, id=f"{endpoint}::{name}"))
    return params


def _cross_tenant_matrix() -> list[Any]:
    """Tenant routes without ``tenant_id`` in the path: another tenant's key gets what the table says."""
    return [
        pytest.param(endpoint, id=str(endpoint))
        for endpoint in ENDPOINTS
        if endpoint.audience == TENANT and "tenant_id" not in endpoint.path_kwargs
    ]


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def world(make_tenant: Any) -> World:
    acme, key = make_tenant("acme")
    _globex, other_tenant_key = make_tenant("globex")
    actor = Actor.system("test")
    now = timezone.now()

    revoked_row, revoked_key = api_key_create(tenant=acme, actor=actor)
    api_key_revoke(key=revoked_row, actor=actor)
    expired_row, expired_key = api_key_create(
        tenant=acme, actor=actor, expires_at=now + dt.timedelta(hours=1)
    )
    TenantApiKey.objects.filter(pk=expired_row.pk).update(expires_at=now - dt.timedelta(seconds=1))
    forged_key = keys.generate_tenant_key("globex")
    TenantApiKey.objects.create(
        tenant=acme,
        key_hash=keys.hash_key(forged_key),
        prefix=keys.tenant_key_display_prefix(forged_key),
        encrypted_key=b"",
    )
    admin_row, revoked_admin_key = admin_key_create(name="ci", actor=actor)
    admin_key_revoke(key=admin_row, actor=actor)
    run = PipelineRun.objects.create(
        tenant=acme,
        pipeline="gcp/cost/billing",
        pipeline_id="acme_gcp_cost_billing",
        status=RunStatus.PENDING,
    )
    schedule = Schedule.objects.create(
        tenant=acme,
        pipeline="test/engine/ok",
        cron="0 2 * * *",
        timezone="UTC",
        parameters={"date": "yesterday"},
        next_run_at=now + dt.timedelta(hours=1),
    )
    credential = credential_create(
        tenant=acme,
        actor=actor,
        provider="aws",
        name="unused",
        secret={"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "c2VjcmV0"},
    )
    BillingSource.objects.create(
        tenant=acme, provider="gcp", location="acme-billing.billing_export.export_v1"
    )
    return World(
        key=key,
        key_hash=keys.hash_key(key),
        other_tenant_key=other_tenant_key,
        revoked_key=revoked_key,
        expired_key=expired_key,
        forged_key=forged_key,
        revoked_admin_key=revoked_admin_key,
        run_id=str(run.pk),
        schedule_id=str(schedule.pk),
        credential_id=str(credential.pk),
    )


def _snapshot(exclude_tenant: str | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every tenants and pipelines model (``TenantApiKey.last_used_at`` aside: a valid
    key on the wrong path is still a used key), optionally without the rows of ``exclude_tenant``."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    for app_label in ("tenants", "pipelines", "billing"):
        for model in apps.get_app_config(app_label).get_models():
            columns = [
                field.attname
                for field in model._meta.concrete_fields
                if not (model is TenantApiKey and field.name == "last_used_at")
            ]
            rows = model.objects.order_by("pk")
            if exclude_tenant is not None and "tenant_id" in columns:
                rows = rows.exclude(tenant_id=exclude_tenant)
            dump[model._meta.label] = [
                tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
                for row in rows.values_list(*columns)
            ]
    return dump


def _path(endpoint: Endpoint, world: World, overrides: dict[str, str] | None = None) -> str:
    values = {name: PATH_VALUES[name](world) for name in endpoint.path_kwargs}
    values.update(overrides or {})
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: values[match.group(1)], endpoint.route)


def _send(endpoint: Endpoint, path: str, credentials: dict[str, str]) -> Any:
    body = EXPECTED_ROUTES[endpoint.route].bodies[endpoint.method]
    if EXPECTED_ROUTES[endpoint.route].query:
        path += ("&" if "?" in path else "?") + EXPECTED_ROUTES[endpoint.route].query
    return APIClient().generic(
        endpoint.method,
        path,
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        **credentials,
    )


# --- the matrix -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "case"), _matrix())
def test_refused_request_gets_documented_error_and_changes_nothing(
    endpoint: Endpoint, case: AuthCase, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    assert endpoint.route in EXPECTED_ROUTES, f"add /{endpoint.route} to EXPECTED_ROUTES"
    path = _path(endpoint, world, {"tenant_id": case.path_tenant} if case.path_tenant else None)
    if case.query:
        path += "?" + case.query(world)
    before = _snapshot()

    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as callbacks:
        response = _send(endpoint, path, case.credentials(world))

    assert response.status_code == case.status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": case.code, "message": MESSAGES[(endpoint.audience, case.code)], "details": {}}
    }
    if case.status == 401:
        assert response["WWW-Authenticate"] == AUTH_HEADERS[endpoint.audience]
    else:
        assert "WWW-Authenticate" not in response
    if case.zero_queries:
        assert [query["sql"] for query in queries.captured_queries] == []
    key_lookups = [query for query in queries.captured_queries if "tenants_tenantapikey" in query["sql"]]
    if case.code in {"missing_api_key", "invalid_admin_key"} or case.zero_queries:
        assert key_lookups == []
    elif case.code == "invalid_api_key":
        assert len(key_lookups) == 1  # a well-formed key costs exactly one indexed lookup
    assert callbacks == []  # no task sent
    assert _snapshot() == before


@pytest.mark.parametrize("endpoint", _cross_tenant_matrix())
def test_other_tenants_key_on_route_without_tenant_in_path(
    endpoint: Endpoint, world: World, request: Any
) -> None:
    """API1: another tenant's valid key never reaches this tenant's objects (404, not 403, so there is no
    existence oracle) and lists nothing of it."""
    route = EXPECTED_ROUTES[endpoint.route]
    expected = route.cross_tenant_methods.get(endpoint.method, route.cross_tenant)
    assert expected is not None, f"say what another tenant's key gets on /{endpoint.route}"
    if route.needs_pipeline:
        request.getfixturevalue("test_pipelines")
    status, code = expected
    # A create that succeeds writes only the caller's own rows.
    writes_own_rows = endpoint.method != "GET" and 200 <= status < 300
    before = _snapshot("globex" if writes_own_rows else None)

    response = _send(endpoint, _path(endpoint, world), {"HTTP_X_API_KEY": world.other_tenant_key})

    assert response.status_code == status, response.content
    if code is None:
        assert world.run_id.encode() not in response.content
        assert world.schedule_id.encode() not in response.content
        assert b"acme" not in response.content
    else:
        assert response.json()["error"]["code"] == code
    assert _snapshot("globex" if writes_own_rows else None) == before


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=str(e)) for e in ENDPOINTS])
def test_the_right_key_is_accepted_with_the_same_request(
    endpoint: Endpoint, world: World, request: Any
) -> None:
    """The positive control: the requests of the matrix are real ones, and a write that got through
    would show in the snapshot."""
    overrides: dict[str, str] = {}
    if EXPECTED_ROUTES[endpoint.route].needs_pipeline:
        request.getfixturevalue("test_pipelines")
        overrides = {"provider": "test", "domain": "engine", "pipeline": "ok"}
        # The world's own run holds STARTER's single concurrency slot; finish it first.
        PipelineRun.objects.filter(tenant_id="acme").update(status=RunStatus.COMPLETED)
    credentials = {ADMIN: {"HTTP_X_ADMIN_KEY": ADMIN_KEY}, TENANT: {"HTTP_X_API_KEY": world.key}}
    before = _snapshot()

    response = _send(endpoint, _path(endpoint, world, overrides), credentials[endpoint.audience])

    assert 200 <= response.status_code < 300, response.content
    assert "WWW-Authenticate" not in response
    if endpoint.method != "GET":
        assert _snapshot() != before


# --- meta-tests: the table covers the URL conf ----------------------------------------------------


def test_every_api_v1_route_and_method_has_an_expected_entry() -> None:
    found = {(e.route, e.method, e.audience) for e in ENDPOINTS}
    expected = {
        (route, method, entry.audience) for route, entry in EXPECTED_ROUTES.items() for method in entry.bodies
    }
    assert found == expected


def test_matrix_covers_every_endpoint_with_every_case() -> None:
    covered: dict[str, set[str]] = {}
    for param in _matrix():
        covered.setdefault(str(param.values[0]), set()).add(param.id.rsplit("::", 1)[1])
    expected = {}
    for endpoint in ENDPOINTS:
        cases = ADMIN_CASES if endpoint.audience == ADMIN else TENANT_CASES
        expected[str(endpoint)] = {
            name
            for name, case in cases.items()
            if not case.needs_tenant_path or "tenant_id" in endpoint.path_kwargs
        }
    assert covered == expected


def test_every_path_parameter_has_a_realistic_value() -> None:
    assert {name for e in ENDPOINTS for name in e.path_kwargs} <= set(PATH_VALUES)


def test_tenant_routes_without_tenant_in_path_declare_the_cross_tenant_outcome() -> None:
    for endpoint in ENDPOINTS:
        if endpoint.audience == TENANT and "tenant_id" not in endpoint.path_kwargs:
            assert EXPECTED_ROUTES[endpoint.route].cross_tenant is not None, endpoint
