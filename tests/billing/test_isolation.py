"""Acceptance: two tenants with different generated cost data (different seeds and ranges), loaded by the
real cost pipelines. Neither tenant's cost API, runs, run detail, schedules, sources or warehouse dataset
ever shows the other's rows; another tenant's run id is a 404 and a path naming the other tenant a 403."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.demo import SeedResult, cost_data_seed
from convergence.warehouse import get_warehouse
from pipelines.models import PipelineRun
from tenants.actors import Actor

# Steps run in their own thread (the step timeout), with their own database connection: they must see
# committed rows.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WIDE = {"start": "2025-09-01", "end": "2025-12-31"}


@dataclass(frozen=True)
class Side:
    tenant: Any
    client: Any
    seeded: SeedResult
    run_ids: set[str]


@pytest.fixture
def sides(settings: Any, tmp_path: Path, make_tenant: Any, tenant_client: Any) -> dict[str, Side]:
    settings.SOURCE_FILE_ROOT = tmp_path / "exports"
    settings.SOURCE_FILE_ROOT.mkdir()
    found = {}
    for tenant_id, start, end, seed in (
        ("acme", dt.date(2025, 10, 30), dt.date(2025, 11, 2), 11),
        ("globex", dt.date(2025, 11, 10), dt.date(2025, 11, 12), 22),
    ):
        tenant, raw_key = make_tenant(tenant_id)
        seeded = cost_data_seed(
            tenant=tenant, actor=Actor.system("test"), start=start, end=end, rows_per_day=8, seed=seed
        )
        assert seeded.failed == []
        run_ids = {str(pk) for pk in PipelineRun.objects.filter(tenant=tenant).values_list("pk", flat=True)}
        found[tenant_id] = Side(tenant, tenant_client(raw_key), seeded, run_ids)
    return found


def _other(name: str) -> str:
    return "globex" if name == "acme" else "acme"


def test_cost_api_totals_only_the_callers_own_data(sides: dict[str, Side]) -> None:
    for name in ("acme", "globex"):
        _check_cost_api_totals_only_the_callers_own_data(sides, name)


def _check_cost_api_totals_only_the_callers_own_data(sides: dict[str, Side], name: str) -> None:
    side, other = sides[name], sides[_other(name)]
    response = side.client.get(f"/api/v1/tenants/{name}/costs", {**WIDE, "granularity": "day"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert Decimal(body["total_billed_cost"]) == side.seeded.expected_net_cost()
    assert side.seeded.expected_net_cost() != other.seeded.expected_net_cost()
    own_days = {
        day.isoformat() for summary in side.seeded.exports.values() for day in summary.net_cost_by_day
    }
    assert {row["period"] for row in body["rows"]} == own_days

    refused = side.client.get(f"/api/v1/tenants/{_other(name)}/costs", WIDE)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_mismatch"


def test_run_list_and_detail_show_only_own_runs(sides: dict[str, Side]) -> None:
    for name in ("acme", "globex"):
        _check_run_list_and_detail_show_only_own_runs(sides, name)


def _check_run_list_and_detail_show_only_own_runs(sides: dict[str, Side], name: str) -> None:
    side, other = sides[name], sides[_other(name)]
    listed = side.client.get("/api/v1/pipelines/runs", {"page_size": 500}).json()
    assert {run["pipeline_logging_id"] for run in listed["results"]} == side.run_ids
    assert listed["count"] == len(side.run_ids)
    assert {run["tenant_id"] for run in listed["results"]} == {name}

    own = side.client.get(f"/api/v1/pipelines/runs/{next(iter(side.run_ids))}")
    assert own.status_code == 200
    for other_run in sorted(other.run_ids)[:3]:
        response = side.client.get(f"/api/v1/pipelines/runs/{other_run}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        cancel = side.client.post(f"/api/v1/pipelines/runs/{other_run}/cancel")
        assert cancel.status_code == 404


def test_schedules_and_sources_show_only_own(sides: dict[str, Side]) -> None:
    created = {}
    for name, pipeline in (("acme", "gcp/cost/billing"), ("globex", "aws/cost/cur")):
        response = sides[name].client.post(
            "/api/v1/pipelines/schedules",
            {"pipeline": pipeline, "cron": "0 4 * * *", "parameters": {"date": "yesterday"}},
            format="json",
        )
        assert response.status_code == 201, response.content
        created[name] = response.json()["id"]

    for name in ("acme", "globex"):
        side, other_name = sides[name], _other(name)
        schedules = side.client.get("/api/v1/pipelines/schedules").json()["results"]
        assert [schedule["id"] for schedule in schedules] == [created[name]]
        refused = side.client.get(f"/api/v1/pipelines/schedules/{created[other_name]}")
        assert refused.status_code == 404
        sources = side.client.get(f"/api/v1/tenants/{name}/sources")
        assert sources.status_code == 200
        assert {source["provider"] for source in sources.json()} == {"gcp", "aws", "azure"}
        assert all(f"/exports/{name}/" in source["location"] for source in sources.json())
        assert side.client.get(f"/api/v1/tenants/{other_name}/sources").status_code == 403


def test_each_dataset_holds_only_its_own_runs_rows(sides: dict[str, Side]) -> None:
    for name in ("acme", "globex"):
        _check_each_dataset_holds_only_its_own_runs_rows(sides, name)


def _check_each_dataset_holds_only_its_own_runs_rows(sides: dict[str, Side], name: str) -> None:
    side, other = sides[name], sides[_other(name)]
    warehouse = get_warehouse()
    dataset = side.tenant.dataset_id
    assert dataset == f"{name}_local"
    run_ids = {
        row["run_id"]
        for row in warehouse.query(f"SELECT DISTINCT x_RunId AS run_id FROM `{dataset}.focus_costs`").rows
    }
    assert run_ids <= side.run_ids
    assert run_ids.isdisjoint(other.run_ids)
    days = {
        row["day"]
        for row in warehouse.query(f"SELECT DISTINCT x_ChargeDate AS day FROM `{dataset}.focus_costs`").rows
    }
    own_days = {day for summary in side.seeded.exports.values() for day in summary.net_cost_by_day}
    assert days == own_days
