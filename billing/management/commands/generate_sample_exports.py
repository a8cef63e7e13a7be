from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import sources
from billing.generators import AZURE_SCHEMAS, MAX_ROWS_PER_DAY, PROVIDERS, WriteSummary, sample_export_write
from convergence.warehouse import Field, FileFormat, TableRef, TableSpec, WarehouseError, get_warehouse
from tenants import selectors


def _date(raw: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"--{name} must be a date YYYY-MM-DD, got {raw!r}") from None


def _writable_dir(raw: str) -> Path:
    path = Path(raw)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CommandError(f"--out {raw} is not a writable directory: {exc.strerror or exc}") from None
    return path


class _Progress:
    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} rows")
        self.stream.flush()
        if done == total:
            self.stream.write("\n")


class Command(BaseCommand):
    help = (
        "Write deterministic sample billing exports (GCP standard usage cost NDJSON, AWS CUR 2.0 Parquet, "
        "Azure cost details CSV) for a date range, laid out like the provider's own export."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider",
            required=True,
            metavar="{" + ",".join(PROVIDERS) + "}",
            help="Whose export to write.",
        )
        parser.add_argument("--start", required=True, help="First usage day, YYYY-MM-DD.")
        parser.add_argument("--end", required=True, help="Last usage day, YYYY-MM-DD (inclusive).")
        parser.add_argument(
            "--rows-per-day", type=int, required=True, help=f"Rows per day, 1..{MAX_ROWS_PER_DAY:,}."
        )
        parser.add_argument("--seed", type=int, default=0, help="Same seed, same bytes (default 0).")
        parser.add_argument(
            "--azure-schema",
            default="ea",
            metavar="{" + ",".join(AZURE_SCHEMAS) + "}",
            help="Azure cost details column set (default ea).",
        )
        parser.add_argument(
            "--restated",
            action="store_true",
            help="Write a later export of the same days with some costs restated.",
        )
        destination = parser.add_argument_group("destination", "Where the files go.")
        target = destination.add_mutually_exclusive_group(required=True)
        target.add_argument("--out", metavar="DIR", help="Directory to write into (created if missing).")
        target.add_argument(
            "--tenant",
            metavar="TENANT_ID",
            help="Place the export where the tenant's --provider billing source points: a file:// folder, "
            "an s3:// or Azure prefix (uploaded with the source's credential), or for GCP the export table "
            "project.dataset.table (loaded into the warehouse; the project part is ignored on DuckDB).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        provider = options["provider"]
        if provider not in PROVIDERS:
            raise CommandError(f"unknown provider {provider!r} (choose {', '.join(PROVIDERS)})")
        if options["azure_schema"] not in AZURE_SCHEMAS:
            raise CommandError(
                f"unknown Azure schema {options['azure_schema']!r} (choose {', '.join(AZURE_SCHEMAS)})"
            )
        start, end = _date(options["start"], "start"), _date(options["end"], "end")
        if end < start:
            raise CommandError(f"--end {end} is before --start {start}")
        rows_per_day = options["rows_per_day"]
        if not 1 <= rows_per_day <= MAX_ROWS_PER_DAY:
            raise CommandError(
                f"--rows-per-day must be between 1 and {MAX_ROWS_PER_DAY:,}, got {rows_per_day}"
            )
        long_work = ((end - start).days + 1) * rows_per_day >= 10_000

        def write(out_dir: Path) -> WriteSummary:
            try:
                return sample_export_write(
                    provider=provider,
                    start=start,
                    end=end,
                    rows_per_day=rows_per_day,
                    out_dir=out_dir,
                    seed=options["seed"],
                    azure_schema=options["azure_schema"],
                    restated=options["restated"],
                    progress=_Progress(sys.stderr) if long_work else None,
                )
            except OSError as exc:
                raise CommandError(f"writing to {out_dir} failed: {exc.strerror or exc}") from None

        if options["tenant"] is not None:
            summary, verb, where = place_for_tenant(
                tenant_id=options["tenant"], provider=provider, write=write
            )
        else:
            out_dir = _writable_dir(options["out"])
            summary, verb, where = write(out_dir), "wrote", f"in {os.fspath(out_dir)}"
        kind = "restated " if options["restated"] else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"{provider}: {verb} {len(summary.files)} file(s), {summary.rows:,} {kind}rows, "
                f"net cost {summary.total_net_cost} {summary.currency} {where}"
            )
        )


def place_for_tenant(
    *, tenant_id: str, provider: str, write: Callable[[Path], WriteSummary]
) -> tuple[WriteSummary, str, str]:
    """Write the export with ``write(folder)`` where the tenant's source for ``provider`` points:
    straight into a ``file://`` folder; into a temporary folder uploaded to ``s3://``/Azure with the
    source's credential, keeping the generator's layout relative to the location; or, for a GCP table
    source, into a temporary folder whose NDJSON files are appended to that table in the warehouse
    (dataset created if missing). Returns the summary, a verb and where it went, for the summary line.
    ``CommandError`` with one line for an unknown tenant, a missing source or an access error."""
    if selectors.tenant_get(tenant_id=tenant_id) is None:
        raise CommandError(f"tenant {tenant_id!r} does not exist")
    try:
        source = sources.resolve_source(tenant_id=tenant_id, provider=provider)
    except sources.SourceNotConfigured as exc:
        raise CommandError(f"tenant {tenant_id!r} has no {provider} billing source: set one first") from exc
    except sources.SourceError as exc:
        raise CommandError(exc.message) from exc
    if source.scheme == "file":
        try:
            folder = sources.file_location_path(source.location, tenant_id=tenant_id)
        except ValueError as exc:
            raise CommandError(f"the {provider} source location {exc}") from None
        return write(_writable_dir(os.fspath(folder))), "wrote", f"in {source.location}"
    with tempfile.TemporaryDirectory(prefix="sample-exports-") as temporary:
        local_root = Path(temporary)
        summary = write(local_root)
        try:
            if source.scheme == "bq":
                _load_table(source.location, local_root, summary)
                return summary, "loaded", f"into {source.location}"
            sources.upload_files(
                source=source, tenant_id=tenant_id, local_root=local_root, paths=list(summary.files)
            )
        except sources.SourceError as exc:
            raise CommandError(exc.message) from exc
    return summary, "uploaded", f"to {source.location}"


def _load_table(location: str, local_root: Path, summary: WriteSummary) -> None:
    """Append the GCP NDJSON files to the export table (created with the export's schema if absent)."""
    from billing.generators.gcp import GCP_BILLING_EXPORT_SCHEMA

    table = sources.table_location(location)
    ref = TableRef(table.dataset, table.table)
    spec = TableSpec(schema=tuple(Field.from_api_repr(field) for field in GCP_BILLING_EXPORT_SCHEMA))
    warehouse = get_warehouse()
    try:
        warehouse.create_dataset(table.dataset, exists_ok=True)
        for path in summary.files:
            warehouse.load_file(os.fspath(path), ref, file_format=FileFormat.NDJSON, spec=spec)
    except WarehouseError as exc:
        raise CommandError(f"loading into {location} failed: {exc.message}") from None
