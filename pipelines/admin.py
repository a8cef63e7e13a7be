"""Django admin for runs: list, detail with step logs and DQ results, retry and cancel actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from pipelines import services
from pipelines.models import DQResult, PipelineRun, StepLog
from tenants.admin import staff_actor


class StepLogInline(admin.TabularInline):
    model = StepLog
    extra = 0
    can_delete = False
    fields = (
        "attempt",
        "position",
        "step_id",
        "ps_type",
        "status",
        "tries",
        "rows_affected",
        "bytes_processed",
        "started_at",
        "finished_at",
        "error",
    )
    readonly_fields = fields
    ordering = ("-attempt", "position")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DQResultInline(admin.TabularInline):
    model = DQResult
    extra = 0
    can_delete = False
    fields = (
        "attempt",
        "step_id",
        "check_name",
        "table",
        "status",
        "severity",
        "observed",
        "expected",
        "message",
    )
    readonly_fields = fields
    ordering = ("-attempt", "created_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = (
        "pipeline_logging_id",
        "tenant",
        "pipeline",
        "status",
        "trigger",
        "attempt",
        "created_at",
        "duration",
    )
    list_filter = ("status", "trigger", "pipeline", "created_at")
    search_fields = ("=pipeline_logging_id", "tenant__tenant_id", "pipeline_id")
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    inlines = [StepLogInline, DQResultInline]
    actions = ["retry_runs", "cancel_runs"]
    readonly_fields = (
        "pipeline_logging_id",
        "tenant",
        "pipeline",
        "pipeline_id",
        "status",
        "trigger",
        "parameters",
        "user_id",
        "priority",
        "attempt",
        "max_attempts",
        "error",
        "rows_processed",
        "bytes_processed",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "duration",
    )
    fields = readonly_fields

    @admin.display(description="duration")
    def duration(self, obj: PipelineRun) -> str:
        milliseconds = obj.duration_ms
        return "-" if milliseconds is None else f"{milliseconds / 1000:.1f} s"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Retry selected runs (new run, same parameters)", permissions=["view"])
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[PipelineRun]) -> None:
        retried = skipped = 0
        for run in queryset.select_related("tenant"):
            try:
                services.run_retry(run=run, actor=staff_actor(request))
                retried += 1
            except services.RunNotFinishedError:
                skipped += 1
        self.message_user(
            request,
            f"Started {retried} new run(s); {skipped} still in progress were left alone.",
            level=messages.SUCCESS,
        )

    @admin.action(description="Cancel selected runs", permissions=["view"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[PipelineRun]) -> None:
        cancelled = finished = 0
        for run in queryset:
            try:
                services.run_cancel(run=run, actor=staff_actor(request))
                cancelled += 1
            except services.RunFinishedError:
                finished += 1
        self.message_user(
            request, f"Cancelled {cancelled} run(s); {finished} had already finished.", level=messages.SUCCESS
        )
