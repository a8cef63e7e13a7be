"""Billing pipeline processors: land a provider export (``billing.land_export``), normalize it to FOCUS
(``focus.normalize``) and publish the checked rows (``focus.publish``).

A cost pipeline is land → normalize (into ``focus_costs_staging``) → ``dq.checks`` → publish (into
``focus_costs``). Every write replaces exactly the run's day (GCP) or billing period (AWS, Azure) for the
provider, so re-running a period, late data and restated exports never duplicate cost. The engine skips
publish when the DQ step fails, so a failed gate leaves the published rows as they were.

Concurrent runs of the same tenant, provider and period: each write is an atomic replace of the whole
period, so staging holds one run's rows at a time, tagged with ``x_RunId``. ``focus.publish`` copies only
its own run's rows, and only while they are still staged (checked inside the same atomic replace); if a
concurrent run replaced them after this run's DQ step, this run publishes nothing and fails, and the
other run publishes the rows its own DQ step checked."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from billing.focus.normalize import PROVIDER_SQL, normalize_sql
from billing.focus.schema import FOCUS_COLUMN_NAMES, FOCUS_STAGING_TABLE_SPEC, FOCUS_TABLE_SPEC
from billing.generators.common import month_last_day, month_start
from billing.readers import SUFFIXES, ReaderError, raw_fields, read_export
from convergence.warehouse import FileFormat, ScalarParam, TableRef, TableSpec, WarehouseError, WriteMode
from convergence.warehouse.base import Params
from pipelines.engine import RunContext
from pipelines.processors.base import Processor, ProcessorConfig, StepError, StepResult
from pipelines.processors.common import DatasetType, Identifier, quote

logger = logging.getLogger(__name__)

Provider = Literal["gcp", "aws", "azure"]
#: Partition column of each raw landing table.
RAW_PARTITION_FIELDS = {
    "gcp": "usage_start_time",
    "aws": "bill_billing_period_start_date",
    "azure": "BillingPeriodStartDate",
}
_DAY_TOKEN = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


class TableTarget(ProcessorConfig):
    dataset_type: DatasetType
    table: Identifier


def _run_date(context: RunContext) -> dt.date:
    value = context.parameters.get("date")
    if not isinstance(value, dt.date):
        raise StepError("this step needs the run parameter 'date'")
    return value


def _ref(context: RunContext, target: TableTarget) -> TableRef:
    return TableRef(context.dataset(target.dataset_type), target.table)


def _table_sql(ref: TableRef) -> str:
    return f"{quote(ref.dataset)}.{quote(ref.table)}"


def _period_label(provider: str, day: dt.date) -> str:
    return day.isoformat() if provider == "gcp" else f"{day:%Y-%m}"


# --- billing.land_export -----------------------------------------------------------------------------
class LandExportConfig(ProcessorConfig):
    provider: Provider
    #: The raw landing table (created with the provider's raw schema when absent).
    destination: TableTarget

    identifier_fields = ("destination.table",)
    dataset_fields = ("destination.dataset_type",)


def _replace_period(
    context: RunContext, source_sql: str, raw: TableRef, spec: TableSpec, period: str, params: Params
) -> int:
    """Replace the run's period (``period``, a raw-table predicate) in ``raw`` with the matching rows of
    ``source_sql`` (a table expression), in one ``replace_partition`` write; the rows written."""
    columns = ", ".join(quote(field.name) for field in spec.schema)
    result = context.warehouse.query_to_table(
        f"SELECT {columns} FROM {source_sql} WHERE {period}",
        raw,
        params=params,
        write_mode=WriteMode.REPLACE_PARTITION,
        replace_predicate=period,
        labels=context.labels,
    )
    return result.rows_affected or 0


class LandExportProcessor(Processor[LandExportConfig]):
    """Land the tenant's ``provider`` export for the run's ``date`` (GCP: that usage day; AWS, Azure: the
    billing period containing it) into the raw table, replacing exactly that day/period atomically.

    The source comes from ``billing.sources.resolve_source``; none configured → ``StepError`` naming the
    provider. Files are fetched with ``fetch_files`` (AWS: ``data/BILLING_PERIOD=YYYY-MM``, only the files
    the period's manifest lists when there is one; Azure: the ``YYYYMMDD-YYYYMMDD`` month folder; GCP: the
    files named for the day, or every file when none is date-named), read and typed by
    ``billing.readers``, loaded into a scratch table and moved into the raw table with one
    ``replace_partition`` write, so a failure anywhere leaves the previous raw rows. A GCP ``bq`` source
    (a BigQuery export table) is queried for the day instead: on a BigQuery warehouse with a client built
    from the source's own GCP credential (never the server's identity), the rows then loaded like a file
    source's; on the embedded DuckDB warehouse (development, demo) from the local warehouse. Returns the
    rows landed."""

    config_model = LandExportConfig

    def run(self, context: RunContext, config: LandExportConfig) -> StepResult:
        from billing import sources

        if context.tenant_id is None:
            raise StepError("this step needs a tenant")
        day = _run_date(context)
        provider = config.provider
        try:
            source = sources.resolve_source(tenant_id=context.tenant_id, provider=provider)
        except sources.SourceNotConfigured:
            raise StepError(
                f"no {provider} billing source configured for this tenant "
                f"(set one with PUT /api/v1/tenants/{context.tenant_id}/sources/{provider})"
            ) from None
        except sources.SourceError as exc:
            raise StepError(str(exc), retryable=exc.retryable) from None
        raw = _ref(context, config.destination)
        fields = raw_fields(provider)
        spec = TableSpec(schema=fields, partition_field=RAW_PARTITION_FIELDS[provider])
        context.warehouse.create_table(raw, spec, exists_ok=True)
        if source.scheme == "bq":
            if provider != "gcp":
                raise StepError(f"a BigQuery table source is only supported for gcp, not {provider}")
            rows = self._land_table(context, source, raw, spec, day)
        else:
            with tempfile.TemporaryDirectory(prefix="land-") as scratch:
                files = self._export_files(context, source, Path(scratch), day)
                rows = self._land_files(context, provider, files, raw, spec, day, Path(scratch))
        self.logger.info("landed %s %s rows of %s into %s", rows, provider, _period_label(provider, day), raw)
        return StepResult(
            rows_affected=rows,
            outputs={"table": str(raw), "rows": rows, "period": _period_label(provider, day)},
        )

    def _export_files(self, context: RunContext, source: object, scratch: Path, day: dt.date) -> list[Path]:
        from billing import sources

        assert isinstance(source, sources.ResolvedSource)
        provider = source.provider
        tenant_id = context.tenant_id
        assert tenant_id is not None

        def fetch(subpath: str, suffixes: tuple[str, ...]) -> list[Path]:
            try:
                return sources.fetch_files(
                    source=source, tenant_id=tenant_id, subpath=subpath, dest=scratch, suffixes=suffixes
                )
            except sources.SourceError as exc:
                raise StepError(str(exc), retryable=exc.retryable) from None

        period = month_start(day)
        if provider == "aws":
            data = fetch(f"data/BILLING_PERIOD={period:%Y-%m}", SUFFIXES["aws"])
            manifests = fetch(f"metadata/BILLING_PERIOD={period:%Y-%m}", ("Manifest.json",))
            if manifests:
                data = _manifest_files(manifests[-1], data)
        elif provider == "azure":
            data = fetch(f"{period:%Y%m%d}-{month_last_day(period):%Y%m%d}", SUFFIXES["azure"])
            if not data:
                data = fetch("", SUFFIXES["azure"])
        else:
            data = _day_files(fetch("", SUFFIXES["gcp"]), day)
        if not data:
            raise StepError(f"no {provider} export files found for {_period_label(provider, day)}")
        return data

    def _land_files(
        self,
        context: RunContext,
        provider: str,
        files: list[Path],
        raw: TableRef,
        spec: TableSpec,
        day: dt.date,
        scratch: Path,
    ) -> int:
        tables = []
        for path in files:
            try:
                tables.append(read_export(provider, path))
            except ReaderError as exc:
                raise StepError(f"cannot read the {provider} export: {exc}") from None
        combined = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return self._land_arrow(context, provider, combined, raw, spec, day, scratch)

    def _land_arrow(
        self,
        context: RunContext,
        provider: str,
        table: pa.Table,
        raw: TableRef,
        spec: TableSpec,
        day: dt.date,
        scratch: Path,
    ) -> int:
        """Stage ``table`` as Parquet, load it into a scratch table and move the period's rows into
        ``raw`` with one ``replace_partition`` write."""
        staged = scratch / "landing.parquet"
        pq.write_table(table, staged)
        scratch_ref = TableRef(raw.dataset, f"_land_{provider}_{uuid.uuid4().hex}")
        params = {"date": ScalarParam("DATE", day)}
        period = PROVIDER_SQL[provider].raw_period
        try:
            context.warehouse.load_file(
                str(staged),
                scratch_ref,
                file_format=FileFormat.PARQUET,
                spec=spec,
                write_mode=WriteMode.TRUNCATE,
                labels=context.labels,
            )
            if provider != "gcp":
                # A monthly file holds one billing period; rows of another mean a misplaced export.
                outside = context.warehouse.query(
                    f"SELECT COUNT(*) AS n FROM {_table_sql(scratch_ref)} WHERE NOT ({period})",
                    params,
                    labels=context.labels,
                ).rows[0]["n"]
                if outside:
                    raise StepError(
                        f"the {provider} export for {day:%Y-%m} holds {outside} row(s) of another billing "
                        f"period"
                    )
            return _replace_period(context, _table_sql(scratch_ref), raw, spec, period, params)
        finally:
            context.warehouse.drop_table(scratch_ref, not_found_ok=True)

    def _land_table(
        self, context: RunContext, source: object, raw: TableRef, spec: TableSpec, day: dt.date
    ) -> int:
        """Land the day's rows of a GCP export table.

        On a BigQuery warehouse the table is read with a client built from the source's GCP credential
        (the tenant's service account key) in the table's project: the server's own identity may read
        tables of other customers (or the operator's own billing export), so it is never used for this
        read. A source without a credential is refused (``StepError``, not retryable). The rows are
        fetched as Arrow and loaded like a file source's.

        On the embedded DuckDB warehouse (development and demo: one operator, no cloud identities) the
        table is the local table ``dataset.table`` (the project part is ignored) read through the
        warehouse itself; a credential is optional and unused.
        Convergence's own datasets are refused on both (``table_location``)."""
        from billing import sources

        assert isinstance(source, sources.ResolvedSource)
        tenant_id = context.tenant_id
        assert tenant_id is not None
        try:
            table = sources.table_location(source.location)
        except ValueError as exc:
            raise StepError(f"the gcp source location is not valid: {exc}") from None
        period = PROVIDER_SQL["gcp"].raw_period
        params = {"date": ScalarParam("DATE", day)}
        if context.warehouse.kind != "bigquery":
            # The embedded warehouse has no projects: the table is dataset.table there (as the sample
            # export command loads it), whatever project the location names.
            source_sql = f"{quote(table.dataset)}.{quote(table.table)}"
            return _replace_period(context, source_sql, raw, spec, period, params)
        if source.credential_id is None:
            raise StepError(
                "a BigQuery table source needs a gcp credential: set credential_id on the gcp source "
                f"(PUT /api/v1/tenants/{tenant_id}/sources/gcp)"
            )
        try:
            secret = sources.credential_secret(tenant_id=tenant_id, credential_id=source.credential_id)
        except sources.SourceError as exc:
            raise StepError(str(exc), retryable=exc.retryable) from None
        try:
            rows = context.warehouse.read_table_as_tenant(
                table=f"{table.project}.{table.dataset}.{table.table}",
                columns=[field.name for field in spec.schema],
                where=period,
                params=params,
                service_account_info=secret,
                labels=context.labels,
            )
        except WarehouseError as exc:
            raise StepError(exc.message, retryable=exc.retryable) from None
        finally:
            del secret
        with tempfile.TemporaryDirectory(prefix="land-") as scratch:
            return self._land_arrow(context, "gcp", rows, raw, spec, day, Path(scratch))


def _manifest_files(manifest: Path, data: list[Path]) -> list[Path]:
    """The data files a CUR manifest lists (matched by file name within the period folder). A listed file
    that is absent means the delivery is incomplete: a retryable ``StepError``."""
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))["dataFiles"]
        names = [PurePosixPath(str(entry)).name for entry in listed]
    except (OSError, ValueError, KeyError, TypeError):
        raise StepError("the aws export manifest is not readable") from None
    by_name = {path.name: path for path in data}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise StepError(
            f"the aws export manifest lists {len(missing)} file(s) not delivered yet", retryable=True
        )
    return [by_name[name] for name in names]


def _day_files(files: list[Path], day: dt.date) -> list[Path]:
    """GCP export files for ``day``: those whose name carries the date (``20250503``/``2025-05-03``);
    every file when none is date-named (a multi-day extract; rows are filtered by usage date)."""
    dated = [(path, _DAY_TOKEN.search(path.name)) for path in files]
    if not any(match for _path, match in dated):
        return files
    wanted = (f"{day:%Y}", f"{day:%m}", f"{day:%d}")
    return [path for path, match in dated if match and match.groups() == wanted]


# --- focus.normalize ---------------------------------------------------------------------------------
class FocusNormalizeConfig(ProcessorConfig):
    provider: Provider
    #: The provider's raw landing table.
    source: TableTarget
    #: The staging table (``focus_costs_staging``), created from the FOCUS schema when absent.
    destination: TableTarget

    identifier_fields = ("source.table", "destination.table")
    dataset_fields = ("source.dataset_type", "destination.dataset_type")


class FocusNormalizeProcessor(Processor[FocusNormalizeConfig]):
    """Normalize the run's raw rows (GCP: usage day ``date``; AWS, Azure: its billing period) to FOCUS
    with one SQL statement (``billing.focus.normalize``) into the staging table, replacing the provider's
    rows of that day/period there; rows carry ``x_RunId`` = this run. Returns the rows written."""

    config_model = FocusNormalizeConfig

    def run(self, context: RunContext, config: FocusNormalizeConfig) -> StepResult:
        day = _run_date(context)
        raw = _ref(context, config.source)
        staging = _ref(context, config.destination)
        if not context.warehouse.table_exists(raw):
            raise StepError(f"the raw table {config.source.table} does not exist: land the export first")
        result = context.warehouse.query_to_table(
            normalize_sql(config.provider, _table_sql(raw)),
            staging,
            params={"date": ScalarParam("DATE", day), "_run_id": ScalarParam("STRING", context.run_id)},
            write_mode=WriteMode.REPLACE_PARTITION,
            replace_predicate=PROVIDER_SQL[config.provider].focus_period,
            spec=FOCUS_STAGING_TABLE_SPEC,
            labels=context.labels,
        )
        rows = result.rows_affected or 0
        self.logger.info("normalized %s %s rows into %s", rows, config.provider, staging)
        return StepResult(
            rows_affected=rows,
            bytes_processed=result.bytes_processed or 0,
            outputs={"table": str(staging), "rows": rows, "run_id": context.run_id},
        )


# --- focus.publish -----------------------------------------------------------------------------------
class FocusPublishConfig(ProcessorConfig):
    provider: Provider
    #: The staging table the normalize step wrote.
    source: TableTarget
    #: The published table (``focus_costs``), created from the FOCUS schema when absent.
    destination: TableTarget
    #: The step that normalized this run's rows (its ``rows`` output is what must be published).
    normalize_step: str = Field(default="normalize", pattern=r"^[a-z][a-z0-9_]{0,63}$")

    identifier_fields = ("source.table", "destination.table")
    dataset_fields = ("source.dataset_type", "destination.dataset_type")


class FocusPublishProcessor(Processor[FocusPublishConfig]):
    """Replace the provider's published rows of the run's day/period with this run's staged rows, in one
    atomic write. Put it after the ``dq.checks`` step: the engine skips it when the gate fails, leaving
    the published rows untouched.

    The replace happens only while this run's rows are still staged (the delete and the insert both test
    it in the same statement set); if a concurrent run of the same period has replaced them, nothing is
    written and the step fails (not retryable). A run that normalized zero rows (an empty export)
    publishes the period as empty."""

    config_model = FocusPublishConfig

    def run(self, context: RunContext, config: FocusPublishConfig) -> StepResult:
        day = _run_date(context)
        staging = _ref(context, config.source)
        published = _ref(context, config.destination)
        normalized = context.outputs.get(config.normalize_step)
        if normalized is None or "rows" not in normalized:
            raise StepError(f"focus.publish needs the '{config.normalize_step}' step's output")
        expected = int(normalized["rows"])
        period = PROVIDER_SQL[config.provider].focus_period
        columns = ", ".join(quote(name) for name in FOCUS_COLUMN_NAMES)
        sql = f"SELECT {columns} FROM {_table_sql(staging)} WHERE {period} AND x_RunId = @_run_id"
        predicate = period
        if expected:
            predicate = (
                f"{period} AND EXISTS (SELECT 1 FROM {_table_sql(staging)} AS staged "
                "WHERE staged.x_RunId = @_run_id)"
            )
        result = context.warehouse.query_to_table(
            sql,
            published,
            params={"date": ScalarParam("DATE", day), "_run_id": ScalarParam("STRING", context.run_id)},
            write_mode=WriteMode.REPLACE_PARTITION,
            replace_predicate=predicate,
            spec=FOCUS_TABLE_SPEC,
            labels=context.labels,
        )
        rows = result.rows_affected or 0
        if rows != expected:
            raise StepError(
                "another run of this pipeline replaced this run's normalized rows before they were "
                "published; nothing was published by this run"
            )
        self.logger.info("published %s %s rows into %s", rows, config.provider, published)
        return StepResult(rows_affected=rows, outputs={"table": str(published), "rows": rows})
