"""Processors by ``ps_type``: a dict of dotted paths, imported on first use. Adding a processor is one
line here."""

from __future__ import annotations

import functools
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.processors.base import Processor

PROCESSORS: dict[str, str] = {
    "setup.bootstrap": "pipelines.processors.setup.BootstrapProcessor",
    "setup.onboarding": "pipelines.processors.setup.OnboardingProcessor",
    "gcp.bq_etl": "pipelines.processors.etl.EtlProcessor",
    "warehouse.load_file": "pipelines.processors.load_file.LoadFileProcessor",
    "dq.checks": "pipelines.processors.dq.DqProcessor",
    "billing.land_export": "billing.processors.LandExportProcessor",
    "focus.normalize": "billing.processors.FocusNormalizeProcessor",
    "focus.publish": "billing.processors.FocusPublishProcessor",
}


class UnknownProcessorError(KeyError):
    pass


@functools.cache
def get_processor(ps_type: str) -> type[Processor]:
    """The processor class for ``ps_type``; ``UnknownProcessorError`` if none is registered."""
    try:
        dotted = PROCESSORS[ps_type]
    except KeyError:
        raise UnknownProcessorError(ps_type) from None
    module_name, _, class_name = dotted.rpartition(".")
    cls: type[Processor] = getattr(import_module(module_name), class_name)
    return cls
