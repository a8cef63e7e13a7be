"""System checks with stable ids: misconfiguration fails at start-up, not on the first request."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register()
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    from convergence.warehouse import warehouse_from_url

    try:
        warehouse_from_url(settings.WAREHOUSE_URL)
    except ValueError as exc:
        errors.append(Error(f"WAREHOUSE_URL: {exc}", id="convergence.E001"))
    if not settings.PIPELINE_CONFIGS_DIR.is_dir():
        errors.append(
            Error(
                f"PIPELINE_CONFIGS_DIR {settings.PIPELINE_CONFIGS_DIR} is not a directory",
                id="pipelines.E001",
            )
        )
    if not settings.PIPELINE_TEMPLATES_DIR.is_dir():
        errors.append(
            Error(
                f"PIPELINE_TEMPLATES_DIR {settings.PIPELINE_TEMPLATES_DIR} is not a directory",
                id="pipelines.E002",
            )
        )
    for template in settings.TEMPLATES:
        directories: Any = template.get("DIRS", [])
        for directory in directories:
            if str(directory).rstrip("/").endswith(str(settings.PIPELINE_TEMPLATES_DIR)):
                errors.append(
                    Error(
                        "the pipeline templates/ folder must not be a Django template dir",
                        id="pipelines.E003",
                    )
                )
    return errors
