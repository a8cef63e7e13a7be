from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from pipelines.models import PipelineRun, StepLog
from tenants.models import AuditLog, TenantUsage

pytestmark = pytest.mark.django_db


def test_run_pipeline_sync_runs_in_process(make_tenant, test_pipelines, capsys) -> None:
    make_tenant("acme")
    call_command("run_pipeline", "acme", "test/engine/ok", "--param", "date=2025-11-19", "--sync")
    run = PipelineRun.objects.get()
    assert (run.status, run.trigger, run.parameters, run.rows_processed) == (
        "COMPLETED",
        "manual",
        {"date": "2025-11-19"},
        7,
    )
    assert f"{run.pk} COMPLETED" in capsys.readouterr().out
    assert TenantUsage.objects.get(tenant_id="acme").runs_today == 0  # staff runs consume no quota


def test_backfill_makes_one_run_per_day_with_progress(make_tenant, test_pipelines, capsys) -> None:
    make_tenant("acme")
    call_command(
        "run_pipeline", "acme", "test/engine/ok", "--start", "2025-11-01", "--end", "2025-11-05", "--sync"
    )
    runs = PipelineRun.objects.order_by("created_at")
    assert [run.parameters["date"] for run in runs] == [f"2025-11-0{day}" for day in range(1, 6)]
    assert {run.trigger for run in runs} == {"backfill"}
    assert {run.status for run in runs} == {"COMPLETED"}
    assert "5/5" in capsys.readouterr().err


def test_failed_runs_make_the_command_fail(make_tenant, test_pipelines) -> None:
    make_tenant("acme")
    with pytest.raises(CommandError, match="1 of 1 run"):
        call_command("run_pipeline", "acme", "test/engine/broken", "--param", "date=2025-11-19", "--sync")
    assert PipelineRun.objects.get().status == "FAILED"


@pytest.mark.parametrize(
    "args,message",
    [
        (["ghost", "test/engine/ok"], "unknown tenant 'ghost'"),
        (["acme", "test/engine/nope"], "unknown pipeline 'test/engine/nope'"),
        (["acme", "test/engine/ok", "--param", "date"], "--param takes NAME=VALUE"),
        (
            ["acme", "test/engine/ok", "--param", "date=2025-13-01"],
            "invalid parameters: date: must be a valid calendar",
        ),
        (
            ["acme", "test/engine/ok", "--start", "2025-11-05", "--end", "2025-11-01"],
            "--end is before --start",
        ),
        (["acme", "test/engine/ok", "--start", "2025-11-05"], "--start and --end go together"),
    ],
)
def test_bad_arguments_give_one_line_errors_and_no_runs(make_tenant, test_pipelines, args, message) -> None:
    make_tenant("acme")
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("run_pipeline", *args, "--sync")
    assert PipelineRun.objects.count() == 0


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-not-used")
    client = Client()
    client.force_login(user)
    return client


def test_runs_admin_list_detail_and_actions(make_tenant, test_pipelines, staff_client) -> None:
    make_tenant("acme")
    call_command("run_pipeline", "acme", "test/engine/ok", "--param", "date=2025-11-19", "--sync")
    run = PipelineRun.objects.get()
    listing = staff_client.get("/admin/pipelines/pipelinerun/")
    assert listing.status_code == 200 and str(run.pk).encode() in listing.content
    assert staff_client.get(f"/admin/pipelines/pipelinerun/?q={run.pk}").status_code == 200
    detail = staff_client.get(f"/admin/pipelines/pipelinerun/{run.pk}/change/")
    assert detail.status_code == 200
    assert b"second" in detail.content  # step logs inline
    response = staff_client.post(
        "/admin/pipelines/pipelinerun/", {"action": "retry_runs", "_selected_action": [str(run.pk)]}
    )
    assert response.status_code == 302
    retried = PipelineRun.objects.exclude(pk=run.pk).get()
    assert (retried.status, retried.parameters) == ("PENDING", run.parameters)
    staff_client.post(
        "/admin/pipelines/pipelinerun/",
        {"action": "cancel_runs", "_selected_action": [str(retried.pk), str(run.pk)]},
    )
    retried.refresh_from_db()
    run.refresh_from_db()
    assert (retried.status, run.status) == ("CANCELLED", "COMPLETED")
    assert AuditLog.objects.filter(action="run.cancel", actor_type="staff").count() == 1
    assert StepLog.objects.filter(run=retried).count() == 0
