"""The project's URLs plus the trigger benchmark's two denominators.

``bench/unguarded-run/...`` is reliability.md R1's denominator: "the same DRF view with AllowAny, no
quota, same insert". It does everything the real trigger does (pipeline lookup, parameter validation,
run INSERT, audit row, enqueue after commit, same 202 body) except authentication and quota admission,
so the ratio prices exactly those two.

``bench/bare-run/...`` is the stricter reference:
The bare endpoint is the trigger view with everything but the run INSERT taken away: a DRF ``APIView``
with ``AllowAny`` and no authentication, the same JSON parsing, the same ``PipelineRun`` row (same
fields, PENDING) and a 202 with the same body. No key lookup, tenant check, pipeline-config load or
parameter validation, quota lock or counters, audit row, or enqueue."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import path
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convergence import urls as project_urls
from pipelines.models import PipelineRun, RunStatus, RunTrigger
from pipelines.services import pipeline_id_for, run_enqueue, tenant_pipeline_get
from pipelines.spec import resolve_parameters
from tenants.actors import Actor
from tenants.services import audit_record

#: The SCALE plan's priority, which the real trigger copies from the tenant's plan.
BARE_PRIORITY = 3


class BareRunApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request, tenant_id: str, provider: str, domain: str, pipeline: str) -> Response:
        if not isinstance(request.data, dict):
            return Response({"error": "body must be a JSON object"}, status=status.HTTP_400_BAD_REQUEST)
        name = f"{provider}/{domain}/{pipeline}"
        run = PipelineRun.objects.create(
            tenant_id=tenant_id,
            pipeline=name,
            pipeline_id=pipeline_id_for(tenant_id=tenant_id, pipeline=name),
            status=RunStatus.PENDING,
            trigger=RunTrigger.MANUAL,
            parameters=dict(request.data),
            user_id="",
            priority=BARE_PRIORITY,
            max_attempts=settings.RUN_MAX_ATTEMPTS,
        )
        body = {
            "pipeline_logging_id": str(run.pk),
            "pipeline_id": run.pipeline_id,
            "status": run.status,
            "status_url": f"/api/v1/pipelines/runs/{run.pk}",
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class UnguardedTriggerApi(APIView):
    """The trigger's work without authentication or quota (R1's denominator)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request, tenant_id: str, provider: str, domain: str, pipeline: str) -> Response:
        if not isinstance(request.data, dict):
            return Response({"error": "body must be a JSON object"}, status=status.HTTP_400_BAD_REQUEST)
        name = f"{provider}/{domain}/{pipeline}"
        spec = tenant_pipeline_get(name=name).spec
        resolved = resolve_parameters(spec.parameters, dict(request.data))
        stored = {
            key: value.isoformat() if hasattr(value, "isoformat") else value
            for key, value in resolved.items()
            if value is not None
        }
        with transaction.atomic():
            run = PipelineRun.objects.create(
                tenant_id=tenant_id,
                pipeline=name,
                pipeline_id=pipeline_id_for(tenant_id=tenant_id, pipeline=name),
                status=RunStatus.PENDING,
                trigger=RunTrigger.MANUAL,
                parameters=stored,
                user_id="",
                priority=BARE_PRIORITY,
                max_attempts=settings.RUN_MAX_ATTEMPTS,
            )
            audit_record(
                actor=Actor.system("bench"),
                action="run.create",
                tenant_id=tenant_id,
                target_type="pipeline_run",
                target_id=str(run.pk),
                details={"pipeline": name, "trigger": RunTrigger.MANUAL},
            )
            run_id = str(run.pk)
            transaction.on_commit(lambda: run_enqueue(run_id=run_id))
        body = {
            "pipeline_logging_id": run_id,
            "pipeline_id": run.pipeline_id,
            "status": run.status,
            "status_url": f"/api/v1/pipelines/runs/{run_id}",
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    path(
        "bench/unguarded-run/<str:tenant_id>/<str:provider>/<str:domain>/<str:pipeline>",
        UnguardedTriggerApi.as_view(),
        name="bench-unguarded-run",
    ),
    path(
        "bench/bare-run/<str:tenant_id>/<str:provider>/<str:domain>/<str:pipeline>",
        BareRunApi.as_view(),
        name="bench-bare-run",
    ),
    *project_urls.urlpatterns,  # ends with the catch-all JSON 404, so the bench route goes first
]

handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500
