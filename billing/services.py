"""Write-side operations on billing sources. Each writes its audit entry in the same transaction."""

from __future__ import annotations

from django.db import transaction

from billing.models import BillingSource
from billing.sources import InvalidSource, location_validate, scheme_needs_credential
from tenants.actors import Actor
from tenants.models import CloudCredential, Tenant
from tenants.services import audit_record


@transaction.atomic
def source_upsert(
    *, tenant: Tenant, actor: Actor, provider: str, location: str, credential_id: int | None = None
) -> BillingSource:
    """Create or replace the tenant's source for ``provider`` (PUT semantics: an omitted credential
    clears it).

    ``InvalidSource`` keyed by ``location`` (see ``billing.sources.location_validate``) or
    ``credential_id`` (not this tenant's credential, another provider's, or missing for an object store,
    or for a BigQuery table on a BigQuery warehouse, whose reads must use the tenant's own identity, never
    the server's; on the embedded DuckDB warehouse a table source needs no credential). The credential
    row is locked so a concurrent ``credential_delete`` cannot remove it while this source starts using it."""
    scheme = location_validate(tenant_id=tenant.tenant_id, provider=provider, location=location)
    credential = None
    if credential_id is not None:
        credential = (
            CloudCredential.objects.select_for_update().filter(tenant=tenant, pk=credential_id).first()
        )
        if credential is None:
            # Another tenant's id reads exactly like a missing one.
            raise InvalidSource({"credential_id": [f"No credential with id {credential_id}"]})
        if credential.provider != provider:
            raise InvalidSource(
                {"credential_id": [f"Credential {credential_id} is a {credential.provider} credential"]}
            )
    elif scheme_needs_credential(scheme):
        kind = "A BigQuery table" if scheme == "bq" else f"An {scheme}://"
        raise InvalidSource({"credential_id": [f"{kind} source needs a credential of provider {provider}"]})
    source, created = BillingSource.objects.update_or_create(
        tenant=tenant, provider=provider, defaults={"location": location, "credential": credential}
    )
    audit_record(
        actor=actor,
        action="billing_source.create" if created else "billing_source.update",
        tenant_id=tenant.tenant_id,
        target_type="billing_source",
        target_id=provider,
        details={"provider": provider, "location": location, "credential_id": credential_id},
    )
    return source


@transaction.atomic
def source_delete(*, tenant: Tenant, actor: Actor, provider: str) -> bool:
    """Delete the tenant's source for ``provider``. Returns False (and records nothing) if it had none."""
    deleted, _ = BillingSource.objects.filter(tenant=tenant, provider=provider).delete()
    if deleted:
        audit_record(
            actor=actor,
            action="billing_source.delete",
            tenant_id=tenant.tenant_id,
            target_type="billing_source",
            target_id=provider,
            details={"provider": provider},
        )
    return bool(deleted)
