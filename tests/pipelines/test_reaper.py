"""The reaper: runs whose worker stopped heart-beating are requeued (attempt + 1 on the next claim) up
to max_attempts, then FAILED worker_lost, releasing their slot exactly once; stale finishes are fenced."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from pipelines.models import PipelineRun, StepLog
from pipelines.scheduler import queue_dispatch, runs_reap
from pipelines.services import WORKER_LOST_ERROR, run_claim, run_finish
from tenants.models import TenantUsage
from tests.pipelines import scheduler_factories
from tests.pipelines.scheduler_factories import make_queued_runs

pytestmark = pytest.mark.django_db

sent = scheduler_factories.sent  # the fixture


@pytest.fixture
def running_run(make_tenant, sent, django_capture_on_commit_callbacks):
    """A SCALE tenant's run, dispatched and claimed once (attempt 1)."""
    make_tenant("big", plan="SCALE")
    (run,) = make_queued_runs("big", 1)
    with django_capture_on_commit_callbacks(execute=True):
        queue_dispatch()
    claim = run_claim(run_id=str(run.pk))
    assert claim is not None and claim.attempt == 1
    sent.clear()
    return run, claim


def _after_lease(seconds: int = 1) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.RUN_LEASE_S + seconds)


def _running(tenant_id: str = "big") -> int:
    return TenantUsage.objects.get(tenant_id=tenant_id).running


def test_a_run_with_an_expired_lease_is_requeued_and_resent(
    running_run, sent, django_capture_on_commit_callbacks
) -> None:
    run, _claim = running_run

    with django_capture_on_commit_callbacks(execute=True):
        result = runs_reap(now=_after_lease())

    assert (result.requeued, result.failed) == (1, 0)
    run.refresh_from_db()
    assert (run.status, run.attempt) == ("PENDING", 1)  # the next claim makes it attempt 2
    assert sent == [str(run.pk)]
    assert _running() == 1  # still holds its slot while it waits for a worker
    again = run_claim(run_id=str(run.pk))
    assert again is not None and again.attempt == 2


def test_a_run_with_a_live_lease_is_left_alone(running_run, sent, django_capture_on_commit_callbacks) -> None:
    run, _claim = running_run

    with django_capture_on_commit_callbacks(execute=True):
        result = runs_reap(now=timezone.now() + dt.timedelta(seconds=settings.RUN_LEASE_S - 5))

    assert (result.requeued, result.failed, result.resent) == (0, 0, 0)
    assert PipelineRun.objects.get(pk=run.pk).status == "RUNNING"
    assert sent == []


def test_a_run_out_of_attempts_fails_worker_lost_and_releases_its_slot_once(
    running_run, sent, django_capture_on_commit_callbacks
) -> None:
    run, _claim = running_run
    PipelineRun.objects.filter(pk=run.pk).update(attempt=run.max_attempts)

    with django_capture_on_commit_callbacks(execute=True):
        result = runs_reap(now=_after_lease())
    with django_capture_on_commit_callbacks(execute=True):
        second = runs_reap(now=_after_lease(60))

    assert (result.requeued, result.failed) == (0, 1)
    assert (second.requeued, second.failed) == (0, 0)
    run.refresh_from_db()
    assert (run.status, run.error) == ("FAILED", WORKER_LOST_ERROR)
    assert run.error.startswith("worker_lost")
    assert _running() == 0
    assert run_claim(run_id=str(run.pk)) is None  # a late redelivery changes nothing
    assert _running() == 0
    assert sent == []


def test_a_stale_worker_s_finish_after_the_run_was_taken_over_changes_nothing(
    running_run, django_capture_on_commit_callbacks
) -> None:
    run, stale_claim = running_run
    with django_capture_on_commit_callbacks(execute=True):
        runs_reap(now=_after_lease())
    new_claim = run_claim(run_id=str(run.pk))
    assert new_claim is not None
    StepLog.objects.create(run=run, attempt=2, position=0, step_id="first", ps_type="x", status="RUNNING")

    assert run_finish(claim=stale_claim, status="COMPLETED", rows_processed=99) is False

    run.refresh_from_db()
    assert (run.status, run.attempt, run.rows_processed) == ("RUNNING", 2, 0)
    assert _running() == 1
    assert run_finish(claim=new_claim, status="COMPLETED", rows_processed=7) is True
    assert PipelineRun.objects.get(pk=run.pk).rows_processed == 7
    assert _running() == 0


def test_a_stale_finish_while_the_run_waits_requeued_changes_nothing(
    running_run, django_capture_on_commit_callbacks
) -> None:
    run, stale_claim = running_run
    with django_capture_on_commit_callbacks(execute=True):
        runs_reap(now=_after_lease())

    assert run_finish(claim=stale_claim, status="FAILED", error="late") is False
    run.refresh_from_db()
    assert (run.status, run.error) == ("PENDING", "")
    assert _running() == 1


def test_a_pending_run_left_unclaimed_is_sent_again(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("big", plan="SCALE")
    old, _fresh = make_queued_runs("big", 2)
    with django_capture_on_commit_callbacks(execute=True):
        queue_dispatch()
    sent.clear()
    long_ago = timezone.now() - dt.timedelta(seconds=settings.RUN_RESEND_AFTER_S + 5)
    PipelineRun.objects.filter(pk=old.pk).update(enqueued_at=long_ago)

    with django_capture_on_commit_callbacks(execute=True):
        result = runs_reap()

    assert result.resent == 1
    assert sent == [str(old.pk)]
    assert PipelineRun.objects.get(pk=old.pk).status == "PENDING"
    with django_capture_on_commit_callbacks(execute=True):
        assert runs_reap().resent == 0  # its send time moved on
