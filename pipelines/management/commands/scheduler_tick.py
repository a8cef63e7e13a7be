from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipelines.management.commands._clock import parse_now
from pipelines.scheduler import schedules_tick


class Command(BaseCommand):
    help = (
        "Turn every due schedule into one QUEUED run (SKIPPED when over quota) and advance its next run "
        "time, as the beat tick does. Safe to run in several processes at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", help="Tick as of this ISO 8601 instant instead of the clock.")
        parser.add_argument("--batch-size", type=int, default=None, help="Schedules claimed per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        result = schedules_tick(now=parse_now(options["now"]), batch_size=batch_size)
        self.stdout.write(
            f"Queued {result.queued} run(s), skipped {result.skipped}, failed {result.failed} "
            f"({result.schedules} due schedule(s), {result.coalesced} catch-up)."
        )
