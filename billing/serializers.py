"""Output shapes of billing sources (API.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing.models import BillingSource
from convergence.api.serializers import UTCDateTimeField


class SourceOutputSerializer(serializers.Serializer):
    provider = serializers.CharField()
    location = serializers.CharField()
    credential_id = serializers.IntegerField(allow_null=True)
    updated_at = UTCDateTimeField()


def source_representation(source: BillingSource) -> dict[str, Any]:
    return dict(SourceOutputSerializer(source).data)
