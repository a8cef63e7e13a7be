"""Read-side queries for billing sources."""

from __future__ import annotations

from django.db.models import QuerySet

from billing.models import BillingSource
from tenants.models import Tenant


def source_list(*, tenant: Tenant) -> QuerySet[BillingSource]:
    """The tenant's sources, one per provider at most, ordered by provider."""
    return BillingSource.objects.filter(tenant=tenant).order_by("provider")


def source_get(*, tenant: Tenant, provider: str) -> BillingSource | None:
    return BillingSource.objects.filter(tenant=tenant, provider=provider).first()
