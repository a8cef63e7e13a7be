"""``manage.py setup_local``: everything ``make run`` needs, idempotently, including the demo tenant's
30 days of cost data from all three providers."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing.demo import COST_PIPELINES, DEFAULT_ROWS_PER_DAY, cost_data_seed, cost_data_seeded
from tenants.actors import Actor
from tenants.keys import generate_admin_key
from tenants.models import Tenant
from tenants.services import OnboardingError, api_key_create, bootstrap_run, tenant_create

DEMO_TENANT = "demo"
DEMO_DAYS = 30


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)


class Command(BaseCommand):
    help = (
        "Prepare a local installation (idempotent): admin API key, staff superuser 'admin', central "
        "warehouse dataset, and the demo tenant with an API key and the last 30 days of generated GCP, AWS "
        "and Azure cost data loaded by the three cost pipelines. Re-running reuses what exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--demo-tenant", default=DEMO_TENANT)
        parser.add_argument(
            "--demo-days", type=int, default=DEMO_DAYS, help="Days of demo cost data, ending yesterday (UTC)."
        )
        parser.add_argument(
            "--demo-rows-per-day",
            type=int,
            default=DEFAULT_ROWS_PER_DAY,
            help="Generated export rows per provider and day.",
        )
        parser.add_argument("--skip-demo-data", action="store_true", help="Do not load demo cost data.")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system("manage.py setup_local")
        var_dir = Path(settings.VAR_DIR)

        admin_key = settings.ADMIN_API_KEY
        if not admin_key:
            admin_key = generate_admin_key()
            _write_secret(settings.ADMIN_API_KEY_PATH, admin_key)
            settings.ADMIN_API_KEY = admin_key
            self.stdout.write(f"ADMIN_API_KEY generated into {settings.ADMIN_API_KEY_PATH}")

        user_model = get_user_model()
        if not user_model.objects.filter(username="admin").exists():
            password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "admin@localhost", password)
            shown = (
                "(from DJANGO_SUPERUSER_PASSWORD)" if "DJANGO_SUPERUSER_PASSWORD" in os.environ else password
            )
            self.stdout.write(
                self.style.WARNING(f"staff superuser 'admin' created, password: {shown} (shown once)")
            )

        try:
            result = bootstrap_run(actor=actor)
        except RuntimeError as exc:
            raise CommandError(f"bootstrap failed: {exc}") from exc
        self.stdout.write(result["message"])

        tenant_id = options["demo_tenant"]
        key_file = var_dir / f"{tenant_id}_api_key"
        tenant = Tenant.objects.filter(tenant_id=tenant_id).first()
        if tenant is None:
            try:
                tenant = tenant_create(
                    tenant_id=tenant_id,
                    actor=actor,
                    description="Demo tenant",
                    contact_email="demo@example.com",
                )
            except OnboardingError as exc:
                raise CommandError(f"demo tenant onboarding failed: {exc}") from exc
            key_file.unlink(missing_ok=True)
            self.stdout.write(f"tenant {tenant_id} created (dataset {tenant.dataset_id})")
        if not key_file.is_file():
            _key, raw = api_key_create(tenant=tenant, actor=actor, description="demo key (make run)")
            _write_secret(key_file, raw)
        demo_key = key_file.read_text().strip()
        port = os.environ.get("PORT", "8000")
        if not 1 <= options["demo_days"] <= 366:
            raise CommandError(f"--demo-days must be between 1 and 366, got {options['demo_days']}")
        end = timezone.now().astimezone(dt.UTC).date() - dt.timedelta(days=1)
        start = end - dt.timedelta(days=options["demo_days"] - 1)
        if not options["skip_demo_data"]:
            self._seed_demo(tenant=tenant, actor=actor, start=start, end=end, options=options)
        costs_url = (
            f"http://127.0.0.1:{port}/api/v1/tenants/{tenant_id}/costs"
            f"?start={start}&end={end}&group_by=provider&granularity=total"
        )
        self.stdout.write(
            self.style.SUCCESS(
                "\nReady.\n"
                f"  admin UI      http://127.0.0.1:{port}/admin/  (user admin)\n"
                f"  API docs      http://127.0.0.1:{port}/api/docs/\n"
                f"  X-Admin-Key   {admin_key}\n"
                f"  demo API key  {demo_key}\n"
                f"  try:          curl -H 'X-API-Key: {demo_key}' http://127.0.0.1:{port}/api/v1/tenants/{tenant_id}\n"
                f"  demo costs:   curl -H 'X-API-Key: {demo_key}' '{costs_url}'\n"
            )
        )

    def _seed_demo(
        self, *, tenant: Tenant, actor: Actor, start: dt.date, end: dt.date, options: dict[str, Any]
    ) -> None:
        """Load the demo cost data unless this exact range is already loaded. Failed runs are reported
        as warnings (the server still starts; the admin tenant page shows their DQ state)."""
        providers = tuple(COST_PIPELINES)
        if cost_data_seeded(tenant=tenant, start=start, end=end, providers=providers):
            self.stdout.write(f"demo cost data {start}..{end} already loaded")
            return
        self.stdout.write(f"loading demo cost data {start}..{end} (gcp, aws, azure) ...")
        try:
            result = cost_data_seed(
                tenant=tenant,
                actor=actor,
                start=start,
                end=end,
                rows_per_day=options["demo_rows_per_day"],
                providers=providers,
            )
        except ValueError as exc:
            raise CommandError(f"demo cost data: {exc}") from exc
        for planned, status in result.failed:
            self.stderr.write(
                self.style.WARNING(f"  {planned.pipeline} date={planned.date} finished {status}")
            )
        done = len(result.runs) - len(result.failed)
        self.stdout.write(f"demo cost data: {done}/{len(result.runs)} pipeline runs completed")
