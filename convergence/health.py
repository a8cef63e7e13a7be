"""Liveness and readiness. Readiness really touches the database, the broker and the warehouse."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import convergence

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker() -> None:
    """A fresh connection (not the app's pool), so a dead broker is seen now, within ~2 s."""
    from django.conf import settings
    from kombu import Connection

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    with Connection(settings.CELERY_BROKER_URL, transport_options=options, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def check_warehouse() -> None:
    from convergence.warehouse import get_warehouse

    get_warehouse().ping()


CHECKS = {"database": check_database, "broker": check_broker, "warehouse": check_warehouse}


def mirror_status() -> dict[str, Any]:
    """The control-plane mirror's lag (``convergence/mirror``). Reported, never a reason for 503: a
    lagging mirror delays central analytics but the API serves correctly, and taking instances out of
    the load balancer would not make the drain catch up. ``unknown`` when the database cannot say."""
    from convergence.mirror.selectors import mirror_lag

    try:
        lag = mirror_lag()
    except Exception:
        logger.warning("readiness: mirror lag unavailable", exc_info=True)
        return {"status": "unknown", "lag_seconds": None, "threshold_seconds": None}
    return {"status": lag.status, "lag_seconds": lag.lag_seconds, "threshold_seconds": lag.threshold_seconds}


def readiness() -> dict[str, str]:
    """Each dependency: ``ok`` or ``error``. Details go to the log, never to the response."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception:
            logger.warning("readiness check %s failed", name, exc_info=True)
            results[name] = "error"
        else:
            results[name] = "ok"
    return results


class HealthApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(
        operation_id="health",
        responses=inline_serializer(
            "Health", {"status": serializers.CharField(), "version": serializers.CharField()}
        ),
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "version": convergence.__version__})


def _mirror_serializer() -> serializers.Serializer:
    return inline_serializer(
        "MirrorLag",
        {
            "status": serializers.ChoiceField(choices=["ok", "lagging", "unknown"]),
            "lag_seconds": serializers.FloatField(allow_null=True),
            "threshold_seconds": serializers.IntegerField(allow_null=True),
        },
    )


class ReadinessApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(
        operation_id="health_ready",
        responses={
            (200, "application/json"): inline_serializer(
                "Readiness",
                {
                    "status": serializers.CharField(),
                    "checks": serializers.DictField(child=serializers.CharField()),
                    "mirror": _mirror_serializer(),
                },
            ),
            (503, "application/json"): inline_serializer(
                "ReadinessDegraded",
                {
                    "status": serializers.CharField(),
                    "checks": serializers.DictField(child=serializers.CharField()),
                    "mirror": _mirror_serializer(),
                },
            ),
        },
    )
    def get(self, request: Request) -> Response:
        """200 when every dependency in ``checks`` is up, else 503. ``mirror`` reports the central
        mirror's lag (``ok``/``lagging``/``unknown``) without affecting the status code."""
        checks = readiness()
        healthy = all(value == "ok" for value in checks.values())
        return Response(
            {"status": "ok" if healthy else "degraded", "checks": checks, "mirror": mirror_status()},
            status=200 if healthy else 503,
        )
