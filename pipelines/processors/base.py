"""What every processor is: a pydantic config model plus ``run(context, config) -> StepResult``."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from pipelines.engine import RunContext


class StepError(Exception):
    """A step failed. ``retryable`` errors are retried with backoff up to the step's ``retries``.
    ``message`` is shown to the tenant: keep it short and free of SQL, paths and secrets."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass
class StepResult:
    rows_affected: int = 0
    bytes_processed: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)


class ProcessorConfig(BaseModel):
    """Base for processor configs: closed, so a misspelt key fails validation."""

    model_config = ConfigDict(extra="forbid")


C = TypeVar("C", bound=ProcessorConfig)


class Processor(ABC, Generic[C]):
    config_model: ClassVar[type[ProcessorConfig]]
    #: True for processors that only system pipelines (configs/system, configs/tenant) may use.
    system_only: ClassVar[bool] = False

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"pipelines.processors.{type(self).__name__}")

    @abstractmethod
    def run(self, context: RunContext, config: C) -> StepResult:
        """Do the step's work through ``context.warehouse``; raise ``StepError`` on failure."""
