from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.actors import Actor
from tenants.keys import generate_admin_key
from tenants.models import Tenant
from tenants.services import OnboardingError, api_key_create, bootstrap_run, tenant_create

DEMO_TENANT = "demo"


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)


class Command(BaseCommand):
    help = (
        "Prepare a local installation (idempotent): admin API key, staff superuser 'admin', central "
        "warehouse dataset, and the demo tenant with an API key. Re-running reuses what exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--demo-tenant", default=DEMO_TENANT)

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
        self.stdout.write(
            self.style.SUCCESS(
                "\nReady.\n"
                f"  admin UI      http://127.0.0.1:{port}/admin/  (user admin)\n"
                f"  API docs      http://127.0.0.1:{port}/api/docs/\n"
                f"  X-Admin-Key   {admin_key}\n"
                f"  demo API key  {demo_key}\n"
                f"  try:          curl -H 'X-API-Key: {demo_key}' http://127.0.0.1:{port}/api/v1/tenants/{tenant_id}\n"
            )
        )
