"""Authentication for the API: ``X-Admin-Key`` (staff automation) and ``X-API-Key`` (tenants), and the
base views that apply them. A principal always carries what it may touch; nothing defaults."""

from __future__ import annotations

import datetime as dt
import string
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convergence.api.errors import InvalidRequest, NotAuthenticatedError, PermissionDeniedError
from tenants import keys
from tenants.actors import Actor
from tenants.models import ActorType, AdminKey, Tenant, TenantApiKey
from tenants.selectors import api_key_for_authentication, usage_view
from tenants.services import admin_key_touch, api_key_touch

TENANT_AUTH_HEADER = 'ApiKey header="X-API-Key"'
ADMIN_AUTH_HEADER = 'ApiKey header="X-Admin-Key"'
MAX_USER_ID_LENGTH = 128
_PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


@dataclass(frozen=True)
class AdminPrincipal:
    key_id: str
    is_authenticated: bool = True


@dataclass(frozen=True)
class TenantPrincipal:
    key_id: str
    tenant: Tenant
    is_authenticated: bool = True


def _invalid_tenant_key() -> NotAuthenticatedError:
    return NotAuthenticatedError(
        "Invalid, revoked or expired API key",
        code="invalid_api_key",
        headers={"WWW-Authenticate": TENANT_AUTH_HEADER},
    )


def _stale(last_used_at: dt.datetime | None, now: dt.datetime) -> bool:
    return (
        last_used_at is None or (now - last_used_at).total_seconds() >= settings.API_KEY_LAST_USED_INTERVAL_S
    )


class TenantKeyAuthentication(BaseAuthentication):
    """``X-API-Key: sk_{tenant_id}_{32 base62}``. A malformed key is refused before any query; a
    well-formed one is looked up by its SHA-256 (unique index) and must be active, unexpired and
    belong to the tenant it names."""

    def authenticate(self, request: Request) -> tuple[TenantPrincipal, TenantApiKey] | None:
        raw = request.META.get("HTTP_X_API_KEY")
        if raw is None:
            return None
        tenant_hint = keys.tenant_id_from_key(raw)
        if tenant_hint is None:
            raise _invalid_tenant_key()
        key: TenantApiKey | None = api_key_for_authentication(key_hash=keys.hash_key(raw))
        now = timezone.now()
        if (
            key is None
            or not key.is_active
            or key.revoked_at is not None
            or (key.expires_at is not None and key.expires_at <= now)
            or key.tenant_id != tenant_hint
        ):
            raise _invalid_tenant_key()
        if _stale(key.last_used_at, now):
            api_key_touch(key_id=key.pk, now=now)
        return TenantPrincipal(key_id=str(key.pk), tenant=key.tenant), key

    def authenticate_header(self, request: Request) -> str:
        return TENANT_AUTH_HEADER


class AdminKeyAuthentication(BaseAuthentication):
    """``X-Admin-Key``: the ``ADMIN_API_KEY`` setting or an active ``AdminKey``. Compared as SHA-256
    digests in constant time."""

    def authenticate(self, request: Request) -> tuple[AdminPrincipal, str] | None:
        raw = request.META.get("HTTP_X_ADMIN_KEY")
        if raw is None:
            return None
        digest = keys.hash_key(raw)
        configured = settings.ADMIN_API_KEY
        if configured and keys.digests_equal(digest, keys.hash_key(configured)):
            return AdminPrincipal(key_id="env:ADMIN_API_KEY"), "env"
        if keys.is_admin_key_format(raw):
            row = AdminKey.objects.filter(key_hash=digest, is_active=True).first()
            if row is not None and keys.digests_equal(row.key_hash, digest):
                now = timezone.now()
                if _stale(row.last_used_at, now):
                    admin_key_touch(key_id=row.pk, now=now)
                return AdminPrincipal(key_id=str(row.pk)), str(row.pk)
        raise NotAuthenticatedError(
            "Invalid admin key", code="invalid_admin_key", headers={"WWW-Authenticate": ADMIN_AUTH_HEADER}
        )

    def authenticate_header(self, request: Request) -> str:
        return ADMIN_AUTH_HEADER


def validated_user_id(request: Request) -> str:
    """``X-User-ID`` (optional, audit only): at most 128 printable characters, else 400."""
    user_id = request.META.get("HTTP_X_USER_ID", "")
    if len(user_id) > MAX_USER_ID_LENGTH or any(char not in _PRINTABLE for char in user_id):
        raise InvalidRequest(
            "X-User-ID must be at most 128 printable characters",
            code="invalid_request",
            details={"X-User-ID": ["At most 128 printable characters."]},
        )
    return user_id


class _BaseApi(APIView):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.require_principal(request)
        request.user_id = validated_user_id(request)  # type: ignore[attr-defined]

    def require_principal(self, request: Request) -> None:
        raise NotImplementedError

    def actor(self, request: Request) -> Actor:
        principal = request.user
        actor_type = ActorType.ADMIN_KEY if isinstance(principal, AdminPrincipal) else ActorType.TENANT_KEY
        return Actor(
            type=actor_type,
            id=getattr(principal, "key_id", ""),
            user_id=getattr(request, "user_id", ""),
            request_id=getattr(request._request, "request_id", ""),
        )


class AdminApi(_BaseApi):
    """Base for ``X-Admin-Key`` endpoints."""

    authentication_classes = [AdminKeyAuthentication]

    def require_principal(self, request: Request) -> None:
        if not isinstance(request.user, AdminPrincipal):
            raise NotAuthenticatedError(
                "X-Admin-Key header is required",
                code="missing_api_key",
                headers={"WWW-Authenticate": ADMIN_AUTH_HEADER},
            )


class TenantApi(_BaseApi):
    """Base for ``X-API-Key`` endpoints. ``tenant_id`` in the path must be the key's own tenant
    (403 ``tenant_mismatch`` otherwise, whether or not that tenant exists). Every response carries the
    quota headers."""

    authentication_classes = [TenantKeyAuthentication]

    def require_principal(self, request: Request) -> None:
        if not isinstance(request.user, TenantPrincipal):
            raise NotAuthenticatedError(
                "X-API-Key header is required",
                code="missing_api_key",
                headers={"WWW-Authenticate": TENANT_AUTH_HEADER},
            )
        path_tenant = self.kwargs.get("tenant_id")
        if path_tenant is not None and path_tenant != request.user.tenant.tenant_id:
            raise PermissionDeniedError("This key belongs to another tenant", code="tenant_mismatch")

    def tenant(self, request: Request) -> Tenant:
        principal = request.user
        assert isinstance(principal, TenantPrincipal)
        return principal.tenant

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        principal = getattr(request, "_user", None)
        if isinstance(principal, TenantPrincipal):
            usage = getattr(request, "quota_usage", None) or usage_view(tenant=principal.tenant)
            response["X-Quota-Daily-Limit"] = str(usage.daily_limit)
            response["X-Quota-Daily-Remaining"] = str(usage.daily_remaining)
            response["X-Quota-Monthly-Remaining"] = str(usage.monthly_remaining)
            response["X-Quota-Concurrent-Limit"] = str(usage.concurrent_limit)
        return response
