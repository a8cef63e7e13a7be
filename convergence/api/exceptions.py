"""One place shapes every error into the envelope of API.md:
``{"error": {"code", "message", "details"}}``. Nothing internal (traceback, SQL, path) leaks."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from convergence.api.errors import ApiError

logger = logging.getLogger(__name__)

_DEFAULT_CODES = {
    400: "invalid_request",
    401: "missing_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """A plain Django JSON response in the envelope, for use outside DRF (middleware, handlers)."""
    response = JsonResponse(error_body(code, message, details), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(key): _as_messages(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": [str(item) for item in detail]}
    return {}


def _as_messages(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_messages(item) if isinstance(item, dict | list) else str(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _as_messages(item) for key, item in value.items()}
    return [str(value)]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every error becomes the envelope with a stable code."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, exc.message, exc.details)
        return Response(body, status=exc.status_code, headers=exc.headers or None)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "Request body is too large"), status=413)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found"), status=404)
    if isinstance(exc, PermissionDenied):
        return Response(error_body("forbidden", "Not allowed"), status=403)
    if isinstance(exc, DjangoValidationError):
        return Response(
            error_body("invalid_request", "Invalid request", {"non_field_errors": exc.messages}), status=400
        )
    if isinstance(exc, drf_exceptions.APIException):
        status_code = exc.status_code
        code = _DEFAULT_CODES.get(status_code, "error")
        details: dict[str, Any] = {}
        if isinstance(exc, drf_exceptions.ValidationError):
            message = "Invalid request parameters"
            details = _flatten_details(exc.detail)
        elif isinstance(exc, drf_exceptions.ParseError):
            message = "Malformed JSON body"
        elif isinstance(exc, drf_exceptions.MethodNotAllowed):
            message = f"Method {context['request'].method} not allowed"
        elif isinstance(exc, drf_exceptions.UnsupportedMediaType):
            message = "Unsupported media type; send application/json"
        elif isinstance(exc, drf_exceptions.Throttled):
            message = "Too many requests"
            wait = getattr(exc, "wait", None)
            if wait is not None:
                headers["Retry-After"] = str(int(wait))
        else:
            message = str(exc.detail) if isinstance(exc.detail, str) else "Request failed"
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        return Response(error_body(code, message, details), status=status_code, headers=headers or None)
    return None


def _request_id(request: HttpRequest) -> str:
    return str(getattr(request, "request_id", ""))


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(400, "invalid_request", "Bad request")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(403, "forbidden", "Not allowed")


@csrf_exempt  # also the catch-all route: a POST to an unknown URL is a JSON 404, not a CSRF 403 page
def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(404, "not_found", "Not found")


def handler500(request: HttpRequest) -> JsonResponse:
    return error_response(500, "internal_error", f"Internal error (request {_request_id(request)})")


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """CSRF_FAILURE_VIEW: a refused form post answers in the envelope too (API views are exempt)."""
    return error_response(403, "forbidden", "CSRF verification failed")
