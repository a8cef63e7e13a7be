"""Issue 5 acceptance for the mirror: after 1,000 mixed changes the central tables equal Postgres row by
row; with the broker down during the changes, nothing is lost once it returns."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from convergence.mirror.services import mirror_drain
from convergence.models import OutboxEvent
from pipelines.models import DQResult, PipelineRun, RunStatus, Schedule, StepLog
from pipelines.services import (
    AdmissionRefused,
    Claim,
    run_cancel,
    run_claim,
    run_create,
    run_finish,
    run_heartbeat,
    schedule_create,
    schedule_delete,
    schedule_update,
)
from tenants.models import CloudCredential, Plan, Tenant, TenantApiKey, TenantUsage
from tenants.services import (
    api_key_create,
    api_key_revoke,
    api_key_touch,
    credential_create,
    credential_delete,
    tenant_create,
    tenant_update,
)
from tests.conftest import ensure_seeded_plans
from tests.convergence.mirror_helpers import ACTOR, bootstrap_central, central_rows, mismatches, table
from tests.convergence.test_mirror import _FailingWarehouse

pytestmark = pytest.mark.django_db

CHANGES = 1000


class _Workload:
    """Random control-plane changes through the real services (and a few raw SQL statements). Each
    method returns True when it changed something, False when it had nothing to act on."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tenant_number = 0
        self.claims: dict[str, Claim] = {}

    def _tenant(self) -> Tenant | None:
        tenants = list(Tenant.objects.order_by("tenant_id"))
        return self.rng.choice(tenants) if tenants else None

    def create_tenant(self) -> bool:
        if Tenant.objects.count() >= 8:
            return False
        self.tenant_number += 1
        plan = self.rng.choice(["SCALE", "SCALE", "PROFESSIONAL", "STARTER"])
        tenant = tenant_create(tenant_id=f"tenant_{self.tenant_number:03d}", plan=plan, actor=ACTOR)
        api_key_create(tenant=tenant, actor=ACTOR)
        return True

    def update_tenant(self) -> bool:
        tenant = self._tenant()
        if tenant is None:
            return False
        choice = self.rng.randrange(4)
        if choice == 0:
            tenant_update(tenant=tenant, actor=ACTOR, description=f"d{self.rng.randrange(10**6)} ünï'\"")
        elif choice == 1:
            tenant_update(
                tenant=tenant, actor=ACTOR, contact_email=f"ops{self.rng.randrange(99)}@example.com"
            )
        elif choice == 2:
            tenant_update(tenant=tenant, actor=ACTOR, plan=self.rng.choice(["SCALE", "PROFESSIONAL"]))
        else:
            tenant_update(
                tenant=tenant, actor=ACTOR, subscription_status=self.rng.choice(["ACTIVE", "TRIAL"])
            )
        return True

    def delete_tenant(self) -> bool:
        if Tenant.objects.count() < 4:
            return False
        tenant = self._tenant()
        assert tenant is not None
        tenant.delete()
        return True

    def key_change(self) -> bool:
        tenant = self._tenant()
        if tenant is None:
            return False
        keys = list(TenantApiKey.objects.filter(tenant=tenant, is_active=True))
        choice = self.rng.randrange(3)
        if choice == 0 or not keys:
            api_key_create(tenant=tenant, actor=ACTOR, description="k")
        elif choice == 1:
            api_key_revoke(key=self.rng.choice(keys), actor=ACTOR)
        else:
            later = timezone.now() + dt.timedelta(minutes=self.rng.randrange(2, 10**5))
            return api_key_touch(key_id=self.rng.choice(keys).pk, now=later)
        return True

    def credential_change(self) -> bool:
        tenant = self._tenant()
        if tenant is None:
            return False
        existing = list(CloudCredential.objects.filter(tenant=tenant))
        if existing and self.rng.random() < 0.4:
            credential_delete(credential=self.rng.choice(existing), actor=ACTOR)
            return True
        name = f"c{self.rng.randrange(10**6)}"
        secret = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "s" * 40}
        credential_create(tenant=tenant, actor=ACTOR, provider="aws", name=name, secret=secret)
        return True

    def schedule_change(self) -> bool:
        tenant = self._tenant()
        if tenant is None:
            return False
        schedules = list(Schedule.objects.filter(tenant=tenant))
        choice = self.rng.randrange(3)
        if choice == 0 or not schedules:
            schedule_create(
                tenant=tenant,
                pipeline="test/engine/ok",
                cron=f"{self.rng.randrange(60)} {self.rng.randrange(24)} * * *",
                timezone=self.rng.choice(["UTC", "Europe/Berlin", "Asia/Kolkata"]),
                parameters={"date": "yesterday"},
                enabled=True,
                actor=ACTOR,
            )
        elif choice == 1:
            schedule = self.rng.choice(schedules)
            schedule_update(schedule=schedule, actor=ACTOR, enabled=not schedule.enabled)
        else:
            schedule_delete(schedule=self.rng.choice(schedules), actor=ACTOR)
        return True

    def create_run(self) -> bool:
        tenant = self._tenant()
        if tenant is None:
            return False
        tenant = Tenant.objects.select_related("subscription__plan", "usage").get(pk=tenant.pk)
        try:
            run_create(
                tenant=tenant,
                pipeline_name="test/engine/ok",
                parameters={"date": f"2024-05-{self.rng.randrange(1, 29):02d}"},
                actor=ACTOR,
                enqueue=False,
            )
        except AdmissionRefused:
            return False
        return True

    def advance_run(self) -> bool:
        runs = list(PipelineRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]))
        if not runs:
            return False
        run = self.rng.choice(runs)
        if run.status == RunStatus.PENDING:
            if self.rng.random() < 0.15:
                run_cancel(run=run, actor=ACTOR)
                return True
            claim = run_claim(run_id=str(run.pk))
            if claim is None:
                return False
            self.claims[str(run.pk)] = claim
            return True
        claim = self.claims.get(str(run.pk))
        if claim is None:
            return False
        step = self.rng.randrange(4)
        if step == 0:
            return run_heartbeat(claim=claim)
        if step == 1:
            StepLog.objects.update_or_create(
                run=run,
                attempt=claim.attempt,
                step_id=f"s{self.rng.randrange(3)}",
                defaults={"position": 0, "ps_type": "test.counting", "status": "RUNNING"},
            )
            return True
        if step == 2:
            DQResult.objects.create(
                run=run,
                attempt=claim.attempt,
                step_id="quality",
                check_name="row_count",
                status=self.rng.choice(["PASS", "WARN", "FAIL"]),
                severity="warn",
                observed="3",
                expected=">= 1",
            )
            return True
        status = self.rng.choice([RunStatus.COMPLETED, RunStatus.FAILED])
        return run_finish(claim=claim, status=status, rows_processed=self.rng.randrange(100))

    def raw_sql_change(self) -> bool:
        """Writes that bypass the ORM entirely: only triggers can see these."""
        with connection.cursor() as cursor:
            if self.rng.random() < 0.5:
                cursor.execute(
                    "UPDATE pipelines_steplog SET rows_affected = rows_affected + 1, status = 'COMPLETED' "
                    "WHERE id = (SELECT id FROM pipelines_steplog ORDER BY random() LIMIT 1)"
                )
            else:
                cursor.execute(
                    "UPDATE tenants_tenantusage SET running = running WHERE tenant_id = "
                    "(SELECT tenant_id FROM tenants_tenantusage ORDER BY random() LIMIT 1)"
                )
            return cursor.rowcount == 1

    def delete_step_log(self) -> bool:
        step = StepLog.objects.order_by("?").first()
        if step is None:
            return False
        step.delete()
        return True

    def edit_plan(self) -> bool:
        code = self.rng.choice(["STARTER", "PROFESSIONAL", "SCALE"])
        # Limits stay large enough for the workload to keep admitting runs.
        return bool(Plan.objects.filter(code=code).update(daily_limit=1000 + self.rng.randrange(1000)))


def _operations(workload: _Workload) -> list[tuple[Callable[[], bool], int]]:
    return [
        (workload.create_tenant, 3),
        (workload.update_tenant, 10),
        (workload.delete_tenant, 1),
        (workload.key_change, 8),
        (workload.credential_change, 4),
        (workload.schedule_change, 8),
        (workload.create_run, 20),
        (workload.advance_run, 30),
        (workload.raw_sql_change, 5),
        (workload.delete_step_log, 2),
        (workload.edit_plan, 1),
    ]


@pytest.mark.slow
def test_central_tables_equal_postgres_after_a_thousand_mixed_changes(warehouse, test_pipelines) -> None:
    ensure_seeded_plans()
    Plan.objects.update(daily_limit=1000, monthly_limit=100000, concurrent_limit=20)
    bootstrap_central()
    rng = random.Random(20261128)
    workload = _Workload(rng)
    operations = _operations(workload)
    functions = [function for function, _ in operations]
    weights = [weight for _, weight in operations]
    changes = drains = 0
    failing_drain_at = rng.randrange(200, 800)
    failed_once: dict[str, str] = {}
    while changes < CHANGES:
        if rng.choices(functions, weights)[0]():
            changes += 1
        else:
            continue
        if changes == failing_drain_at:
            # A drain that fails midway: one central table refuses writes; its events are kept.
            pending = OutboxEvent.objects.count()
            result = mirror_drain(warehouse=_FailingWarehouse(warehouse, "tenant_pipeline_runs"))
            failed_once = result.failed_tables
            assert set(failed_once) <= {"tenant_pipeline_runs"}
            assert result.events_delivered + result.events_kept == pending
            assert OutboxEvent.objects.count() == result.events_kept
        elif rng.random() < 0.03:
            assert mirror_drain().succeeded
            drains += 1
    assert OutboxEvent.objects.exists()
    final = mirror_drain()
    assert final.succeeded
    assert OutboxEvent.objects.count() == 0
    assert drains >= 10
    assert failed_once == {"tenant_pipeline_runs": "quota exceeded"}
    assert mismatches(warehouse) == {}
    # Independently of the mirror's own mapping: the keys and a few columns, straight from the ORM.
    assert sorted(central_rows(warehouse, table("tenant_profiles"))) == sorted(
        Tenant.objects.values_list("tenant_id", flat=True)
    )
    assert {
        key: (row["runs_today"], row["running"])
        for key, row in central_rows(warehouse, table("tenant_usage_quotas")).items()
    } == {usage.tenant_id: (usage.runs_today, usage.running) for usage in TenantUsage.objects.all()}
    assert sorted(central_rows(warehouse, table("tenant_pipeline_runs"))) == sorted(
        str(pk) for pk in PipelineRun.objects.values_list("pk", flat=True)
    )
    assert sorted(central_rows(warehouse, table("tenant_pipeline_execution_queue"))) == sorted(
        str(pk)
        for pk in PipelineRun.objects.filter(status__in=["QUEUED", "PENDING"]).values_list("pk", flat=True)
    )
    assert {
        key: row["status"] for key, row in central_rows(warehouse, table("tenant_step_logs")).items()
    } == {str(pk): status for pk, status in StepLog.objects.values_list("pk", "status")}
    for name, model in (
        ("tenant_dq_results", DQResult),
        ("tenant_scheduled_pipeline_runs", Schedule),
        ("tenant_api_keys", TenantApiKey),
        ("tenant_cloud_credentials", CloudCredential),
    ):
        assert len(central_rows(warehouse, table(name))) == model.objects.count() > 0, name


def test_changes_made_while_the_broker_is_down_reach_the_central_tables_once_it_returns(
    make_tenant, warehouse, test_pipelines, settings
) -> None:
    from convergence.celery import app
    from convergence.tasks import mirror_drain_task

    bootstrap_central()
    dead_broker = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.CELERY_BROKER_URL = dead_broker
    # The broker is down: sending the drain fails.
    with pytest.raises(OperationalError), app.connection_for_write(dead_broker) as dead:
        mirror_drain_task.apply_async(connection=dead, retry=False)
    tenant, _raw = make_tenant("acme", plan="SCALE")
    key, _key_raw = api_key_create(tenant=tenant, actor=ACTOR)
    tenant_update(tenant=tenant, actor=ACTOR, description="during the outage")
    run, _usage = run_create(
        tenant=tenant,
        pipeline_name="test/engine/ok",
        parameters={"date": "2024-05-01"},
        actor=ACTOR,
        enqueue=False,
    )
    api_key_revoke(key=key, actor=ACTOR)
    # Every change committed; the outbox holds them and readiness shows both facts.
    OutboxEvent.objects.update(created_at=timezone.now() - dt.timedelta(seconds=900))
    pending = OutboxEvent.objects.count()
    assert pending == 9  # tenant, subscription, usage, 2 keys, profile edit, admission, run, revoke
    ready = APIClient().get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "error"
    assert ready.json()["mirror"]["status"] == "lagging"
    # The broker returns; the next beat-sent drain delivers everything.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    assert mirror_drain_task.apply().get()["events_delivered"] == pending
    assert OutboxEvent.objects.count() == 0
    assert mismatches(warehouse) == {}
    assert central_rows(warehouse, table("tenant_profiles"))["acme"]["description"] == "during the outage"
    assert central_rows(warehouse, table("tenant_api_keys"))[str(key.pk)]["is_active"] is False
    assert list(central_rows(warehouse, table("tenant_pipeline_runs"))) == [str(run.pk)]
    assert APIClient().get("/health/ready").json()["mirror"]["status"] == "ok"
