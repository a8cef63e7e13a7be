from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.actors import Actor
from tenants.models import PlanCode, SubscriptionStatus
from tenants.services import OnboardingError, TenantExistsError, api_key_create, tenant_create


class Command(BaseCommand):
    help = "Create a tenant (subscription, usage row, warehouse dataset) and optionally an API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "tenant_id", help="3-50 chars: lowercase letters, digits, _; starts with a letter"
        )
        parser.add_argument("--plan", choices=PlanCode.values, default=PlanCode.STARTER)
        parser.add_argument(
            "--status",
            choices=[SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIAL],
            default=SubscriptionStatus.ACTIVE,
        )
        parser.add_argument("--description", default="")
        parser.add_argument("--contact-email", default="")
        parser.add_argument("--with-key", action="store_true", help="Also mint an API key and print it once.")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system("manage.py create_tenant")
        try:
            tenant = tenant_create(
                tenant_id=options["tenant_id"],
                actor=actor,
                plan=options["plan"],
                subscription_status=options["status"],
                description=options["description"],
                contact_email=options["contact_email"],
            )
        except ValidationError as exc:
            raise CommandError(f"invalid tenant id: {' '.join(exc.messages)}") from exc
        except TenantExistsError as exc:
            raise CommandError(f"tenant {options['tenant_id']!r} already exists") from exc
        except OnboardingError as exc:
            raise CommandError(f"onboarding failed, nothing was created: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(f"tenant {tenant.tenant_id} created (dataset {tenant.dataset_id})")
        )
        if options["with_key"]:
            _key, raw = api_key_create(tenant=tenant, actor=actor, description="created by create_tenant")
            self.stdout.write(raw)
