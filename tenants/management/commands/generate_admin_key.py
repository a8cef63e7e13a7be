from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenants.actors import Actor
from tenants.services import admin_key_create


class Command(BaseCommand):
    help = "Mint an admin API key (X-Admin-Key). Only its hash is stored; the key is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="cli", help="A label for the key (who or what uses it).")

    def handle(self, *args: Any, **options: Any) -> None:
        key, raw = admin_key_create(name=options["name"], actor=Actor.system("manage.py generate_admin_key"))
        self.stdout.write(raw)
        self.stderr.write(f"admin key {key.prefix}… created for {key.name!r}; it will not be shown again")
