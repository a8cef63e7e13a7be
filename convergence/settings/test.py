"""Test settings: Postgres and Redis, as in production; only overrides of base."""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/convergence")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("WAREHOUSE_URL", "duckdb:///:memory:")
os.environ.setdefault("KMS_LOCAL_KEY", "dGVzdC1vbmx5LWttcy1sb2NhbC1rZXktMzJieXRlcyE=")

from convergence.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# One test database per pytest process, so concurrent runs on one machine never share one.
DATABASES["default"]["TEST"] = {"NAME": f"test_convergence_{os.getpid()}"}  # noqa: F405
