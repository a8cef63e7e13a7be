"""Pipeline services: run the control plane's own pipelines (bootstrap, onboarding)."""

from __future__ import annotations

from typing import Any

from convergence.warehouse import Warehouse
from pipelines.engine import PipelineOutcome, execute
from pipelines.loader import load_pipeline
from pipelines.spec import resolve_parameters


def system_pipeline_run(
    *,
    name: str,
    tenant_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    warehouse: Warehouse | None = None,
) -> PipelineOutcome:
    """Run a system pipeline (``system/...`` or ``tenant/...``) in-process and return its outcome.

    Parameters are validated against the config (``ParameterError``); a step failure is reported in
    the outcome, not raised."""
    pipeline = load_pipeline(name)
    if not pipeline.is_system:
        raise ValueError(f"{name} is not a system pipeline")
    resolved = resolve_parameters(pipeline.spec.parameters, parameters or {})
    return execute(pipeline, tenant_id=tenant_id, parameters=resolved, warehouse=warehouse)
