"""Pytest plugin: the local BigQuery emulator (local-bigquery 0.3.2), started once per test session.

The emulator needs Python >= 3.13 and runs out of process from ``.bq-emulator/venv`` (installed by
``.ci/install-bq-emulator.sh``). DuckDB inside it loads its extensions from ``.bq-emulator/home``, so
that is its HOME. A missing install fails the tests that need it: it never skips them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from convergence.warehouse.bigquery import BigQueryWarehouse

REPO = Path(__file__).resolve().parent.parent
EMULATOR_DIR = REPO / ".bq-emulator"
EMULATOR_BIN = EMULATOR_DIR / "venv" / "bin" / "local-bigquery"
EMULATOR_HOME = EMULATOR_DIR / "home"
EMULATOR_STAMP = EMULATOR_DIR / ".installed"
PROJECT = "test-project"
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a test server started next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(endpoint: str) -> bool:
    try:
        # The URL is always http://127.0.0.1:PORT built above.
        with urllib.request.urlopen(  # noqa: S310
            f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets", timeout=2
        ) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Emulator:
    endpoint: str
    data_dir: Path

    @property
    def gcs_dir(self) -> Path:
        """Where the emulator looks for ``gs://BUCKET/PATH`` objects: ``gcs_dir / BUCKET / PATH``."""
        return self.data_dir / "gcs"


@pytest.fixture(scope="session")
def bq_emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A running emulator with an empty data dir, for the session."""
    if not (EMULATOR_BIN.exists() and EMULATOR_STAMP.exists()):
        pytest.fail(
            f"the BigQuery emulator is not installed in {EMULATOR_DIR}: "
            "run `make bq-emulator` (.ci/install-bq-emulator.sh)",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("bq-emulator")
    data_dir = base / "data"
    data_dir.mkdir()
    log_path = base / "emulator.log"
    port, grpc_port = free_port(), free_port()
    while grpc_port == port:
        grpc_port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "HOME": str(EMULATOR_HOME)}
    # The emulator's own venv must win over whatever venv runs pytest.
    environment.pop("VIRTUAL_ENV", None)
    environment.pop("PYTHONPATH", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(EMULATOR_BIN),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--grpc-port",
                str(grpc_port),
                "--project",
                PROJECT,
                "--data-dir",
                str(data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=base,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(endpoint):
            if process.poll() is not None:
                pytest.fail(
                    f"the BigQuery emulator exited with {process.returncode}:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the BigQuery emulator was not ready after {READY_TIMEOUT_S:g} s:\n"
                    f"{_log_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)
        yield Emulator(endpoint=endpoint, data_dir=data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def bq_emulator(bq_emulator_process: Emulator) -> str:
    """The endpoint (``http://127.0.0.1:PORT``) of the session's emulator."""
    return bq_emulator_process.endpoint


@pytest.fixture(scope="session")
def bq_emulator_gcs(bq_emulator_process: Emulator) -> Path:
    """The folder the emulator serves ``gs://`` URIs from: ``gs://bucket/a.csv`` is ``bucket/a.csv`` here."""
    return bq_emulator_process.gcs_dir


@pytest.fixture(scope="session")
def bigquery_warehouse(bq_emulator: str) -> Iterator[BigQueryWarehouse]:
    """A ``BigQueryWarehouse`` talking to the session's emulator."""
    from convergence.warehouse.bigquery import BigQueryWarehouse

    warehouse = BigQueryWarehouse(project=PROJECT, api_endpoint=bq_emulator)
    yield warehouse
    warehouse.close()
