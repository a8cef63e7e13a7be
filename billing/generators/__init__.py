"""Deterministic sample billing exports for GCP, AWS and Azure, in each provider's real file format.

Each provider module has ``generate_<provider>(start, end, rows_per_day, seed, ...)``, which returns a lazy
``SampleExport`` (rows plus the expected net cost per day once iterated), and ``write_<provider>(export,
out_dir, ...)``, which streams it to files laid out like the provider's own export. ``sample_export_write``
is the one entry point for both, by provider name."""

from __future__ import annotations

from datetime import date
from importlib import import_module
from pathlib import Path

from billing.generators.common import MAX_ROWS_PER_DAY, ProgressCallback, WriteSummary

# Provider name -> module, imported on first use (pyarrow is only needed for AWS).
PROVIDERS: dict[str, str] = {
    "gcp": "billing.generators.gcp",
    "aws": "billing.generators.aws",
    "azure": "billing.generators.azure",
}
AZURE_SCHEMAS = ("ea", "mca")

__all__ = ["AZURE_SCHEMAS", "MAX_ROWS_PER_DAY", "PROVIDERS", "WriteSummary", "sample_export_write"]


def sample_export_write(
    *,
    provider: str,
    start: date,
    end: date,
    rows_per_day: int,
    out_dir: Path,
    seed: int = 0,
    azure_schema: str = "ea",
    restated: bool = False,
    progress: ProgressCallback | None = None,
) -> WriteSummary:
    """Generate ``provider``'s sample export for ``start``..``end`` and write it under ``out_dir``.

    ``ValueError`` for an unknown provider or Azure schema, an empty range or ``rows_per_day`` outside
    1..``MAX_ROWS_PER_DAY`` (nothing is written then); ``OSError`` if the files cannot be written.
    ``progress(rows_done, rows_expected)`` is called every 10,000 rows and once at the end."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} (choose {', '.join(PROVIDERS)})")
    module = import_module(PROVIDERS[provider])
    if provider == "azure":
        export = module.generate_azure(start, end, rows_per_day, seed, schema=azure_schema, restated=restated)
        summary: WriteSummary = module.write_azure(export, out_dir, azure_schema, progress)
        return summary
    export = getattr(module, f"generate_{provider}")(start, end, rows_per_day, seed, restated=restated)
    written: WriteSummary = getattr(module, f"write_{provider}")(export, out_dir, progress)
    return written
