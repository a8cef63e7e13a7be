"""The Celery application. Messages carry ids only; Postgres owns state."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convergence.settings.base")

app = Celery("convergence")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
