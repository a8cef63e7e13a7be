"""Django admin for runs (list, detail with step logs and DQ results, retry and cancel actions) and
schedules (next five run times, enable and disable actions)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from pipelines import services
from pipelines.cron import CronError, next_runs, parse_cron, validate_timezone
from pipelines.models import DQResult, PipelineRun, Schedule, StepLog
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


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("tenant", "pipeline", "cron", "timezone", "enabled", "next_run_at")
    list_filter = ("enabled", "timezone", "pipeline")
    search_fields = ("=id", "tenant__tenant_id", "pipeline")
    list_select_related = ("tenant",)
    actions = ["enable_schedules", "disable_schedules"]
    readonly_fields = (
        "id",
        "tenant",
        "pipeline",
        "cron",
        "timezone",
        "parameters",
        "enabled",
        "next_run_at",
        "last_run_at",
        "created_at",
        "updated_at",
        "next_five_run_times",
    )
    fields = readonly_fields

    @admin.display(description="next five run times")
    def next_five_run_times(self, obj: Schedule) -> str:
        try:
            times = next_runs(parse_cron(obj.cron), validate_timezone(obj.timezone), timezone.now(), 5)
        except CronError as exc:
            return f"invalid: {exc}"
        return format_html_join(
            mark_safe("<br>"), "{} UTC", ((moment.strftime("%Y-%m-%d %H:%M"),) for moment in times)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Schedule], enabled: bool) -> None:
        changed = 0
        for schedule in queryset.select_related("tenant"):
            if schedule.enabled != enabled:
                services.schedule_update(schedule=schedule, actor=staff_actor(request), enabled=enabled)
                changed += 1
        verb = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{verb} {changed} schedule(s).", level=messages.SUCCESS)

    @admin.action(description="Enable selected schedules", permissions=["view"])
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected schedules", permissions=["view"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, False)
