"""``gcp.bq_etl``: a BigQuery SELECT written into a table with a write mode."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from convergence.warehouse import TableRef, TableSpec, WriteMode
from pipelines.engine import RunContext
from pipelines.processors.base import Processor, ProcessorConfig, StepError, StepResult
from pipelines.processors.common import (
    DatasetType,
    Identifier,
    SchemaFile,
    checked_sql,
    query_parameters,
    quote,
    read_schema,
)

DEFAULT_PARTITION_PARAMETER = "date"


class EtlDestination(ProcessorConfig):
    dataset_type: DatasetType
    table: Identifier
    write_mode: Literal["append", "truncate", "replace_partition", "merge"]
    #: The DATE column that identifies a run's partition; also partitions a table created from schema_file.
    partition_field: Identifier | None = None
    #: The run parameter compared with partition_field (replace_partition only; default ``date``).
    partition_parameter: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    #: Explicit rows to replace, e.g. ``billing_period = @period`` for a month-long billing period.
    replace_predicate: str | None = None
    merge_keys: list[Identifier] = Field(default_factory=list)
    schema_file: SchemaFile | None = None

    @model_validator(mode="after")
    def _check_write_mode(self) -> EtlDestination:
        if self.write_mode == "replace_partition":
            if not self.partition_field and not self.replace_predicate:
                raise ValueError("replace_partition needs partition_field or replace_predicate")
            if self.replace_predicate and self.partition_parameter:
                raise ValueError("partition_parameter is not used with replace_predicate")
            if not self.replace_predicate and self.partition_parameter is None:
                self.partition_parameter = DEFAULT_PARTITION_PARAMETER
        else:
            if self.replace_predicate:
                raise ValueError("replace_predicate is only for write_mode replace_partition")
            if self.partition_parameter:
                raise ValueError("partition_parameter is only for write_mode replace_partition")
        if self.write_mode == "merge" and not self.merge_keys:
            raise ValueError("merge needs merge_keys")
        if self.write_mode != "merge" and self.merge_keys:
            raise ValueError("merge_keys is only for write_mode merge")
        return self

    def predicate(self) -> str | None:
        """The rows replace_partition deletes before inserting, as BigQuery SQL over the destination."""
        if self.write_mode != "replace_partition":
            return None
        if self.replace_predicate:
            return self.replace_predicate
        assert self.partition_field is not None
        return f"{quote(self.partition_field)} = @{self.partition_parameter}"


class EtlConfig(ProcessorConfig):
    sql: str = Field(min_length=1)
    destination: EtlDestination

    sql_fields = {"sql": "query", "destination.replace_predicate": "predicate"}
    identifier_fields = (
        "destination.table",
        "destination.partition_field",
        "destination.merge_keys[*]",
    )
    parameter_fields = ("destination.partition_parameter",)
    dataset_fields = ("destination.dataset_type",)


class EtlProcessor(Processor[EtlConfig]):
    """Run ``sql`` (one BigQuery SELECT; caller values only as ``@params``) into ``destination``.

    Write modes: ``append``; ``truncate`` (replace the table's contents); ``replace_partition`` (delete
    the rows matching ``partition_field = @<partition_parameter>`` or ``replace_predicate``, then insert,
    in one atomic change, so re-running a day never double-counts); ``merge`` (upsert on ``merge_keys``).
    A missing table is created from ``schema_file`` (partitioned on ``partition_field``) or from the
    query's result. The SQL is re-checked against the run's own datasets before it runs. Returns the
    rows written and the bytes processed; ``WarehouseError`` propagates with its ``retryable`` flag."""

    config_model = EtlConfig

    def run(self, context: RunContext, config: EtlConfig) -> StepResult:
        destination = config.destination
        ref = TableRef(context.dataset(destination.dataset_type), destination.table)
        query = checked_sql(context, config.sql, "query")
        analyses = [query]
        predicate = destination.predicate()
        if predicate is not None:
            predicate_analysis = checked_sql(context, predicate, "predicate")
            analyses.append(predicate_analysis)
            predicate = predicate_analysis.normalized
        spec = None
        if destination.schema_file:
            schema = read_schema(destination.schema_file)
            if destination.partition_field and destination.partition_field not in {f.name for f in schema}:
                raise StepError(f"partition_field {destination.partition_field} is not in the schema file")
            spec = TableSpec(schema=schema, partition_field=destination.partition_field)
        result = context.warehouse.query_to_table(
            config.sql,
            ref,
            params=query_parameters(context, *analyses),
            write_mode=WriteMode(destination.write_mode),
            replace_predicate=predicate,
            merge_keys=tuple(destination.merge_keys),
            spec=spec,
            labels=context.labels,
        )
        self.logger.info("bq_etl %s %s: %s rows", destination.write_mode, ref, result.rows_affected)
        return StepResult(
            rows_affected=result.rows_affected or 0,
            bytes_processed=result.bytes_processed or 0,
            outputs={"table": str(ref), "write_mode": destination.write_mode},
        )
