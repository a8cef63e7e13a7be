from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipelines.loader import PipelineConfigError, PipelineNotFound
from pipelines.models import TERMINAL_STATUSES, PipelineRun, RunTrigger
from pipelines.services import run_create, run_execute, tenant_pipeline_get
from pipelines.spec import ParameterError, ParameterSpec
from tenants.actors import Actor
from tenants.selectors import tenant_get


def _parse_value(spec: ParameterSpec, raw: str) -> Any:
    if spec.type == "int":
        try:
            return int(raw)
        except ValueError:
            return raw
    if spec.type == "bool":
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
            raw.lower(), raw
        )
    return raw


def _date(raw: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"--{name} must be a date YYYY-MM-DD, got {raw!r}") from None


class _Progress:
    def __init__(self, total: int, stream: Any) -> None:
        self.total, self.stream, self.done = total, stream, 0

    def advance(self, label: str) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / self.total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label:<40}")
        self.stream.flush()
        if self.done == self.total:
            self.stream.write("\n")


class Command(BaseCommand):
    help = (
        "Run a pipeline for a tenant: one run, or with --start/--end one run per day (a backfill). "
        "Staff runs are recorded but do not consume the tenant's plan quota."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_id")
        parser.add_argument("pipeline", help="provider/domain/pipeline, e.g. gcp/cost/billing")
        parser.add_argument(
            "--param", action="append", default=[], metavar="NAME=VALUE", help="A run parameter (repeatable)."
        )
        parser.add_argument(
            "--start", help="First day of a backfill (YYYY-MM-DD), sets the 'date' parameter."
        )
        parser.add_argument("--end", help="Last day of a backfill (YYYY-MM-DD, inclusive).")
        parser.add_argument(
            "--sync", action="store_true", help="Run in this process, without a broker or worker."
        )
        parser.add_argument(
            "--wait", action="store_true", help="Without --sync: wait until every run finishes."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_get(tenant_id=options["tenant_id"])
        if tenant is None:
            raise CommandError(f"unknown tenant {options['tenant_id']!r}")
        try:
            pipeline = tenant_pipeline_get(name=options["pipeline"])
        except PipelineNotFound:
            raise CommandError(f"unknown pipeline {options['pipeline']!r}") from None
        except PipelineConfigError as exc:
            raise CommandError(f"pipeline config is invalid:\n{exc}") from None
        parameters: dict[str, Any] = {}
        for item in options["param"]:
            name, sep, raw = item.partition("=")
            if not sep:
                raise CommandError(f"--param takes NAME=VALUE, got {item!r}")
            spec = pipeline.spec.parameters.get(name)
            parameters[name] = _parse_value(spec, raw) if spec else raw

        days: list[dt.date | None] = [None]
        trigger = RunTrigger.MANUAL
        if options["start"] or options["end"]:
            if not (options["start"] and options["end"]):
                raise CommandError("--start and --end go together")
            if "date" not in pipeline.spec.parameters:
                raise CommandError(f"{options['pipeline']} has no 'date' parameter to backfill")
            start, end = _date(options["start"], "start"), _date(options["end"], "end")
            if end < start:
                raise CommandError("--end is before --start")
            if (end - start).days >= 3660:
                raise CommandError("a backfill covers at most 10 years")
            days = [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]
            trigger = RunTrigger.BACKFILL

        actor = Actor.system("manage.py run_pipeline")
        progress = _Progress(len(days), sys.stderr) if len(days) > 1 else None
        runs: list[PipelineRun] = []
        failures = 0
        for day in days:
            run_parameters = dict(parameters, **({"date": day.isoformat()} if day else {}))
            try:
                run, _usage = run_create(
                    tenant=tenant,
                    pipeline_name=options["pipeline"],
                    parameters=run_parameters,
                    actor=actor,
                    trigger=trigger,
                    enforce_quota=False,
                    enqueue=not options["sync"],
                )
            except ParameterError as exc:
                raise CommandError(f"invalid parameters: {exc}") from None
            runs.append(run)
            if options["sync"]:
                status = run_execute(run_id=str(run.pk))
                run.refresh_from_db()
                failures += status != "COMPLETED"
                if progress:
                    progress.advance(f"{day} {run.status}")
                else:
                    self.stdout.write(f"{run.pk} {run.status}{': ' + run.error if run.error else ''}")
            elif progress:
                progress.advance(f"{day} queued")
        if not options["sync"]:
            for run in runs:
                self.stdout.write(f"{run.pk} queued")
            if options["wait"]:
                failures = self._wait(runs)
        if failures:
            raise CommandError(f"{failures} of {len(runs)} run(s) did not complete")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(runs)} run(s) {'completed' if options['sync'] or options['wait'] else 'queued'}"
            )
        )

    def _wait(self, runs: list[PipelineRun]) -> int:
        pending = {run.pk for run in runs}
        progress = _Progress(len(runs), sys.stderr)
        failures = 0
        while pending:
            for pk, status in PipelineRun.objects.filter(pk__in=pending).values_list("pk", "status"):
                if status in TERMINAL_STATUSES:
                    pending.discard(pk)
                    failures += status != "COMPLETED"
                    progress.advance(f"{pk} {status}")
            if pending:
                time.sleep(1)
        return failures
