"""Shared setup for tests that run pipelines through the real engine on a warehouse (DuckDB, or the
BigQuery emulator): the tenant's dataset, the FOCUS staging table, the DQ results a run records, and
helpers writing a pipeline config and running it.

Use the fixtures by binding them in the test module: ``dataset = engine_fixtures.dataset``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from billing.focus.schema import FOCUS_STAGING_TABLE, FOCUS_STAGING_TABLE_SPEC
from convergence.warehouse import TableRef
from pipelines.engine import DQRecord, PipelineOutcome, RunContext, execute
from pipelines.loader import Pipeline, parse_pipeline
from pipelines.spec import resolve_parameters

TENANT = "acme"


def tenant_dataset_name(settings: Any) -> str:
    return f"{TENANT}_{settings.ENV_SUFFIX}"


def make_configs(settings: Any, tmp_path: Path, schemas: dict[str, Any] | None = None) -> Path:
    """An empty pipeline configs tree (``PIPELINE_CONFIGS_DIR``), holding ``schemas/{name}.json`` for each
    of ``schemas``."""
    root = tmp_path / "configs"
    root.mkdir()
    if schemas:
        (root / "schemas").mkdir()
        for name, schema in schemas.items():
            (root / "schemas" / f"{name}.json").write_text(json.dumps(schema))
    settings.PIPELINE_CONFIGS_DIR = root
    return root


@pytest.fixture
def dataset(warehouse: Any, settings: Any) -> str:
    """The tenant's dataset, created in the test's warehouse."""
    name = tenant_dataset_name(settings)
    warehouse.create_dataset(name)
    return name


@pytest.fixture
def staging(warehouse: Any, dataset: str) -> TableRef:
    """The tenant's empty FOCUS staging table."""
    ref = TableRef(dataset, FOCUS_STAGING_TABLE)
    warehouse.create_table(ref, FOCUS_STAGING_TABLE_SPEC)
    return ref


@pytest.fixture
def dq_records(monkeypatch: pytest.MonkeyPatch) -> list[DQRecord]:
    """The DQ results recorded during a run (the engine keeps them on its RunContext)."""
    records: list[DQRecord] = []
    original = RunContext.record_dq

    def capture(self: RunContext, **kwargs: Any) -> DQRecord:
        record = original(self, **kwargs)
        records.append(record)
        return record

    monkeypatch.setattr(RunContext, "record_dq", capture)
    return records


@contextmanager
def fresh_dataset(warehouse: Any, settings: Any) -> Iterator[str]:
    """The tenant's dataset in a shared warehouse (the BigQuery emulator): dropped first, in case an
    earlier run left it, created, and dropped again afterwards."""
    name = tenant_dataset_name(settings)
    warehouse.drop_dataset(name, delete_contents=True)
    warehouse.create_dataset(name)
    try:
        yield name
    finally:
        warehouse.drop_dataset(name, delete_contents=True)


def write_pipeline(configs: Path, text: str, name: str) -> Pipeline:
    """Write ``text`` as the config of pipeline ``name`` under ``configs`` and parse it."""
    path = configs / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return parse_pipeline(name, path)


def run_pipeline(pipeline: Pipeline, warehouse: Any = None, **parameters: Any) -> PipelineOutcome:
    """Run ``pipeline`` for the tenant through the engine (on ``warehouse``, else the configured one),
    without sleeping between retries."""
    resolved = resolve_parameters(pipeline.spec.parameters, parameters)
    return execute(pipeline, tenant_id=TENANT, parameters=resolved, warehouse=warehouse, sleep=lambda s: None)
