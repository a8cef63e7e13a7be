"""Convergence: multi-tenant pipeline backend for cloud cost and compliance analytics."""

from __future__ import annotations

from convergence.celery import app as celery_app

__version__ = "0.1.0"
__all__ = ["__version__", "celery_app"]
