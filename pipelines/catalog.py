"""The catalog of tenant-runnable pipelines, built from the shipped configs."""

from __future__ import annotations

import functools
from typing import Any

from pipelines.loader import PipelineConfigError, iter_pipeline_files, parse_pipeline


@functools.cache
def catalog_entries() -> list[dict[str, Any]]:
    """Every valid ``provider/domain/pipeline`` config with its parameter spec (cached per process:
    configs are deployed with the code)."""
    entries = []
    for name, path in iter_pipeline_files():
        if name.count("/") != 2 or name.startswith(("system/", "tenant/")):
            continue
        try:
            pipeline = parse_pipeline(name, path)
        except PipelineConfigError:
            continue
        parameters: dict[str, Any] = {}
        for parameter_name, spec in pipeline.spec.parameters.items():
            entry: dict[str, Any] = {"type": spec.type, "required": spec.required}
            if spec.default is not None:
                entry["default"] = spec.default
            if spec.values:
                entry["values"] = spec.values
            if spec.pattern:
                entry["pattern"] = spec.pattern
            if spec.description:
                entry["description"] = spec.description
            parameters[parameter_name] = entry
        item: dict[str, Any] = {
            "pipeline": name,
            "description": pipeline.spec.description,
            "parameters": parameters,
        }
        if pipeline.spec.default_schedule:
            item["default_schedule"] = pipeline.spec.default_schedule
        entries.append(item)
    return entries
