"""Logging helpers: per-request/run context on every record, and redaction of secrets."""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.views.debug import SafeExceptionReporterFilter as _DjangoFilter

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039

# Tenant API keys (sk_{tenant}_{32 base62}), admin keys (ak_{32 base62}) and URL passwords.
_SECRET_PATTERNS = [
    (re.compile(r"\bsk_[a-z][a-z0-9_]{2,49}_[A-Za-z0-9]{32}\b"), "sk_[REDACTED]"),
    (re.compile(r"\bak_[A-Za-z0-9]{32,}\b"), "ak_[REDACTED]"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[REDACTED]@"),
]


def redact(text: str) -> str:
    """Replace anything that looks like a key or a URL password."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@contextmanager
def log_context(**values: str) -> Iterator[None]:
    """Attach values (request_id, tenant, run, step) to every log record made inside the block."""
    merged = {**_context.get(), **{key: value for key, value in values.items() if value}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for key in ("request_id", "tenant", "run", "step"):
            if not hasattr(record, key):
                setattr(record, key, context.get(key, "-"))
        return True


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            exc_text = redact(str(exc))
            if exc_text != str(exc):
                record.exc_info = None
                record.exc_text = f"{type(exc).__name__}: {exc_text}"
        return True


class SafeExceptionReporterFilter(_DjangoFilter):
    """Django's filter misses URL settings that embed passwords (DATABASE_URL, CELERY_BROKER_URL)."""

    hidden_settings = re.compile(r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DSN", flags=re.I)

    def get_safe_settings(self) -> dict[str, Any]:
        return super().get_safe_settings()
