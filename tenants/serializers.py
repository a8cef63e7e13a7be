"""Output shapes of tenant objects and key metadata (API.md)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from convergence.api.serializers import UTCDateTimeField
from tenants.models import CloudCredential, Tenant, TenantApiKey
from tenants.selectors import current_period_start, usage_view


class SubscriptionOutputSerializer(serializers.Serializer):
    plan = serializers.CharField()
    status = serializers.CharField()
    daily_limit = serializers.IntegerField()
    monthly_limit = serializers.IntegerField()
    concurrent_limit = serializers.IntegerField()
    current_period_start = UTCDateTimeField()


class UsageOutputSerializer(serializers.Serializer):
    runs_today = serializers.IntegerField()
    runs_this_period = serializers.IntegerField()
    running = serializers.IntegerField()


class TenantOutputSerializer(serializers.Serializer):
    tenant_id = serializers.CharField()
    description = serializers.CharField()
    contact_email = serializers.CharField()
    dataset_id = serializers.CharField()
    created_at = UTCDateTimeField()
    subscription = SubscriptionOutputSerializer()
    usage = UsageOutputSerializer()


def tenant_representation(tenant: Tenant) -> dict[str, Any]:
    subscription = tenant.subscription
    plan = subscription.plan
    usage = usage_view(tenant=tenant)
    period_start = current_period_start(anchor=subscription.current_period_start, now=timezone.now())
    data = {
        "tenant_id": tenant.tenant_id,
        "description": tenant.description,
        "contact_email": tenant.contact_email,
        "dataset_id": tenant.dataset_id,
        "created_at": tenant.created_at,
        "subscription": {
            "plan": plan.code,
            "status": subscription.status,
            "daily_limit": plan.daily_limit,
            "monthly_limit": plan.monthly_limit,
            "concurrent_limit": plan.concurrent_limit,
            "current_period_start": period_start,
        },
        "usage": {
            "runs_today": usage.runs_today,
            "runs_this_period": usage.runs_this_period,
            "running": usage.running,
        },
    }
    return dict(TenantOutputSerializer(data).data)


class ApiKeyOutputSerializer(serializers.Serializer):
    tenant_api_key_id = serializers.UUIDField(source="id")
    tenant_id = serializers.CharField()
    tenant_api_key_hash = serializers.CharField(source="key_hash")
    prefix = serializers.CharField()
    description = serializers.CharField()
    is_active = serializers.BooleanField()
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(allow_null=True)
    last_used_at = UTCDateTimeField(allow_null=True)
    revoked_at = UTCDateTimeField(allow_null=True)


class ApiKeyCreatedSerializer(serializers.Serializer):
    api_key = serializers.CharField(help_text="Shown only in this response; store it now.")
    tenant_api_key_hash = serializers.CharField()
    tenant_api_key_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    description = serializers.CharField()
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(allow_null=True)


def api_key_created_representation(key: TenantApiKey, raw: str) -> dict[str, Any]:
    return dict(
        ApiKeyCreatedSerializer(
            {
                "api_key": raw,
                "tenant_api_key_hash": key.key_hash,
                "tenant_api_key_id": key.id,
                "tenant_id": key.tenant_id,
                "description": key.description,
                "created_at": key.created_at,
                "expires_at": key.expires_at,
            }
        ).data
    )


class CredentialOutputSerializer(serializers.Serializer):
    """Credential metadata. The secret and its envelope are never part of any response."""

    id = serializers.IntegerField()
    provider = serializers.CharField()
    name = serializers.CharField()
    fingerprint = serializers.CharField()
    created_at = UTCDateTimeField()


def credential_representation(credential: CloudCredential) -> dict[str, Any]:
    return dict(CredentialOutputSerializer(credential).data)
