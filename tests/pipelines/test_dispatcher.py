"""The dispatcher: QUEUED -> PENDING within each tenant's concurrency limit, by plan priority then age."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from pipelines.models import PipelineRun
from pipelines.scheduler import queue_dispatch
from pipelines.services import run_cancel, run_claim, run_finish
from tenants.actors import Actor
from tenants.models import TenantUsage
from tests.pipelines import scheduler_factories
from tests.pipelines.scheduler_factories import make_queued_runs

pytestmark = pytest.mark.django_db

sent = scheduler_factories.sent  # the fixture


def _running(tenant_id: str) -> int:
    return TenantUsage.objects.get(tenant_id=tenant_id).running


def _statuses(runs: list[PipelineRun]) -> list[str]:
    by_pk = dict(PipelineRun.objects.values_list("pk", "status"))
    return [by_pk[run.pk] for run in runs]


def test_dispatch_stops_at_the_tenant_s_concurrent_limit(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("small", plan="STARTER")
    runs = make_queued_runs("small", 3)

    with django_capture_on_commit_callbacks(execute=True):
        assert queue_dispatch() == 1

    assert _statuses(runs) == ["PENDING", "QUEUED", "QUEUED"]  # the oldest first
    assert sent == [str(runs[0].pk)]
    assert _running("small") == 1
    usage = TenantUsage.objects.get(tenant_id="small")
    assert (usage.runs_today, usage.runs_this_period) == (0, 0)  # the quota was taken at tick time
    assert queue_dispatch() == 0  # full: nothing more, nothing sent
    assert len(sent) == 1


def test_higher_priority_runs_go_first_within_a_tenant(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("small", plan="STARTER")
    older = make_queued_runs("small", 1, priority=0)
    urgent = make_queued_runs("small", 1, priority=5)

    with django_capture_on_commit_callbacks(execute=True):
        queue_dispatch()

    assert _statuses(older + urgent) == ["QUEUED", "PENDING"]


def test_tenants_are_served_by_plan_priority_then_age(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("starter", plan="STARTER")
    make_tenant("pro", plan="PROFESSIONAL")
    make_tenant("scale", plan="SCALE")
    starter = make_queued_runs("starter", 1)  # oldest, but lowest plan
    pro = make_queued_runs("pro", 1)
    scale = make_queued_runs("scale", 1)

    with django_capture_on_commit_callbacks(execute=True):
        assert queue_dispatch() == 3

    assert sent == [str(scale[0].pk), str(pro[0].pk), str(starter[0].pk)]


def test_a_finishing_run_hands_its_slot_to_the_next_queued_run(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("small", plan="STARTER")
    first, second = make_queued_runs("small", 2)
    with django_capture_on_commit_callbacks(execute=True):
        queue_dispatch()
    claim = run_claim(run_id=str(first.pk))
    assert claim is not None

    with django_capture_on_commit_callbacks(execute=True):
        assert run_finish(claim=claim, status="COMPLETED")

    assert _statuses([first, second]) == ["COMPLETED", "PENDING"]
    assert sent == [str(first.pk), str(second.pk)]
    assert _running("small") == 1


def test_cancelling_a_running_run_hands_its_slot_on(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("small", plan="STARTER")
    first, second = make_queued_runs("small", 2)
    with django_capture_on_commit_callbacks(execute=True):
        queue_dispatch()

    with django_capture_on_commit_callbacks(execute=True):
        run_cancel(run=first, actor=Actor.system("test"))

    assert _statuses([first, second]) == ["CANCELLED", "PENDING"]
    assert _running("small") == 1


def test_cancelling_a_queued_run_frees_no_slot_and_dispatches_nothing(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("small", plan="STARTER")
    first, second, third = make_queued_runs("small", 3)
    with django_capture_on_commit_callbacks(execute=True):
        queue_dispatch()

    with django_capture_on_commit_callbacks(execute=True):
        run_cancel(run=second, actor=Actor.system("test"))

    assert _statuses([first, second, third]) == ["PENDING", "CANCELLED", "QUEUED"]
    assert _running("small") == 1
    assert sent == [str(first.pk)]


def test_dispatch_for_one_tenant_leaves_the_others_queued(
    make_tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_tenant("acme", plan="STARTER")
    make_tenant("globex", plan="STARTER")
    acme = make_queued_runs("acme", 1)
    globex = make_queued_runs("globex", 1)

    with django_capture_on_commit_callbacks(execute=True):
        assert queue_dispatch(tenant_id="acme") == 1

    assert _statuses(acme + globex) == ["PENDING", "QUEUED"]
    assert _running("globex") == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_never_exceed_the_limit(make_tenant, sent) -> None:
    make_tenant("pro", plan="PROFESSIONAL")  # 3 at once
    make_queued_runs("pro", 12)
    threads = 8
    barrier = threading.Barrier(threads)

    def dispatch(_index: int) -> int:
        barrier.wait()
        try:
            return queue_dispatch()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        dispatched = sum(pool.map(dispatch, range(threads)))

    assert dispatched == 3
    assert PipelineRun.objects.filter(status="PENDING").count() == 3
    assert PipelineRun.objects.filter(status="QUEUED").count() == 9
    assert _running("pro") == 3
    assert len(sent) == 3 and len(set(sent)) == 3
