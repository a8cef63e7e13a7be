"""Acceptance: two tick processes at once over 10,000 due schedules yield exactly one run per due time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from pipelines.models import PipelineRun, Schedule
from tenants.models import Plan, TenantUsage
from tests.pipelines.scheduler_factories import make_schedules, utc

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCHEDULES = 10_000
NOW = "2025-11-19T05:00:30Z"
# ``manage.py`` with the test-only processor registered (the test pipelines use it), as worker_launcher does.
MANAGE_WITH_TEST_PROCESSOR = (
    "import sys; from pipelines import registry; "
    "registry.PROCESSORS['test.counting'] = 'tests.pipelines.processors_for_tests.CountingProcessor'; "
    "from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


def _tick_process(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            MANAGE_WITH_TEST_PROCESSOR,
            "scheduler_tick",
            "--now",
            NOW,
            "--batch-size",
            "200",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_tick_processes_at_once_make_exactly_one_run_per_due_time(make_tenant, test_pipelines) -> None:
    make_tenant("acme", plan="SCALE")
    make_tenant("globex", plan="SCALE")
    Plan.objects.filter(code="SCALE").update(daily_limit=10**6, monthly_limit=10**6)
    half = SCHEDULES // 2
    make_schedules("acme", half, next_run_at=utc(2025, 11, 19, 5))
    make_schedules(
        "globex", half, next_run_at=utc(2025, 11, 19, 5), cron="0 6 * * *", timezone="Europe/Berlin"
    )
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "convergence.settings.test",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "PIPELINE_CONFIGS_DIR": str(test_pipelines),
        "LOG_LEVEL": "WARNING",
    }

    processes = [_tick_process(env), _tick_process(env)]
    outputs = [process.communicate(timeout=600) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    queued = [int(re.match(r"Queued (\d+) run", stdout).group(1)) for stdout, _stderr in outputs]
    assert sum(queued) == SCHEDULES, outputs
    runs = PipelineRun.objects.all()
    assert runs.count() == SCHEDULES
    assert runs.values("schedule_id", "scheduled_for").distinct().count() == SCHEDULES
    assert runs.filter(status="QUEUED").count() == SCHEDULES
    assert not Schedule.objects.filter(next_run_at__lte=utc(2025, 11, 19, 5, 0, 30)).exists()
    assert set(TenantUsage.objects.values_list("tenant_id", "runs_today")) == {
        ("acme", half),
        ("globex", half),
    }
