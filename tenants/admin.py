"""Django admin for staff: tenants, plans, keys and the audit log. Writes go through services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.costs import CHART_DAYS, cost_chart, daily_provider_costs, provider_quality
from convergence.admin_mixins import ReadOnlyAdminMixin
from convergence.warehouse import WarehouseError
from tenants import services
from tenants.actors import Actor
from tenants.models import (
    ActorType,
    AdminKey,
    AuditLog,
    CloudCredential,
    Plan,
    PlanCode,
    Subscription,
    SubscriptionStatus,
    Tenant,
    TenantApiKey,
    TenantUsage,
)
from tenants.selectors import current_counts, usage_view


def staff_actor(request: HttpRequest) -> Actor:
    username = getattr(request.user, "username", "") or "staff"
    return Actor(
        type=ActorType.STAFF, id=username, user_id=username, request_id=getattr(request, "request_id", "")
    )


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "daily_limit",
        "monthly_limit",
        "concurrent_limit",
        "priority",
        "updated_at",
    )
    list_editable = ("daily_limit", "monthly_limit", "concurrent_limit")
    ordering = ("-priority",)
    readonly_fields = ("created_at", "updated_at")

    def has_delete_permission(self, request: HttpRequest, obj: Plan | None = None) -> bool:
        return False


class SubscriptionInline(admin.StackedInline):
    model = Subscription
    can_delete = False
    extra = 0
    max_num = 1
    fields = ("plan", "status", "started_at", "current_period_start", "trial_ends_at", "updated_at")
    readonly_fields = ("started_at", "current_period_start", "trial_ends_at", "updated_at")


class UsageInline(admin.StackedInline):
    model = TenantUsage
    can_delete = False
    extra = 0
    max_num = 1
    verbose_name_plural = "usage"
    fields = ("runs_today_now", "runs_this_period_now", "running", "day", "period_start", "updated_at")
    readonly_fields = fields

    @admin.display(description="runs today")
    def runs_today_now(self, obj: TenantUsage) -> str:
        usage = usage_view(tenant=obj.tenant)
        return f"{usage.runs_today} / {usage.daily_limit}"

    @admin.display(description="runs this period")
    def runs_this_period_now(self, obj: TenantUsage) -> str:
        usage = usage_view(tenant=obj.tenant)
        return f"{usage.runs_this_period} / {usage.monthly_limit}"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApiKeyInline(admin.TabularInline):
    model = TenantApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("prefix", "description", "is_active", "created_at", "expires_at", "last_used_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TenantCreationForm(forms.ModelForm):
    plan = forms.ChoiceField(choices=PlanCode.choices, initial=PlanCode.STARTER)
    subscription_status = forms.ChoiceField(
        choices=[(SubscriptionStatus.ACTIVE, "Active"), (SubscriptionStatus.TRIAL, "Trial")],
        initial=SubscriptionStatus.ACTIVE,
    )

    class Meta:
        model = Tenant
        fields = ("tenant_id", "description", "contact_email")

    def clean_tenant_id(self) -> str:
        tenant_id = str(self.cleaned_data["tenant_id"])
        if Tenant.objects.filter(tenant_id=tenant_id).exists():
            raise ValidationError("A tenant with this id already exists.")
        return tenant_id


class PlanFilter(admin.SimpleListFilter):
    title = "plan"
    parameter_name = "plan"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(code, label) for code, label in PlanCode.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> QuerySet[Tenant]:
        return queryset.filter(subscription__plan__code=self.value()) if self.value() else queryset


class SubscriptionStatusFilter(admin.SimpleListFilter):
    title = "subscription status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(code, label) for code, label in SubscriptionStatus.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> QuerySet[Tenant]:
        return queryset.filter(subscription__status=self.value()) if self.value() else queryset


def tenant_cost_context(*, tenant: Tenant) -> dict[str, Any]:
    """The tenant page's cost section: daily BilledCost per provider for the last 30 complete UTC days,
    ending yesterday as the exports do (one warehouse query; a warehouse failure becomes a note, never a
    broken page) and each provider's latest DQ state."""
    context: dict[str, Any] = {"cost_chart": None, "cost_chart_error": "", "cost_chart_days": CHART_DAYS}
    yesterday = timezone.now().astimezone(dt.UTC).date() - dt.timedelta(days=1)
    try:
        daily = daily_provider_costs(tenant=tenant, today=yesterday)
    except WarehouseError:
        context["cost_chart_error"] = "Cost data is unavailable: the warehouse could not be queried."
    else:
        context["cost_chart"] = cost_chart(daily) if daily.costs else None
    context["cost_quality"] = provider_quality(tenant=tenant)
    return context


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = (
        "tenant_id",
        "plan",
        "subscription_status",
        "runs_today",
        "running",
        "dataset_id",
        "created_at",
    )
    list_filter = (PlanFilter, SubscriptionStatusFilter, "created_at")
    search_fields = ("tenant_id", "description", "contact_email")
    list_select_related = ("subscription__plan", "usage")
    readonly_fields = ("tenant_id", "dataset_id", "created_at", "updated_at", "generate_key_link")
    fields = (
        "tenant_id",
        "description",
        "contact_email",
        "dataset_id",
        "created_at",
        "updated_at",
        "generate_key_link",
    )
    date_hierarchy = "created_at"

    @admin.display(description="running", ordering="usage__running")
    def running(self, obj: Tenant) -> int:
        return obj.usage.running

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = TenantCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("tenant_id", "description", "contact_email", "plan", "subscription_status")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return [] if obj is None else [SubscriptionInline, UsageInline, ApiKeyInline]

    @admin.display(description="plan", ordering="subscription__plan__code")
    def plan(self, obj: Tenant) -> str:
        return obj.subscription.plan.code

    @admin.display(description="status", ordering="subscription__status")
    def subscription_status(self, obj: Tenant) -> str:
        return obj.subscription.status

    @admin.display(description="runs today")
    def runs_today(self, obj: Tenant) -> int:
        return current_counts(tenant=obj)[0]

    @admin.display(description="API keys")
    def generate_key_link(self, obj: Tenant) -> str:
        url = reverse("admin:tenants_tenantapikey_add") + f"?tenant={obj.tenant_id}"
        return format_html('<a class="button" href="{}">Generate API key</a>', url)

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        actor = staff_actor(request)
        if change:
            services.tenant_update(
                tenant=obj, actor=actor, description=obj.description, contact_email=obj.contact_email
            )
            return
        created = services.tenant_create(
            tenant_id=obj.tenant_id,
            actor=actor,
            description=obj.description,
            contact_email=obj.contact_email,
            plan=form.cleaned_data["plan"],
            subscription_status=form.cleaned_data["subscription_status"],
        )
        obj.created_at, obj.dataset_id = created.created_at, created.dataset_id
        obj._state.adding = False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        try:
            return super().add_view(request, form_url, extra_context)
        except (services.TenantExistsError, services.OnboardingError) as exc:
            self.message_user(
                request, f"Tenant not created: {exc or 'it already exists'}", level=messages.ERROR
            )
            return redirect("admin:tenants_tenant_add")

    def save_formset(self, request: HttpRequest, form: Any, formset: BaseInlineFormSet, change: bool) -> None:
        if formset.model is Subscription:
            for subscription_form in formset.forms:
                if subscription_form.has_changed():
                    data = subscription_form.cleaned_data
                    services.tenant_update(
                        tenant=form.instance,
                        actor=staff_actor(request),
                        plan=data["plan"].code,
                        subscription_status=data["status"],
                    )
            return
        formset.save()

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Tenant | None = None,
    ) -> Any:
        if obj is not None and not add:
            context.update(tenant_cost_context(tenant=obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a tenant must also remove its dataset and credentials; not offered here yet.
        return False


class ApiKeyCreationForm(forms.ModelForm):
    class Meta:
        model = TenantApiKey
        fields = ("tenant", "description", "expires_at")

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise ValidationError("must be in the future")
        return value


@admin.register(TenantApiKey)
class TenantApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "tenant",
        "description",
        "is_active",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("is_active", "created_at", "expires_at")
    search_fields = ("prefix", "tenant__tenant_id", "description", "key_hash")
    list_select_related = ("tenant",)
    actions = ["revoke_keys"]
    readonly_fields = (
        "id",
        "tenant",
        "prefix",
        "key_hash",
        "is_active",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    fields = (
        "id",
        "tenant",
        "prefix",
        "key_hash",
        "description",
        "is_active",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("tenant", "description", "expires_at") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"tenant": request.GET.get("tenant")}

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not obj.is_active:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: TenantApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["description"])
            return
        key, raw = services.api_key_create(
            tenant=obj.tenant,
            actor=staff_actor(request),
            description=obj.description,
            expires_at=obj.expires_at,
        )
        obj.pk, obj.key_hash, obj.prefix, obj.created_at = key.pk, key.key_hash, key.prefix, key.created_at
        obj._state.adding = False
        self.message_user(
            request,
            f"New API key for {key.tenant_id}: {raw} — copy it now; it will not be shown again.",
            level=messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[TenantApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(is_active=True):
            services.api_key_revoke(key=key, actor=staff_actor(request))
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", level=messages.SUCCESS)


class AdminKeyCreationForm(forms.ModelForm):
    class Meta:
        model = AdminKey
        fields = ("name",)


@admin.register(AdminKey)
class AdminKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "is_active", "created_at", "last_used_at", "revoked_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    actions = ["revoke_keys"]
    readonly_fields = ("prefix", "is_active", "created_at", "last_used_at", "revoked_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = AdminKeyCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("name",) if obj is None else ("name", *self.readonly_fields)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not obj.is_active:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AdminKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        key, raw = services.admin_key_create(name=obj.name, actor=staff_actor(request))
        obj.pk, obj.key_hash, obj.prefix, obj.created_at = key.pk, key.key_hash, key.prefix, key.created_at
        obj._state.adding = False
        self.message_user(
            request,
            f"New admin key: {raw} — copy it now; it will not be shown again.",
            level=messages.WARNING,
        )

    @admin.action(description="Revoke selected admin keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[AdminKey]) -> None:
        revoked = 0
        for key in queryset.filter(is_active=True):
            services.admin_key_revoke(key=key, actor=staff_actor(request))
            revoked += 1
        self.message_user(request, f"Revoked {revoked} admin key(s).", level=messages.SUCCESS)


@admin.register(CloudCredential)
class CloudCredentialAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Metadata and fingerprint only: the envelope is neither a field nor a column here, and staff
    cannot add or edit credentials (tenants do, through the API, so the secret never crosses the admin)."""

    list_display = ("name", "tenant", "provider", "fingerprint", "used_by", "created_at")
    list_filter = ("provider", "created_at")
    search_fields = ("tenant__tenant_id", "name", "fingerprint")
    list_select_related = ("tenant",)
    fields = ("id", "tenant", "provider", "name", "fingerprint", "used_by", "created_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[CloudCredential]:
        # One prefetch for the "used by" column instead of a query per row.
        return super().get_queryset(request).defer("encrypted_secret").prefetch_related("billing_sources")

    @admin.display(description="used by sources")
    def used_by(self, obj: CloudCredential) -> str:
        return ", ".join(sorted(source.provider for source in obj.billing_sources.all())) or "—"


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "action",
        "tenant_id",
        "actor_type",
        "actor_id",
        "user_id",
        "target_type",
        "target_id",
        "request_id",
    )
    list_filter = ("action", "actor_type", "target_type", "created_at")
    search_fields = ("tenant_id", "target_id", "request_id", "user_id", "actor_id")
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "action",
        "tenant_id",
        "actor_type",
        "actor_id",
        "user_id",
        "target_type",
        "target_id",
        "request_id",
        "details",
    )
