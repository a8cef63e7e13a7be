"""Settings for the benchmark server: the project's base settings with the bench urlconf, which adds a
bare DRF endpoint next to the real API. The environment comes from ``benchlib.bench_environment``."""

from __future__ import annotations

from convergence.settings.base import *  # noqa: F403

ROOT_URLCONF = "bench_urls"
