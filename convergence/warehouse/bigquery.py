"""BigQuery backend (also used against the local-bigquery emulator when ``api_endpoint`` is set).

Every job carries sanitised ``JobLabels`` and, for queries, the ``maximum_bytes_billed`` cap. No default
dataset is set: SQL names tables ``dataset.table`` and they resolve in the client's project. Client calls
use short retry deadlines so a failing server surfaces as an error within seconds, not after the
library's default 600 s.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import decimal
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from convergence.warehouse.base import (
    IDENTIFIER_PATTERN,
    ConflictError,
    Field,
    FileFormat,
    JobLabels,
    NotFoundError,
    Params,
    ParamValue,
    QueryResult,
    ScalarParam,
    TableInfo,
    TableRef,
    TableSpec,
    Warehouse,
    WarehouseError,
    WriteMode,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud import bigquery

logger = logging.getLogger(__name__)

#: Seconds the client keeps retrying one API call (the library default is 600).
API_RETRY_DEADLINE_S = 30.0
#: Seconds the client keeps re-running a query job that failed with a retryable job error.
JOB_RETRY_DEADLINE_S = 60.0

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")
_TYPE_ALIASES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "STRUCT": "RECORD",
    "DECIMAL": "NUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
}
_SOURCE_FORMATS = {
    FileFormat.CSV: "CSV",
    FileFormat.NDJSON: "NEWLINE_DELIMITED_JSON",
    FileFormat.PARQUET: "PARQUET",
}
# NUMERIC holds 29 integer digits and 9 fractional digits; anything beyond needs BIGNUMERIC.
_NUMERIC_MAX = decimal.Decimal("99999999999999999999999999999.999999999")


def sanitize_label(value: str) -> str:
    """A BigQuery label value: lowercase, only ``[a-z0-9_-]``, at most 63 characters."""
    return _LABEL_INVALID.sub("_", value.lower())[:63]


def _labels(labels: JobLabels | Mapping[str, str] | None) -> dict[str, str]:
    items = labels.as_dict() if isinstance(labels, JobLabels) else dict(labels or {})
    cleaned = {}
    for key, value in items.items():
        clean_key = sanitize_label(key)
        # Keys must start with a letter; values may be anything sanitised.
        if clean_key and not clean_key[0].isalpha():
            clean_key = f"l_{clean_key}"[:63]
        if clean_key:
            cleaned[clean_key] = sanitize_label(value)
    return cleaned


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise WarehouseError(f"invalid {what} name {name!r}")
    return name


def _bigquery_type(type_name: str) -> str:
    upper = type_name.upper()
    return _TYPE_ALIASES.get(upper, upper)


# --- parameters -----------------------------------------------------------------------------------------
def _scalar_type(value: Any) -> str:
    # bool before int (bool is an int) and datetime before date (datetime is a date).
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        exponent = value.as_tuple().exponent
        fits = isinstance(exponent, int) and -exponent <= 9 and abs(value) <= _NUMERIC_MAX
        return "NUMERIC" if fits else "BIGNUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, bytes):
        return "BYTES"
    raise WarehouseError(f"unsupported parameter type {type(value).__name__}")


def _timestamp_value(value: Any) -> Any:
    # A naive datetime given for a TIMESTAMP means UTC, as on the DuckDB backend.
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def query_parameter(name: str, value: ParamValue) -> Any:
    """The ``google.cloud.bigquery`` parameter for one named value, typed from the Python type
    (``ScalarParam`` for an explicit type; a list takes its first element's type)."""
    from google.cloud import bigquery

    if isinstance(value, ScalarParam):
        type_name = value.type.strip().upper()
        if type_name.startswith("ARRAY<") and type_name.endswith(">"):
            element_type = _bigquery_type(type_name[6:-1])
            items = [_timestamp_value(item) for item in (value.value or [])]
            return bigquery.ArrayQueryParameter(name, element_type, items)
        type_name = _bigquery_type(type_name)
        scalar = value.value
        if type_name == "JSON" and scalar is not None and not isinstance(scalar, str):
            scalar = json.dumps(scalar)
        if type_name == "TIMESTAMP":
            scalar = _timestamp_value(scalar)
        return bigquery.ScalarQueryParameter(name, type_name, scalar)
    if isinstance(value, list):
        present = [item for item in value if item is not None]
        if not present:
            raise WarehouseError(f"parameter @{name}: an empty list needs ScalarParam('ARRAY<type>', [])")
        element_type = _scalar_type(present[0])
        return bigquery.ArrayQueryParameter(name, element_type, [_timestamp_value(item) for item in value])
    if value is None:
        # An untyped NULL: STRING is BigQuery's own default for NULL literals in parameters.
        return bigquery.ScalarQueryParameter(name, "STRING", None)
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), _timestamp_value(value))


# --- schema -------------------------------------------------------------------------------------------
def schema_field(field: Field) -> Any:
    """A ``bigquery.SchemaField`` for a warehouse ``Field``."""
    from google.cloud import bigquery

    extra: dict[str, Any] = {"description": field.description} if field.description else {}
    return bigquery.SchemaField(
        name=field.name,
        field_type=_bigquery_type(field.type),
        mode=field.mode.upper(),
        fields=tuple(schema_field(sub) for sub in field.fields),
        **extra,
    )


def field_from_schema(schema_field: Any) -> Field:
    """A warehouse ``Field`` from a ``bigquery.SchemaField``."""
    return Field(
        name=schema_field.name,
        type=_bigquery_type(schema_field.field_type),
        mode=(schema_field.mode or "NULLABLE").upper(),
        fields=tuple(field_from_schema(sub) for sub in schema_field.fields),
        description=schema_field.description or "",
    )


# --- row values ---------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not a warehouse value")


def _row_value(field: Any, value: Any, path: str) -> Any:
    """Check one value against its schema field and prepare it for the NDJSON load. Checked here rather
    than left to the load job so that a row is refused the same way on every backend (the emulator
    accepts unknown nested fields and missing nested REQUIRED ones); JSON given as a string is parsed."""
    mode = (field.mode or "NULLABLE").upper()
    if mode == "REPEATED":
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise WarehouseError(f"{path}: expected a list for a REPEATED field")
        return [_scalar_row_value(field, item, f"{path}[{index}]") for index, item in enumerate(value)]
    if value is None:
        if mode == "REQUIRED":
            raise WarehouseError(f"{path}: missing value for REQUIRED field")
        return None
    return _scalar_row_value(field, value, path)


def _scalar_row_value(field: Any, value: Any, path: str) -> Any:
    type_name = _bigquery_type(field.field_type)
    if type_name == "JSON" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise WarehouseError(f"{path}: not valid JSON") from None
    if type_name == "RECORD":
        if not isinstance(value, Mapping):
            raise WarehouseError(f"{path}: expected an object for a RECORD field")
        children = {sub.name: sub for sub in field.fields}
        unknown = sorted(set(value) - children.keys())
        if unknown:
            raise WarehouseError(f"{path}: no such field: {unknown[0]}")
        return {name: _row_value(sub, value.get(name), f"{path}.{name}") for name, sub in children.items()}
    return value


# --- errors ---------------------------------------------------------------------------------------------
def _error_message(exc: BaseException) -> str:
    from google.api_core import exceptions as api_exceptions

    if isinstance(exc, api_exceptions.GoogleAPICallError):
        # A failed load job lists a summary first and the per-row causes after it.
        messages = [
            str(error.get("message") or "") for error in (exc.errors or []) if isinstance(error, Mapping)
        ]
        detail = "; ".join(list(dict.fromkeys(message for message in messages if message))[:3])
        if not detail:
            # The job footer ("Location: ...", "Job ID: ...") and the SQL (kept in debug_message) are
            # left out: messages reach logs and API responses.
            detail = (exc.message or "").strip().splitlines()[0] if (exc.message or "").strip() else ""
        return f"{exc.code or ''} {detail}".strip() or type(exc).__name__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate_error(exc: BaseException) -> WarehouseError:
    """Map google.api_core / transport exceptions to the warehouse error hierarchy."""
    import google.auth.exceptions
    import requests
    from google.api_core import exceptions as api_exceptions

    message = _error_message(exc)
    if isinstance(exc, api_exceptions.NotFound):
        return NotFoundError(message)
    if isinstance(exc, api_exceptions.Conflict):
        return ConflictError(message)
    if isinstance(exc, api_exceptions.Forbidden | api_exceptions.BadRequest):
        reasons = {str(error.get("reason")) for error in (exc.errors or []) if isinstance(error, Mapping)}
        # Quota errors arrive as 403/400 but clear with time.
        retryable = bool(reasons & {"rateLimitExceeded", "backendError", "jobRateLimitExceeded"})
        return WarehouseError(message, retryable=retryable)
    if isinstance(
        exc, api_exceptions.TooManyRequests | api_exceptions.ServerError | api_exceptions.RetryError
    ):
        return WarehouseError(message, retryable=True)
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return WarehouseError(message, retryable=bool(exc.code and int(exc.code) >= 500))
    if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
        return WarehouseError(f"no BigQuery credentials: {message}")
    if isinstance(
        exc,
        google.auth.exceptions.TransportError
        | requests.ConnectionError
        | requests.Timeout
        | concurrent.futures.TimeoutError
        | TimeoutError
        | ConnectionError,
    ):
        return WarehouseError(f"BigQuery unreachable: {message}", retryable=True)
    return WarehouseError(message)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except WarehouseError:
        raise
    except Exception as exc:
        raise translate_error(exc) from None


# --- reads with a tenant's own identity ----------------------------------------------------------------
_GCP_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_DATASET = re.compile(r"[A-Za-z0-9_]{1,1024}")
#: Reasons of a 403 that clear with time (quota), not a missing permission.
_RETRYABLE_REASONS = frozenset({"rateLimitExceeded", "backendError", "jobRateLimitExceeded"})


def tenant_credentials(service_account_info: Mapping[str, Any], *, endpoint: str | None = None) -> Any:
    """``google.oauth2.service_account.Credentials`` from a tenant's service account key. A key the
    library cannot load (malformed PEM, missing fields) is a ``WarehouseError``, not retryable.

    With ``endpoint`` (the emulator) the credentials sign their own JWT locally instead of exchanging it
    at Google's token endpoint: the emulator ignores auth, but the tenant's private key is still loaded
    and used, and no request leaves for Google."""
    from google.oauth2 import service_account

    try:
        credentials = service_account.Credentials.from_service_account_info(dict(service_account_info))
    except Exception:  # MalformedError, ValueError, KeyError...: never echo key material
        raise WarehouseError("the GCP credential is not a usable service account key") from None
    if endpoint:
        credentials = credentials.with_always_use_jwt_access(True)
    return credentials


def tenant_client(
    *, project: str, service_account_info: Mapping[str, Any], endpoint: str | None = None
) -> bigquery.Client:
    """A BigQuery client acting as the tenant's service account in ``project`` (jobs run and are billed
    there). Never the server's ambient identity: the credentials are always given explicitly."""
    from google.cloud import bigquery

    credentials = tenant_credentials(service_account_info, endpoint=endpoint)
    options = {"api_endpoint": endpoint} if endpoint else None
    with _translated():
        return bigquery.Client(project=project, credentials=credentials, client_options=options)


def _split_table(table: str) -> tuple[str, str, str]:
    parts = table.split(".")
    if (
        len(parts) != 3
        or not _GCP_PROJECT.fullmatch(parts[0])
        or not _DATASET.fullmatch(parts[1])
        or not _IDENTIFIER.fullmatch(parts[2])
    ):
        raise WarehouseError("the table must be a BigQuery table project.dataset.table")
    return parts[0], parts[1], parts[2]


def _tenant_read_error(exc: BaseException, table: str) -> WarehouseError:
    """A tenant-safe error for a read of ``table`` with the tenant's credential: the table name (theirs)
    and BigQuery's reason, never the SQL, the endpoint or key material."""
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions

    if isinstance(exc, api_exceptions.NotFound):
        return NotFoundError(f"the table {table} does not exist or the GCP credential cannot see it")
    if isinstance(exc, api_exceptions.Forbidden):
        reasons = {str(error.get("reason")) for error in (exc.errors or []) if isinstance(error, Mapping)}
        if reasons & _RETRYABLE_REASONS:
            return WarehouseError(f"BigQuery is throttling reads of {table}; try again later", retryable=True)
        return WarehouseError(f"the GCP credential cannot read {table}")
    if isinstance(exc, api_exceptions.Unauthorized):
        return WarehouseError("the GCP credential was refused by Google (deleted or disabled key?)")
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return WarehouseError(
            "the GCP credential was refused by Google (deleted or disabled key?)",
            retryable=bool(getattr(exc, "retryable", False)),
        )
    translated = translate_error(exc)
    if translated.retryable:
        return WarehouseError(
            f"BigQuery could not be reached to read {table}; try again later", retryable=True
        )
    if isinstance(exc, api_exceptions.BadRequest):
        return WarehouseError(f"the query of {table} failed: {translated.message}")
    return WarehouseError(f"reading {table} failed: {translated.message}")


def read_table_as_tenant(
    *,
    table: str,
    columns: Sequence[str],
    where: str,
    params: Params | None,
    service_account_info: Mapping[str, Any],
    endpoint: str | None = None,
    labels: JobLabels | None = None,
    max_bytes_billed: int | None = None,
) -> pa.Table:
    """``SELECT columns FROM `project`.`dataset`.`table` WHERE where`` run as the tenant's service
    account (``tenant_client``, project = the table's project), fetched as Arrow over the REST API (no
    BigQuery Storage client). ``where`` is BigQuery SQL written by the caller; values go in ``params``.
    ``WarehouseError`` with a tenant-safe message: a missing permission is not retryable, the network
    and throttling are."""
    from google.cloud import bigquery

    project, dataset, name = _split_table(table)
    selected = ", ".join(f"`{_check_identifier(column, 'column')}`" for column in columns)
    sql = f"SELECT {selected} FROM `{project}`.`{dataset}`.`{name}` WHERE {where}"
    config = bigquery.QueryJobConfig(use_legacy_sql=False)
    config.query_parameters = [query_parameter(key, value) for key, value in (params or {}).items()]
    config.labels = _labels(labels)
    if max_bytes_billed is not None:
        config.maximum_bytes_billed = max_bytes_billed
    client = tenant_client(project=project, service_account_info=service_account_info, endpoint=endpoint)
    retry = BigQueryWarehouse._retry()
    job_retry = BigQueryWarehouse._job_retry()
    try:
        job = client.query(sql, job_config=config, retry=retry, job_retry=job_retry)
        logger.debug("bigquery tenant read job %s", job.job_id, extra={"labels": config.labels})
        rows = job.result(retry=retry, job_retry=job_retry)
        arrow: pa.Table = rows.to_arrow(create_bqstorage_client=False)
    except WarehouseError:
        raise
    except Exception as exc:  # mapped to a tenant-safe WarehouseError
        raise _tenant_read_error(exc, table) from None
    finally:
        client.close()
    return arrow


# --- the backend ------------------------------------------------------------------------------------------
class BigQueryWarehouse(Warehouse):
    """BigQuery through ``google-cloud-bigquery``. The client is created on first use."""

    kind = "bigquery"

    def __init__(
        self,
        *,
        project: str,
        location: str = "US",
        api_endpoint: str | None = None,
        max_bytes_billed: int | None = None,
    ) -> None:
        self.project = project
        self.location = location
        self.api_endpoint = api_endpoint
        self.max_bytes_billed = max_bytes_billed
        self._lock = threading.Lock()
        self._client_instance: bigquery.Client | None = None

    def __repr__(self) -> str:
        endpoint = f", api_endpoint={self.api_endpoint!r}" if self.api_endpoint else ""
        return f"BigQueryWarehouse(project={self.project!r}, location={self.location!r}{endpoint})"

    # --- client ---------------------------------------------------------------------------------------
    def _client(self) -> bigquery.Client:
        with self._lock:
            if self._client_instance is None:
                with _translated():
                    from google.cloud import bigquery

                    if self.api_endpoint:
                        from google.auth.credentials import AnonymousCredentials

                        self._client_instance = bigquery.Client(
                            project=self.project,
                            location=self.location,
                            credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": self.api_endpoint},
                        )
                    else:
                        self._client_instance = bigquery.Client(project=self.project, location=self.location)
            return self._client_instance

    @staticmethod
    def _retry() -> Any:
        from google.cloud.bigquery import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(API_RETRY_DEADLINE_S)

    @staticmethod
    def _job_retry() -> Any:
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

        return DEFAULT_JOB_RETRY.with_timeout(JOB_RETRY_DEADLINE_S)

    def close(self) -> None:
        with self._lock:
            if self._client_instance is not None:
                self._client_instance.close()
                self._client_instance = None

    def ping(self) -> None:
        with _translated():
            list(self._client().list_datasets(max_results=1, retry=self._retry(), timeout=10))

    def _table_id(self, ref: TableRef) -> str:
        _check_identifier(ref.dataset, "dataset")
        _check_identifier(ref.table, "table")
        return f"{self.project}.{ref.dataset}.{ref.table}"

    def _dataset_id(self, dataset: str) -> str:
        return f"{self.project}.{_check_identifier(dataset, 'dataset')}"

    # --- datasets -------------------------------------------------------------------------------------
    def dataset_exists(self, dataset: str) -> bool:
        from google.api_core.exceptions import NotFound

        with _translated():
            try:
                self._client().get_dataset(self._dataset_id(dataset), retry=self._retry())
            except NotFound:
                return False
            return True

    def create_dataset(
        self, dataset: str, *, exists_ok: bool = True, labels: Mapping[str, str] | None = None
    ) -> bool:
        from google.api_core.exceptions import Conflict
        from google.cloud import bigquery

        definition = bigquery.Dataset(self._dataset_id(dataset))
        definition.location = self.location
        definition.labels = _labels(labels)
        with _translated():
            try:
                self._client().create_dataset(definition, exists_ok=False, retry=self._retry())
            except Conflict:
                if exists_ok:
                    return False
                raise
            return True

    def drop_dataset(self, dataset: str, *, delete_contents: bool = False, not_found_ok: bool = True) -> bool:
        from google.api_core.exceptions import NotFound

        with _translated():
            try:
                self._client().delete_dataset(
                    self._dataset_id(dataset),
                    delete_contents=delete_contents,
                    not_found_ok=False,
                    retry=self._retry(),
                )
            except NotFound:
                if not_found_ok:
                    return False
                raise
            return True

    def list_datasets(self) -> list[str]:
        with _translated():
            return sorted(item.dataset_id for item in self._client().list_datasets(retry=self._retry()))

    # --- tables ---------------------------------------------------------------------------------------
    def _get_table(self, ref: TableRef) -> bigquery.Table | None:
        from google.api_core.exceptions import NotFound

        try:
            return self._client().get_table(self._table_id(ref), retry=self._retry())
        except NotFound:
            return None

    def table_exists(self, ref: TableRef) -> bool:
        with _translated():
            return self._get_table(ref) is not None

    def create_table(self, ref: TableRef, spec: TableSpec, *, exists_ok: bool = True) -> bool:
        """Create with DAY time partitioning on ``partition_field`` and the clustering columns."""
        from google.api_core.exceptions import Conflict
        from google.cloud import bigquery

        table = bigquery.Table(self._table_id(ref), schema=[schema_field(field) for field in spec.schema])
        if spec.partition_field:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=spec.partition_field
            )
        if spec.clustering:
            table.clustering_fields = list(spec.clustering)
        if spec.description:
            table.description = spec.description
        with _translated():
            try:
                self._client().create_table(table, exists_ok=False, retry=self._retry())
            except Conflict:
                if exists_ok:
                    return False
                raise
            return True

    def drop_table(self, ref: TableRef, *, not_found_ok: bool = True) -> bool:
        from google.api_core.exceptions import NotFound

        with _translated():
            try:
                self._client().delete_table(self._table_id(ref), not_found_ok=False, retry=self._retry())
            except NotFound:
                if not_found_ok:
                    return False
                raise
            return True

    def list_tables(self, dataset: str) -> list[str]:
        with _translated():
            tables = self._client().list_tables(self._dataset_id(dataset), retry=self._retry())
            return sorted(item.table_id for item in tables)

    def describe_table(self, ref: TableRef) -> TableInfo:
        with _translated():
            table = self._get_table(ref)
        if table is None:
            raise NotFoundError(f"Not found: Table {ref}")
        partitioning = table.time_partitioning
        return TableInfo(
            ref=ref,
            schema=tuple(field_from_schema(item) for item in table.schema),
            partition_field=partitioning.field if partitioning is not None else None,
            clustering=tuple(table.clustering_fields or ()),
            num_rows=table.num_rows,
        )

    # --- data -----------------------------------------------------------------------------------------
    def _query_config(self, params: Params | None, labels: JobLabels | None) -> bigquery.QueryJobConfig:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(use_legacy_sql=False)
        config.query_parameters = [query_parameter(name, value) for name, value in (params or {}).items()]
        config.labels = _labels(labels)
        if self.max_bytes_billed is not None:
            config.maximum_bytes_billed = self.max_bytes_billed
        return config

    def _run(
        self, sql: str, config: bigquery.QueryJobConfig
    ) -> tuple[bigquery.QueryJob, list[dict[str, Any]]]:
        job = self._client().query(sql, job_config=config, retry=self._retry(), job_retry=self._job_retry())
        logger.debug("bigquery job %s", job.job_id, extra={"labels": config.labels})
        result = job.result(retry=self._retry(), job_retry=self._job_retry())
        return job, [dict(row.items()) for row in result]

    def query(
        self, sql: str, params: Params | None = None, *, labels: JobLabels | None = None
    ) -> QueryResult:
        config = self._query_config(params, labels)
        with _translated():
            job, rows = self._run(sql, config)
        return QueryResult(
            rows=rows,
            rows_affected=job.num_dml_affected_rows,
            bytes_processed=job.total_bytes_processed,
            sql=sql,
        )

    def query_to_table(
        self,
        sql: str,
        destination: TableRef,
        *,
        params: Params | None = None,
        write_mode: WriteMode = WriteMode.APPEND,
        replace_predicate: str | None = None,
        merge_keys: Sequence[str] = (),
        spec: TableSpec | None = None,
        labels: JobLabels | None = None,
    ) -> QueryResult:
        """A missing table is created by a destination-table query job (from ``spec`` first, if given);
        truncate is a WRITE_TRUNCATE destination job. append, replace_partition and merge are one DML
        statement each (INSERT, MERGE ... ON FALSE, MERGE on the keys), so each change is atomic and
        reports the rows it wrote: a WRITE_APPEND job cannot (its result counts the whole table).
        Columns are matched by name, as on DuckDB. ``sql`` of the result is the statement sent."""
        from google.cloud import bigquery

        write_mode = WriteMode(write_mode)
        table_id = self._table_id(destination)
        if write_mode is WriteMode.REPLACE_PARTITION and not replace_predicate:
            raise WarehouseError("replace_partition needs replace_predicate")
        if write_mode is WriteMode.MERGE:
            if not merge_keys:
                raise WarehouseError("merge needs merge_keys")
            for key in merge_keys:
                _check_identifier(key, "merge key")
        if spec is not None:
            self.create_table(destination, spec, exists_ok=True)
        config = self._query_config(params, labels)
        with _translated():
            table = self._get_table(destination)
            if table is None or write_mode is WriteMode.TRUNCATE:
                config.destination = table_id
                config.create_disposition = bigquery.CreateDisposition.CREATE_IF_NEEDED
                if table is None:
                    config.write_disposition = bigquery.WriteDisposition.WRITE_EMPTY
                else:
                    config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
                    # A truncating write must restate the table's partitioning, or BigQuery rejects it
                    # as an incompatible partitioning specification.
                    config.time_partitioning = table.time_partitioning
                    config.clustering_fields = table.clustering_fields
                job = self._client().query(
                    sql, job_config=config, retry=self._retry(), job_retry=self._job_retry()
                )
                logger.debug("bigquery job %s", job.job_id, extra={"labels": config.labels})
                # The table was empty or truncated, so its row count is the number of rows written.
                result = job.result(retry=self._retry(), job_retry=self._job_retry(), max_results=0)
                return QueryResult(
                    rows_affected=result.total_rows, bytes_processed=job.total_bytes_processed, sql=sql
                )
            columns = self._result_columns(sql, params, labels)
            known = {item.name.lower() for item in table.schema}
            unknown = [column for column in columns if column.lower() not in known]
            if unknown:
                raise WarehouseError(f"query result column {unknown[0]!r} is not in {destination}")
            if write_mode is WriteMode.APPEND:
                statement = self._insert_sql(sql, destination, columns)
            elif write_mode is WriteMode.REPLACE_PARTITION:
                statement = self._replace_partition_sql(
                    sql, destination, columns, [item.name for item in table.schema], replace_predicate or ""
                )
            else:
                statement = self._merge_sql(sql, destination, columns, merge_keys)
            job, _ = self._run(statement, config)
        stats = job.dml_stats
        if stats is not None:
            written = int(stats.inserted_row_count or 0) + int(stats.updated_row_count or 0)
        else:
            written = job.num_dml_affected_rows or 0
        return QueryResult(rows_affected=written, bytes_processed=job.total_bytes_processed, sql=statement)

    def _result_columns(self, sql: str, params: Params | None, labels: JobLabels | None) -> list[str]:
        """The SELECT's column names, from a dry run (free, and it validates the SQL first)."""
        config = self._query_config(params, labels)
        config.dry_run = True
        config.use_query_cache = False
        job = self._client().query(sql, job_config=config, retry=self._retry(), job_retry=self._job_retry())
        return [item.name for item in job.schema or ()]

    @staticmethod
    def _insert_sql(sql: str, destination: TableRef, columns: Sequence[str]) -> str:
        column_list = ", ".join(f"`{column}`" for column in columns)
        return (
            f"INSERT INTO `{destination.dataset}.{destination.table}` ({column_list})\n"
            f"SELECT {column_list} FROM ({sql})"
        )

    @staticmethod
    def _replace_partition_sql(
        sql: str,
        destination: TableRef,
        columns: Sequence[str],
        destination_columns: Sequence[str],
        predicate: str,
    ) -> str:
        column_list = ", ".join(f"`{column}`" for column in columns)
        values = ", ".join(f"S.`{column}`" for column in columns)
        return (
            f"MERGE `{destination.dataset}.{destination.table}` AS T\n"
            f"USING ({sql}) AS S\nON FALSE\n"
            f"WHEN NOT MATCHED BY SOURCE AND ({qualify_predicate(predicate, 'T', destination_columns)}) "
            f"THEN DELETE\n"
            f"WHEN NOT MATCHED THEN INSERT ({column_list}) VALUES ({values})"
        )

    @staticmethod
    def _merge_sql(sql: str, destination: TableRef, columns: Sequence[str], merge_keys: Sequence[str]) -> str:
        missing = [key for key in merge_keys if key not in columns]
        if missing:
            raise WarehouseError(f"merge key {missing[0]!r} is not a column of the query result")
        condition = " AND ".join(f"T.`{key}` = S.`{key}`" for key in merge_keys)
        updates = ", ".join(f"`{column}` = S.`{column}`" for column in columns if column not in merge_keys)
        column_list = ", ".join(f"`{column}`" for column in columns)
        values = ", ".join(f"S.`{column}`" for column in columns)
        matched = f"WHEN MATCHED THEN UPDATE SET {updates}\n" if updates else ""
        return (
            f"MERGE `{destination.dataset}.{destination.table}` AS T\n"
            f"USING ({sql}) AS S\nON {condition}\n{matched}"
            f"WHEN NOT MATCHED THEN INSERT ({column_list}) VALUES ({values})"
        )

    def load_file(
        self,
        uri: str,
        destination: TableRef,
        *,
        file_format: FileFormat,
        spec: TableSpec | None = None,
        write_mode: WriteMode = WriteMode.APPEND,
        skip_leading_rows: int = 1,
        labels: JobLabels | None = None,
    ) -> QueryResult:
        """A load job from a local file (uploaded) or a ``gs://`` URI."""
        from google.cloud import bigquery

        write_mode = WriteMode(write_mode)
        file_format = FileFormat(file_format)
        if write_mode not in (WriteMode.APPEND, WriteMode.TRUNCATE):
            raise WarehouseError(f"load_file supports append and truncate, not {write_mode}")
        table_id = self._table_id(destination)
        config = bigquery.LoadJobConfig(source_format=_SOURCE_FORMATS[file_format])
        config.labels = _labels(labels)
        config.create_disposition = bigquery.CreateDisposition.CREATE_IF_NEEDED
        config.write_disposition = (
            bigquery.WriteDisposition.WRITE_APPEND
            if write_mode is WriteMode.APPEND
            else bigquery.WriteDisposition.WRITE_TRUNCATE
        )
        if file_format is FileFormat.CSV:
            config.skip_leading_rows = skip_leading_rows
        local_path = None if uri.startswith("gs://") else uri.removeprefix("file://")
        if local_path is not None and not os.path.isfile(local_path):
            raise WarehouseError(f"file not found: {local_path}")
        if spec is not None:
            self.create_table(destination, spec, exists_ok=True)
        with _translated():
            table = self._get_table(destination)
            if table is not None:
                if file_format is not FileFormat.PARQUET:
                    config.schema = table.schema
                if write_mode is WriteMode.TRUNCATE:
                    config.time_partitioning = table.time_partitioning
                    config.clustering_fields = table.clustering_fields
            elif file_format is not FileFormat.PARQUET:
                config.autodetect = True
            client = self._client()
            if local_path is None:
                job = client.load_table_from_uri(uri, table_id, job_config=config, retry=self._retry())
            else:
                with open(local_path, "rb") as handle:
                    job = client.load_table_from_file(handle, table_id, job_config=config)
            logger.debug("bigquery load job %s", job.job_id, extra={"labels": config.labels})
            job.result(retry=self._retry())
        return QueryResult(rows_affected=job.output_rows, sql="")

    def read_table_as_tenant(
        self,
        *,
        table: str,
        columns: Sequence[str],
        where: str,
        params: Params | None,
        service_account_info: Mapping[str, Any],
        labels: JobLabels | None = None,
    ) -> pa.Table:
        """See ``read_table_as_tenant`` (module level): the tenant's client, at this warehouse's API
        endpoint (the emulator's when set), with this warehouse's byte cap. The server's own client is not
        used."""
        return read_table_as_tenant(
            table=table,
            columns=columns,
            where=where,
            params=params,
            service_account_info=service_account_info,
            endpoint=self.api_endpoint,
            labels=labels,
            max_bytes_billed=self.max_bytes_billed,
        )

    def insert_rows(self, ref: TableRef, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append through an NDJSON load job rather than streaming inserts: a load job is atomic, so a bad
        row fails the job and nothing is inserted (streaming would keep the good rows)."""
        from google.cloud import bigquery

        table_id = self._table_id(ref)
        with _translated():
            table = self._get_table(ref)
        if table is None:
            raise NotFoundError(f"Not found: Table {ref}")
        fields = {item.name: item for item in table.schema}
        buffer = io.BytesIO()
        count = 0
        for index, row in enumerate(rows):
            unknown = sorted(set(row) - fields.keys())
            if unknown:
                raise WarehouseError(f"row {index}: no such field: {unknown[0]}")
            try:
                document = {name: _row_value(field, row.get(name), name) for name, field in fields.items()}
                buffer.write(json.dumps(document, default=_json_default).encode())
            except WarehouseError as exc:
                raise WarehouseError(f"row {index}: {exc.message}") from None
            except (TypeError, ValueError) as exc:
                raise WarehouseError(f"row {index}: {exc}") from None
            buffer.write(b"\n")
            count += 1
        if not count:
            return 0
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=table.schema,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        with _translated():
            job = self._client().load_table_from_file(buffer, table_id, job_config=config)
            job.result(retry=self._retry())
        return int(job.output_rows if job.output_rows is not None else count)


def qualify_predicate(predicate: str, alias: str, columns: Sequence[str]) -> str:
    """Prefix the destination's columns in a BigQuery predicate with ``alias`` (inside MERGE an
    unqualified name that both sides have is ambiguous). Struct paths (``service.id``) are qualified by
    their top-level column. The rest of the text is kept verbatim: only ``alias.`` is inserted."""
    try:
        condition = sqlglot.parse_one(predicate, read="bigquery")
    except SqlglotError:
        raise WarehouseError("replace_predicate is not a valid BigQuery condition") from None
    names = {column.lower() for column in columns}
    offsets = set()
    for column in condition.find_all(exp.Column):
        parts = column.parts
        if parts and parts[0].name.lower() in names and "start" in parts[0].meta:
            offsets.add(int(parts[0].meta["start"]))
    text = predicate
    for offset in sorted(offsets, reverse=True):
        text = f"{text[:offset]}{alias}.{text[offset:]}"
    return text
