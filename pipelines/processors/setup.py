"""System processors: the central dataset and its tables (bootstrap), a tenant's dataset (onboarding)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from django.conf import settings
from pydantic import Field, field_validator

from convergence.warehouse import Field as WarehouseField
from convergence.warehouse import TableRef, TableSpec
from pipelines.engine import RunContext
from pipelines.processors.base import Processor, ProcessorConfig, StepError, StepResult
from pipelines.spec import IDENTIFIER_RE


class TableDefinition(ProcessorConfig):
    name: str
    schema_file: str = Field(description="BigQuery JSON schema, relative to the configs folder")
    partition_field: str | None = None
    clustering: list[str] = Field(default_factory=list, max_length=4)
    description: str = ""

    @field_validator("name", "partition_field")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER_RE.fullmatch(value):
            raise ValueError(f"invalid identifier {value!r}")
        return value

    @field_validator("schema_file")
    @classmethod
    def _schema_exists(cls, value: str) -> str:
        root = Path(settings.PIPELINE_CONFIGS_DIR).resolve()
        path = (root / value).resolve()
        if root not in path.parents or not path.is_file():
            raise ValueError(f"schema file {value!r} not found under the configs folder")
        return value

    def table_spec(self) -> TableSpec:
        path = Path(settings.PIPELINE_CONFIGS_DIR) / self.schema_file
        fields = tuple(WarehouseField.from_api_repr(item) for item in json.loads(path.read_text()))
        names = {field.name for field in fields}
        missing = [
            column for column in [self.partition_field, *self.clustering] if column and column not in names
        ]
        if missing:
            raise StepError(f"table {self.name}: unknown partition/cluster column(s) {', '.join(missing)}")
        return TableSpec(
            schema=fields,
            partition_field=self.partition_field,
            clustering=tuple(self.clustering),
            description=self.description,
        )


_TABLE_IDENTIFIERS = ("tables[*].name", "tables[*].partition_field", "tables[*].clustering[*]")


class BootstrapConfig(ProcessorConfig):
    dataset_type: Literal["central"]
    tables: list[TableDefinition] = Field(min_length=1)

    identifier_fields = _TABLE_IDENTIFIERS


class BootstrapProcessor(Processor[BootstrapConfig]):
    """Create the central dataset and its tables. Idempotent: existing ones are counted, not
    touched, unless the run's ``force_recreate_dataset`` / ``force_recreate_tables`` parameter is set.

    Outputs: ``dataset_created``, ``tables_created``, ``tables_existing``."""

    config_model = BootstrapConfig
    system_only = True

    def run(self, context: RunContext, config: BootstrapConfig) -> StepResult:
        warehouse = context.warehouse
        dataset = context.dataset(config.dataset_type)
        if context.parameters.get("force_recreate_dataset"):
            warehouse.drop_dataset(dataset, delete_contents=True, not_found_ok=True)
        dataset_created = warehouse.create_dataset(dataset, exists_ok=True, labels={"role": "central"})
        created = existing = 0
        force_tables = bool(context.parameters.get("force_recreate_tables"))
        for table in config.tables:
            ref = TableRef(dataset, table.name)
            spec = table.table_spec()
            if force_tables:
                warehouse.drop_table(ref, not_found_ok=True)
            if warehouse.create_table(ref, spec, exists_ok=True):
                created += 1
            else:
                existing += 1
        self.logger.info(
            "bootstrap %s: dataset_created=%s tables_created=%d tables_existing=%d",
            dataset,
            dataset_created,
            created,
            existing,
        )
        return StepResult(
            outputs={
                "dataset": dataset,
                "dataset_created": dataset_created,
                "tables_created": created,
                "tables_existing": existing,
            }
        )


class OnboardingConfig(ProcessorConfig):
    dataset_type: Literal["tenant_dataset"]
    tables: list[TableDefinition] = Field(default_factory=list)

    identifier_fields = _TABLE_IDENTIFIERS


class OnboardingProcessor(Processor[OnboardingConfig]):
    """Create the tenant's dataset (and any tables the config lists). Fails if the dataset already
    exists: a new tenant must not inherit data. Output ``dataset_created`` is True when this step
    created it, so a caller rolling back knows what to remove."""

    config_model = OnboardingConfig
    system_only = True

    def run(self, context: RunContext, config: OnboardingConfig) -> StepResult:
        warehouse = context.warehouse
        dataset = context.dataset(config.dataset_type)
        if warehouse.dataset_exists(dataset):
            raise StepError(f"dataset {dataset} already exists")
        warehouse.create_dataset(dataset, exists_ok=False, labels={"tenant": context.tenant_id or ""})
        for table in config.tables:
            warehouse.create_table(TableRef(dataset, table.name), table.table_spec(), exists_ok=True)
        return StepResult(
            outputs={"dataset": dataset, "dataset_created": True, "tables_created": len(config.tables)}
        )
