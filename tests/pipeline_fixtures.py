from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TEST_PROCESSOR = "tests.pipelines.processors_for_tests.CountingProcessor"

PIPELINES = {
    "test/engine/ok.yml": """
description: Two steps that succeed
parameters:
  date: {type: date, required: true}
  label: {type: string, pattern: "^[a-z ]{0,20}$"}
steps:
  - {step_id: first, ps_type: test.counting, rows: 3}
  - {step_id: second, ps_type: test.counting, rows: 4}
""",
    "test/engine/flaky.yml": """
description: A step failing once with a retryable error, then succeeding
parameters:
  date: {type: date, required: true}
steps:
  - {step_id: flaky, ps_type: test.counting, fail_times: 1, retries: 2, rows: 5}
""",
    "test/engine/broken.yml": """
description: A non-retryable failure stops its dependants
parameters:
  date: {type: date, required: true}
steps:
  - {step_id: load, ps_type: test.counting, rows: 2}
  - {step_id: broken, ps_type: test.counting, fail_times: 5, retryable: false, retries: 3}
  - {step_id: after, ps_type: test.counting, depends_on: [broken]}
""",
    "test/engine/slow.yml": """
description: Sleeps, for timeouts and cancellation
parameters:
  date: {type: date, required: true}
  hold_file: {type: string, default: ""}
steps:
  - {step_id: first, ps_type: test.counting, sleep_s: 0.3}
  - {step_id: second, ps_type: test.counting, sleep_s: 0.3}
""",
    "test/engine/timeout.yml": """
description: A step exceeding its timeout
parameters:
  date: {type: date, required: true}
steps:
  - {step_id: slow, ps_type: test.counting, sleep_s: 5, timeout_s: 1}
""",
}


@pytest.fixture
def test_pipelines(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configs tree holding the shipped configs plus the test pipelines, with the test processor
    registered."""
    import shutil

    from pipelines import catalog, registry

    root = tmp_path / "configs"
    shutil.copytree(settings.PIPELINE_CONFIGS_DIR, root)
    for name, text in PIPELINES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    settings.PIPELINE_CONFIGS_DIR = root
    monkeypatch.setitem(registry.PROCESSORS, "test.counting", TEST_PROCESSOR)
    registry.get_processor.cache_clear()
    catalog.catalog_entries.cache_clear()
    yield root
    registry.get_processor.cache_clear()
    catalog.catalog_entries.cache_clear()
