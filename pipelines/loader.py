"""Loads pipeline configs and step templates from YAML, validates them, and resolves templates.

Names: ``system/bootstrap``, ``tenant/onboarding`` (system pipelines, run by the control plane) and
``{provider}/{domain}/{pipeline}`` (tenant pipelines)."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from pydantic import ValidationError

from pipelines.processors.base import ProcessorConfig
from pipelines.registry import UnknownProcessorError, get_processor
from pipelines.spec import IDENTIFIER_RE, PipelineSpec, StepSpec, TemplateSpec
from pipelines.sql import SqlError, analyze_sql

MAX_YAML_BYTES = 256 * 1024
PIPELINE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}(/[a-z][a-z0-9_]{0,63}){1,2}$")
TEMPLATE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}(/[a-z][a-z0-9_]{0,63}){0,3}$")
SYSTEM_PREFIXES = ("system/", "tenant/")
_VARIABLE_RE = re.compile(r"\{([a-z][a-z0-9_]*)\}")
BUILTIN_VARIABLES = ("tenant_id", "tenant_dataset", "central_dataset", "env")
#: The tenant id configs are validated for: a valid identifier no real tenant can have (tenant ids start
#: with a letter), so SQL naming that dataset literally still fails the processors' run-time check.
VALIDATION_TENANT_ID = "_validation_tenant"
#: A variable substituted into SQL must be an identifier (or an integer), never free text.
_SQL_VARIABLE_VALUE_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,1023}|-?[0-9]{1,18})$")


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


def _pydantic_errors(exc: ValidationError, prefix: str = "", data: Any = None) -> list[tuple[str, str]]:
    """``(path, message)`` pairs. With ``data`` (the validated input), the union tags pydantic adds to
    locations (``checks[0].not_null.column``) are dropped so paths name what the author wrote."""
    errors = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        location = format_location(_input_location(loc, data) if data is not None else loc)
        if prefix:
            location = prefix if location == "(root)" else f"{prefix}.{location}"
        message = error["msg"]
        if error["type"] == "missing":
            message = "field required"
        elif error["type"] == "extra_forbidden":
            message = "extra field not permitted"
        elif error["type"] == "value_error" and "error" in error.get("ctx", {}):
            message = str(error["ctx"]["error"])
        errors.append((location, message))
    return list(dict.fromkeys(errors))


def _input_location(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    kept: list[Any] = []
    current = data
    for part in loc:
        if isinstance(part, str) and (
            isinstance(current, list)
            or (isinstance(current, dict) and part not in current and part in current.values())
        ):
            continue  # a union member's tag (the discriminator's value or a member type), not an input key
        kept.append(part)
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            current = None
    return tuple(kept)


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
    if not PIPELINE_NAME_RE.fullmatch(name):
        raise PipelineNotFound(name)
    root = Path(settings.PIPELINE_CONFIGS_DIR)
    path = (root / f"{name}.yml").resolve()
    if root.resolve() not in path.parents or not path.is_file():
        raise PipelineNotFound(name)
    return path


def load_template(name: str) -> TemplateSpec:
    root = Path(settings.PIPELINE_TEMPLATES_DIR)
    if not TEMPLATE_NAME_RE.fullmatch(name):
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
    errors.extend(check_step_keys(pipeline, processor.config_model, keys, location))
    return resolved


def check_step_keys(
    pipeline: Pipeline, model: type[ProcessorConfig], keys: dict[str, Any], location: str
) -> list[tuple[str, str]]:
    """Validate a step's processor keys as they would be for a tenant: variables substituted (with
    ``VALIDATION_TENANT_ID``), identifiers checked, the processor's model applied, then every SQL field
    parsed and checked against the pipeline's datasets and declared parameters. Where to look comes
    from the model's ``identifier_fields``, ``dataset_fields``, ``sql_fields`` and ``parameter_fields``."""
    variables = pipeline.variables_for(tenant_id=VALIDATION_TENANT_ID)
    try:
        substituted = substitute_variables(keys, variables)
    except KeyError as exc:
        return [(location, f"unknown variable {{{exc.args[0]}}}")]
    errors: list[tuple[str, str]] = []
    for path in model.identifier_fields:
        for at, raw in iter_path(keys, path, location):
            if not isinstance(raw, str):
                continue
            value = substitute_variables(raw, variables)
            if not IDENTIFIER_RE.fullmatch(value):
                origin = f" (from {raw})" if raw != value else ""
                errors.append((at, f"invalid identifier {value!r}{origin}"))
    for path in model.dataset_fields:
        for at, value in iter_path(substituted, path, location):
            if value == "central" and not pipeline.is_system:
                errors.append((at, "dataset_type 'central' is only allowed in system pipelines"))
    reported = {at for at, _message in errors}
    validated: ProcessorConfig | None = None
    try:
        validated = model.model_validate(substituted)
    except ValidationError as exc:
        found = _pydantic_errors(exc, prefix=location, data=substituted)
        errors.extend(error for error in found if error[0] not in reported)
    declared = pipeline.spec.parameters
    datasets = {variables["tenant_dataset"]: "{tenant_dataset}"}
    if pipeline.is_system:
        datasets[variables["central_dataset"]] = "{central_dataset}"
    for path, kind in model.sql_fields.items():
        for at, raw in iter_path(keys, path, location):
            if not isinstance(raw, str):
                continue
            bad = [
                (name, variables[name])
                for name in dict.fromkeys(_VARIABLE_RE.findall(raw))
                if not _SQL_VARIABLE_VALUE_RE.fullmatch(variables[name])
            ]
            if bad:
                errors.extend((at, f"invalid identifier {value!r} (from {{{name}}})") for name, value in bad)
                continue
            try:
                analysis = analyze_sql(substitute_variables(raw, variables), kind=kind, datasets=datasets)
            except SqlError as exc:
                errors.extend((at, message) for message in exc.errors)
                continue
            undeclared = sorted(analysis.parameters - declared.keys())
            errors.extend((at, f"parameter @{name} is not declared") for name in undeclared)
    if validated is not None:
        dumped = validated.model_dump()
        for path in model.parameter_fields:
            for at, value in iter_path(dumped, path, location):
                if isinstance(value, str) and value not in declared:
                    errors.append((at, f"parameter @{value} is not declared"))
    return list(dict.fromkeys(errors))


def iter_path(data: Any, path: str, location: str) -> Iterator[tuple[str, Any]]:
    """The values at a dotted ``path`` (``[*]`` = every list item) with their error locations, e.g.
    ``checks[*].column`` → ``("steps[2].checks[0].column", "id")``. Absent keys yield nothing."""
    parts = path.split(".")

    def walk(value: Any, index: int, at: str) -> Iterator[tuple[str, Any]]:
        if index == len(parts):
            yield at, value
            return
        part = parts[index]
        every = part.endswith("[*]")
        key = part.removesuffix("[*]")
        if not isinstance(value, dict) or key not in value:
            return
        child, child_at = value[key], f"{at}.{key}"
        if not every:
            yield from walk(child, index + 1, child_at)
        elif isinstance(child, list):
            for position, item in enumerate(child):
                yield from walk(item, index + 1, f"{child_at}[{position}]")

    yield from walk(data, 0, location)


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
    """Load and validate a pipeline by name. ``PipelineNotFound`` or ``PipelineConfigError``.

    Parsed configs are cached per process, keyed by the file's path, size and modification time, so
    an edited config is picked up on its next use. (Templates are read when their config is parsed;
    an edit to a template alone is seen after a restart.) Callers must not mutate the result."""
    path = pipeline_path(name)
    stat = path.stat()
    return _parse_cached(name, str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _parse_cached(name: str, path: str, mtime_ns: int, size: int) -> Pipeline:
    return parse_pipeline(name, Path(path))


def iter_pipeline_files() -> list[tuple[str, Path]]:
    """Every shipped config as ``(name, path)``, sorted by name."""
    root = Path(settings.PIPELINE_CONFIGS_DIR)
    found = []
    for path in sorted(root.rglob("*.yml")):
        name = str(path.relative_to(root).with_suffix(""))
        if PIPELINE_NAME_RE.fullmatch(name):
            found.append((name, path))
    return found
