"""Sample cost data for a tenant, end to end: generated provider exports placed under the tenant's own
``file://`` folder, the tenant's billing sources pointed at them, and the three provider cost pipelines
run over the generated days through the normal run services.

Used by ``manage.py setup_local`` (the ``demo`` tenant of ``make run``) and by the end-to-end tests.
Runs are recorded as ``backfill`` runs by the system actor and admitted without the quota
(``run_create(enforce_quota=False)``): staff-side seeding must not use up the tenant's own daily runs,
and 30 GCP days would not fit STARTER's 6 a day anyway. They execute synchronously in this process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from billing import services as billing_services
from billing.generators import sample_export_write
from billing.generators.common import WriteSummary, days_in_range, month_start
from billing.sources import tenant_file_root
from pipelines.models import PipelineRun, RunStatus, RunTrigger
from pipelines.services import run_create, run_execute
from tenants.actors import Actor
from tenants.models import Tenant

#: The cost pipeline of each provider (configs/{provider}/cost/{pipeline}.yml).
COST_PIPELINES: dict[str, str] = {
    "gcp": "gcp/cost/billing",
    "aws": "aws/cost/cur",
    "azure": "azure/cost/cost_details",
}
DEFAULT_ROWS_PER_DAY = 200


@dataclass(frozen=True)
class PlannedRun:
    provider: str
    pipeline: str
    date: dt.date


@dataclass
class SeedResult:
    """What ``cost_data_seed`` did: the exports written (per provider) and the runs executed, each with
    its final status."""

    exports: dict[str, WriteSummary] = field(default_factory=dict)
    runs: list[tuple[PlannedRun, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[tuple[PlannedRun, str]]:
        return [(planned, status) for planned, status in self.runs if status != RunStatus.COMPLETED]

    def expected_net_cost(self) -> Decimal:
        """The generators' own net cost over every provider and day (what the cost API must total)."""
        return sum((summary.total_net_cost for summary in self.exports.values()), Decimal(0))


def provider_folder(*, tenant_id: str, provider: str) -> Path:
    """``SOURCE_FILE_ROOT/{tenant_id}/{provider}``: where a tenant's sample export for ``provider`` goes."""
    return tenant_file_root(tenant_id) / provider


def cost_run_plan(*, start: dt.date, end: dt.date, providers: tuple[str, ...]) -> list[PlannedRun]:
    """The runs that load ``start``..``end``: GCP one per usage day; AWS and Azure, whose runs land the
    whole billing month containing ``date``, one per month touched (dated with the range's last day in
    that month)."""
    days = days_in_range(start, end)
    plan: list[PlannedRun] = []
    for provider in providers:
        pipeline = COST_PIPELINES[provider]
        if provider == "gcp":
            plan.extend(PlannedRun(provider, pipeline, day) for day in days)
            continue
        last_in_month: dict[dt.date, dt.date] = {}
        for day in days:
            last_in_month[month_start(day)] = day
        plan.extend(PlannedRun(provider, pipeline, day) for day in last_in_month.values())
    return plan


def cost_backfill_run(*, tenant: Tenant, actor: Actor, pipeline: str, date: dt.date) -> PipelineRun:
    """Create one ``backfill`` run of ``pipeline`` for ``date`` outside the quota and execute it here and
    now; returns the run as it finished. ``ParameterError``/``PipelineNotFound`` from ``run_create``."""
    run, _usage = run_create(
        tenant=tenant,
        pipeline_name=pipeline,
        parameters={"date": date.isoformat()},
        actor=actor,
        trigger=RunTrigger.BACKFILL,
        enforce_quota=False,
        enqueue=False,
    )
    run_execute(run_id=str(run.pk))
    run.refresh_from_db()
    return run


def _already_completed(*, tenant: Tenant, planned: PlannedRun) -> bool:
    return PipelineRun.objects.filter(
        tenant=tenant,
        pipeline=planned.pipeline,
        status=RunStatus.COMPLETED,
        parameters__date=planned.date.isoformat(),
    ).exists()


def cost_data_seeded(*, tenant: Tenant, start: dt.date, end: dt.date, providers: tuple[str, ...]) -> bool:
    """True when every run ``cost_data_seed`` would plan for this range has already completed."""
    return all(
        _already_completed(tenant=tenant, planned=planned)
        for planned in cost_run_plan(start=start, end=end, providers=providers)
    )


def cost_data_seed(
    *,
    tenant: Tenant,
    actor: Actor,
    start: dt.date,
    end: dt.date,
    rows_per_day: int = DEFAULT_ROWS_PER_DAY,
    seed: int = 0,
    providers: tuple[str, ...] = tuple(COST_PIPELINES),
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Generate ``start``..``end`` of every provider's sample export into the tenant's folder, point the
    tenant's sources there (``file://``) and run the cost pipelines over those days.

    Idempotent: exports are deterministic for (provider, seed, range), and provider cost pipelines replace
    the partition (day or billing month) they load, so running it again never duplicates cost. A failed
    run does not stop the others; see ``SeedResult.failed``. ``ValueError`` for a bad range or row
    count (nothing is run then)."""
    say = progress or (lambda message: None)
    plan = cost_run_plan(start=start, end=end, providers=providers)
    result = SeedResult()
    for provider in providers:
        folder = provider_folder(tenant_id=tenant.tenant_id, provider=provider)
        folder.mkdir(parents=True, exist_ok=True)
        result.exports[provider] = sample_export_write(
            provider=provider, start=start, end=end, rows_per_day=rows_per_day, out_dir=folder, seed=seed
        )
        billing_services.source_upsert(
            tenant=tenant, actor=actor, provider=provider, location=f"file://{folder}"
        )
        say(f"{provider}: {result.exports[provider].rows} rows written to {folder}")
    for planned in plan:
        run = cost_backfill_run(tenant=tenant, actor=actor, pipeline=planned.pipeline, date=planned.date)
        result.runs.append((planned, run.status))
        say(f"{planned.pipeline} {planned.date}: {run.status}" + (f" ({run.error})" if run.error else ""))
    return result
