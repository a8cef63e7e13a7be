"""Request plumbing that must run before Django or DRF read the body."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from convergence.api.exceptions import error_response
from convergence.logging import log_context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Gives every request an id (a sane incoming ``X-Request-ID`` or a new UUID), echoes it in the
    response and attaches it to log records."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        with log_context(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class BodySizeLimitMiddleware:
    """Rejects bodies over ``MAX_BODY_BYTES`` with 413 before anything reads them. Bodies without a
    Content-Length are bounded by ``DATA_UPLOAD_MAX_MEMORY_SIZE`` when read (also 413)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return error_response(400, "invalid_request", "Invalid Content-Length header")
        if size > settings.MAX_BODY_BYTES:
            return error_response(
                413, "payload_too_large", f"Request body exceeds {settings.MAX_BODY_BYTES} bytes"
            )
        return self.get_response(request)
