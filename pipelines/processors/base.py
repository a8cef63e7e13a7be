"""What every processor is: a pydantic config model plus ``run(context, config) -> StepResult``."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

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
    """Base for processor configs: closed, so a misspelt key fails validation.

    The ClassVars tell the loader where to look for its static checks without it knowing any processor.
    Paths are dotted keys into the step's keys; ``[*]`` means every item of a list (``checks[*].column``).
    """

    model_config = ConfigDict(extra="forbid")

    #: SQL fields: path → ``"query"`` (one SELECT) or ``"predicate"`` (one boolean expression). Parsed
    #: with sqlglot; tables must be in the run's datasets and every ``@name`` a declared parameter.
    sql_fields: ClassVar[Mapping[str, Literal["query", "predicate"]]] = {}
    #: Fields holding a table or column name; after variable substitution each must match IDENTIFIER_RE.
    identifier_fields: ClassVar[tuple[str, ...]] = ()
    #: Fields naming a run parameter (checked against the declared parameters after validation, so
    #: defaults filled in by the model count).
    parameter_fields: ClassVar[tuple[str, ...]] = ()
    #: Fields holding a ``dataset_type``; ``central`` is refused outside system pipelines.
    dataset_fields: ClassVar[tuple[str, ...]] = ()


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
