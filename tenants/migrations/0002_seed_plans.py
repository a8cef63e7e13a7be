from __future__ import annotations

from django.db import migrations

# The seeded defaults of API.md; staff may edit them afterwards in admin.
PLANS = [
    ("STARTER", "Starter", 6, 180, 1, 1),
    ("PROFESSIONAL", "Professional", 25, 750, 3, 2),
    ("SCALE", "Scale", 100, 3000, 10, 3),
]


def seed_plans(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, name, daily, monthly, concurrent, priority in PLANS:
        Plan.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "daily_limit": daily,
                "monthly_limit": monthly,
                "concurrent_limit": concurrent,
                "priority": priority,
            },
        )


def unseed_plans(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    Plan.objects.filter(code__in=[plan[0] for plan in PLANS], subscriptions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [migrations.RunPython(seed_plans, unseed_plans)]
