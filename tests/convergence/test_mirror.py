from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from convergence.mirror.selectors import mirror_lag
from convergence.mirror.services import ADVISORY_LOCK_KEY, merge_source_sql, mirror_drain, mirror_resync
from convergence.mirror.tables import MIRRORED_AT, TABLES, captured_tables, central_schema
from convergence.mirror.triggers import CapturedTable, install_triggers, sqlite_install_sql
from convergence.models import OutboxEvent
from convergence.warehouse import TableRef, WarehouseError
from pipelines.models import DQResult, PipelineRun, RunStatus, StepLog
from pipelines.services import run_claim, run_create, run_finish, run_heartbeat, schedule_create
from tenants.models import Plan, Tenant, TenantApiKey, TenantUsage
from tenants.services import api_key_create, api_key_revoke, tenant_update
from tests.convergence.mirror_helpers import ACTOR, bootstrap_central, central_rows, mismatches, table

pytestmark = pytest.mark.django_db


def _events() -> list[tuple[str, str, str]]:
    return list(OutboxEvent.objects.order_by("id").values_list("table_name", "row_pk", "operation"))


@pytest.fixture
def acme(make_tenant, warehouse) -> tuple[Tenant, str]:
    """Central dataset bootstrapped, tenant ``acme`` created and its creation already mirrored."""
    bootstrap_central()
    tenant, raw = make_tenant("acme")
    assert mirror_drain().succeeded
    return tenant, raw


# --- capture ------------------------------------------------------------------------------------------


def test_creating_a_tenant_records_one_event_per_row_in_the_same_transaction(make_tenant) -> None:
    tenant, _raw = make_tenant("acme")
    key = TenantApiKey.objects.get(tenant=tenant)
    assert _events() == [
        ("tenants_tenant", "acme", "I"),
        ("tenants_subscription", "acme", "I"),
        ("tenants_tenantusage", "acme", "I"),
        ("tenants_tenantapikey", str(key.pk), "I"),
    ]


def test_raw_sql_admission_and_queryset_updates_are_captured(acme, test_pipelines) -> None:
    tenant, _raw = acme
    run, _usage = run_create(
        tenant=tenant,
        pipeline_name="test/engine/ok",
        parameters={"date": "2024-05-01"},
        actor=ACTOR,
        enqueue=False,
    )
    # Admission is a raw UPDATE ... RETURNING on tenants_tenantusage: Django sends no signal for it.
    assert _events() == [
        ("tenants_tenantusage", "acme", "U"),
        ("pipelines_pipelinerun", str(run.pk), "I"),
    ]
    OutboxEvent.objects.all().delete()
    claim = run_claim(run_id=str(run.pk))
    assert claim is not None
    assert run_heartbeat(claim=claim) is True
    assert _events() == [("pipelines_pipelinerun", str(run.pk), "U")] * 2


def test_a_rolled_back_change_leaves_no_event(acme) -> None:
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        Tenant.objects.filter(pk="acme").update(description="never committed")
        raise RuntimeError
    assert _events() == []


def test_deleting_a_tenant_records_deletes_for_every_dependent_row(acme) -> None:
    tenant, _raw = acme
    key = TenantApiKey.objects.get(tenant=tenant)
    tenant.delete()
    assert sorted(_events()) == [
        ("tenants_subscription", "acme", "D"),
        ("tenants_tenant", "acme", "D"),
        ("tenants_tenantapikey", str(key.pk), "D"),
        ("tenants_tenantusage", "acme", "D"),
    ]


def test_every_mirrored_source_table_has_exactly_one_outbox_trigger() -> None:
    expected = {item.table for item in captured_tables()}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = 'convergence_outbox' GROUP BY c.relname"
        )
        found = dict(cursor.fetchall())
    assert found == dict.fromkeys(expected, 1)
    # Installing again (every migrate does) neither duplicates nor drops a trigger.
    assert sorted(install_triggers(connection, captured_tables())) == sorted(expected)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'convergence_outbox'")
        assert cursor.fetchone()[0] == len(expected)


def test_sqlite_triggers_record_insert_update_key_change_and_delete() -> None:
    database = sqlite3.connect(":memory:")
    database.execute(
        "CREATE TABLE convergence_outboxevent (id INTEGER PRIMARY KEY AUTOINCREMENT, table_name TEXT, "
        "row_pk TEXT, operation TEXT, created_at TEXT)"
    )
    database.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)")
    for statement in sqlite_install_sql(CapturedTable("things", "id")):
        database.execute(statement)
    database.execute("INSERT INTO things (id, name) VALUES (7, 'a')")
    database.execute("UPDATE things SET name = 'b' WHERE id = 7")
    database.execute("UPDATE things SET id = 8 WHERE id = 7")
    database.execute("DELETE FROM things WHERE id = 8")
    rows = database.execute(
        "SELECT table_name, row_pk, operation, created_at FROM convergence_outboxevent ORDER BY id"
    ).fetchall()
    assert [row[:3] for row in rows] == [
        ("things", "7", "I"),
        ("things", "7", "U"),
        ("things", "7", "D"),
        ("things", "8", "U"),
        ("things", "8", "D"),
    ]
    # Django's SQLite datetime text, which the ORM parses back.
    assert dt.datetime.strptime(rows[0][3], "%Y-%m-%d %H:%M:%S.%f")


# --- delivery -----------------------------------------------------------------------------------------


def test_drain_writes_the_documented_columns_of_a_tenant_profile(acme, warehouse) -> None:
    tenant, _raw = acme
    assert warehouse.query("SELECT * FROM tenants.tenant_profiles").rows == [
        {
            "tenant_id": "acme",
            "description": "",
            "contact_email": "",
            "dataset_id": "acme_local",
            "created_at": tenant.created_at,
            "updated_at": Tenant.objects.get(pk="acme").updated_at,
            "mirrored_at": warehouse.query("SELECT mirrored_at FROM tenants.tenant_profiles").rows[0][
                "mirrored_at"
            ],
        }
    ]
    subscription = central_rows(warehouse, table("tenant_subscriptions"))["acme"]
    assert (subscription["plan"], subscription["daily_limit"], subscription["status"]) == (
        "STARTER",
        Plan.objects.get(code="STARTER").daily_limit,
        "ACTIVE",
    )
    assert OutboxEvent.objects.count() == 0


def test_drain_converges_to_the_latest_state_after_many_changes_of_one_row(acme, warehouse) -> None:
    tenant, _raw = acme
    for number in range(5):
        tenant_update(tenant=tenant, actor=ACTOR, description=f"version {number}")
    assert OutboxEvent.objects.filter(table_name="tenants_tenant").count() == 5
    result = mirror_drain()
    # Five events for one row coalesce into one MERGE of its current state.
    assert (result.events_delivered, result.rows_upserted) == (5, {"tenant_profiles": 1})
    assert central_rows(warehouse, table("tenant_profiles"))["acme"]["description"] == "version 4"
    assert mismatches(warehouse) == {}


def test_a_plan_change_reaches_every_subscriber_row(acme, make_tenant, warehouse) -> None:
    make_tenant("globex")
    mirror_drain()
    Plan.objects.filter(code="STARTER").update(daily_limit=777)
    result = mirror_drain()
    assert result.rows_upserted == {"tenant_subscriptions": 2, "tenant_usage_quotas": 2}
    assert {row["daily_limit"] for row in central_rows(warehouse, table("tenant_usage_quotas")).values()} == {
        777
    }
    assert mismatches(warehouse) == {}


def test_deletes_remove_central_rows(acme, warehouse, test_pipelines) -> None:
    tenant, _raw = acme
    schedule = schedule_create(
        tenant=tenant,
        pipeline="test/engine/ok",
        cron="0 2 * * *",
        timezone="UTC",
        parameters={"date": "today"},
        enabled=True,
        actor=ACTOR,
    )
    mirror_drain()
    assert list(central_rows(warehouse, table("tenant_scheduled_pipeline_runs"))) == [str(schedule.pk)]
    schedule.delete()
    tenant.delete()
    result = mirror_drain()
    assert result.rows_deleted["tenant_scheduled_pipeline_runs"] == 1
    assert result.rows_deleted["tenant_profiles"] == 1
    for item in TABLES:
        assert central_rows(warehouse, item) == {}, item.name


def test_runs_enter_and_leave_the_central_execution_queue(acme, warehouse, test_pipelines) -> None:
    tenant, _raw = acme
    run, _usage = run_create(
        tenant=tenant,
        pipeline_name="test/engine/ok",
        parameters={"date": "2024-05-01"},
        actor=ACTOR,
        enqueue=False,
    )
    mirror_drain()
    assert list(central_rows(warehouse, table("tenant_pipeline_execution_queue"))) == [str(run.pk)]
    claim = run_claim(run_id=str(run.pk))
    assert claim is not None
    StepLog.objects.create(
        run=run,
        attempt=1,
        position=0,
        step_id="first",
        ps_type="test.counting",
        status="COMPLETED",
        rows_affected=3,
    )
    DQResult.objects.create(
        run=run,
        attempt=1,
        step_id="q",
        check_name="row_count",
        status="PASS",
        severity="error",
        observed="3",
        expected=">= 1",
    )
    run_finish(claim=claim, status=RunStatus.COMPLETED, rows_processed=3)
    mirror_drain()
    assert central_rows(warehouse, table("tenant_pipeline_execution_queue")) == {}
    central_run = central_rows(warehouse, table("tenant_pipeline_runs"))[str(run.pk)]
    assert (central_run["status"], central_run["attempt"], central_run["rows_processed"]) == (
        "COMPLETED",
        1,
        3,
    )
    assert central_run["parameters"] == {"date": "2024-05-01"}
    assert central_rows(warehouse, table("tenant_usage_quotas"))["acme"]["running"] == 0
    assert mismatches(warehouse) == {}


def test_missing_central_tables_fail_the_drain_and_keep_every_event(make_tenant, warehouse, caplog) -> None:
    make_tenant("acme")  # no bootstrap: the central dataset does not exist
    before = _events()
    result = mirror_drain()
    assert result.failed_tables.keys() == {
        "tenant_api_keys",
        "tenant_profiles",
        "tenant_subscriptions",
        "tenant_usage_quotas",
    }
    assert "run `manage.py bootstrap`" in result.failed_tables["tenant_profiles"]
    assert (result.events_delivered, result.events_kept) == (0, 4)
    assert _events() == before
    assert "central table tenants.tenant_profiles does not exist" in caplog.text
    bootstrap_central()
    assert mirror_drain().events_delivered == 4
    assert mismatches(warehouse) == {}


class _FailingWarehouse:
    """The real warehouse, except that writes to one central table fail (an adapter-boundary fault)."""

    def __init__(self, inner: Any, table_name: str) -> None:
        self.inner, self.table_name = inner, table_name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def query_to_table(self, sql: str, destination: TableRef, **kwargs: Any) -> Any:
        if destination.table == self.table_name:
            raise WarehouseError("quota exceeded", retryable=True)
        return self.inner.query_to_table(sql, destination, **kwargs)


def test_a_failing_table_keeps_its_events_and_the_others_are_delivered(acme, warehouse) -> None:
    tenant, _raw = acme
    tenant_update(tenant=tenant, actor=ACTOR, description="changed", plan="SCALE")
    key, _raw_key = api_key_create(tenant=tenant, actor=ACTOR)
    result = mirror_drain(warehouse=_FailingWarehouse(warehouse, "tenant_usage_quotas"))
    # Subscription events feed the usage table too, so they stay; tenant and key events are delivered.
    assert result.failed_tables == {"tenant_usage_quotas": "quota exceeded"}
    assert _events() == [("tenants_subscription", "acme", "U")]
    assert central_rows(warehouse, table("tenant_profiles"))["acme"]["description"] == "changed"
    assert str(key.pk) in central_rows(warehouse, table("tenant_api_keys"))
    assert central_rows(warehouse, table("tenant_usage_quotas"))["acme"]["daily_limit"] == (
        Plan.objects.get(code="STARTER").daily_limit
    )
    retried = mirror_drain()
    assert (retried.events_delivered, retried.failed_tables) == (1, {})
    assert mismatches(warehouse) == {}


def test_a_change_committed_during_a_drain_is_delivered_by_the_next_one(acme, warehouse) -> None:
    tenant, _raw = acme
    tenant_update(tenant=tenant, actor=ACTOR, description="first")

    class _ChangeDuringWrite(_FailingWarehouse):
        def query_to_table(self, sql: str, destination: TableRef, **kwargs: Any) -> Any:
            written = self.inner.query_to_table(sql, destination, **kwargs)
            Tenant.objects.filter(pk="acme").update(description="second")
            return written

    mirror_drain(warehouse=_ChangeDuringWrite(warehouse, ""))
    assert central_rows(warehouse, table("tenant_profiles"))["acme"]["description"] == "first"
    assert _events() == [("tenants_tenant", "acme", "U")]
    mirror_drain()
    assert central_rows(warehouse, table("tenant_profiles"))["acme"]["description"] == "second"


def test_a_second_drain_does_nothing_while_one_holds_the_lock(acme) -> None:
    tenant, _raw = acme
    tenant_update(tenant=tenant, actor=ACTOR, description="waiting")
    database = settings.DATABASES["default"]
    with psycopg.connect(
        host=database["HOST"],
        port=database["PORT"] or 5432,
        user=database["USER"],
        password=database["PASSWORD"] or None,
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        result = mirror_drain()
        assert (result.locked_out, result.events_read) == (True, 0)
        assert _events() == [("tenants_tenant", "acme", "U")]
        other.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
    assert mirror_drain().events_delivered == 1


def test_resync_restores_deleted_central_rows_and_removes_orphans(acme, warehouse) -> None:
    warehouse.query("DELETE FROM tenants.tenant_profiles WHERE tenant_id = 'acme'")
    warehouse.query(
        "INSERT INTO tenants.tenant_api_keys (tenant_api_key_id, tenant_id, tenant_api_key_hash, "
        "is_active, created_at, mirrored_at) "
        "VALUES ('orphan', 'gone', 'x', true, CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP())"
    )
    assert set(mismatches(warehouse)) == {"tenant_profiles", "tenant_api_keys"}
    queued = mirror_resync()
    # acme's 4 rows + the orphan key.
    assert queued == 5
    result = mirror_drain()
    assert result.rows_deleted["tenant_api_keys"] == 1
    assert mismatches(warehouse) == {}


# --- secrets ------------------------------------------------------------------------------------------


def test_no_central_table_holds_a_plaintext_key_or_any_encrypted_blob(acme, warehouse) -> None:
    from tenants.models import CloudCredential
    from tenants.services import credential_create

    tenant, first_raw = acme
    second, second_raw = api_key_create(tenant=tenant, actor=ACTOR, description="second")
    api_key_revoke(key=second, actor=ACTOR)
    secret_value = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEYab"
    credential_create(
        tenant=tenant,
        actor=ACTOR,
        provider="aws",
        name="billing",
        secret={"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": secret_value},
    )
    assert mirror_drain().succeeded
    dump = json.dumps(
        {item.name: warehouse.query(f"SELECT * FROM tenants.{item.name}").rows for item in TABLES},
        default=str,
    )
    blobs = [bytes(key.encrypted_key) for key in TenantApiKey.objects.all()]
    blobs += [bytes(item.encrypted_secret) for item in CloudCredential.objects.all()]
    assert len(blobs) == 3
    forbidden = [first_raw, second_raw, secret_value, "AKIAIOSFODNN7EXAMPLE"]
    for blob in blobs:
        forbidden += [blob.hex(), base64.b64encode(blob).decode(), blob[-16:].hex(), blob.decode("latin-1")]
    for needle in forbidden:
        assert needle not in dump
    # The dump is real: it carries what the mirror is meant to carry.
    assert TenantApiKey.objects.get(pk=second.pk).key_hash in dump
    assert CloudCredential.objects.get().fingerprint in dump


# --- lag, health, task, command -----------------------------------------------------------------------


def test_lag_is_the_age_of_the_oldest_undelivered_event(acme) -> None:
    tenant, _raw = acme
    assert mirror_lag().lag_seconds == 0.0
    tenant_update(tenant=tenant, actor=ACTOR, description="later")
    created = OutboxEvent.objects.get().created_at
    assert mirror_lag(now=created + dt.timedelta(seconds=30)).lag_seconds == 30.0
    assert mirror_lag(now=created + dt.timedelta(seconds=300)).lag_seconds == 300.0
    assert mirror_lag(now=created + dt.timedelta(seconds=300)).status == "lagging"
    mirror_drain()
    assert mirror_lag(now=created + dt.timedelta(seconds=300)).lag_seconds == 0.0


def test_ready_reports_mirror_lag_without_failing_the_probe(acme, settings) -> None:
    tenant, _raw = acme
    settings.MIRROR_LAG_THRESHOLD_S = 60
    body = APIClient().get("/health/ready").json()
    assert body["mirror"] == {"status": "ok", "lag_seconds": 0.0, "threshold_seconds": 60}
    tenant_update(tenant=tenant, actor=ACTOR, description="undelivered")
    # The drain is not running: the stored change ages (backdated rather than slept through).
    OutboxEvent.objects.update(created_at=timezone.now() - dt.timedelta(seconds=3600))
    response = APIClient().get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["mirror"]["status"] == "lagging"
    assert response.json()["mirror"]["lag_seconds"] >= 3600
    mirror_drain()
    assert APIClient().get("/health/ready").json()["mirror"]["status"] == "ok"


def test_the_drain_task_is_registered_and_scheduled_by_beat() -> None:
    from convergence.celery import app

    app.loader.import_default_modules()
    assert "convergence.mirror_drain" in app.tasks
    entry = settings.CELERY_BEAT_SCHEDULE["mirror-drain"]
    assert (entry["task"], entry["schedule"]) == (
        "convergence.mirror_drain",
        float(settings.MIRROR_INTERVAL_S),
    )


def test_the_task_drains(acme, warehouse) -> None:
    from convergence.tasks import mirror_drain_task

    tenant, _raw = acme
    tenant_update(tenant=tenant, actor=ACTOR, description="via task")
    assert mirror_drain_task.apply().get() == {
        "locked_out": False,
        "events_delivered": 1,
        "events_kept": 0,
        "failed_tables": [],
    }
    assert central_rows(warehouse, table("tenant_profiles"))["acme"]["description"] == "via task"


def test_mirror_drain_command_summarises_and_fails_without_central_tables(make_tenant, capsys) -> None:
    make_tenant("acme")
    with pytest.raises(
        CommandError, match=r"failed: .*tenant_profiles \(central table tenants.tenant_profiles"
    ):
        call_command("mirror_drain")
    assert OutboxEvent.objects.count() == 4
    bootstrap_central()
    call_command("mirror_drain")
    assert (
        capsys.readouterr().out.strip() == "mirror: 4 event(s) delivered, 0 kept; 4 row(s) merged, 0 deleted"
    )
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("mirror_drain", "--batch-size", "0")
    with pytest.raises(CommandError, match="--table only applies with --resync"):
        call_command("mirror_drain", "--table", "tenant_profiles")


def test_small_batches_deliver_everything_in_rounds(acme, warehouse) -> None:
    tenant, _raw = acme
    for number in range(7):
        api_key_create(tenant=tenant, actor=ACTOR, description=str(number))
    result = mirror_drain(batch_size=3, max_batches=2)
    assert (result.events_read, result.events_delivered, OutboxEvent.objects.count()) == (6, 6, 1)
    assert mirror_drain(batch_size=3).events_delivered == 1
    assert mismatches(warehouse) == {}


# --- schema -------------------------------------------------------------------------------------------


def test_central_schemas_are_exactly_the_mapped_columns() -> None:
    for item in TABLES:
        schema = central_schema(item.name)
        assert [field.name for field in schema] == [*item.columns, MIRRORED_AT], item.name
        key = next(field for field in schema if field.name == item.key)
        assert (key.type, key.mode) == ("STRING", "REQUIRED"), item.name


def test_merge_sql_binds_rows_as_one_json_parameter() -> None:
    sql = merge_source_sql(central_schema("tenant_usage_quotas"))
    assert sql.startswith("SELECT JSON_VALUE(r, '$.tenant_id') AS tenant_id, ")
    assert "CAST(JSON_VALUE(r, '$.usage_date') AS DATE) AS usage_date" in sql
    assert sql.endswith("CURRENT_TIMESTAMP() AS mirrored_at FROM UNNEST(JSON_QUERY_ARRAY(@rows)) AS r")


def test_usage_row_matches_the_counters_after_admissions(acme, warehouse, test_pipelines) -> None:
    tenant, _raw = acme
    tenant = tenant_update(tenant=tenant, actor=ACTOR, plan="SCALE")
    for day in ("2024-05-01", "2024-05-02"):
        run_create(
            tenant=tenant,
            pipeline_name="test/engine/ok",
            parameters={"date": day},
            actor=ACTOR,
            enqueue=False,
        )
    mirror_drain()
    usage = TenantUsage.objects.get(tenant=tenant)
    central = central_rows(warehouse, table("tenant_usage_quotas"))["acme"]
    assert (central["runs_today"], central["runs_this_period"], central["running"]) == (2, 2, 2)
    assert central["usage_date"] == usage.day.isoformat()
    assert PipelineRun.objects.count() == len(central_rows(warehouse, table("tenant_pipeline_runs"))) == 2
