from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_ready_checks_database_broker_and_warehouse(settings) -> None:
    response = APIClient().get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "warehouse": "ok"},
        "mirror": {"status": "ok", "lag_seconds": 0.0, "threshold_seconds": settings.MIRROR_LAG_THRESHOLD_S},
    }


def test_ready_is_503_when_the_broker_is_down(settings) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = APIClient().get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "error", "warehouse": "ok"},
        "mirror": {"status": "ok", "lag_seconds": 0.0, "threshold_seconds": settings.MIRROR_LAG_THRESHOLD_S},
    }
    assert "127.0.0.1" not in response.content.decode()


def test_ready_is_503_when_the_warehouse_is_unreachable(settings, tmp_path) -> None:
    from convergence.warehouse import get_warehouse

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the warehouse's folder should be")
    settings.WAREHOUSE_URL = f"duckdb:///{blocker}/warehouse.duckdb"
    get_warehouse.cache_clear()
    response = APIClient().get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["warehouse"] == "error"
    assert str(tmp_path) not in response.content.decode()
