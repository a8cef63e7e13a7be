from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.actors import Actor
from tenants.services import bootstrap_run


class Command(BaseCommand):
    help = (
        "Create the central warehouse dataset and its tables (idempotent), via configs/system/bootstrap.yml."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force-recreate-dataset",
            action="store_true",
            help="Drop the central dataset and everything in it first.",
        )
        parser.add_argument(
            "--force-recreate-tables", action="store_true", help="Drop and recreate each table."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = bootstrap_run(
                actor=Actor.system("manage.py bootstrap"),
                force_recreate_dataset=options["force_recreate_dataset"],
                force_recreate_tables=options["force_recreate_tables"],
            )
        except RuntimeError as exc:
            raise CommandError(f"bootstrap failed: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(result["message"]))
