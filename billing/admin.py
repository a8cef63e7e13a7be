"""Django admin for billing sources: read-only for staff, since sources are validated and audited by the
tenant API (``PUT /api/v1/tenants/{tenant_id}/sources/{provider}``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import BillingSource
from convergence.admin_mixins import ReadOnlyAdminMixin


@admin.register(BillingSource)
class BillingSourceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("tenant", "provider", "location", "credential_name", "updated_at")
    list_filter = ("provider",)
    search_fields = ("tenant__tenant_id", "location")
    list_select_related = ("tenant", "credential")
    ordering = ("tenant_id", "provider")
    fields = ("tenant", "provider", "location", "credential_name", "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="credential", ordering="credential__name")
    def credential_name(self, obj: BillingSource) -> str:
        # Name and fingerprint only: the credential's envelope is never loaded for display.
        credential = obj.credential
        return f"{credential.name} ({credential.fingerprint})" if credential is not None else "—"

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("credential__encrypted_secret")
