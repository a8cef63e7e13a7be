"""The cost section of the admin tenant page: the 30-day chart of BilledCost per provider and the latest DQ
state per provider, within a fixed number of queries, without secrets, and alive when the warehouse is not."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.costs import daily_provider_costs, provider_quality
from billing.focus.schema import FOCUS_TABLE_SPEC
from convergence.warehouse import TableRef, get_warehouse
from pipelines.models import DQResult, PipelineRun, RunStatus
from tenants import keys
from tenants.models import TenantApiKey
from tests.billing.focus_rows import focus_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-not-used")
    client = Client()
    client.force_login(user)
    return client


def _today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def _load(tenant: Any, rows: list[dict[str, Any]]) -> None:
    ref = TableRef(tenant.dataset_id, "focus_costs")
    get_warehouse().create_table(ref, FOCUS_TABLE_SPEC)
    get_warehouse().insert_rows(ref, rows)


def _run(tenant: Any, pipeline: str, status: str, *, attempt: int = 1, minutes_ago: int = 0) -> PipelineRun:
    finished = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return PipelineRun.objects.create(
        tenant=tenant,
        pipeline=pipeline,
        pipeline_id=f"{tenant.tenant_id}_{pipeline.replace('/', '_')}",
        status=status,
        attempt=attempt,
        started_at=finished - dt.timedelta(seconds=5),
        finished_at=finished,
    )


def _dq(run: PipelineRun, check: str, status: str, severity: str, *, attempt: int | None = None) -> None:
    DQResult.objects.create(
        run=run,
        attempt=run.attempt if attempt is None else attempt,
        step_id="quality",
        check_name=check,
        status=status,
        severity=severity,
    )


def _page(client: Client, tenant_id: str) -> str:
    response = client.get(f"/admin/tenants/tenant/{tenant_id}/change/")
    assert response.status_code == 200
    return response.content.decode()


def _dq_status(page: str, provider: str) -> str:
    match = re.search(rf'<tr class="dq-{provider}">.*?<strong class="dq-status">(\w+)</strong>', page, re.S)
    assert match is not None, f"no DQ row for {provider}"
    return match.group(1)


def test_page_shows_daily_cost_per_provider_and_dq_state(staff_client: Client, make_tenant: Any) -> None:
    tenant, _key = make_tenant("acme")
    today = _today()
    yesterday = today - dt.timedelta(days=1)
    _load(
        tenant,
        [
            focus_row("gcp", yesterday, "12.5", "12", service="BigQuery", sub_account="p", region="EU"),
            focus_row("gcp", today, "0.25", "0.25", service="BigQuery", sub_account="p", region="EU"),
            focus_row("aws", yesterday, "7.000000001", "7", service="EC2", sub_account="1", region="x"),
            focus_row("azure", yesterday, "30", "30", service="VM", sub_account="s", region="y"),
            # 30 days back from yesterday is outside the chart (it covers the 30 complete days ending
            # yesterday), and so is today's partial day.
            focus_row(
                "azure",
                yesterday - dt.timedelta(days=30),
                "999",
                "999",
                service="VM",
                sub_account="s",
                region="y",
            ),
        ],
    )
    gcp_run = _run(tenant, "gcp/cost/billing", RunStatus.COMPLETED)
    _dq(gcp_run, "focus_conformance", "PASS", "error")
    aws_run = _run(tenant, "aws/cost/cur", RunStatus.FAILED)
    _dq(aws_run, "focus_conformance", "FAIL", "error")
    _dq(aws_run, "row_count", "WARN", "warn")

    page = _page(staff_client, "acme")

    assert "Cost, last 30 complete days" in page
    assert f"<title>{yesterday:%Y-%m-%d}: 49.500000001</title>" in page
    assert f"<title>{yesterday:%Y-%m-%d} aws: 7.000000001</title>" in page
    assert f"{today:%Y-%m-%d} gcp" not in page
    assert f"{yesterday - dt.timedelta(days=30):%Y-%m-%d}" not in page
    assert "gcp: 12.5</li>" in page
    assert "aws: 7.000000001</li>" in page
    assert "azure: 30</li>" in page
    assert page.count('class="cost-bar"') == 30
    assert (_dq_status(page, "gcp"), _dq_status(page, "aws"), _dq_status(page, "azure")) == (
        "PASS",
        "FAIL",
        "NO_RUNS",
    )
    assert "currency USD" in page


def test_daily_costs_are_exact_per_provider_and_day(make_tenant: Any) -> None:
    tenant, _key = make_tenant("acme")
    today = dt.date(2025, 3, 10)
    _load(
        tenant,
        [
            focus_row(
                "aws", dt.date(2025, 3, 10), "1.000000001", "1", service="S3", sub_account="1", region="x"
            ),
            focus_row("aws", dt.date(2025, 3, 10), "2", "2", service="EC2", sub_account="1", region="x"),
            focus_row("gcp", dt.date(2025, 2, 9), "5", "5", service="BQ", sub_account="p", region="EU"),
            focus_row("gcp", dt.date(2025, 2, 8), "6", "6", service="BQ", sub_account="p", region="EU"),
        ],
    )

    daily = daily_provider_costs(tenant=tenant, today=today)

    assert (daily.days[0], daily.days[-1], len(daily.days)) == (dt.date(2025, 2, 9), today, 30)
    assert list(daily.costs) == ["gcp", "aws"]
    assert daily.costs["aws"][-1] == Decimal("3.000000001")
    assert sum(daily.costs["aws"]) == Decimal("3.000000001")
    assert daily.costs["gcp"][0] == Decimal("5")
    assert sum(daily.costs["gcp"]) == Decimal("5")
    assert daily.currencies == ["USD"]


def test_only_the_final_attempts_checks_count(make_tenant: Any) -> None:
    tenant, _key = make_tenant("acme")
    run = _run(tenant, "gcp/cost/billing", RunStatus.COMPLETED, attempt=2)
    _dq(run, "focus_conformance", "FAIL", "error", attempt=1)  # the attempt a retry replaced
    _dq(run, "focus_conformance", "PASS", "error")

    quality = {item.provider: item for item in provider_quality(tenant=tenant)}

    assert quality["gcp"].status == "PASS"
    assert (quality["gcp"].errors_failed, quality["gcp"].warnings) == (0, 0)


def test_latest_finished_run_wins_and_unfinished_runs_are_ignored(make_tenant: Any) -> None:
    tenant, _key = make_tenant("acme")
    old = _run(tenant, "azure/cost/cost_details", RunStatus.COMPLETED, minutes_ago=60)
    _dq(old, "focus_conformance", "PASS", "error")
    latest = _run(tenant, "azure/cost/cost_details", RunStatus.COMPLETED, minutes_ago=5)
    _dq(latest, "row_count", "WARN", "warn")
    PipelineRun.objects.create(
        tenant=tenant, pipeline="azure/cost/cost_details", pipeline_id="x", status=RunStatus.RUNNING
    )
    failed_no_checks = _run(tenant, "gcp/cost/billing", RunStatus.FAILED)

    quality = {item.provider: item for item in provider_quality(tenant=tenant)}

    assert quality["azure"].run == latest
    assert quality["azure"].status == "WARN"
    assert quality["gcp"].run == failed_no_checks
    assert quality["gcp"].status == "RUN_FAILED"
    assert quality["aws"].status == "NO_RUNS"


def test_other_tenants_runs_never_show(staff_client: Client, make_tenant: Any) -> None:
    make_tenant("acme")
    globex, _key = make_tenant("globex")
    run = _run(globex, "gcp/cost/billing", RunStatus.FAILED)
    _dq(run, "focus_conformance", "FAIL", "error")

    page = _page(staff_client, "acme")

    assert _dq_status(page, "gcp") == "NO_RUNS"
    assert str(run.pk)[:8] not in page


def _page_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        _page(client, "acme")
    return len(captured.captured_queries)


def test_page_queries_do_not_grow_with_runs_and_checks(staff_client: Client, make_tenant: Any) -> None:
    tenant, _key = make_tenant("acme")
    for provider, pipeline in (("gcp", "billing"), ("aws", "cur"), ("azure", "cost_details")):
        _dq(_run(tenant, f"{provider}/cost/{pipeline}", RunStatus.COMPLETED), "row_count", "PASS", "warn")
    few = _page_queries(staff_client)
    for minutes in range(1, 6):
        for provider, pipeline in (("gcp", "billing"), ("aws", "cur"), ("azure", "cost_details")):
            run = _run(tenant, f"{provider}/cost/{pipeline}", RunStatus.FAILED, minutes_ago=minutes)
            for check in ("focus_conformance", "row_count", "billed_cost_not_null"):
                _dq(run, check, "FAIL", "error")
    assert _page_queries(staff_client) == few


def test_no_key_or_hash_reaches_the_page(staff_client: Client, make_tenant: Any) -> None:
    tenant, raw_key = make_tenant("acme")
    key = TenantApiKey.objects.get(tenant=tenant)

    page = _page(staff_client, "acme")

    assert raw_key not in page
    assert keys.hash_key(raw_key) not in page
    assert key.key_hash not in page


def test_warehouse_failure_leaves_a_note_not_a_broken_page(
    staff_client: Client, make_tenant: Any, settings: Any, tmp_path: Any
) -> None:
    tenant, _key = make_tenant("acme")
    _dq(_run(tenant, "gcp/cost/billing", RunStatus.COMPLETED), "focus_conformance", "PASS", "error")
    broken = tmp_path / "warehouse.duckdb"
    broken.write_bytes(b"not a database" * 200)
    settings.WAREHOUSE_URL = f"duckdb:///{broken}"
    get_warehouse.cache_clear()

    page = _page(staff_client, "acme")

    assert "Cost data is unavailable: the warehouse could not be queried." in page
    assert str(tmp_path) not in page
    assert _dq_status(page, "gcp") == "PASS"


def test_tenant_without_cost_data_says_so(staff_client: Client, make_tenant: Any) -> None:
    make_tenant("acme")
    page = _page(staff_client, "acme")
    assert "No cost data in the last 30 complete days." in page
    assert 'class="cost-bar"' not in page
