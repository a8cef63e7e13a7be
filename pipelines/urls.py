from __future__ import annotations

from django.urls import path, register_converter

from pipelines import apis


class SegmentConverter:
    """One lowercase identifier segment: rejects '..', dots and anything encoded."""

    regex = "[a-z][a-z0-9_]{0,63}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SegmentConverter, "segment")

urlpatterns = [
    path("pipelines/catalog", apis.CatalogApi.as_view(), name="pipelines-catalog"),
    path(
        "pipelines/run/<str:tenant_id>/<segment:provider>/<segment:domain>/<segment:pipeline>",
        apis.RunTriggerApi.as_view(),
        name="pipelines-run",
    ),
    path("pipelines/runs", apis.RunCollectionApi.as_view(), name="pipelines-runs"),
    path("pipelines/runs/<str:run_id>", apis.RunDetailApi.as_view(), name="pipelines-run-detail"),
    path("pipelines/runs/<str:run_id>/cancel", apis.RunCancelApi.as_view(), name="pipelines-run-cancel"),
    path("pipelines/schedules", apis.ScheduleCollectionApi.as_view(), name="pipelines-schedules"),
    path(
        "pipelines/schedules/<str:schedule_id>",
        apis.ScheduleDetailApi.as_view(),
        name="pipelines-schedule-detail",
    ),
    path("scheduler/trigger", apis.SchedulerTriggerApi.as_view(), name="scheduler-trigger"),
    path("scheduler/process-queue", apis.SchedulerProcessQueueApi.as_view(), name="scheduler-process-queue"),
    path(
        "scheduler/reset-daily-quotas", apis.SchedulerResetQuotasApi.as_view(), name="scheduler-reset-quotas"
    ),
]
