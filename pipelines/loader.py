"""Loads pipeline configs and step templates from YAML, validates them, and resolves templates.

Names: ``system/bootstrap``, ``tenant/onboarding`` (system pipelines, run by the control plane) and
``{provider}/{domain}/{pipeline}`` (tenant pipelines)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from pydantic import ValidationError

from pipelines.processors.base import ProcessorConfig
from pipelines.registry import UnknownProcessorError, get_processor
from pipelines.spec import PipelineSpec, StepSpec, TemplateSpec

MAX_YAML_BYTES = 256 * 1024
PIPELINE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}(/[a-z][a-z0-9_]{0,63}){1,2}$")
TEMPLATE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}(/[a-z][a-z0-9_]{0,63}){0,3}$")
SYSTEM_PREFIXES = ("system/", "tenant/")
_VARIABLE_RE = re.compile(r"\{([a-z][a-z0-9_]*)\}")
BUILTIN_VARIABLES = ("tenant_id", "tenant_dataset", "central_dataset", "env")


class PipelineConfigError(Exception):
    """A config or template is invalid. ``errors`` are ``(path, message)`` pairs; ``file`` is the
    config's path relative to the project."""

    def __init__(self, file: str, errors: list[tuple[str, str]]) -> None:
        self.file = file
        self.errors = errors
        super().__init__("\n".join(f"{file}: {path}: {message}" for path, message in errors))


class PipelineNotFound(LookupError):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors/aliases: configs don't need them, and they enable alias bombs."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(settings.BASE_DIR))
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file with a size cap and no aliases; ``PipelineConfigError`` on failure."""
    display = _relative(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PipelineConfigError(display, [("(file)", f"cannot read: {exc.strerror}")]) from exc
    if len(raw) > MAX_YAML_BYTES:
        raise PipelineConfigError(display, [("(file)", f"larger than {MAX_YAML_BYTES} bytes")])
    try:
        return yaml.load(raw, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PipelineConfigError(display, [("(file)", f"invalid YAML: {exc}")]) from exc


def format_location(loc: tuple[Any, ...]) -> str:
    """pydantic's ``('steps', 2, 'destination', 'table')`` → ``steps[2].destination.table``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _pydantic_errors(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    errors = []
    for error in exc.errors():
        location = format_location(tuple(error["loc"]))
        if prefix:
            location = prefix if location == "(root)" else f"{prefix}.{location}"
        message = error["msg"]
        if error["type"] == "missing":
            message = "field required"
        elif error["type"] == "extra_forbidden":
            message = "extra field not permitted"
        errors.append((location, message))
    return errors


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class ResolvedStep:
    step_id: str
    ps_type: str
    depends_on: tuple[str, ...]
    retries: int
    timeout_s: int
    #: processor keys after template merge, before variable substitution
    raw_config: dict[str, Any]
    template: str | None = None


@dataclass
class Pipeline:
    name: str
    path: Path
    spec: PipelineSpec
    steps: list[ResolvedStep] = field(default_factory=list)

    @property
    def is_system(self) -> bool:
        return self.name.startswith(SYSTEM_PREFIXES)

    def variables_for(self, *, tenant_id: str | None) -> dict[str, str]:
        """Built-in variables for one tenant (or a system run), then the config's own."""
        values: dict[str, str] = {
            "env": settings.ENV_SUFFIX,
            "central_dataset": settings.CENTRAL_DATASET,
        }
        if tenant_id is not None:
            values["tenant_id"] = tenant_id
            values["tenant_dataset"] = f"{tenant_id}_{settings.ENV_SUFFIX}"
        for name, value in self.spec.variables.items():
            values[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return values

    def step_config(self, step: ResolvedStep, *, tenant_id: str | None) -> ProcessorConfig:
        """The step's processor config with variables substituted, validated by the processor."""
        variables = self.variables_for(tenant_id=tenant_id)
        substituted = substitute_variables(step.raw_config, variables)
        processor = get_processor(step.ps_type)
        return processor.config_model.model_validate(substituted)


def substitute_variables(value: Any, variables: dict[str, str]) -> Any:
    """Replace ``{name}`` in every string with the variable's value. Unknown names raise KeyError."""
    if isinstance(value, str):
        return _VARIABLE_RE.sub(lambda match: variables[match.group(1)], value)
    if isinstance(value, list):
        return [substitute_variables(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: substitute_variables(item, variables) for key, item in value.items()}
    return value


def pipeline_path(name: str) -> Path:
    """The config file for a pipeline name; ``PipelineNotFound`` for a malformed name, a path that
    escapes the configs folder, or a missing file."""
    if not PIPELINE_NAME_RE.match(name):
        raise PipelineNotFound(name)
    root = Path(settings.PIPELINE_CONFIGS_DIR)
    path = (root / f"{name}.yml").resolve()
    if root.resolve() not in path.parents or not path.is_file():
        raise PipelineNotFound(name)
    return path


def load_template(name: str) -> TemplateSpec:
    root = Path(settings.PIPELINE_TEMPLATES_DIR)
    if not TEMPLATE_NAME_RE.match(name):
        raise KeyError(name)
    path = (root / f"{name}.yml").resolve()
    if root.resolve() not in path.parents or not path.is_file():
        raise KeyError(name)
    data = read_yaml(path)
    try:
        return TemplateSpec.model_validate(data)
    except ValidationError as exc:
        raise PipelineConfigError(_relative(path), _pydantic_errors(exc)) from exc


def parse_pipeline(name: str, path: Path) -> Pipeline:
    """Validate one config file and resolve its templates; ``PipelineConfigError`` lists every error."""
    display = _relative(path)
    data = read_yaml(path)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise PipelineConfigError(display, _pydantic_errors(exc)) from exc

    errors: list[tuple[str, str]] = []
    pipeline = Pipeline(name=name, path=path, spec=spec)
    seen: set[str] = set()
    previous: str | None = None
    for index, step in enumerate(spec.steps):
        resolved = _resolve_step(pipeline, step, index, previous, errors)
        if step.step_id in seen:
            errors.append((f"steps[{index}].step_id", f"duplicate step_id {step.step_id!r}"))
        seen.add(step.step_id)
        previous = step.step_id
        if resolved is not None:
            pipeline.steps.append(resolved)

    step_ids = {step.step_id for step in spec.steps}
    for index, step in enumerate(spec.steps):
        for dependency in step.depends_on or []:
            if dependency not in step_ids:
                errors.append((f"steps[{index}].depends_on", f"unknown step {dependency!r}"))
    if not errors:
        cycle = find_cycle(pipeline.steps)
        if cycle:
            errors.append(("steps", f"dependency cycle: {' -> '.join(cycle)}"))
    if errors:
        raise PipelineConfigError(display, errors)
    return pipeline


def _resolve_step(
    pipeline: Pipeline, step: StepSpec, index: int, previous: str | None, errors: list[tuple[str, str]]
) -> ResolvedStep | None:
    location = f"steps[{index}]"
    keys = step.processor_keys()
    ps_type = step.ps_type
    retries, timeout_s = step.retries, step.timeout_s
    if step.template:
        try:
            template = load_template(step.template)
        except KeyError:
            errors.append((f"{location}.template", f"unknown template {step.template!r}"))
            return None
        except PipelineConfigError as exc:
            errors.extend(
                (f"{location}.template", f"{exc.file}: {path}: {message}") for path, message in exc.errors
            )
            return None
        template_keys = template.model_extra or {}
        keys = _deep_merge(template_keys, keys)
        if ps_type and ps_type != template.ps_type:
            errors.append((f"{location}.ps_type", f"conflicts with template ps_type {template.ps_type!r}"))
            return None
        ps_type = template.ps_type
        fields_set = step.model_fields_set
        if template.retries is not None and "retries" not in fields_set:
            retries = template.retries
        if template.timeout_s is not None and "timeout_s" not in fields_set:
            timeout_s = template.timeout_s
    assert ps_type is not None
    try:
        processor = get_processor(ps_type)
    except UnknownProcessorError:
        errors.append((f"{location}.ps_type", f"unknown ps_type {ps_type!r}"))
        return None
    if processor.system_only and not pipeline.is_system:
        errors.append((f"{location}.ps_type", f"{ps_type!r} is only allowed in system pipelines"))
        return None
    depends_on = tuple(step.depends_on) if step.depends_on is not None else ((previous,) if previous else ())
    resolved = ResolvedStep(
        step_id=step.step_id,
        ps_type=ps_type,
        depends_on=depends_on,
        retries=retries,
        timeout_s=timeout_s,
        raw_config=keys,
        template=step.template,
    )
    # Validate the processor keys now, with placeholder values for tenant-specific variables.
    try:
        pipeline.step_config(resolved, tenant_id="tenant_placeholder")
    except KeyError as exc:
        errors.append((location, f"unknown variable {{{exc.args[0]}}}"))
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, prefix=location))
    return resolved


def find_cycle(steps: list[ResolvedStep]) -> list[str]:
    """A dependency cycle as a list of step ids (first repeated at the end), or []."""
    graph = {step.step_id: step.depends_on for step in steps}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dependency in graph.get(node, ()):
            if state.get(dependency) == 1:
                return [*stack[stack.index(dependency) :], dependency]
            if state.get(dependency) is None and dependency in graph:
                found = visit(dependency)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def load_pipeline(name: str) -> Pipeline:
    """Load and validate a pipeline by name. ``PipelineNotFound`` or ``PipelineConfigError``."""
    return parse_pipeline(name, pipeline_path(name))


def iter_pipeline_files() -> list[tuple[str, Path]]:
    """Every shipped config as ``(name, path)``, sorted by name."""
    root = Path(settings.PIPELINE_CONFIGS_DIR)
    found = []
    for path in sorted(root.rglob("*.yml")):
        name = str(path.relative_to(root).with_suffix(""))
        if PIPELINE_NAME_RE.match(name):
            found.append((name, path))
    return found
