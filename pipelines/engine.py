"""Runs a loaded pipeline: steps in dependency order, each through its processor.

This is the engine's core; run records, Celery delivery, cancellation and quotas build on it."""

from __future__ import annotations

import graphlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections

from convergence.kms import Kms, get_kms
from convergence.logging import log_context
from convergence.warehouse import JobLabels, Warehouse, WarehouseError, get_warehouse
from pipelines.loader import Pipeline, ResolvedStep
from pipelines.processors.base import StepError, StepResult
from pipelines.registry import get_processor

logger = logging.getLogger(__name__)


class StepStatus:
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


#: PipelineOutcome.status when ``should_stop`` ended the run between steps.
STOPPED = "STOPPED"


@dataclass
class DQRecord:
    """One data-quality check's result, recorded by ``dq.checks`` and persisted with the run."""

    step_id: str
    check: str
    table: str
    status: str  # PASS | WARN | FAIL
    severity: str  # error | warn
    observed: str
    expected: str
    message: str = ""


@dataclass
class RunContext:
    """What a step sees: who it runs for, its parameters, and the adapters."""

    pipeline: Pipeline
    tenant_id: str | None
    run_id: str
    parameters: dict[str, Any]
    warehouse: Warehouse
    kms_factory: Callable[[], Kms] = get_kms
    step_id: str = ""
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dq_results: list[DQRecord] = field(default_factory=list)

    def record_dq(
        self,
        *,
        check: str,
        table: str,
        status: str,
        severity: str,
        observed: Any,
        expected: Any,
        message: str = "",
    ) -> DQRecord:
        """Keep one check's result; the engine stores it with the step."""
        record = DQRecord(
            step_id=self.step_id,
            check=check,
            table=table,
            status=status,
            severity=severity,
            observed=str(observed),
            expected=str(expected),
            message=message,
        )
        self.dq_results.append(record)
        return record

    @property
    def kms(self) -> Kms:
        return self.kms_factory()

    @property
    def labels(self) -> JobLabels:
        return JobLabels(tenant=self.tenant_id or "system", run=self.run_id, step=self.step_id)

    def dataset(self, dataset_type: str) -> str:
        """Resolve a dataset type to a name. A tenant pipeline only ever reaches its own dataset."""
        if dataset_type == "tenant_dataset":
            if self.tenant_id is None:
                raise StepError("this step needs a tenant")
            return f"{self.tenant_id}_{settings.ENV_SUFFIX}"
        if dataset_type == "central":
            if not self.pipeline.is_system:
                raise StepError("only system pipelines may use the central dataset")
            return str(settings.CENTRAL_DATASET)
        raise StepError(f"unknown dataset_type {dataset_type!r}")


@dataclass
class StepOutcome:
    step_id: str
    ps_type: str
    status: str
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: StepResult | None = None
    error: str = ""


@dataclass
class PipelineOutcome:
    status: str
    steps: list[StepOutcome]
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == StepStatus.COMPLETED

    def outputs(self, step_id: str) -> dict[str, Any]:
        for step in self.steps:
            if step.step_id == step_id and step.result is not None:
                return step.result.outputs
        return {}


@dataclass
class EngineHooks:
    """Callbacks the run service gives the engine. ``should_stop`` is asked before each step and
    returns a reason (cancelled, lease lost) to stop, or None to go on."""

    should_stop: Callable[[], str | None] = lambda: None
    step_started: Callable[[ResolvedStep, int], None] = lambda step, position: None
    step_finished: Callable[[StepOutcome, int, list[DQRecord]], None] = lambda outcome, position, dq: None


class StepTimeoutError(Exception):
    pass


def _call_with_timeout(function: Callable[[], StepResult], timeout_s: float) -> StepResult:
    """Run ``function`` in a helper thread and give up after ``timeout_s``. A timed-out step is
    abandoned (its thread is a daemon); the step fails and the run moves on."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = function()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc
        finally:
            connections.close_all()  # this thread's own database connections, if a step opened any

    thread = threading.Thread(target=target, name="pipeline-step", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise StepTimeoutError(f"step timed out after {timeout_s:g}s")
    if "error" in result:
        raise result["error"]
    value: StepResult = result["value"]
    return value


def step_order(pipeline: Pipeline) -> list[ResolvedStep]:
    """Steps sorted so each comes after its dependencies; ties keep config order."""
    by_id = {step.step_id: step for step in pipeline.steps}
    position = {step.step_id: index for index, step in enumerate(pipeline.steps)}
    sorter = graphlib.TopologicalSorter({step.step_id: step.depends_on for step in pipeline.steps})
    sorter.prepare()
    ordered: list[ResolvedStep] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        for step_id in ready:
            ordered.append(by_id[step_id])
            sorter.done(step_id)
    return ordered


def _run_step(step: ResolvedStep, context: RunContext, sleep: Callable[[float], None]) -> StepOutcome:
    outcome = StepOutcome(
        step_id=step.step_id, ps_type=step.ps_type, status=StepStatus.FAILED, started_at=time.time()
    )
    processor = get_processor(step.ps_type)()
    try:
        config = context.pipeline.step_config(step, tenant_id=context.tenant_id)
    except (KeyError, ValueError):
        logger.exception("step %s has an invalid configuration", step.step_id)
        outcome.error = "invalid step configuration"
        outcome.finished_at = time.time()
        return outcome
    delay = 1.0
    while True:
        outcome.attempts += 1
        try:
            outcome.result = _call_with_timeout(lambda: processor.run(context, config), step.timeout_s)
            outcome.status = StepStatus.COMPLETED
            break
        except (StepError, WarehouseError) as exc:
            message, retryable = exc.message, exc.retryable
        except StepTimeoutError as exc:
            message, retryable = str(exc), False
        except Exception:
            logger.exception("step %s raised unexpectedly", step.step_id)
            message, retryable = "internal error in step (see server logs)", False
        if retryable and outcome.attempts <= step.retries:
            logger.warning(
                "step %s failed (attempt %d), retrying in %.1fs: %s",
                step.step_id,
                outcome.attempts,
                delay,
                message,
            )
            sleep(delay)
            delay = min(delay * 2, 60.0)
            continue
        outcome.error = message
        logger.warning("step %s failed: %s", step.step_id, message)
        break
    outcome.finished_at = time.time()
    return outcome


def execute(
    pipeline: Pipeline,
    *,
    tenant_id: str | None,
    parameters: dict[str, Any],
    run_id: str | None = None,
    warehouse: Warehouse | None = None,
    hooks: EngineHooks | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PipelineOutcome:
    """Run every step in dependency order. A failed step marks its dependants SKIPPED; the pipeline
    is COMPLETED only if every step completed, STOPPED if ``hooks.should_stop`` said so between
    steps. Never raises for a step failure."""
    hooks = hooks or EngineHooks()
    context = RunContext(
        pipeline=pipeline,
        tenant_id=tenant_id,
        run_id=run_id or uuid.uuid4().hex,
        parameters=parameters,
        warehouse=warehouse or get_warehouse(),
    )
    outcomes: list[StepOutcome] = []
    failed: set[str] = set()
    with log_context(tenant=tenant_id or "system", run=context.run_id):
        for position, step in enumerate(step_order(pipeline)):
            stop_reason = hooks.should_stop()
            if stop_reason:
                logger.info("run stopped before step %s: %s", step.step_id, stop_reason)
                return PipelineOutcome(status=STOPPED, steps=outcomes, error=stop_reason)
            if any(dependency in failed for dependency in step.depends_on):
                skipped = StepOutcome(
                    step_id=step.step_id,
                    ps_type=step.ps_type,
                    status=StepStatus.SKIPPED,
                    error="a dependency failed",
                )
                outcomes.append(skipped)
                hooks.step_finished(skipped, position, [])
                failed.add(step.step_id)
                continue
            context.step_id = step.step_id
            hooks.step_started(step, position)
            dq_before = len(context.dq_results)
            with log_context(step=step.step_id):
                outcome = _run_step(step, context, sleep)
            outcomes.append(outcome)
            hooks.step_finished(outcome, position, context.dq_results[dq_before:])
            if outcome.status == StepStatus.COMPLETED and outcome.result is not None:
                context.outputs[step.step_id] = outcome.result.outputs
            else:
                failed.add(step.step_id)
    first_error = next((o for o in outcomes if o.status == StepStatus.FAILED), None)
    if first_error is None:
        return PipelineOutcome(status=StepStatus.COMPLETED, steps=outcomes)
    return PipelineOutcome(
        status=StepStatus.FAILED, steps=outcomes, error=f"step {first_error.step_id}: {first_error.error}"
    )
