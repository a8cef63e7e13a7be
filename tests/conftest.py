from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

pytest_plugins = ["tests.bq_emulator", "tests.object_stores", "tests.pipeline_fixtures"]

ADMIN_KEY = "test-admin-key-0123456789abcdef"
REAL_FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "real"


@pytest.fixture(autouse=True)
def _fresh_adapters(settings: Any) -> Iterator[None]:
    """Each test gets its own in-memory warehouse and a known admin key."""
    from convergence.kms import get_kms
    from convergence.warehouse import get_warehouse

    settings.ADMIN_API_KEY = ADMIN_KEY
    get_warehouse.cache_clear()
    get_kms.cache_clear()
    yield
    get_warehouse.cache_clear()
    get_kms.cache_clear()


@pytest.fixture
def warehouse() -> Any:
    from convergence.warehouse import get_warehouse

    return get_warehouse()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def admin_client() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_ADMIN_KEY=ADMIN_KEY)
    return client


def ensure_seeded_plans() -> None:
    """Transactional tests flush the database, data migrations included: put the plans back."""
    import importlib

    from tenants.models import Plan

    for code, name, daily, monthly, concurrent, priority in importlib.import_module(
        "tenants.migrations.0002_seed_plans"
    ).PLANS:
        defaults = {
            "name": name,
            "daily_limit": daily,
            "monthly_limit": monthly,
            "concurrent_limit": concurrent,
            "priority": priority,
        }
        Plan.objects.get_or_create(code=code, defaults=defaults)


@pytest.fixture
def make_tenant(db: Any) -> Any:
    """Create a tenant through the real service (dataset included); returns (tenant, raw_key)."""
    from tenants.actors import Actor
    from tenants.services import api_key_create, tenant_create

    ensure_seeded_plans()

    def _make(tenant_id: str = "acme", plan: str = "STARTER", **kwargs: Any) -> tuple[Any, str]:
        tenant = tenant_create(tenant_id=tenant_id, plan=plan, actor=Actor.system("test"), **kwargs)
        _key, raw = api_key_create(tenant=tenant, actor=Actor.system("test"))
        return tenant, raw

    return _make


@pytest.fixture
def tenant_client() -> Any:
    def _client(raw_key: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=raw_key)
        return client

    return _client


@pytest.fixture
def real_fixtures() -> Path:
    """The shared real billing exports; absent → skip, or fail under REQUIRE_REAL_FIXTURES=1."""
    if not REAL_FIXTURES.is_dir():
        message = f"real fixtures folder not found at {REAL_FIXTURES}"
        if os.environ.get("REQUIRE_REAL_FIXTURES") == "1":
            pytest.fail(message + " (REQUIRE_REAL_FIXTURES=1)")
        pytest.skip(message)
    return REAL_FIXTURES
