from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pipelines.management.commands._clock import parse_now
from pipelines.scheduler import queue_dispatch, runs_reap


class Command(BaseCommand):
    help = (
        "Hand QUEUED runs to workers within each tenant's concurrency limit, by plan priority then age, "
        "as the beat dispatcher does. With --reap, first requeue or fail runs whose worker died."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", help="Act as of this ISO 8601 instant instead of the clock.")
        parser.add_argument("--reap", action="store_true", help="Run the reaper first.")

    def handle(self, *args: Any, **options: Any) -> None:
        now = parse_now(options["now"])
        if options["reap"]:
            reaped = runs_reap(now=now)
            self.stdout.write(
                f"Reaped: {reaped.requeued} requeued, {reaped.failed} failed (worker_lost), "
                f"{reaped.resent} re-sent."
            )
        self.stdout.write(f"Dispatched {queue_dispatch(now=now)} run(s).")
