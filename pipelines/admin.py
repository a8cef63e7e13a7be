"""Django admin for runs (list, detail with step logs and DQ results, retry and cancel actions),
schedules (next five run times, enable, disable and "run now" actions) and the scheduler's operations
view (``admin/pipelines/schedule/operations/``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from convergence.admin_mixins import ReadOnlyAdminMixin
from pipelines import scheduler, services
from pipelines.cron import CronError, next_runs, parse_cron, validate_timezone
from pipelines.loader import PipelineConfigError, PipelineNotFound
from pipelines.models import DQResult, PipelineRun, RunStatus, Schedule, StepLog
from pipelines.spec import ParameterError
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
class PipelineRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
    actions = ["enable_schedules", "disable_schedules", "run_now"]
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

    @admin.action(description="Run now (one extra run, counted against the quota)", permissions=["view"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        started = 0
        refused: list[str] = []
        for schedule in queryset.select_related("tenant"):
            try:
                scheduler.schedule_run_now(schedule=schedule, actor=staff_actor(request))
                started += 1
            except services.AdmissionRefused as exc:
                refused.append(f"{schedule.tenant_id} {schedule.pipeline}: {exc.message}")
            except (PipelineNotFound, PipelineConfigError, ParameterError, CronError):
                refused.append(f"{schedule.tenant_id} {schedule.pipeline}: the schedule no longer validates")
        self.message_user(
            request, f"Queued {started} run(s); they start as concurrency allows.", level=messages.SUCCESS
        )
        if refused:
            self.message_user(request, "Not started: " + "; ".join(refused), level=messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        operations = path(
            "operations/",
            self.admin_site.admin_view(self.operations_view),
            name="pipelines_schedule_operations",
        )
        return [operations, *super().get_urls()]

    def operations_view(self, request: HttpRequest) -> HttpResponse:
        """Scheduler health at a glance, with a server-rendered chart (inline SVG, no scripts)."""
        overview = scheduler.operations_overview()
        context = {
            **self.admin_site.each_context(request),
            "title": "Scheduler operations",
            "overview": overview,
            "oldest_queued": _age(overview.oldest_queued_age_s),
            "mirror_lag": "n/a" if overview.mirror_lag_s is None else _age(overview.mirror_lag_s),
            "chart": runs_chart(overview.days),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/pipelines/operations.html", context)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


#: Chart colours per status, in stacking order (bottom first).
CHART_STATUSES = (
    (RunStatus.COMPLETED, "#2e7d32"),
    (RunStatus.FAILED, "#c62828"),
    (RunStatus.SKIPPED, "#f9a825"),
    (RunStatus.CANCELLED, "#757575"),
    (RunStatus.RUNNING, "#1565c0"),
    (RunStatus.PENDING, "#64b5f6"),
    (RunStatus.QUEUED, "#b39ddb"),
)


@dataclass(frozen=True)
class ChartBar:
    x: int
    label: str
    total: int
    segments: list[tuple[int, int, str, str]]  # (y, height, colour, tooltip)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_height: int
    bar_width: int
    maximum: int
    bars: list[ChartBar]
    legend: list[tuple[str, str]]


def runs_chart(days: list[scheduler.DayCounts], *, plot_height: int = 160, bar_width: int = 28) -> Chart:
    """Stacked bars (one per day, one segment per status) laid out in SVG user units."""
    maximum = max((day.total for day in days), default=0) or 1
    gap = 10
    bars = []
    for index, day in enumerate(days):
        y = plot_height
        segments = []
        for status, colour in CHART_STATUSES:
            count = day.counts.get(status, 0)
            if not count:
                continue
            height = max(round(plot_height * count / maximum), 1)
            y -= height
            segments.append((y, height, colour, f"{day.day:%Y-%m-%d} {status}: {count}"))
        bars.append(
            ChartBar(
                x=40 + index * (bar_width + gap), label=f"{day.day:%m-%d}", total=day.total, segments=segments
            )
        )
    width = 40 + len(days) * (bar_width + gap)
    return Chart(
        width=width,
        height=plot_height + 40,
        plot_height=plot_height,
        bar_width=bar_width,
        maximum=maximum,
        bars=bars,
        legend=[(str(status), colour) for status, colour in CHART_STATUSES],
    )
