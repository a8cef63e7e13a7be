from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.generators import AZURE_SCHEMAS, MAX_ROWS_PER_DAY, PROVIDERS, sample_export_write


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
        destination = parser.add_argument_group(
            "destination", "Where the files go (a --tenant option comes with the tenants' source settings)."
        )
        target = destination.add_mutually_exclusive_group(required=True)
        target.add_argument("--out", metavar="DIR", help="Directory to write into (created if missing).")

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
        out_dir = _writable_dir(options["out"])
        long_work = ((end - start).days + 1) * rows_per_day >= 10_000
        try:
            summary = sample_export_write(
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
            raise CommandError(f"writing to {out_dir} failed: {exc}") from None
        kind = "restated " if options["restated"] else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"{provider}: wrote {len(summary.files)} file(s), {summary.rows:,} {kind}rows, "
                f"net cost {summary.total_net_cost} {summary.currency} in {os.fspath(out_dir)}"
            )
        )
