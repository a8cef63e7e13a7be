"""OpenAPI helpers: the error envelope as a documented response."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

from convergence.api.pagination import PageNumberPagination

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


# DRF page-number pagination as the list endpoints apply it (a page past the end is a 404).
PAGE_PARAMETERS = [
    OpenApiParameter("page", {"type": "integer", "minimum": 1}, required=False, description="1-based page"),
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1},
        required=False,
        description=f"Items per page (at most {PageNumberPagination.max_page_size})",
    ),
]


def paginated_response(name: str, results: serializers.Serializer) -> Any:
    """The page envelope of API.md, ``{"count", "next", "previous", "results"}``, around ``results``
    (a ``many=True`` serializer), for ``extend_schema(responses={200: ...})``."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": results,
        },
    )
