"""Output shapes of runs, steps and DQ results (API.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from convergence.api.serializers import UTCDateTimeField
from pipelines.models import PipelineRun, Schedule


class StepOutputSerializer(serializers.Serializer):
    step_id = serializers.CharField()
    ps_type = serializers.CharField()
    status = serializers.CharField()
    started_at = UTCDateTimeField(allow_null=True)
    finished_at = UTCDateTimeField(allow_null=True)
    rows_affected = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)


class DQOutputSerializer(serializers.Serializer):
    step_id = serializers.CharField()
    check = serializers.CharField(source="check_name")
    table = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    observed = serializers.CharField(allow_blank=True)
    expected = serializers.CharField(allow_blank=True)
    severity = serializers.CharField()


class RunOutputSerializer(serializers.Serializer):
    pipeline_logging_id = serializers.UUIDField()
    pipeline_id = serializers.CharField()
    pipeline = serializers.CharField()
    tenant_id = serializers.CharField()
    status = serializers.CharField()
    trigger = serializers.CharField()
    parameters = serializers.DictField()
    user_id = serializers.CharField(allow_blank=True)
    created_at = UTCDateTimeField()
    started_at = UTCDateTimeField(allow_null=True)
    finished_at = UTCDateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    rows_processed = serializers.IntegerField()


class RunDetailOutputSerializer(RunOutputSerializer):
    steps = StepOutputSerializer(many=True, source="latest_steps")
    dq_results = DQOutputSerializer(many=True, source="latest_dq_results")


def run_representation(run: PipelineRun, *, detail: bool = False) -> dict[str, Any]:
    serializer = RunDetailOutputSerializer if detail else RunOutputSerializer
    return dict(serializer(run).data)


class RunAcceptedSerializer(serializers.Serializer):
    pipeline_logging_id = serializers.UUIDField()
    pipeline_id = serializers.CharField()
    status = serializers.CharField()
    status_url = serializers.CharField()


class CatalogEntrySerializer(serializers.Serializer):
    pipeline = serializers.CharField()
    description = serializers.CharField()
    parameters = serializers.DictField()
    default_schedule = serializers.CharField(required=False)


class ScheduleOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pipeline = serializers.CharField()
    cron = serializers.CharField()
    timezone = serializers.CharField()
    parameters = serializers.DictField()
    enabled = serializers.BooleanField()
    next_run_at = UTCDateTimeField(allow_null=True)
    last_run_at = UTCDateTimeField(allow_null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


def schedule_representation(schedule: Schedule) -> dict[str, Any]:
    return dict(ScheduleOutputSerializer(schedule).data)
