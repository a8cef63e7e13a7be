"""Pydantic models for pipeline configs (``configs/**.yml``) and step templates (``templates/**.yml``).

A config's own keys are closed (``extra="forbid"``). A step's processor-specific keys are validated by
the processor's own config model once the step's template is merged in."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")

ParameterType = Literal["date", "string", "int", "bool", "enum"]


class ParameterSpec(BaseModel):
    """A typed run-time input. Values are bound as query parameters, never substituted into SQL."""

    model_config = ConfigDict(extra="forbid")

    type: ParameterType
    required: bool = False
    default: Any = None
    description: str = ""
    pattern: str | None = None
    values: list[str] | None = None
    minimum: int | None = None
    maximum: int | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> ParameterSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("enum parameters need 'values'")
        if self.type != "enum" and self.values is not None:
            raise ValueError("'values' is only for enum parameters")
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError("'pattern' is only for string parameters")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"invalid pattern: {exc}") from exc
        if (self.minimum is not None or self.maximum is not None) and self.type != "int":
            raise ValueError("'minimum'/'maximum' are only for int parameters")
        if self.required and self.default is not None:
            raise ValueError("a required parameter cannot have a default")
        if self.default is not None:
            coerce_parameter("default", self, self.default)
        return self


class StepSpec(BaseModel):
    """A step as written in a config. Keys other than these belong to the processor."""

    model_config = ConfigDict(extra="allow")

    step_id: str = Field(pattern=STEP_ID_PATTERN)
    ps_type: str | None = None
    template: str | None = None
    depends_on: list[str] | None = None
    retries: int = Field(default=0, ge=0, le=10)
    timeout_s: int = Field(default=3600, ge=1, le=6 * 3600)
    description: str = ""

    @model_validator(mode="after")
    def _needs_type_or_template(self) -> StepSpec:
        if not self.ps_type and not self.template:
            raise ValueError("a step needs 'ps_type' or 'template'")
        return self

    def processor_keys(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    default_schedule: str | None = None
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    variables: dict[str, str | int | bool] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)

    @field_validator("parameters", "variables")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(f"invalid name {name!r}: lowercase letters, digits and _")
        return value


class TemplateSpec(BaseModel):
    """A reusable step: a processor type and default keys (SQL, destination, ...)."""

    model_config = ConfigDict(extra="allow")

    ps_type: str
    description: str = ""
    retries: int | None = Field(default=None, ge=0, le=10)
    timeout_s: int | None = Field(default=None, ge=1, le=6 * 3600)


class ParameterError(ValueError):
    """A caller-supplied parameter is missing, unknown or of the wrong type. ``errors`` maps each
    parameter name to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{name}: {', '.join(messages)}" for name, messages in errors.items()))
        self.errors = errors


def coerce_parameter(name: str, spec: ParameterSpec, value: Any) -> Any:
    """Convert a JSON value to the parameter's Python type, or raise ValueError with a message."""
    if spec.type == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("must be a date in YYYY-MM-DD format")
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("must be a valid calendar date (YYYY-MM-DD)") from exc
    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    if spec.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if spec.minimum is not None and value < spec.minimum:
            raise ValueError(f"must be >= {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            raise ValueError(f"must be <= {spec.maximum}")
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if len(value) > 1024:
        raise ValueError("must be at most 1024 characters")
    if spec.type == "enum":
        assert spec.values is not None
        if value not in spec.values:
            raise ValueError(f"must be one of: {', '.join(spec.values)}")
        return value
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        raise ValueError(f"must match {spec.pattern}")
    return value


def resolve_parameters(specs: dict[str, ParameterSpec], supplied: dict[str, Any]) -> dict[str, Any]:
    """Validate caller values against the spec: unknown names, missing required values and bad types
    all raise ``ParameterError``. Defaults fill the rest."""
    errors: dict[str, list[str]] = {}
    for name in supplied:
        if name not in specs:
            errors[name] = ["unknown parameter"]
    resolved: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in supplied and supplied[name] is not None:
            try:
                resolved[name] = coerce_parameter(name, spec, supplied[name])
            except ValueError as exc:
                errors[name] = [str(exc)]
        elif spec.required:
            errors[name] = ["this parameter is required"]
        elif spec.default is not None:
            resolved[name] = coerce_parameter(name, spec, spec.default)
        else:
            resolved[name] = None
    if errors:
        raise ParameterError(errors)
    return resolved
