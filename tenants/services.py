"""Write-side operations on tenants, subscriptions and keys. Each writes its audit entry in the same
transaction."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from convergence.kms import EncryptionContext, get_kms
from convergence.warehouse import WarehouseError, get_warehouse
from tenants import keys
from tenants.actors import Actor
from tenants.models import (
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
    tenant_id_validator,
)

logger = logging.getLogger(__name__)

DEFAULT_TRIAL_DAYS = 14


class TenantExistsError(Exception):
    pass


class OnboardingError(Exception):
    """The tenant's warehouse dataset could not be created; nothing of the tenant was kept."""


class CredentialExistsError(Exception):
    """The tenant already has a credential of this provider with this name."""


class CredentialInUseError(Exception):
    """The credential is referenced by billing sources (``providers`` names them); delete or repoint
    those first."""

    def __init__(self, providers: list[str]) -> None:
        super().__init__(", ".join(providers))
        self.providers = providers


def audit_record(
    *,
    actor: Actor,
    action: str,
    tenant_id: str = "",
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Append one audit entry. Never put secrets in ``details``."""
    return AuditLog.objects.create(
        actor_type=actor.type,
        actor_id=actor.id[:64],
        user_id=actor.user_id[:128],
        tenant_id=tenant_id,
        action=action,
        target_type=target_type,
        target_id=target_id[:128],
        request_id=actor.request_id[:64],
        details=details or {},
    )


def dataset_id_for(tenant_id: str) -> str:
    return f"{tenant_id}_{settings.ENV_SUFFIX}"


def _utc_midnight(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def tenant_create(
    *,
    tenant_id: str,
    actor: Actor,
    description: str = "",
    contact_email: str = "",
    plan: str = PlanCode.STARTER,
    subscription_status: str = SubscriptionStatus.ACTIVE,
) -> Tenant:
    """Create a tenant with its subscription, usage row and warehouse dataset ``{tenant_id}_{env}``
    (through the ``tenant/onboarding`` pipeline).

    All or nothing: if onboarding fails, the database rows are rolled back and a dataset this call
    created is dropped (``OnboardingError``). ``TenantExistsError`` for a duplicate id; Django
    ``ValidationError`` for a bad id."""
    from pipelines.services import system_pipeline_run

    tenant_id_validator(tenant_id)
    plan_row = Plan.objects.get(code=plan)
    now = timezone.now()
    dataset_id = dataset_id_for(tenant_id)
    warehouse = get_warehouse()
    if Tenant.objects.filter(tenant_id=tenant_id).exists():
        raise TenantExistsError(tenant_id)
    try:
        dataset_existed = warehouse.dataset_exists(dataset_id)
    except WarehouseError as exc:
        raise OnboardingError(f"warehouse unavailable: {exc.message}") from exc
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(
                tenant_id=tenant_id,
                description=description,
                contact_email=contact_email,
                dataset_id=dataset_id,
            )
            Subscription.objects.create(
                tenant=tenant,
                plan=plan_row,
                status=subscription_status,
                started_at=now,
                current_period_start=now,
                trial_ends_at=now + dt.timedelta(days=DEFAULT_TRIAL_DAYS)
                if subscription_status == SubscriptionStatus.TRIAL
                else None,
            )
            TenantUsage.objects.create(tenant=tenant, day=now.date(), period_start=now)
            audit_record(
                actor=actor,
                action="tenant.create",
                tenant_id=tenant_id,
                target_type="tenant",
                target_id=tenant_id,
                details={"plan": plan, "subscription_status": subscription_status},
            )
            outcome = system_pipeline_run(name="tenant/onboarding", tenant_id=tenant_id, warehouse=warehouse)
            if not outcome.succeeded:
                raise OnboardingError(outcome.error)
    except IntegrityError as exc:
        raise TenantExistsError(tenant_id) from exc
    except Exception:
        if not dataset_existed:
            _drop_dataset_quietly(dataset_id)
        raise
    logger.info("tenant %s created with dataset %s", tenant_id, dataset_id)
    return Tenant.objects.select_related("subscription__plan", "usage").get(tenant_id=tenant_id)


def _drop_dataset_quietly(dataset_id: str) -> None:
    try:
        get_warehouse().drop_dataset(dataset_id, delete_contents=True, not_found_ok=True)
    except WarehouseError:
        logger.exception("could not drop dataset %s after a failed onboarding", dataset_id)


@transaction.atomic
def tenant_update(
    *,
    tenant: Tenant,
    actor: Actor,
    description: str | None = None,
    contact_email: str | None = None,
    plan: str | None = None,
    subscription_status: str | None = None,
) -> Tenant:
    """Change profile fields, plan or subscription status. Only the fields given change."""
    changes: dict[str, Any] = {}
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    tenant_fields = []
    if description is not None and description != tenant.description:
        tenant.description, changes["description"] = description, description
        tenant_fields.append("description")
    if contact_email is not None and contact_email != tenant.contact_email:
        tenant.contact_email, changes["contact_email"] = contact_email, contact_email
        tenant_fields.append("contact_email")
    if tenant_fields:
        tenant.save(update_fields=[*tenant_fields, "updated_at"])
    subscription = Subscription.objects.select_for_update().get(tenant=tenant)
    subscription_fields = []
    if plan is not None and plan != subscription.plan.code:
        subscription.plan = Plan.objects.get(code=plan)
        changes["plan"] = plan
        subscription_fields.append("plan")
    if subscription_status is not None and subscription_status != subscription.status:
        changes["subscription_status"] = {"from": subscription.status, "to": subscription_status}
        subscription.status = subscription_status
        subscription_fields.append("status")
        if subscription_status == SubscriptionStatus.TRIAL and subscription.trial_ends_at is None:
            subscription.trial_ends_at = timezone.now() + dt.timedelta(days=DEFAULT_TRIAL_DAYS)
            subscription_fields.append("trial_ends_at")
    if subscription_fields:
        subscription.save(update_fields=[*subscription_fields, "updated_at"])
    if changes:
        audit_record(
            actor=actor,
            action="tenant.update",
            tenant_id=tenant.tenant_id,
            target_type="tenant",
            target_id=tenant.tenant_id,
            details=changes,
        )
    return Tenant.objects.select_related("subscription__plan", "usage").get(pk=tenant.pk)


@transaction.atomic
def api_key_create(
    *, tenant: Tenant, actor: Actor, description: str = "", expires_at: dt.datetime | None = None
) -> tuple[TenantApiKey, str]:
    """Mint a tenant key. Returns the row and the plaintext, which is never stored or logged: the
    row holds its SHA-256 and a KMS-encrypted copy bound to the tenant, field and row."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("expires_at must be in the future")
    raw = keys.generate_tenant_key(tenant.tenant_id)
    key = TenantApiKey(
        tenant=tenant,
        key_hash=keys.hash_key(raw),
        prefix=keys.tenant_key_display_prefix(raw),
        description=description,
        expires_at=expires_at,
    )
    key.encrypted_key = get_kms().encrypt(
        raw.encode(),
        context=EncryptionContext(tenant_id=tenant.tenant_id, field="tenant_api_key", record_id=str(key.id)),
    )
    key.save(force_insert=True)
    audit_record(
        actor=actor,
        action="api_key.create",
        tenant_id=tenant.tenant_id,
        target_type="tenant_api_key",
        target_id=str(key.id),
        details={"prefix": key.prefix, "description": description},
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: TenantApiKey, actor: Actor) -> TenantApiKey:
    """Deactivate a key; idempotent (revoking again changes nothing and returns the same row)."""
    updated = TenantApiKey.objects.filter(pk=key.pk, is_active=True).update(
        is_active=False, revoked_at=timezone.now()
    )
    key.refresh_from_db()
    if updated:
        audit_record(
            actor=actor,
            action="api_key.revoke",
            tenant_id=key.tenant_id,
            target_type="tenant_api_key",
            target_id=str(key.pk),
            details={"prefix": key.prefix},
        )
    return key


def _touch_last_used(queryset: QuerySet[Any], now: dt.datetime | None) -> bool:
    """Set ``last_used_at`` if it is older than the interval: one conditional UPDATE, so at most one
    write per key per interval however many requests race. Returns True if it wrote."""
    now = now or timezone.now()
    threshold = now - dt.timedelta(seconds=settings.API_KEY_LAST_USED_INTERVAL_S)
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=threshold)
    return bool(queryset.filter(stale).update(last_used_at=now))


def api_key_touch(*, key_id: Any, now: dt.datetime | None = None) -> bool:
    """Record use of a tenant key, at most once per interval (see ``_touch_last_used``)."""
    return _touch_last_used(TenantApiKey.objects.filter(pk=key_id), now)


def admin_key_touch(*, key_id: Any, now: dt.datetime | None = None) -> bool:
    """Record use of an admin key, at most once per interval (see ``_touch_last_used``)."""
    return _touch_last_used(AdminKey.objects.filter(pk=key_id), now)


@transaction.atomic
def admin_key_create(*, name: str, actor: Actor) -> tuple[AdminKey, str]:
    """Mint an admin key; only its SHA-256 is stored. Returns the row and the plaintext."""
    raw = keys.generate_admin_key()
    key = AdminKey.objects.create(name=name, key_hash=keys.hash_key(raw), prefix=raw[:7])
    audit_record(
        actor=actor,
        action="admin_key.create",
        target_type="admin_key",
        target_id=str(key.pk),
        details={"name": name, "prefix": key.prefix},
    )
    return key, raw


@transaction.atomic
def admin_key_revoke(*, key: AdminKey, actor: Actor) -> AdminKey:
    updated = AdminKey.objects.filter(pk=key.pk, is_active=True).update(
        is_active=False, revoked_at=timezone.now()
    )
    key.refresh_from_db()
    if updated:
        audit_record(actor=actor, action="admin_key.revoke", target_type="admin_key", target_id=str(key.pk))
    return key


def bootstrap_run(
    *, actor: Actor, force_recreate_dataset: bool = False, force_recreate_tables: bool = False
) -> dict[str, Any]:
    """Run ``system/bootstrap``; returns the API.md result. ``RuntimeError`` if it failed."""
    from pipelines.services import system_pipeline_run

    outcome = system_pipeline_run(
        name="system/bootstrap",
        parameters={
            "force_recreate_dataset": force_recreate_dataset,
            "force_recreate_tables": force_recreate_tables,
        },
    )
    audit_record(
        actor=actor,
        action="system.bootstrap",
        target_type="dataset",
        target_id=settings.CENTRAL_DATASET,
        details={
            "force_recreate_dataset": force_recreate_dataset,
            "force_recreate_tables": force_recreate_tables,
            "status": outcome.status,
        },
    )
    if not outcome.succeeded:
        raise RuntimeError(outcome.error)
    result = outcome.outputs("central_dataset")
    return {
        "status": "SUCCESS",
        "dataset_created": bool(result["dataset_created"]),
        "tables_created": int(result["tables_created"]),
        "tables_existing": int(result["tables_existing"]),
        "message": f"central dataset {result['dataset']}: {result['tables_created']} table(s) created, "
        f"{result['tables_existing']} already existed",
    }


@transaction.atomic
def credential_create(
    *, tenant: Tenant, actor: Actor, provider: str, name: str, secret: Any
) -> CloudCredential:
    """Store a cloud credential for reading the tenant's billing sources.

    The secret is checked for the provider's required keys and size (``billing.sources.InvalidSource``),
    then only its KMS envelope is stored, bound to the tenant, the field and the row's ``secret_id``;
    the fingerprint is a keyed digest. ``CredentialExistsError`` when the name is taken for this tenant and
    provider. The audit entry carries provider, name and fingerprint, never the secret."""
    from billing.sources import credential_context, secret_fingerprint, secret_validate

    payload = secret_validate(provider=provider, secret=secret)
    if CloudCredential.objects.filter(tenant=tenant, provider=provider, name=name).exists():
        raise CredentialExistsError(name)
    credential = CloudCredential(
        tenant=tenant, provider=provider, name=name, fingerprint=secret_fingerprint(secret)
    )
    credential.encrypted_secret = get_kms().encrypt(
        payload,
        context=credential_context(tenant_id=tenant.tenant_id, secret_id=str(credential.secret_id)),
    )
    try:
        with transaction.atomic():
            credential.save(force_insert=True)
    except IntegrityError as exc:  # a concurrent create of the same name won the race
        raise CredentialExistsError(name) from exc
    audit_record(
        actor=actor,
        action="credential.create",
        tenant_id=tenant.tenant_id,
        target_type="cloud_credential",
        target_id=str(credential.pk),
        details={"provider": provider, "name": name, "fingerprint": credential.fingerprint},
    )
    return credential


@transaction.atomic
def credential_delete(*, credential: CloudCredential, actor: Actor) -> bool:
    """Delete a credential. Returns False (and records nothing) when it is already gone (a concurrent
    delete won). ``CredentialInUseError`` while a billing source references it: the row is locked first,
    and a source upsert locks the same row, so no source can start using it meanwhile."""
    locked = (
        CloudCredential.objects.select_for_update()
        .filter(pk=credential.pk, tenant_id=credential.tenant_id)
        .defer("encrypted_secret")
        .first()
    )
    if locked is None:
        return False
    providers = sorted(locked.billing_sources.values_list("provider", flat=True))
    if providers:
        raise CredentialInUseError(providers)
    locked.delete()
    audit_record(
        actor=actor,
        action="credential.delete",
        tenant_id=credential.tenant_id,
        target_type="cloud_credential",
        target_id=str(credential.pk),
        details={
            "provider": credential.provider,
            "name": credential.name,
            "fingerprint": credential.fingerprint,
        },
    )
    return True
