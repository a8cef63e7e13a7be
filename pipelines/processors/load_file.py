"""``warehouse.load_file``: a CSV, NDJSON or Parquet file (local or ``gs://``) loaded into a table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from django.conf import settings
from pydantic import Field, field_validator

from convergence.warehouse import FileFormat, TableRef, TableSpec, WriteMode
from pipelines.engine import RunContext
from pipelines.processors.base import Processor, ProcessorConfig, StepError, StepResult
from pipelines.processors.common import DatasetType, Identifier, SchemaFile, read_schema

_LOCAL_SCHEME = "file://"
_GCS_SCHEME = "gs://"


class LoadDestination(ProcessorConfig):
    dataset_type: DatasetType
    table: Identifier
    write_mode: Literal["append", "truncate"]


class LoadFileConfig(ProcessorConfig):
    #: A path under SOURCE_FILE_ROOT (relative to it, absolute, or ``file://``), or ``gs://bucket/object``.
    uri: str = Field(min_length=1)
    format: Literal["csv", "ndjson", "parquet"]
    destination: LoadDestination
    schema_file: SchemaFile | None = None
    skip_leading_rows: int = Field(default=1, ge=0)

    identifier_fields = ("destination.table",)
    dataset_fields = ("destination.dataset_type",)

    @field_validator("uri")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value.startswith(_GCS_SCHEME):
            if len(value) <= len(_GCS_SCHEME) or "/" not in value[len(_GCS_SCHEME) :]:
                raise ValueError("gs:// URIs need a bucket and an object: gs://bucket/path")
            return value
        path = value.removeprefix(_LOCAL_SCHEME)
        if "://" in path:
            raise ValueError("only local paths, file:// and gs:// URIs are supported")
        if "\x00" in path:
            raise ValueError("invalid path")
        return value


def resolve_local_path(uri: str) -> Path:
    """The real path of a local source file, which must lie inside ``SOURCE_FILE_ROOT`` after ``..`` and
    symlinks are resolved. A relative path is relative to the root. ``StepError`` otherwise."""
    root = Path(settings.SOURCE_FILE_ROOT).resolve()
    raw = Path(uri.removeprefix(_LOCAL_SCHEME))
    path = (raw if raw.is_absolute() else root / raw).resolve()
    if root not in path.parents:
        raise StepError("source file is outside the allowed source folder (SOURCE_FILE_ROOT)")
    if not path.is_file():
        raise StepError("source file not found")
    if not os.access(path, os.R_OK):
        raise StepError("source file is not readable")
    return path


class LoadFileProcessor(Processor[LoadFileConfig]):
    """Load ``uri`` in ``format`` into ``destination`` (``append`` or ``truncate``), creating the table
    from ``schema_file`` if given and absent (else from the file's own columns).

    A local path is accepted only if its real path (``..`` and symlinks resolved) lies inside
    ``SOURCE_FILE_ROOT``; nothing else on the server is ever read. ``gs://`` needs the BigQuery
    backend. Returns the rows loaded."""

    config_model = LoadFileConfig

    def run(self, context: RunContext, config: LoadFileConfig) -> StepResult:
        destination = config.destination
        ref = TableRef(context.dataset(destination.dataset_type), destination.table)
        is_gcs = config.uri.startswith(_GCS_SCHEME)
        source = config.uri if is_gcs else str(resolve_local_path(config.uri))
        spec = TableSpec(schema=read_schema(config.schema_file)) if config.schema_file else None
        result = context.warehouse.load_file(
            source,
            ref,
            file_format=FileFormat(config.format),
            spec=spec,
            write_mode=WriteMode(destination.write_mode),
            skip_leading_rows=config.skip_leading_rows,
            labels=context.labels,
        )
        self.logger.info("load_file %s into %s: %s rows", config.format, ref, result.rows_affected)
        return StepResult(
            rows_affected=result.rows_affected or 0,
            bytes_processed=result.bytes_processed or 0,
            outputs={"table": str(ref)},
        )
