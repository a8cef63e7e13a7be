from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from pipelines.models import DQResult, PipelineRun, StepLog
from pipelines.services import run_claim, run_execute, run_finish
from tenants.models import AuditLog, Subscription, TenantUsage

pytestmark = pytest.mark.django_db

RUN_URL = "/api/v1/pipelines/run/acme/test/engine/{}"


@pytest.fixture
def acme(make_tenant, tenant_client, test_pipelines):
    _tenant, raw = make_tenant("acme")
    return tenant_client(raw)


def _trigger(client, pipeline="ok", body=None, **extra):
    return client.post(
        RUN_URL.format(pipeline), body if body is not None else {"date": "2025-11-19"}, format="json", **extra
    )


def test_trigger_accepts_and_sends_one_task_after_commit(acme, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _trigger(acme, HTTP_X_USER_ID="bob")
    assert response.status_code == 202, response.content
    body = response.json()
    run = PipelineRun.objects.get()
    assert body == {
        "pipeline_logging_id": str(run.pk),
        "pipeline_id": "acme_test_engine_ok",
        "status": "PENDING",
        "status_url": f"/api/v1/pipelines/runs/{run.pk}",
    }
    assert len(callbacks) == 1
    assert response["X-Quota-Daily-Limit"] == "6"
    assert response["X-Quota-Daily-Remaining"] == "5"
    assert response["X-Quota-Monthly-Remaining"] == "179"
    assert response["X-Quota-Concurrent-Limit"] == "1"
    assert (run.user_id, run.trigger, run.parameters) == ("bob", "manual", {"date": "2025-11-19"})
    assert AuditLog.objects.filter(action="run.create", target_id=str(run.pk), user_id="bob").count() == 1


def test_completed_run_shows_steps(acme, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme).json()["pipeline_logging_id"]
    assert run_execute(run_id=run_id) == "COMPLETED"
    detail = acme.get(f"/api/v1/pipelines/runs/{run_id}").json()
    assert detail["status"] == "COMPLETED"
    assert detail["rows_processed"] == 7
    assert detail["error"] == ""
    assert detail["duration_ms"] is not None and detail["duration_ms"] >= 0
    assert [(s["step_id"], s["status"], s["rows_affected"]) for s in detail["steps"]] == [
        ("first", "COMPLETED", 3),
        ("second", "COMPLETED", 4),
    ]
    assert detail["dq_results"] == []


def test_retryable_failure_succeeds_on_retry(acme, django_capture_on_commit_callbacks, monkeypatch) -> None:
    monkeypatch.setattr("pipelines.engine.time.sleep", lambda seconds: None)
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme, "flaky").json()["pipeline_logging_id"]
    assert run_execute(run_id=run_id) == "COMPLETED"
    step = StepLog.objects.get(run_id=run_id)
    assert (step.status, step.tries, step.rows_affected) == ("COMPLETED", 2, 5)


def test_non_retryable_failure_fails_run_and_skips_dependants(
    acme, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme, "broken").json()["pipeline_logging_id"]
    assert run_execute(run_id=run_id) == "FAILED"
    detail = acme.get(f"/api/v1/pipelines/runs/{run_id}").json()
    assert detail["status"] == "FAILED"
    assert detail["error"] == "step broken: transient failure 1"
    assert [(s["step_id"], s["status"]) for s in detail["steps"]] == [
        ("load", "COMPLETED"),
        ("broken", "FAILED"),
        ("after", "SKIPPED"),
    ]
    assert StepLog.objects.get(run_id=run_id, step_id="broken").tries == 1


def test_step_timeout_fails_the_run(acme, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme, "timeout").json()["pipeline_logging_id"]
    assert run_execute(run_id=run_id) == "FAILED"
    assert PipelineRun.objects.get(pk=run_id).error == "step slow: step timed out after 1s"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"date": "2025-01-01' OR '1'='1"}, "date"),
        ({"date": "2025-02-30"}, "date"),
        ({}, "date"),
        ({"date": "2025-01-01", "extra": 1}, "extra"),
        ({"date": "2025-01-01", "label": "x'; DROP TABLE t; --"}, "label"),
    ],
)
def test_bad_parameters_are_400_and_consume_nothing(acme, body, field) -> None:
    response = _trigger(acme, body=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameters"
    assert field in response.json()["error"]["details"]
    assert PipelineRun.objects.count() == 0
    assert TenantUsage.objects.get(tenant_id="acme").runs_today == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pipelines/run/acme/test/engine/nope",
        "/api/v1/pipelines/run/acme/../engine/ok",
        "/api/v1/pipelines/run/acme/test/engine/..",
        "/api/v1/pipelines/run/acme/test/engine%2Fok/x",
        "/api/v1/pipelines/run/acme/test/engine/%2e%2e",
        "/api/v1/pipelines/run/acme/system/x/bootstrap",
        "/api/v1/pipelines/run/acme/tenant/onboarding/x",
    ],
)
def test_unknown_or_escaping_pipeline_paths_are_404(acme, path) -> None:
    response = acme.post(path, {"date": "2025-01-01"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert PipelineRun.objects.count() == 0


def test_daily_quota_429_with_retry_after_to_midnight(acme, django_capture_on_commit_callbacks) -> None:
    usage = TenantUsage.objects.get(tenant_id="acme")
    usage.day, usage.runs_today = timezone.now().date(), 6
    usage.save()
    response = _trigger(acme)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "daily_quota_exceeded"
    now = timezone.now()
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    assert abs(int(response["Retry-After"]) - (midnight - now).total_seconds()) <= 3
    assert response["X-Quota-Daily-Remaining"] == "0"
    assert PipelineRun.objects.count() == 0
    assert TenantUsage.objects.get(tenant_id="acme").runs_today == 6


def test_monthly_quota_429(acme) -> None:
    usage = TenantUsage.objects.get(tenant_id="acme")
    usage.runs_this_period = 180
    usage.save()
    response = _trigger(acme)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "monthly_quota_exceeded"
    assert int(response["Retry-After"]) > 0
    assert PipelineRun.objects.count() == 0


def test_concurrent_limit_429_while_one_is_pending(acme, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        assert _trigger(acme).status_code == 202
    response = _trigger(acme)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "concurrent_limit_exceeded"
    assert response["Retry-After"] == "5"
    assert PipelineRun.objects.count() == 1
    assert TenantUsage.objects.get(tenant_id="acme").runs_today == 1


@pytest.mark.parametrize("status,trial_delta", [("SUSPENDED", None), ("CANCELLED", None), ("TRIAL", -1)])
def test_inactive_subscription_is_403(acme, status, trial_delta) -> None:
    subscription = Subscription.objects.get(tenant_id="acme")
    subscription.status = status
    if trial_delta is not None:
        subscription.trial_ends_at = timezone.now() + dt.timedelta(days=trial_delta)
    subscription.save()
    response = _trigger(acme)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "subscription_inactive"
    assert PipelineRun.objects.count() == 0
    assert TenantUsage.objects.get(tenant_id="acme").runs_today == 0


def test_cancel_pending_then_409(acme, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme).json()["pipeline_logging_id"]
    response = acme.post(f"/api/v1/pipelines/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    again = acme.post(f"/api/v1/pipelines/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert run_execute(run_id=run_id) is None  # a late delivery does nothing
    assert PipelineRun.objects.get(pk=run_id).status == "CANCELLED"
    assert StepLog.objects.filter(run_id=run_id).count() == 0


def test_cancel_is_honoured_between_steps(acme, django_capture_on_commit_callbacks, monkeypatch) -> None:
    from pipelines import services

    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme, "slow").json()["pipeline_logging_id"]
    original = services._RunRecorder.step_finished

    def cancel_after_first_step(self, outcome, position, dq_records):
        original(self, outcome, position, dq_records)
        if outcome.step_id == "first":  # the tenant cancels while step "first" runs
            assert acme.post(f"/api/v1/pipelines/runs/{run_id}/cancel").status_code == 200

    monkeypatch.setattr(services._RunRecorder, "step_finished", cancel_after_first_step)
    assert run_execute(run_id=run_id) is None
    assert PipelineRun.objects.get(pk=run_id).status == "CANCELLED"
    assert list(StepLog.objects.filter(run_id=run_id).values_list("step_id", flat=True)) == ["first"]


def test_other_tenants_run_is_404(
    acme, make_tenant, tenant_client, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme).json()["pipeline_logging_id"]
    _other, other_raw = make_tenant("globex")
    other = tenant_client(other_raw)
    for response in (
        other.get(f"/api/v1/pipelines/runs/{run_id}"),
        other.post(f"/api/v1/pipelines/runs/{run_id}/cancel"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert other.get("/api/v1/pipelines/runs").json()["count"] == 0
    assert PipelineRun.objects.get(pk=run_id).status == "PENDING"
    assert other.get(f"/api/v1/pipelines/runs/{uuid.uuid4()}").status_code == 404
    assert other.get("/api/v1/pipelines/runs/not-a-uuid").status_code == 404


def test_run_list_filters_and_orders_newest_first(acme, settings, django_capture_on_commit_callbacks) -> None:
    from tenants.models import Plan

    Plan.objects.filter(code="STARTER").update(concurrent_limit=10)
    ids = []
    with django_capture_on_commit_callbacks(execute=False):
        for pipeline in ("ok", "flaky", "ok"):
            ids.append(_trigger(acme, pipeline).json()["pipeline_logging_id"])
    run_execute(run_id=ids[0])
    listed = acme.get("/api/v1/pipelines/runs").json()
    assert [r["pipeline_logging_id"] for r in listed["results"]] == list(reversed(ids))
    assert listed["count"] == 3
    assert [
        r["pipeline_logging_id"]
        for r in acme.get("/api/v1/pipelines/runs?status=COMPLETED").json()["results"]
    ] == [ids[0]]
    assert acme.get("/api/v1/pipelines/runs?pipeline=test/engine/flaky").json()["count"] == 1
    assert acme.get("/api/v1/pipelines/runs?page_size=2").json()["next"] is not None
    bad = acme.get("/api/v1/pipelines/runs?status=BOGUS")
    assert bad.status_code == 400 and "status" in bad.json()["error"]["details"]
    assert acme.get("/api/v1/pipelines/runs?page_size=100000").status_code == 400


def test_completion_is_fenced_by_attempt(acme, settings, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme).json()["pipeline_logging_id"]
    first = run_claim(run_id=run_id)
    assert first is not None and first.attempt == 1
    assert run_claim(run_id=run_id) is None  # live lease: a duplicate delivery gets nothing
    later = timezone.now() + dt.timedelta(seconds=settings.RUN_LEASE_S + 1)
    second = run_claim(run_id=run_id, now=later)  # the first worker's lease expired
    assert second is not None and second.attempt == 2
    assert run_finish(claim=first, status="COMPLETED") is False
    assert PipelineRun.objects.get(pk=run_id).status == "RUNNING"
    assert run_finish(claim=second, status="COMPLETED") is True
    assert run_finish(claim=second, status="FAILED") is False
    assert PipelineRun.objects.get(pk=run_id).status == "COMPLETED"


def test_catalog_lists_tenant_pipelines_only(acme) -> None:
    catalog = acme.get("/api/v1/pipelines/catalog").json()
    names = [entry["pipeline"] for entry in catalog]
    assert "test/engine/ok" in names
    assert not any(name.startswith(("system/", "tenant/")) for name in names)
    ok = next(entry for entry in catalog if entry["pipeline"] == "test/engine/ok")
    assert ok["parameters"]["date"] == {"type": "date", "required": True}
    assert ok["parameters"]["label"]["pattern"] == "^[a-z ]{0,20}$"


def test_dq_results_model_is_attempt_scoped(acme, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        run_id = _trigger(acme).json()["pipeline_logging_id"]
    run = PipelineRun.objects.get(pk=run_id)
    DQResult.objects.create(
        run=run, attempt=0, step_id="x", check_name="old", status="FAIL", severity="error"
    )
    run_execute(run_id=run_id)
    assert acme.get(f"/api/v1/pipelines/runs/{run_id}").json()["dq_results"] == []


def test_monthly_retry_after_points_at_the_subscription_anniversary(acme) -> None:
    from tenants.selectors import next_period_start

    anchor = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
    assert next_period_start(anchor=anchor, now=dt.datetime(2026, 2, 10, tzinfo=dt.UTC)) == dt.datetime(
        2026, 2, 28, 12, 0, tzinfo=dt.UTC
    )
    assert next_period_start(
        anchor=anchor, now=dt.datetime(2026, 2, 28, 12, 0, tzinfo=dt.UTC)
    ) == dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)
    subscription = Subscription.objects.get(tenant_id="acme")
    now = timezone.now()
    subscription.current_period_start = now - dt.timedelta(days=3)
    subscription.save()
    usage = TenantUsage.objects.get(tenant_id="acme")
    usage.period_start, usage.runs_this_period = subscription.current_period_start, 180
    usage.save()
    response = _trigger(acme)
    assert response.status_code == 429
    expected = next_period_start(anchor=subscription.current_period_start, now=now) - now
    assert abs(int(response["Retry-After"]) - expected.total_seconds()) <= 3


def _running() -> int:
    return TenantUsage.objects.get(tenant_id="acme").running


def test_running_slot_is_taken_on_admission_and_given_back_on_every_exit(
    acme, settings, django_capture_on_commit_callbacks
) -> None:
    from pipelines.services import usage_recount

    with django_capture_on_commit_callbacks(execute=False):
        completed = _trigger(acme).json()["pipeline_logging_id"]
    assert _running() == 1
    assert acme.get("/api/v1/tenants/acme").json()["usage"]["running"] == 1
    run_execute(run_id=completed)
    assert _running() == 0

    with django_capture_on_commit_callbacks(execute=False):
        cancelled = _trigger(acme).json()["pipeline_logging_id"]
    acme.post(f"/api/v1/pipelines/runs/{cancelled}/cancel")
    assert _running() == 0

    with django_capture_on_commit_callbacks(execute=False):
        lost = _trigger(acme).json()["pipeline_logging_id"]
    PipelineRun.objects.filter(pk=lost).update(
        status="RUNNING", attempt=3, heartbeat_at=timezone.now() - dt.timedelta(hours=1)
    )
    assert run_claim(run_id=lost) is None  # out of attempts: failed as worker_lost
    assert PipelineRun.objects.get(pk=lost).status == "FAILED"
    assert PipelineRun.objects.get(pk=lost).error.startswith("worker_lost")
    assert _running() == 0

    TenantUsage.objects.filter(tenant_id="acme").update(running=5)  # drift from a manual edit
    assert usage_recount(tenant_id="acme") == 0
    assert _running() == 0
