"""Control-plane models: tenants, plans, subscriptions, keys and the audit log.

Business rules live in ``tenants/services.py``; these are data only."""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

# \Z, not $: "$" also matches before a trailing newline. The OpenAPI schema needs an ECMA regex, where
# "$" is the end of the text.
TENANT_ID_PATTERN = r"^[a-z][a-z0-9_]{2,49}\Z"
TENANT_ID_JSON_PATTERN = r"^[a-z][a-z0-9_]{2,49}$"
tenant_id_validator = RegexValidator(
    TENANT_ID_PATTERN,
    "3-50 characters: lowercase letters, digits and _, starting with a letter.",
    code="invalid_tenant_id",
)


class PlanCode(models.TextChoices):
    STARTER = "STARTER", "Starter"
    PROFESSIONAL = "PROFESSIONAL", "Professional"
    SCALE = "SCALE", "Scale"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    TRIAL = "TRIAL", "Trial"
    SUSPENDED = "SUSPENDED", "Suspended"
    CANCELLED = "CANCELLED", "Cancelled"


class Plan(models.Model):
    """A subscription plan. Seeded with STARTER / PROFESSIONAL / SCALE; staff may edit limits."""

    code = models.CharField(max_length=32, unique=True, choices=PlanCode.choices)
    name = models.CharField(max_length=64)
    daily_limit = models.PositiveIntegerField(help_text="Runs per UTC day.")
    monthly_limit = models.PositiveIntegerField(help_text="Runs per billing period (one month).")
    concurrent_limit = models.PositiveIntegerField(help_text="Runs pending or running at once.")
    priority = models.PositiveSmallIntegerField(
        default=0, help_text="Queue priority: higher dispatches first (SCALE > PROFESSIONAL > STARTER)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "code"]
        constraints = [
            models.CheckConstraint(condition=Q(daily_limit__gte=1), name="plan_daily_limit_positive"),
            models.CheckConstraint(condition=Q(monthly_limit__gte=1), name="plan_monthly_limit_positive"),
            models.CheckConstraint(
                condition=Q(concurrent_limit__gte=1), name="plan_concurrent_limit_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Tenant(models.Model):
    """A customer. ``tenant_id`` names its warehouse dataset ``{tenant_id}_{env}``."""

    tenant_id = models.CharField(max_length=50, primary_key=True, validators=[tenant_id_validator])
    description = models.CharField(max_length=500, blank=True, default="")
    contact_email = models.EmailField(blank=True, default="")
    dataset_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id"]

    def __str__(self) -> str:
        return self.tenant_id


class Subscription(models.Model):
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    started_at = models.DateTimeField()
    current_period_start = models.DateTimeField(
        help_text="Start of the billing period; the period run count resets on the anniversary."
    )
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="subscription_status_idx")]

    def __str__(self) -> str:
        return f"{self.tenant_id} subscription"


class TenantUsage(models.Model):
    """Run counters, the row quota admission updates. ``runs_today`` counts for ``day``;
    ``runs_this_period`` counts since ``period_start``; ``running`` counts runs PENDING or RUNNING.
    Every run transition into or out of those states changes ``running`` in the same transaction
    (``pipelines/services.py``), and ``usage_recount`` recomputes it from the runs table."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    runs_today = models.PositiveIntegerField(default=0)
    period_start = models.DateTimeField()
    runs_this_period = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "tenant usage"

    def __str__(self) -> str:
        return f"{self.tenant_id} usage"


class TenantApiKey(models.Model):
    """A tenant API key. Only the SHA-256 digest and a KMS-encrypted copy are stored; the
    plaintext is shown once, at creation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    encrypted_key = models.BinaryField(editable=False)
    prefix = models.CharField(max_length=80, editable=False, help_text="For display only.")
    description = models.CharField(max_length=200, blank=True, default="")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "tenant API key"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="apikey_tenant_created_idx")]

    def __str__(self) -> str:
        return f"{self.prefix}…"


class AdminKey(models.Model):
    """A staff/automation key for the admin API, made by ``manage.py generate_admin_key``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ActorType(models.TextChoices):
    ADMIN_KEY = "admin_key", "Admin key"
    TENANT_KEY = "tenant_key", "Tenant key"
    STAFF = "staff", "Staff user"
    SYSTEM = "system", "System"


class AuditLog(models.Model):
    """One row per mutating action. ``tenant_id`` is a plain column so entries outlive tenants."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True, default="")
    user_id = models.CharField(max_length=128, blank=True, default="", help_text="X-User-ID of the request.")
    tenant_id = models.CharField(max_length=50, blank=True, default="", db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_id = models.CharField(max_length=128, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_type}:{self.target_id}"


class CloudProvider(models.TextChoices):
    """The provider keys used by credentials, billing sources and pipelines (``x_Provider``)."""

    GCP = "gcp", "Google Cloud"
    AWS = "aws", "Amazon Web Services"
    AZURE = "azure", "Microsoft Azure"


class CloudCredential(models.Model):
    """A tenant's secret for reading its billing exports (AWS access key, Azure storage key or SAS,
    GCP service account). Only a KMS envelope of the JSON secret is stored, bound to the tenant, the
    field and ``secret_id``; it is decrypted only inside the pipeline step that reads the source.
    ``fingerprint`` is a keyed digest that tells credentials apart without revealing the secret."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="cloud_credentials")
    provider = models.CharField(max_length=8, choices=CloudProvider.choices)
    name = models.CharField(max_length=100)
    # The KMS record id, known before the row is saved (the pk is not): it binds the envelope to this
    # row, so a ciphertext copied onto another row fails to decrypt.
    secret_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    encrypted_secret = models.BinaryField(editable=False)
    fingerprint = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant_id", "provider", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "provider", "name"], name="cloudcredential_tenant_provider_name_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.provider}/{self.name}"
