"""Processors used only by the engine tests: they exercise retry, failure and timing paths that the
real processors reach only through a broken warehouse."""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.engine import RunContext
from pipelines.processors.base import Processor, ProcessorConfig, StepError, StepResult


class CountingConfig(ProcessorConfig):
    rows: int = 1
    #: fail this many times with a retryable error before succeeding
    fail_times: int = 0
    retryable: bool = True
    sleep_s: float = 0.0
    #: a file whose existence makes the step block until it is removed (for kill tests)
    hold_file: str = ""


class CountingProcessor(Processor[CountingConfig]):
    """Succeeds with ``rows`` rows after ``fail_times`` failures; counts its calls per run in a class dict."""

    config_model = CountingConfig
    calls: dict[tuple[str, str], int] = {}

    def run(self, context: RunContext, config: CountingConfig) -> StepResult:
        key = (context.run_id, context.step_id)
        CountingProcessor.calls[key] = CountingProcessor.calls.get(key, 0) + 1
        if CountingProcessor.calls[key] <= config.fail_times:
            raise StepError(f"transient failure {CountingProcessor.calls[key]}", retryable=config.retryable)
        hold_file = config.hold_file or context.parameters.get("hold_file") or ""
        if hold_file and context.step_id == "first":
            deadline = time.monotonic() + 120
            while Path(hold_file).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if config.sleep_s:
            time.sleep(config.sleep_s)
        return StepResult(rows_affected=config.rows, outputs={"date": str(context.parameters.get("date"))})
