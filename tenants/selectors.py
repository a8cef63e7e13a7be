"""Read-side queries for tenants, subscriptions, usage and keys."""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Field, Model, QuerySet
from django.utils import timezone

from tenants.models import CloudCredential, SubscriptionStatus, Tenant, TenantApiKey, TenantUsage


def tenant_queryset() -> QuerySet[Tenant]:
    return Tenant.objects.select_related("subscription__plan", "usage")


def tenant_get(*, tenant_id: str) -> Tenant | None:
    """The tenant with its subscription, plan and usage in one query, or None."""
    return tenant_queryset().filter(tenant_id=tenant_id).first()


def tenant_list() -> QuerySet[Tenant]:
    return tenant_queryset().order_by("tenant_id")


@dataclass(frozen=True)
class UsageView:
    """Usage as of now: counters from a past day or period read as zero until the next write."""

    runs_today: int
    runs_this_period: int
    running: int
    daily_limit: int
    monthly_limit: int
    concurrent_limit: int

    @property
    def daily_remaining(self) -> int:
        return max(self.daily_limit - self.runs_today, 0)

    @property
    def monthly_remaining(self) -> int:
        return max(self.monthly_limit - self.runs_this_period, 0)


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Same day-of-month ``months`` later, clamped to the month's last day (Jan 31 + 1 = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def current_period_start(*, anchor: dt.datetime, now: dt.datetime) -> dt.datetime:
    """The start of the billing period containing ``now`` for a subscription anchored at ``anchor``
    (periods restart on each monthly anniversary)."""
    months = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    start = add_months(anchor, max(months, 0))
    if start > now:
        start = add_months(anchor, max(months - 1, 0))
    return start


def current_counts(*, tenant: Tenant, now: dt.datetime | None = None) -> tuple[int, int]:
    """``(runs_today, runs_this_period)`` as of now: counters left from a past day or period read as
    zero (they are reset on the next admission or by the quota reset)."""
    now = now or timezone.now()
    usage: TenantUsage = tenant.usage
    today = now.astimezone(dt.UTC).date()
    period = current_period_start(anchor=tenant.subscription.current_period_start, now=now)
    return (
        usage.runs_today if usage.day == today else 0,
        usage.runs_this_period if usage.period_start >= period else 0,
    )


def next_period_start(*, anchor: dt.datetime, now: dt.datetime) -> dt.datetime:
    """The next monthly anniversary of ``anchor`` after ``now`` (when the period count resets)."""
    months = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    candidate = add_months(anchor, max(months, 0))
    while candidate <= now:
        months += 1
        candidate = add_months(anchor, max(months, 0))
    return candidate


def usage_view(*, tenant: Tenant, now: dt.datetime | None = None) -> UsageView:
    plan = tenant.subscription.plan
    runs_today, runs_this_period = current_counts(tenant=tenant, now=now)
    return UsageView(
        runs_today=runs_today,
        runs_this_period=runs_this_period,
        running=tenant.usage.running,
        daily_limit=plan.daily_limit,
        monthly_limit=plan.monthly_limit,
        concurrent_limit=plan.concurrent_limit,
    )


def subscription_is_active(*, tenant: Tenant, now: dt.datetime | None = None) -> bool:
    """ACTIVE, or TRIAL whose trial has not ended."""
    subscription = tenant.subscription
    if subscription.status == SubscriptionStatus.ACTIVE:
        return True
    if subscription.status == SubscriptionStatus.TRIAL:
        return subscription.trial_ends_at is None or subscription.trial_ends_at > (now or timezone.now())
    return False


def api_key_list(*, tenant_id: str | None = None) -> QuerySet[TenantApiKey]:
    keys = TenantApiKey.objects.select_related("tenant").order_by("-created_at")
    if tenant_id is not None:
        keys = keys.filter(tenant_id=tenant_id)
    return keys


def api_key_get_by_hash(*, key_hash: str) -> TenantApiKey | None:
    return TenantApiKey.objects.filter(key_hash=key_hash).first()


def _auth_columns() -> list[tuple[type[Model], list[Field[Any, Any]]]]:
    from tenants.models import Plan, Subscription, TenantApiKey

    return [
        (model, [field for field in model._meta.concrete_fields if field.attname != "encrypted_key"])
        for model in (TenantApiKey, Tenant, Subscription, Plan, TenantUsage)
    ]


@functools.cache
def _auth_query(vendor: str) -> tuple[str, tuple[tuple[type[Model], list[Field[Any, Any]], int, int], ...]]:
    quote = connection.ops.quote_name
    aliases = ("k", "t", "s", "p", "u")
    select, layout, position = [], [], 0
    for (model, fields), alias in zip(_auth_columns(), aliases, strict=True):
        select += [f"{alias}.{quote(str(field.column))}" for field in fields]
        layout.append((model, fields, position, position + len(fields)))
        position += len(fields)
    sql = (
        f"SELECT {', '.join(select)} FROM tenants_tenantapikey k "
        "JOIN tenants_tenant t ON t.tenant_id = k.tenant_id "
        "JOIN tenants_subscription s ON s.tenant_id = t.tenant_id "
        "JOIN tenants_plan p ON p.id = s.plan_id "
        "JOIN tenants_tenantusage u ON u.tenant_id = t.tenant_id "
        "WHERE k.key_hash = %s"
    )
    return sql, tuple(layout)


def api_key_for_authentication(*, key_hash: str) -> Any:
    """The key with its tenant, subscription, plan and usage attached (``key.tenant.subscription.plan``,
    ``key.tenant.usage``), or None. One query, like ``select_related`` but written out: this runs on
    every tenant request, and the ORM spent ~3 ms of CPU compiling and hydrating it (this takes
    ~0.5 ms). The encrypted key copy is not loaded."""
    from tenants.models import Subscription, TenantApiKey

    sql, layout = _auth_query(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    instances = []
    for model, fields, start, end in layout:
        values = []
        for field, value in zip(fields, row[start:end], strict=True):
            column = field.get_col(model._meta.db_table)
            for converter in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
                value = converter(value, column, connection)
            values.append(value)
        instances.append(model.from_db(connection.alias, [field.attname for field in fields], values))
    key, tenant, subscription, plan, usage = instances
    TenantApiKey.tenant.field.set_cached_value(key, tenant)
    Subscription.plan.field.set_cached_value(subscription, plan)
    Subscription.tenant.field.set_cached_value(subscription, tenant)
    Tenant.subscription.related.set_cached_value(tenant, subscription)
    Tenant.usage.related.set_cached_value(tenant, usage)
    TenantUsage.tenant.field.set_cached_value(usage, tenant)
    return key


def credential_list(*, tenant: Tenant) -> QuerySet[CloudCredential]:
    """The tenant's credentials, metadata only (the envelope column is not loaded)."""
    return (
        CloudCredential.objects.filter(tenant=tenant)
        .defer("encrypted_secret")
        .order_by("provider", "name", "pk")
    )


def credential_get(*, tenant: Tenant, credential_id: int) -> CloudCredential | None:
    """The tenant's credential by id, or None (also for another tenant's: never confirm it exists)."""
    return credential_list(tenant=tenant).filter(pk=credential_id).first()
