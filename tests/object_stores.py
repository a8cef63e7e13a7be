"""Pytest plugin: real object-store servers for the source tests, started once per test session.

- S3: moto's server (``moto.server.ThreadedMotoServer``) on a free local port, spoken to over HTTP by
  boto3 exactly as AWS would be. Its state is reset before each test that uses it.
- Azure Blob: Azurite (npm package ``azurite``) installed into ``.azurite/`` by ``.ci/install-azurite.sh``
  (``make azurite``; ``make test`` depends on it), run as a child process with a throwaway data folder.
  Tests use Azurite's well-known development account ``devstoreaccount1``. A missing install fails the
  tests that need it, naming the command that installs it (as the BigQuery emulator does): never a skip.

The function-scoped fixtures point ``AWS_S3_ENDPOINT_URL`` / ``AZURE_BLOB_ENDPOINT`` at the servers, as a
deployment against an emulator would."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.bq_emulator import free_port

REPO = Path(__file__).resolve().parent.parent
AZURITE_DIR = REPO / ".azurite"
AZURITE_BIN = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
READY_TIMEOUT_S = 30.0

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AWS_TEST_SECRET = {
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


# --- S3 (moto server) -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server for the session; yields its endpoint ``http://127.0.0.1:PORT``."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class S3Store:
    endpoint: str
    client: Any

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


@pytest.fixture
def s3_store(moto_server: str, settings: Any) -> S3Store:
    """An empty moto S3, with ``AWS_S3_ENDPOINT_URL`` pointing at it."""
    import boto3

    reset = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - the local moto endpoint above
    settings.AWS_S3_ENDPOINT_URL = moto_server
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id=AWS_TEST_SECRET["access_key_id"],
        aws_secret_access_key=AWS_TEST_SECRET["secret_access_key"],
    )
    return S3Store(endpoint=moto_server, client=client)


# --- Azure Blob (Azurite) -------------------------------------------------------------------------


def _azurite_ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/{AZURITE_ACCOUNT}?comp=list", timeout=2):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (e.g. 403 for an unsigned request) means it is serving
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service for the session; yields its endpoint ``http://127.0.0.1:PORT``."""
    if not AZURITE_BIN.exists():
        pytest.fail(
            f"Azurite is not installed in {AZURITE_DIR}: run `make azurite` (.ci/install-azurite.sh)",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("azurite")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = base / "azurite.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(AZURITE_BIN),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                str(base / "data"),
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _azurite_ready(endpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"Azurite did not start on {endpoint}:\n{tail}", pytrace=False)
            time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class AzureStore:
    endpoint: str  # http://127.0.0.1:PORT (the AZURE_BLOB_ENDPOINT setting)
    service: Any  # BlobServiceClient of devstoreaccount1
    containers: list[str] = field(default_factory=list)

    @property
    def account_url(self) -> str:
        return f"{self.endpoint}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    def container(self) -> str:
        """A new, empty container with a unique name (removed after the test)."""
        name = f"t{uuid.uuid4().hex[:20]}"
        self.service.create_container(name)
        self.containers.append(name)
        return name

    def put(self, container: str, name: str, body: bytes) -> None:
        self.service.get_blob_client(container, name).upload_blob(body, overwrite=True)

    def get(self, container: str, name: str) -> bytes:
        return bytes(self.service.get_blob_client(container, name).download_blob().readall())

    def names(self, container: str) -> list[str]:
        return sorted(blob.name for blob in self.service.get_container_client(container).list_blobs())


@pytest.fixture
def azure_store(azurite_server: str, settings: Any) -> Iterator[AzureStore]:
    """Azurite's devstoreaccount1, with ``AZURE_BLOB_ENDPOINT`` pointing at it; containers made through
    ``container()`` are deleted afterwards."""
    from azure.storage.blob import BlobServiceClient

    settings.AZURE_BLOB_ENDPOINT = azurite_server
    store = AzureStore(endpoint=azurite_server, service=None)
    store.service = BlobServiceClient.from_connection_string(store.connection_string)
    yield store
    for name in store.containers:
        store.service.delete_container(name)


# --- file:// sources ------------------------------------------------------------------------------


@pytest.fixture
def source_file_root(tmp_path: Path, settings: Any) -> Path:
    """An empty ``SOURCE_FILE_ROOT`` for the test (tenants' folders are ``root/{tenant_id}``)."""
    root = (tmp_path / "exports").resolve()
    root.mkdir()
    settings.SOURCE_FILE_ROOT = root
    return root
