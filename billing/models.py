"""Billing control-plane models: where each tenant's provider billing export is read from.

Billing rows themselves live only in the warehouse; validation lives in ``billing/sources.py`` and
writes in ``billing/services.py``."""

from __future__ import annotations

from django.db import models

from tenants.models import CloudCredential, CloudProvider, Tenant


class BillingSource(models.Model):
    """A tenant's billing export location for one provider: a GCP export table
    (``project.dataset.table``), an object-store prefix (``s3://``, ``az://``, a blob URL) or a
    ``file://`` folder under ``SOURCE_FILE_ROOT``. ``credential`` is the same tenant's credential for
    the same provider (checked by the service); object stores require one."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="billing_sources")
    provider = models.CharField(max_length=8, choices=CloudProvider.choices)
    location = models.CharField(max_length=2048)
    # PROTECT: a credential in use cannot disappear under a source (the API answers 409 first).
    credential = models.ForeignKey(
        CloudCredential, on_delete=models.PROTECT, null=True, blank=True, related_name="billing_sources"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "provider"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider"], name="billingsource_tenant_provider_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.provider}"
