"""Tenant run endpoints (catalog, trigger, list, detail, cancel), schedule endpoints, and the admin
scheduler endpoints (tick, dispatch, quota reset) that call the same services as the beat tasks."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from convergence.api.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDeniedError,
    QuotaExceeded,
)
from convergence.api.pagination import PageNumberPagination
from convergence.api.schema import error_responses, paginated_response
from convergence.api.serializers import StrictInputSerializer, validated_data
from pipelines import scheduler, selectors, services
from pipelines.catalog import catalog_entries
from pipelines.loader import PipelineConfigError, PipelineNotFound
from pipelines.models import RunStatus
from pipelines.serializers import (
    CatalogEntrySerializer,
    RunAcceptedSerializer,
    RunDetailOutputSerializer,
    RunOutputSerializer,
    ScheduleOutputSerializer,
    run_representation,
    schedule_representation,
)
from pipelines.spec import ParameterError
from tenants.authentication import AdminApi, TenantApi
from tenants.services import audit_record


class CatalogApi(TenantApi):
    @extend_schema(
        operation_id="pipelines_catalog",
        responses={200: CatalogEntrySerializer(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        return Response(catalog_entries())


class RunTriggerApi(TenantApi):
    @extend_schema(
        operation_id="pipelines_run",
        request={"application/json": {"type": "object", "additionalProperties": True}},
        responses={202: RunAcceptedSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def post(self, request: Request, tenant_id: str, provider: str, domain: str, pipeline: str) -> Response:
        if not isinstance(request.data, dict):
            raise InvalidRequest("The body must be a JSON object of run parameters")
        name = f"{provider}/{domain}/{pipeline}"
        try:
            run, usage = services.run_create(
                tenant=self.tenant(request),
                pipeline_name=name,
                parameters=dict(request.data),
                actor=self.actor(request),
            )
        except PipelineNotFound as exc:
            raise NotFound(f"Pipeline {name} not found") from exc
        except PipelineConfigError as exc:
            raise ApiError(
                "Pipeline configuration is invalid", code="pipeline_invalid", status_code=500
            ) from exc
        except ParameterError as exc:
            raise InvalidRequest(
                "Invalid run parameters", code="invalid_parameters", details=exc.errors
            ) from exc
        except services.AdmissionRefused as exc:
            if exc.retry_after is None:
                raise PermissionDeniedError(exc.message, code=exc.code) from exc
            raise QuotaExceeded(
                exc.message, code=exc.code, headers={"Retry-After": str(exc.retry_after)}
            ) from exc
        request.quota_usage = usage  # type: ignore[attr-defined]
        body = {
            "pipeline_logging_id": str(run.pk),
            "pipeline_id": run.pipeline_id,
            "status": run.status,
            "status_url": f"/api/v1/pipelines/runs/{run.pk}",
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class RunCollectionApi(TenantApi):
    class FilterSerializer(StrictInputSerializer):
        status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
        pipeline = serializers.RegexField(
            r"^[a-z][a-z0-9_]*/[a-z][a-z0-9_]*/[a-z][a-z0-9_]*\Z", max_length=200, required=False
        )
        created_after = serializers.DateTimeField(required=False)
        created_before = serializers.DateTimeField(required=False)
        page = serializers.IntegerField(min_value=1, required=False)
        page_size = serializers.IntegerField(min_value=1, max_value=500, required=False)

    @extend_schema(
        operation_id="pipelines_runs_list",
        parameters=[FilterSerializer],
        responses={
            200: paginated_response("PaginatedRunList", RunOutputSerializer(many=True)),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request: Request) -> Response:
        filters = validated_data(self.FilterSerializer, request.query_params.dict())
        runs = selectors.run_list(
            tenant=self.tenant(request),
            status=filters.get("status"),
            pipeline=filters.get("pipeline"),
            created_after=filters.get("created_after"),
            created_before=filters.get("created_before"),
        )
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response([run_representation(run) for run in page or []])


def _owned_or_404(
    lookup: Callable[..., Any], api: TenantApi, request: Request, object_id: str, label: str
) -> Any:
    """The tenant's own object by UUID, or 404 (also for another tenant's: existence is never confirmed)."""
    try:
        uuid.UUID(object_id)
    except ValueError:
        raise NotFound(f"{label} not found") from None
    found = lookup(api.tenant(request), object_id)
    if found is None:
        raise NotFound(f"{label} not found")
    return found


def _run_or_404(api: TenantApi, request: Request, run_id: str) -> Any:
    return _owned_or_404(
        lambda tenant, pk: selectors.run_get(tenant=tenant, run_id=pk), api, request, run_id, "Run"
    )


class RunDetailApi(TenantApi):
    @extend_schema(
        operation_id="pipelines_runs_get",
        responses={200: RunDetailOutputSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, run_id: str) -> Response:
        return Response(run_representation(_run_or_404(self, request, run_id), detail=True))


class RunCancelApi(TenantApi):
    @extend_schema(
        operation_id="pipelines_runs_cancel",
        request=None,
        responses={200: RunDetailOutputSerializer, **error_responses(401, 404, 409)},
    )
    def post(self, request: Request, run_id: str) -> Response:
        run = _run_or_404(self, request, run_id)
        try:
            services.run_cancel(run=run, actor=self.actor(request))
        except services.RunFinishedError as exc:
            raise Conflict(f"Run already finished with status {exc}", code="conflict") from exc
        return Response(run_representation(_run_or_404(self, request, run_id), detail=True))


# --- schedules -------------------------------------------------------------------------------------

PIPELINE_NAME_PATTERN = r"^[a-z][a-z0-9_]*/[a-z][a-z0-9_]*/[a-z][a-z0-9_]*\Z"


class ScheduleInputSerializer(StrictInputSerializer):
    pipeline = serializers.RegexField(PIPELINE_NAME_PATTERN, max_length=200)
    cron = serializers.CharField(max_length=1000)
    timezone = serializers.CharField(max_length=64, default="UTC")
    parameters = serializers.DictField(default=dict)
    enabled = serializers.BooleanField(default=True)


def _schedule_error(exc: Exception) -> ApiError:
    """The API error for a schedule service's validation error."""
    if isinstance(exc, ParameterError):
        return InvalidRequest("Invalid schedule parameters", code="invalid_parameters", details=exc.errors)
    assert isinstance(exc, services.ScheduleFieldError)
    if exc.field == "cron":
        return InvalidRequest("Invalid cron expression", code="invalid_cron", details={"cron": [exc.message]})
    return InvalidRequest("Invalid request", details={exc.field: [exc.message]})


class ScheduleCollectionApi(TenantApi):
    class FilterSerializer(StrictInputSerializer):
        page = serializers.IntegerField(min_value=1, required=False)
        page_size = serializers.IntegerField(min_value=1, max_value=500, required=False)

    @extend_schema(
        operation_id="pipelines_schedules_list",
        parameters=[FilterSerializer],
        responses={
            200: paginated_response("PaginatedScheduleList", ScheduleOutputSerializer(many=True)),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request: Request) -> Response:
        validated_data(self.FilterSerializer, request.query_params.dict())
        schedules = selectors.schedule_list(tenant=self.tenant(request))
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(schedules, request, view=self)
        return paginator.get_paginated_response([schedule_representation(item) for item in page or []])

    @extend_schema(
        operation_id="pipelines_schedules_create",
        request=ScheduleInputSerializer,
        responses={201: ScheduleOutputSerializer, **error_responses(400, 401)},
    )
    def post(self, request: Request) -> Response:
        serializer = ScheduleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            schedule = services.schedule_create(
                tenant=self.tenant(request), actor=self.actor(request), **data
            )
        except (services.ScheduleFieldError, ParameterError) as exc:
            raise _schedule_error(exc) from exc
        return Response(schedule_representation(schedule), status=status.HTTP_201_CREATED)


def _schedule_or_404(api: TenantApi, request: Request, schedule_id: str) -> Any:
    return _owned_or_404(
        lambda tenant, pk: selectors.schedule_get(tenant=tenant, schedule_id=pk),
        api,
        request,
        schedule_id,
        "Schedule",
    )


class ScheduleDetailApi(TenantApi):
    @extend_schema(
        operation_id="pipelines_schedules_get",
        responses={200: ScheduleOutputSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        return Response(schedule_representation(_schedule_or_404(self, request, schedule_id)))

    @extend_schema(
        operation_id="pipelines_schedules_update",
        request=ScheduleInputSerializer,
        responses={200: ScheduleOutputSerializer, **error_responses(400, 401, 404)},
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        schedule = _schedule_or_404(self, request, schedule_id)
        serializer = ScheduleInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            schedule = services.schedule_update(
                schedule=schedule, actor=self.actor(request), **serializer.validated_data
            )
        except (services.ScheduleFieldError, ParameterError) as exc:
            raise _schedule_error(exc) from exc
        return Response(schedule_representation(schedule))

    @extend_schema(
        operation_id="pipelines_schedules_delete",
        responses={204: None, **error_responses(401, 404)},
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        schedule = _schedule_or_404(self, request, schedule_id)
        services.schedule_delete(schedule=schedule, actor=self.actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- scheduler (X-Admin-Key) -----------------------------------------------------------------------


@extend_schema_serializer(component_name="SchedulerInput")
class SchedulerInputSerializer(StrictInputSerializer):
    """No fields: an empty body or ``{}``; any key is a 400."""


class SchedulerTriggerApi(AdminApi):
    @extend_schema_serializer(component_name="SchedulerTriggerResult")
    class OutputSerializer(serializers.Serializer):
        queued = serializers.IntegerField()
        skipped = serializers.IntegerField()

    @extend_schema(
        operation_id="scheduler_trigger",
        request=SchedulerInputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401)},
    )
    def post(self, request: Request) -> Response:
        validated_data(SchedulerInputSerializer, request.data)
        result = scheduler.schedules_tick()
        body = {"queued": result.queued, "skipped": result.skipped}
        audit_record(actor=self.actor(request), action="scheduler.trigger", details=body)
        return Response(body)


class SchedulerProcessQueueApi(AdminApi):
    @extend_schema_serializer(component_name="SchedulerProcessQueueResult")
    class OutputSerializer(serializers.Serializer):
        dispatched = serializers.IntegerField()

    @extend_schema(
        operation_id="scheduler_process_queue",
        request=SchedulerInputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401)},
    )
    def post(self, request: Request) -> Response:
        validated_data(SchedulerInputSerializer, request.data)
        body = {"dispatched": scheduler.queue_dispatch()}
        audit_record(actor=self.actor(request), action="scheduler.process_queue", details=body)
        return Response(body)


class SchedulerResetQuotasApi(AdminApi):
    @extend_schema_serializer(component_name="SchedulerResetQuotasResult")
    class OutputSerializer(serializers.Serializer):
        tenants_reset = serializers.IntegerField()
        records_cleaned = serializers.IntegerField()

    @extend_schema(
        operation_id="scheduler_reset_daily_quotas",
        request=SchedulerInputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401)},
    )
    def post(self, request: Request) -> Response:
        validated_data(SchedulerInputSerializer, request.data)
        reset = scheduler.quotas_reset()
        cleaned = scheduler.runs_purge_expired()
        body = {"tenants_reset": reset.tenants_reset, "records_cleaned": cleaned}
        audit_record(actor=self.actor(request), action="scheduler.reset_daily_quotas", details=body)
        return Response(body)
