"""Serializer helpers shared by every app's API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """Rejects keys it does not declare (400, keyed by the unknown field), so a misspelt or
    protected field is never silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictInputSchema(OpenApiSerializerExtension):
    """Documents what ``StrictInputSerializer`` enforces: no properties beyond the declared ones."""

    target_class = StrictInputSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        if not type(self.target).__dict__.get("__doc__"):
            schema.pop("description", None)  # inspect.getdoc would show this base class's docstring
        return schema


class UTCDateTimeField(serializers.DateTimeField):
    """ISO 8601 in UTC with a ``Z`` suffix, as API.md shows."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("format", "%Y-%m-%dT%H:%M:%SZ")
        kwargs.setdefault("default_timezone", dt.UTC)
        super().__init__(**kwargs)


def validated_data(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validate ``data`` with the serializer (DRF's ValidationError → the 400 envelope) and return it."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
