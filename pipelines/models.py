"""Runs, step logs and data-quality results. Postgres owns run state: every transition is a
conditional UPDATE on ``status`` (and ``attempt``), made by ``pipelines/services.py``."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q


class RunStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"
    SKIPPED = "SKIPPED", "Skipped"


ACTIVE_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)
TERMINAL_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED)


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULED = "scheduled", "Scheduled"
    BACKFILL = "backfill", "Backfill"


class PipelineRun(models.Model):
    pipeline_logging_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="runs")
    pipeline = models.CharField(max_length=200, help_text="provider/domain/pipeline")
    pipeline_id = models.CharField(max_length=300, help_text="{tenant_id}_{provider}_{domain}_{pipeline}")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    parameters = models.JSONField(default=dict, blank=True)
    user_id = models.CharField(max_length=128, blank=True, default="")
    priority = models.PositiveSmallIntegerField(default=0)
    attempt = models.PositiveIntegerField(
        default=0, help_text="Incremented by each claim; fences completion."
    )
    max_attempts = models.PositiveIntegerField(default=3)
    cancel_requested = models.BooleanField(default=False)
    error = models.CharField(max_length=1000, blank=True, default="")
    rows_processed = models.BigIntegerField(default=0)
    bytes_processed = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Last hand-over to the broker; the reaper re-sends stale PENDING runs.",
    )
    schedule = models.ForeignKey(
        "pipelines.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    scheduled_for = models.DateTimeField(
        null=True, blank=True, help_text="The schedule's fire time this run stands for (scheduled runs)."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="run_tenant_created_idx"),
            models.Index(fields=["tenant", "status"], name="run_tenant_status_idx"),
            models.Index(fields=["status", "created_at"], name="run_status_created_idx"),
            # The dispatcher's scan: a tenant's waiting runs, highest priority then oldest first.
            models.Index(
                F("tenant"),
                F("priority").desc(),
                F("created_at"),
                name="run_queued_idx",
                condition=Q(status="QUEUED"),
            ),
            # The reaper's scan: running runs by heartbeat age.
            models.Index(
                fields=["heartbeat_at"], name="run_running_heartbeat_idx", condition=Q(status="RUNNING")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[choice.value for choice in RunStatus]), name="run_status_valid"
            ),
            # One run per schedule fire time, whoever ticks (nulls are distinct: manual runs are free).
            models.UniqueConstraint(fields=["schedule", "scheduled_for"], name="run_schedule_slot_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline_id} {self.pipeline_logging_id}"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class StepStatus(models.TextChoices):
    RUNNING = "RUNNING", "Running"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"
    SKIPPED = "SKIPPED", "Skipped"
    CANCELLED = "CANCELLED", "Cancelled"


class StepLog(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="steps")
    attempt = models.PositiveIntegerField(help_text="The run attempt this step belongs to.")
    position = models.PositiveSmallIntegerField()
    step_id = models.CharField(max_length=64)
    ps_type = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    tries = models.PositiveSmallIntegerField(default=0, help_text="Executions, retries included.")
    rows_affected = models.BigIntegerField(default=0)
    bytes_processed = models.BigIntegerField(default=0)
    error = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["attempt", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "attempt", "step_id"], name="steplog_run_attempt_step_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step_id} ({self.status})"


class DQStatus(models.TextChoices):
    PASS = "PASS", "Pass"
    WARN = "WARN", "Warn"
    FAIL = "FAIL", "Fail"


class DQResult(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="dq_results")
    attempt = models.PositiveIntegerField()
    step_id = models.CharField(max_length=64)
    check_name = models.CharField(max_length=100)
    table = models.CharField(max_length=300, blank=True, default="")
    status = models.CharField(max_length=8, choices=DQStatus.choices)
    severity = models.CharField(max_length=8)
    observed = models.CharField(max_length=500, blank=True, default="")
    expected = models.CharField(max_length=500, blank=True, default="")
    message = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["run", "attempt"], name="dq_run_attempt_idx")]

    def __str__(self) -> str:
        return f"{self.check_name} {self.status}"


class Schedule(models.Model):
    """A tenant's recurring run of one pipeline. ``next_run_at`` is null while disabled; the scheduler
    tick claims enabled rows whose ``next_run_at`` has passed (``schedule_due_idx``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="schedules")
    pipeline = models.CharField(max_length=200, help_text="provider/domain/pipeline")
    cron = models.CharField(max_length=1000)
    timezone = models.CharField(max_length=64, default="UTC")
    parameters = models.JSONField(
        default=dict, blank=True, help_text='May hold relative dates: "today", "yesterday", "today-N".'
    )
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="schedule_tenant_created_idx"),
            models.Index(fields=["next_run_at"], name="schedule_due_idx", condition=Q(enabled=True)),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.pipeline} ({self.cron})"


class SchedulerState(models.Model):
    """When each scheduler job (``tick``, ``dispatch``, ``reap``, ``quota_reset``, ``retention``) last
    finished and what it did; read by the operations view. One row per job, upserted."""

    job = models.CharField(max_length=32, primary_key=True)
    last_run_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "scheduler state"
        verbose_name_plural = "scheduler state"

    def __str__(self) -> str:
        return f"{self.job} at {self.last_run_at:%Y-%m-%d %H:%M:%S}"
