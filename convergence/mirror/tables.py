"""What is mirrored: one ``MirrorTable`` per central table, with an explicit column list (central
column → value read from the model instance) and the source tables whose changes affect it.

Never mirrored: ``TenantApiKey.encrypted_key``, ``CloudCredential.encrypted_secret`` and its KMS record
id, admin keys, the audit log. Secrets are excluded by construction: only the columns listed here
are read into rows, and ``tests/convergence/test_mirror.py`` searches every central table for the
plaintext keys and every encrypted blob.

A table's central key is a STRING column; rows are read at drain time, so the central table
converges to the current Postgres state however many changes a row had in between."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from convergence.mirror.triggers import CapturedTable
from convergence.warehouse import Field

Getter = Callable[[Any], Any]
Resolver = Callable[[list[Any]], Iterable[str]]


@dataclass(frozen=True)
class Source:
    """A model whose row changes affect a central table. The trigger records ``event_key`` (a field
    name); ``resolve`` maps those values to the central table's keys (identity when None: the event
    key *is* the central key, e.g. ``Subscription.tenant_id`` for the subscriptions table)."""

    model: str
    event_key: str
    resolve: Resolver | None = None


@dataclass(frozen=True)
class MirrorTable:
    """A central table. ``model``/``model_key`` name the driving model and the field whose text is
    the central ``key``; ``include`` filters rows (an excluded row is deleted centrally)."""

    name: str
    key: str
    model: str
    model_key: str
    columns: Mapping[str, Getter]
    sources: tuple[Source, ...]
    related: tuple[str, ...] = ()
    include: Callable[[Any], bool] | None = None
    optional: bool = field(default=False)

    def model_class(self) -> type[models.Model] | None:
        """The driving model, or None for an optional table whose model is not installed."""
        try:
            return apps.get_model(self.model)
        except LookupError:
            if self.optional:
                return None
            raise

    def fetch(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Current rows (JSON-ready values) for these central keys; a key without a row (deleted, or
        filtered out by ``include``) is absent from the result."""
        model = self.model_class()
        if model is None:
            return {}
        lookup_field = concrete_field(model, self.model_key)
        values = []
        for key in keys:
            try:
                values.append(lookup_field.to_python(key))
            except ValidationError:
                continue
        if not values:
            return {}
        queryset = model._default_manager.filter(**{f"{self.model_key}__in": values})
        return self._rows(queryset.select_related(*self.related))

    def fetch_all(self) -> dict[str, dict[str, Any]]:
        """Every row the central table should hold (used by resync and by the tests' comparison)."""
        model = self.model_class()
        if model is None:
            return {}
        return self._rows(model._default_manager.select_related(*self.related).all())

    def _rows(self, queryset: models.QuerySet[Any]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for instance in queryset.order_by():
            if self.include is not None and not self.include(instance):
                continue
            row = {column: json_value(getter(instance)) for column, getter in self.columns.items()}
            rows[row[self.key]] = row
        return rows


def concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    found = model._meta.get_field(name)
    if not isinstance(found, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a concrete field")
    return found


def json_value(value: Any) -> Any:
    """A model value as it travels in the JSON row document: text for ids, ISO 8601 UTC for times."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    return value


def central_key(model: type[models.Model], field_name: str, raw: str) -> str:
    """The central key text for a recorded value (SQLite records a UUID as 32 hex digits, PostgreSQL
    with hyphens; both become the hyphenated form). A value the field cannot hold is kept as it is:
    no Postgres row can have it, so its central row (an orphan found by resync) is deleted."""
    try:
        value = concrete_field(model, field_name).to_python(raw)
    except ValidationError:
        return raw
    return raw if value is None else str(value)


# --- getters ------------------------------------------------------------------------------------------
def attr(name: str) -> Getter:
    return lambda instance: getattr(instance, name)


def optional_attr(name: str) -> Getter:
    """For a column whose model field may not exist (yet): NULL until it does."""
    return lambda instance: getattr(instance, name, None)


def text(name: str) -> Getter:
    return lambda instance: None if getattr(instance, name) is None else str(getattr(instance, name))


def _plan_limit(name: str) -> Getter:
    def getter(instance: Any) -> Any:
        subscription = getattr(instance, "subscription", None)
        return None if subscription is None else getattr(subscription.plan, name)

    return getter


def _usage_plan_limit(name: str) -> Getter:
    def getter(instance: Any) -> Any:
        try:
            subscription = instance.tenant.subscription
        except models.ObjectDoesNotExist:
            return None
        return getattr(subscription.plan, name)

    return getter


# --- resolvers ----------------------------------------------------------------------------------------
def _tenants_on_plans(plan_ids: list[Any]) -> Iterable[str]:
    """A plan's limits are copied into its subscribers' rows: its change touches each of them."""
    subscription = apps.get_model("tenants.Subscription")
    return (
        str(tenant_id)
        for tenant_id in subscription.objects.filter(plan_id__in=plan_ids).values_list("tenant_id", flat=True)
    )


def _queued(run: Any) -> bool:
    return str(run.status) in {"QUEUED", "PENDING"}


TABLES: tuple[MirrorTable, ...] = (
    MirrorTable(
        name="tenant_profiles",
        key="tenant_id",
        model="tenants.Tenant",
        model_key="tenant_id",
        columns={
            "tenant_id": attr("tenant_id"),
            "description": attr("description"),
            "contact_email": attr("contact_email"),
            "dataset_id": attr("dataset_id"),
            "created_at": attr("created_at"),
            "updated_at": attr("updated_at"),
        },
        sources=(Source("tenants.Tenant", "tenant_id"),),
    ),
    MirrorTable(
        name="tenant_subscriptions",
        key="tenant_id",
        model="tenants.Subscription",
        model_key="tenant_id",
        related=("plan",),
        columns={
            "tenant_id": attr("tenant_id"),
            "plan": lambda subscription: subscription.plan.code,
            "status": attr("status"),
            "daily_limit": lambda subscription: subscription.plan.daily_limit,
            "monthly_limit": lambda subscription: subscription.plan.monthly_limit,
            "concurrent_limit": lambda subscription: subscription.plan.concurrent_limit,
            "started_at": attr("started_at"),
            "current_period_start": attr("current_period_start"),
            "trial_ends_at": attr("trial_ends_at"),
            "updated_at": attr("updated_at"),
        },
        sources=(
            Source("tenants.Subscription", "tenant_id"),
            Source("tenants.Plan", "id", _tenants_on_plans),
        ),
    ),
    MirrorTable(
        name="tenant_usage_quotas",
        key="tenant_id",
        model="tenants.TenantUsage",
        model_key="tenant_id",
        related=("tenant__subscription__plan",),
        columns={
            "tenant_id": attr("tenant_id"),
            "usage_date": attr("day"),
            "runs_today": attr("runs_today"),
            "period_start": attr("period_start"),
            "runs_this_period": attr("runs_this_period"),
            "running": attr("running"),
            "daily_limit": _usage_plan_limit("daily_limit"),
            "monthly_limit": _usage_plan_limit("monthly_limit"),
            "concurrent_limit": _usage_plan_limit("concurrent_limit"),
            "updated_at": attr("updated_at"),
        },
        sources=(
            Source("tenants.TenantUsage", "tenant_id"),
            Source("tenants.Subscription", "tenant_id"),
            Source("tenants.Plan", "id", _tenants_on_plans),
        ),
    ),
    MirrorTable(
        name="tenant_api_keys",
        key="tenant_api_key_id",
        model="tenants.TenantApiKey",
        model_key="id",
        columns={
            # Metadata and the SHA-256 only: never encrypted_key.
            "tenant_api_key_id": text("id"),
            "tenant_id": attr("tenant_id"),
            "tenant_api_key_hash": attr("key_hash"),
            "prefix": attr("prefix"),
            "description": attr("description"),
            "is_active": attr("is_active"),
            "created_at": attr("created_at"),
            "expires_at": attr("expires_at"),
            "last_used_at": attr("last_used_at"),
            "revoked_at": attr("revoked_at"),
        },
        sources=(Source("tenants.TenantApiKey", "id"),),
    ),
    MirrorTable(
        name="tenant_cloud_credentials",
        key="credential_id",
        model="tenants.CloudCredential",
        model_key="id",
        optional=True,
        columns={
            # Metadata and the keyed fingerprint only: never encrypted_secret (nor its KMS record id).
            "credential_id": text("id"),
            "tenant_id": attr("tenant_id"),
            "provider": attr("provider"),
            "name": attr("name"),
            "fingerprint": attr("fingerprint"),
            "created_at": attr("created_at"),
        },
        sources=(Source("tenants.CloudCredential", "id"),),
    ),
    MirrorTable(
        name="tenant_pipeline_configs",
        key="billing_source_id",
        model="billing.BillingSource",
        model_key="id",
        optional=True,
        columns={
            "billing_source_id": text("id"),
            "tenant_id": attr("tenant_id"),
            "provider": attr("provider"),
            "location": attr("location"),
            "credential_id": text("credential_id"),
            "created_at": attr("created_at"),
            "updated_at": attr("updated_at"),
        },
        sources=(Source("billing.BillingSource", "id"),),
    ),
    MirrorTable(
        name="tenant_pipeline_runs",
        key="pipeline_logging_id",
        model="pipelines.PipelineRun",
        model_key="pipeline_logging_id",
        columns={
            "pipeline_logging_id": text("pipeline_logging_id"),
            "pipeline_id": attr("pipeline_id"),
            "pipeline": attr("pipeline"),
            "tenant_id": attr("tenant_id"),
            "status": attr("status"),
            "trigger": attr("trigger"),
            "parameters": attr("parameters"),
            "user_id": attr("user_id"),
            "priority": attr("priority"),
            "attempt": attr("attempt"),
            "max_attempts": attr("max_attempts"),
            "schedule_id": lambda run: json_value(getattr(run, "schedule_id", None)),
            "scheduled_for": optional_attr("scheduled_for"),
            "created_at": attr("created_at"),
            "started_at": attr("started_at"),
            "finished_at": attr("finished_at"),
            "duration_ms": attr("duration_ms"),
            "error": attr("error"),
            "rows_processed": attr("rows_processed"),
            "bytes_processed": attr("bytes_processed"),
        },
        sources=(Source("pipelines.PipelineRun", "pipeline_logging_id"),),
    ),
    MirrorTable(
        name="tenant_step_logs",
        key="step_log_id",
        model="pipelines.StepLog",
        model_key="id",
        related=("run",),
        columns={
            "step_log_id": text("id"),
            "pipeline_logging_id": text("run_id"),
            "tenant_id": lambda step: step.run.tenant_id,
            "step_id": attr("step_id"),
            "ps_type": attr("ps_type"),
            "status": attr("status"),
            "attempt": attr("attempt"),
            "position": attr("position"),
            "tries": attr("tries"),
            "created_at": attr("created_at"),
            "started_at": attr("started_at"),
            "finished_at": attr("finished_at"),
            "rows_affected": attr("rows_affected"),
            "bytes_processed": attr("bytes_processed"),
            "error": attr("error"),
        },
        sources=(Source("pipelines.StepLog", "id"),),
    ),
    MirrorTable(
        name="tenant_dq_results",
        key="dq_result_id",
        model="pipelines.DQResult",
        model_key="id",
        related=("run",),
        columns={
            "dq_result_id": text("id"),
            "pipeline_logging_id": text("run_id"),
            "tenant_id": lambda result: result.run.tenant_id,
            "attempt": attr("attempt"),
            "step_id": attr("step_id"),
            "check_name": attr("check_name"),
            "table_name": attr("table"),
            "status": attr("status"),
            "severity": attr("severity"),
            "observed": attr("observed"),
            "expected": attr("expected"),
            "message": attr("message"),
            "created_at": attr("created_at"),
        },
        sources=(Source("pipelines.DQResult", "id"),),
    ),
    MirrorTable(
        name="tenant_scheduled_pipeline_runs",
        key="schedule_id",
        model="pipelines.Schedule",
        model_key="id",
        columns={
            "schedule_id": text("id"),
            "tenant_id": attr("tenant_id"),
            "pipeline": attr("pipeline"),
            "cron": attr("cron"),
            "timezone": attr("timezone"),
            "parameters": attr("parameters"),
            "enabled": attr("enabled"),
            "next_run_at": attr("next_run_at"),
            "last_run_at": attr("last_run_at"),
            "created_at": attr("created_at"),
            "updated_at": attr("updated_at"),
        },
        sources=(Source("pipelines.Schedule", "id"),),
    ),
    MirrorTable(
        name="tenant_pipeline_execution_queue",
        key="pipeline_logging_id",
        model="pipelines.PipelineRun",
        model_key="pipeline_logging_id",
        # Runs waiting for a worker (QUEUED, or PENDING = handed to the broker); leaving the queue
        # deletes the central row.
        include=_queued,
        columns={
            "pipeline_logging_id": text("pipeline_logging_id"),
            "tenant_id": attr("tenant_id"),
            "pipeline": attr("pipeline"),
            "status": attr("status"),
            "priority": attr("priority"),
            "scheduled_for": optional_attr("scheduled_for"),
            "queued_at": attr("created_at"),
        },
        sources=(Source("pipelines.PipelineRun", "pipeline_logging_id"),),
    ),
)

MIRRORED_AT = "mirrored_at"


def installed_tables() -> tuple[MirrorTable, ...]:
    """The mirror tables whose models exist in this deployment."""
    return tuple(table for table in TABLES if table.model_class() is not None)


def captured_tables() -> list[CapturedTable]:
    """Every (database table, event key column) the outbox triggers must cover."""
    seen: dict[str, CapturedTable] = {}
    for table in installed_tables():
        for source in table.sources:
            model = apps.get_model(source.model)
            column = model._meta.get_field(source.event_key).column
            captured = CapturedTable(table=model._meta.db_table, key_column=column)
            previous = seen.setdefault(captured.table, captured)
            if previous != captured:
                raise ValueError(f"{captured.table}: sources disagree on the event key column")
    return sorted(seen.values(), key=lambda item: item.table)


def sources_by_table() -> dict[str, list[tuple[MirrorTable, Source, type[models.Model]]]]:
    """Database table name → the (central table, source, source model) its events feed."""
    result: dict[str, list[tuple[MirrorTable, Source, type[models.Model]]]] = {}
    for table in installed_tables():
        for source in table.sources:
            model = apps.get_model(source.model)
            result.setdefault(model._meta.db_table, []).append((table, source, model))
    return result


def central_schema(name: str) -> tuple[Field, ...]:
    """The central table's schema from ``configs/system/schemas/<name>.json`` (what bootstrap creates)."""
    return _schema_file(Path(settings.PIPELINE_CONFIGS_DIR) / "system" / "schemas" / f"{name}.json")


@functools.cache
def _schema_file(path: Path) -> tuple[Field, ...]:
    return tuple(Field.from_api_repr(item) for item in json.loads(path.read_text()))
