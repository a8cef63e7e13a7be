"""API exceptions carrying the stable error codes of API.md."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException


class ApiError(APIException):
    """An error with an explicit status, contract code, message and details."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"
    default_detail = "Invalid request"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=message or self.default_detail, code=code or self.default_code)
        if status_code is not None:
            self.status_code = status_code
        self.error_code = code or self.default_code
        self.message = message or str(self.default_detail)
        self.details = details or {}
        self.headers = headers or {}


class InvalidRequest(ApiError):
    status_code = 400
    default_code = "invalid_request"
    default_detail = "Invalid request"


class NotAuthenticatedError(ApiError):
    status_code = 401
    default_code = "missing_api_key"
    default_detail = "Authentication required"


class PermissionDeniedError(ApiError):
    status_code = 403
    default_code = "forbidden"
    default_detail = "Not allowed"


class NotFound(ApiError):
    status_code = 404
    default_code = "not_found"
    default_detail = "Not found"


class Conflict(ApiError):
    status_code = 409
    default_code = "conflict"
    default_detail = "Conflict"


class QuotaExceeded(ApiError):
    status_code = 429
    default_code = "quota_exceeded"
    default_detail = "Quota exceeded"


class ServiceUnavailable(ApiError):
    status_code = 503
    default_code = "service_unavailable"
    default_detail = "A dependency is unavailable"
