from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_outbox_triggers(*, using: str = "default", **kwargs: Any) -> None:
    """Re-cover every mirrored table after each ``migrate``: SQLite loses a table's triggers when
    Django rebuilds it for an ALTER, and mirrored tables created by later migrations need theirs.
    Idempotent; a no-op while the outbox table does not exist (e.g. after ``migrate convergence zero``)."""
    from django.db import connections

    from convergence.mirror.tables import captured_tables
    from convergence.mirror.triggers import install_triggers

    install_triggers(connections[using], captured_tables())


class ConvergenceConfig(AppConfig):
    name = "convergence"
    verbose_name = "Convergence"

    def ready(self) -> None:
        from convergence import checks  # noqa: F401  (registers system checks)

        post_migrate.connect(
            _install_outbox_triggers, sender=self, dispatch_uid="convergence.outbox_triggers"
        )
