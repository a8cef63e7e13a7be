from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pipelines.management.commands._clock import parse_now
from pipelines.scheduler import quotas_reset, runs_purge_expired


class Command(BaseCommand):
    help = (
        "Reset daily run counts (and period counts past the subscription anniversary), then delete "
        "finished runs older than RUN_RETENTION_DAYS with their step logs and DQ results."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", help="Act as of this ISO 8601 instant instead of the clock.")

    def handle(self, *args: Any, **options: Any) -> None:
        now = parse_now(options["now"])
        reset = quotas_reset(now=now)
        cleaned = runs_purge_expired(now=now)
        self.stdout.write(
            f"Reset {reset.tenants_reset} tenant(s) (daily), {reset.periods_reset} (period); "
            f"cleaned {cleaned} record(s)."
        )
