from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from convergence.mirror.services import mirror_drain, mirror_resync
from convergence.mirror.tables import TABLES
from convergence.warehouse import WarehouseError


class Command(BaseCommand):
    help = (
        "Deliver pending control-plane changes (the outbox) to the warehouse central dataset; the same "
        "work the mirror-drain beat task does. Exits non-zero if a central table could not be written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--resync",
            action="store_true",
            help="First queue every row for re-delivery (and central rows missing in Postgres, for removal).",
        )
        parser.add_argument(
            "--table",
            action="append",
            choices=[table.name for table in TABLES],
            help="With --resync: only this central table (repeatable).",
        )
        parser.add_argument("--batch-size", type=int, default=None, help="Events read per round.")
        parser.add_argument("--max-batches", type=int, default=None, help="Rounds in this call.")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("batch_size", "max_batches"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if options["table"] and not options["resync"]:
            raise CommandError("--table only applies with --resync")
        if options["resync"]:
            try:
                queued = mirror_resync(tables=options["table"])
            except WarehouseError as exc:
                raise CommandError(f"resync failed: {exc.message}") from exc
            self.stdout.write(f"mirror: {queued} row(s) queued for re-delivery")
        result = mirror_drain(batch_size=options["batch_size"], max_batches=options["max_batches"])
        if result.locked_out:
            raise CommandError("another mirror drain is running; try again when it has finished")
        if not result.succeeded:
            raise CommandError(result.summary())
        self.stdout.write(self.style.SUCCESS(result.summary()))
