"""OpenAPI helpers: the error envelope as a documented response."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

ERROR_RESPONSES: dict[int, Any] = {
    code: inline_serializer(
        f"Error{code}",
        {
            "error": inline_serializer(
                f"ErrorBody{code}",
                {
                    "code": serializers.CharField(),
                    "message": serializers.CharField(),
                    "details": serializers.DictField(),
                },
            )
        },
    )
    for code in (400, 401, 403, 404, 409, 413, 429, 503)
}


def error_responses(*codes: int) -> dict[int, Any]:
    """``{status: envelope schema}`` for ``extend_schema(responses=...)``."""
    return {code: ERROR_RESPONSES[code] for code in codes}
