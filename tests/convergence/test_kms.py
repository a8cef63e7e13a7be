"""Envelope encryption on both KMS backends: local keyring, and Cloud KMS against an in-process fake."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from django.core.exceptions import ImproperlyConfigured
from google.api_core import exceptions as api_exceptions
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import KeyManagementServiceGrpcTransport
from pytest_django.fixtures import Settings

from convergence.kms import DecryptionError, EncryptionContext, Kms, KmsError, get_kms
from convergence.kms.envelope import parse
from convergence.kms.gcp import GcpKms
from convergence.kms.local import LocalKms, parse_keyring
from tests.convergence.kms_fake import FakeKmsServer

KEY_RING = "projects/test-project/locations/global/keyRings/convergence"
KEY_A = f"{KEY_RING}/cryptoKeys/tenant-secrets"
KEY_B = f"{KEY_RING}/cryptoKeys/other-secrets"
CONTEXT = EncryptionContext(tenant_id="tenant-a", field="api_token", record_id="42")
KEY_TEXT = base64.b64encode(b"k" * 32).decode()
SECRET = b"sk-live-THIS-IS-A-SECRET-TOKEN-0123456789abcdef"


@pytest.fixture(scope="module")
def fake_kms_server() -> Iterator[FakeKmsServer]:
    with FakeKmsServer() as server:
        yield server


@pytest.fixture
def fake_kms(fake_kms_server: FakeKmsServer) -> Iterator[FakeKmsServer]:
    fake_kms_server.calls.clear()
    yield fake_kms_server
    fake_kms_server.unavailable = False
    fake_kms_server.corrupt_checksums = False


@pytest.fixture
def gcp_kms(fake_kms: FakeKmsServer) -> Iterator[GcpKms]:
    # A short timeout: the UNAVAILABLE tests wait out the whole retry budget.
    kms = GcpKms(key_name=KEY_A, endpoint=fake_kms.endpoint, timeout=1.0)
    yield kms
    kms.close()


@pytest.fixture(params=["local", "gcp"])
def kms(request: pytest.FixtureRequest) -> Kms:
    if request.param == "local":
        return LocalKms({"k1": os.urandom(32)})
    gcp: GcpKms = request.getfixturevalue("gcp_kms")
    return gcp


def _edit(envelope: bytes, field: str, change: Callable[[bytes], bytes]) -> bytes:
    """Re-serialize ``envelope`` with base64 ``field`` decoded, changed and re-encoded."""
    document = json.loads(envelope)
    document[field] = base64.b64encode(change(base64.b64decode(document[field]))).decode()
    return json.dumps(document, separators=(",", ":")).encode()


def _flip(index: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        mutable = bytearray(data)
        mutable[index] ^= 0x01
        return bytes(mutable)

    return change


# --- both backends -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [b"", os.urandom(64 * 1024), "héllo wörld ✓ 秘密 🔑".encode(), SECRET],
    ids=["empty", "64KiB", "unicode", "token"],
)
def test_round_trip(kms: Kms, plaintext: bytes) -> None:
    envelope = kms.encrypt(plaintext, context=CONTEXT)

    assert kms.decrypt(envelope, context=CONTEXT) == plaintext


def test_envelope_format(kms: Kms) -> None:
    envelope = kms.encrypt(b"twelve bytes", context=CONTEXT)

    document = json.loads(envelope)
    assert list(document) == ["v", "kek", "kek_version", "wdek", "nonce", "ct"]
    assert document["v"] == 1
    if kms.kind == "local":
        assert (document["kek"], document["kek_version"]) == ("local:k1", "k1")
    else:
        assert (document["kek"], document["kek_version"]) == (KEY_A, f"{KEY_A}/cryptoKeyVersions/1")
    parsed = parse(envelope)
    assert len(parsed.nonce) == 12
    assert len(parsed.ciphertext) == len(b"twelve bytes") + 16
    assert b" " not in envelope


def test_each_encrypt_yields_a_different_envelope(kms: Kms) -> None:
    first, second = (parse(kms.encrypt(SECRET, context=CONTEXT)) for _ in range(2))

    assert first.wrapped_dek != second.wrapped_dek
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_plaintext_never_appears_in_envelope(kms: Kms) -> None:
    envelope = kms.encrypt(SECRET, context=CONTEXT)

    assert SECRET not in envelope
    # Nor its base64, at any of the three alignments (dropping the possibly-padded tail).
    for offset in range(3):
        assert base64.b64encode(SECRET[offset:])[:-4] not in envelope


@pytest.mark.parametrize(
    "other",
    [
        EncryptionContext(tenant_id="tenant-b", field="api_token", record_id="42"),
        EncryptionContext(tenant_id="tenant-a", field="password", record_id="42"),
        EncryptionContext(tenant_id="tenant-a", field="api_token", record_id="43"),
        EncryptionContext(tenant_id="tenant-a", field="api_token"),
    ],
    ids=["tenant_id", "field", "record_id", "no-record_id"],
)
def test_decrypt_with_another_context_fails(kms: Kms, other: EncryptionContext) -> None:
    envelope = kms.encrypt(SECRET, context=CONTEXT)

    with pytest.raises(DecryptionError):
        kms.decrypt(envelope, context=other)


def test_envelope_pasted_onto_another_tenants_row_fails(kms: Kms) -> None:
    context_b = EncryptionContext(tenant_id="tenant-b", field="api_token", record_id="42")
    envelope_a = kms.encrypt(b"tenant A's token", context=CONTEXT)
    envelope_b = kms.encrypt(b"tenant B's token", context=context_b)

    with pytest.raises(DecryptionError):
        kms.decrypt(envelope_a, context=context_b)
    assert kms.decrypt(envelope_b, context=context_b) == b"tenant B's token"


@pytest.mark.parametrize("field", ["ct", "nonce", "wdek"])
@pytest.mark.parametrize("index", [0, -1], ids=["first-byte", "last-byte"])
def test_flipped_byte_fails(kms: Kms, field: str, index: int) -> None:
    envelope = _edit(kms.encrypt(SECRET, context=CONTEXT), field, _flip(index))

    with pytest.raises(DecryptionError):
        kms.decrypt(envelope, context=CONTEXT)


def test_every_single_byte_change_of_the_serialized_envelope_fails(kms: Kms) -> None:
    envelope = kms.encrypt(b"short", context=CONTEXT)

    accepted = []
    for position in range(len(envelope)):
        mutated = bytearray(envelope)
        mutated[position] ^= 0x01
        try:
            kms.decrypt(bytes(mutated), context=CONTEXT)
        except DecryptionError:
            continue
        accepted.append(position)
    assert accepted == []


def test_non_canonical_base64_fails(kms: Kms) -> None:
    envelope = kms.encrypt(b"four", context=CONTEXT)  # a 20-byte ct: 27 characters and one "="
    document = json.loads(envelope)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert document["ct"].endswith("=") and not document["ct"].endswith("==")
    last = document["ct"][-2]
    # Setting an unused low bit of the last character decodes to the very same bytes.
    document["ct"] = document["ct"][:-2] + alphabet[alphabet.index(last) ^ 1] + "="
    assert base64.b64decode(document["ct"]) == base64.b64decode(json.loads(envelope)["ct"])

    with pytest.raises(DecryptionError, match="canonical"):
        kms.decrypt(json.dumps(document, separators=(",", ":")).encode(), context=CONTEXT)


def test_edited_key_version_fails(kms: Kms) -> None:
    document = json.loads(kms.encrypt(SECRET, context=CONTEXT))
    if kms.kind == "local":
        document["kek_version"] = "k2"
    else:
        document["kek_version"] = f"{KEY_A}/cryptoKeyVersions/2"

    with pytest.raises(DecryptionError):
        kms.decrypt(json.dumps(document).encode(), context=CONTEXT)


@pytest.mark.parametrize(
    "make_garbage",
    [
        lambda envelope: b"",
        lambda envelope: envelope[: len(envelope) // 2],
        lambda envelope: envelope[:-1],
        lambda envelope: b"\xff\xfe garbage",
        lambda envelope: b"null",
        lambda envelope: b"[]",
        lambda envelope: b"{}",
        lambda envelope: b"[" * 100_000,
        lambda envelope: envelope.replace(b'"v":1', b'"v":2'),
        lambda envelope: envelope.replace(b'"v":1', b'"v":true'),
        lambda envelope: envelope.replace(b'"v":1', b'"v":1,"extra":0'),
        lambda envelope: envelope.replace(b'"v":1,', b""),
        lambda envelope: envelope.replace(b'"nonce":"', b'"nonce":"!'),
        lambda envelope: _edit(envelope, "nonce", lambda nonce: nonce[:-1]),
        lambda envelope: _edit(envelope, "ct", lambda ct: ct[:15]),
        lambda envelope: _edit(envelope, "ct", lambda ct: ct[:-1]),
        lambda envelope: _edit(envelope, "wdek", lambda wdek: b""),
        lambda envelope: _edit(envelope, "wdek", lambda wdek: wdek[:-1]),
    ],
    ids=[
        "empty",
        "half",
        "minus-one-byte",
        "binary",
        "null",
        "list",
        "empty-object",
        "deeply-nested",
        "version-2",
        "version-true",
        "extra-field",
        "missing-field",
        "bad-base64",
        "short-nonce",
        "no-tag",
        "short-tag",
        "empty-wdek",
        "short-wdek",
    ],
)
def test_truncated_or_garbage_envelope_fails(kms: Kms, make_garbage: Callable[[bytes], bytes]) -> None:
    envelope = kms.encrypt(SECRET, context=CONTEXT)

    with pytest.raises(DecryptionError):
        kms.decrypt(make_garbage(envelope), context=CONTEXT)


def test_ping(kms: Kms) -> None:
    kms.ping()


# --- local keyring -------------------------------------------------------------------------------------


def test_local_keyring_rotation() -> None:
    key1, key2 = os.urandom(32), os.urandom(32)
    old_envelope = LocalKms({"kid1": key1}).encrypt(b"old secret", context=CONTEXT)

    rotated = LocalKms({"kid1": key1, "kid2": key2})
    new_envelope = rotated.encrypt(b"new secret", context=CONTEXT)

    assert rotated.decrypt(old_envelope, context=CONTEXT) == b"old secret"
    assert rotated.decrypt(new_envelope, context=CONTEXT) == b"new secret"
    assert (parse(old_envelope).kek, parse(new_envelope).kek) == ("local:kid1", "local:kid2")
    retired = LocalKms({"kid2": key2})
    assert retired.decrypt(new_envelope, context=CONTEXT) == b"new secret"
    with pytest.raises(DecryptionError, match="kid1"):
        retired.decrypt(old_envelope, context=CONTEXT)


def test_local_same_kid_with_another_key_fails() -> None:
    envelope = LocalKms({"k1": os.urandom(32)}).encrypt(SECRET, context=CONTEXT)

    with pytest.raises(DecryptionError):
        LocalKms({"k1": os.urandom(32)}).decrypt(envelope, context=CONTEXT)


def test_local_rejects_gcp_envelope(gcp_kms: GcpKms) -> None:
    envelope = gcp_kms.encrypt(SECRET, context=CONTEXT)

    with pytest.raises(DecryptionError, match="not wrapped by a local key"):
        LocalKms({"k1": os.urandom(32)}).decrypt(envelope, context=CONTEXT)


def test_parse_keyring_single_key_and_keyring() -> None:
    key1, key2 = os.urandom(32), os.urandom(32)
    b64 = [base64.b64encode(key).decode() for key in (key1, key2)]

    assert parse_keyring(f" {b64[0]}\n", source="KMS_LOCAL_KEY") == {"default": key1}
    keyring = parse_keyring(f"old:{b64[0]}, new-2:{b64[1]}", source="KMS_LOCAL_KEY")
    assert list(keyring.items()) == [("old", key1), ("new-2", key2)]
    assert LocalKms(keyring).primary_kid == "new-2"


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "not base64!",
        base64.b64encode(b"x" * 16).decode(),
        "k1:" + base64.b64encode(b"x" * 33).decode(),
        f"bad kid:{KEY_TEXT}",
        f"k1:{KEY_TEXT},k1:{KEY_TEXT}",
        f"k1:{KEY_TEXT},",
    ],
    ids=["empty", "not-base64", "16-bytes", "33-bytes", "bad-kid", "duplicate-kid", "trailing-comma"],
)
def test_parse_keyring_rejects_bad_specs_without_echoing_them(spec: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_keyring(spec, source="KMS_LOCAL_KEY")

    key_text = spec.rpartition(":")[2].split(",")[0]
    assert not key_text or key_text not in str(caught.value)


def test_local_repr_hides_keys() -> None:
    key = os.urandom(32)

    text = repr(LocalKms({"k1": key}))

    assert text == "LocalKms(kids=['k1'], primary='k1')"
    assert base64.b64encode(key).decode() not in text


def test_local_from_settings_uses_kms_local_key(settings: Settings, tmp_path: Path) -> None:
    key = os.urandom(32)
    settings.KMS_LOCAL_KEY = (
        f"a:{base64.b64encode(os.urandom(32)).decode()},b:{base64.b64encode(key).decode()}"
    )
    settings.KMS_LOCAL_KEY_PATH = tmp_path / "kms_local.key"

    kms = LocalKms.from_settings()

    assert kms.primary_kid == "b"
    assert not (tmp_path / "kms_local.key").exists()


def test_local_key_file_generated_0600_in_development(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "var" / "kms_local.key"
    settings.KMS_LOCAL_KEY = None
    settings.ENVIRONMENT = "development"
    settings.KMS_LOCAL_KEY_PATH = path
    previous_umask = os.umask(0)  # permissions must not depend on the caller's umask
    try:
        first = LocalKms.from_settings()
    finally:
        os.umask(previous_umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kid, _, encoded = path.read_text().strip().partition(":")
    assert kid == "default"
    assert len(base64.b64decode(encoded, validate=True)) == 32
    assert [entry.name for entry in path.parent.iterdir()] == ["kms_local.key"]
    # A second start reuses the file rather than generating a new key.
    envelope = first.encrypt(SECRET, context=CONTEXT)
    assert LocalKms.from_settings().decrypt(envelope, context=CONTEXT) == SECRET


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_local_key_file_refused_outside_development(
    settings: Settings, tmp_path: Path, environment: str
) -> None:
    path = tmp_path / "kms_local.key"
    settings.KMS_LOCAL_KEY = None
    settings.ENVIRONMENT = environment
    settings.KMS_LOCAL_KEY_PATH = path

    with pytest.raises(ImproperlyConfigured, match="KMS_LOCAL_KEY"):
        LocalKms.from_settings()

    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


# --- Cloud KMS (fake) ----------------------------------------------------------------------------------


def test_gcp_wraps_and_unwraps_with_one_rpc_each(gcp_kms: GcpKms, fake_kms: FakeKmsServer) -> None:
    envelope = gcp_kms.encrypt(SECRET, context=CONTEXT)
    assert gcp_kms.decrypt(envelope, context=CONTEXT) == SECRET

    assert fake_kms.calls == ["Encrypt", "Decrypt"]


def test_gcp_unavailable_is_kms_error_not_plaintext(gcp_kms: GcpKms, fake_kms: FakeKmsServer) -> None:
    envelope = gcp_kms.encrypt(SECRET, context=CONTEXT)
    fake_kms.unavailable = True
    fake_kms.calls.clear()

    for operation in (
        lambda: gcp_kms.encrypt(SECRET, context=CONTEXT),
        lambda: gcp_kms.decrypt(envelope, context=CONTEXT),
        gcp_kms.ping,
    ):
        with pytest.raises(KmsError, match="unavailable") as caught:
            operation()
        # An outage is not a bad ciphertext: callers may retry, and must not mark the row corrupt.
        assert type(caught.value) is KmsError
    assert fake_kms.calls.count("Decrypt") >= 2  # retried within the deadline before giving up


def test_gcp_unreachable_endpoint_is_kms_error() -> None:
    closed = FakeKmsServer().start()
    endpoint = closed.endpoint
    closed.stop()
    kms = GcpKms(key_name=KEY_A, endpoint=endpoint, timeout=0.5)

    with pytest.raises(KmsError, match="unavailable"):
        kms.ping()
    kms.close()


def test_gcp_another_crypto_key_cannot_decrypt(gcp_kms: GcpKms, fake_kms: FakeKmsServer) -> None:
    envelope = gcp_kms.encrypt(SECRET, context=CONTEXT)
    other = GcpKms(key_name=KEY_B, endpoint=fake_kms.endpoint, timeout=1.0)
    fake_kms.calls.clear()

    with pytest.raises(DecryptionError, match="different CryptoKey"):
        other.decrypt(envelope, context=CONTEXT)
    assert fake_kms.calls == []
    # Relabelled as KEY_B's, the wrapped DEK reaches KMS, which refuses to unwrap it under KEY_B.
    relabelled = envelope.replace(KEY_A.encode(), KEY_B.encode())
    with pytest.raises(DecryptionError, match="InvalidArgument"):
        other.decrypt(relabelled, context=CONTEXT)
    assert fake_kms.calls == ["Decrypt"]
    other.close()


def test_gcp_response_checksum_mismatch_is_kms_error(gcp_kms: GcpKms, fake_kms: FakeKmsServer) -> None:
    envelope = gcp_kms.encrypt(SECRET, context=CONTEXT)
    fake_kms.corrupt_checksums = True

    with pytest.raises(KmsError, match="checksum"):
        gcp_kms.encrypt(SECRET, context=CONTEXT)
    with pytest.raises(KmsError, match="checksum"):
        gcp_kms.decrypt(envelope, context=CONTEXT)


def test_gcp_injected_channel(fake_kms: FakeKmsServer) -> None:
    channel = grpc.insecure_channel(fake_kms.endpoint)
    kms = GcpKms(key_name=KEY_A, channel=channel, timeout=1.0)

    envelope = kms.encrypt(SECRET, context=CONTEXT)

    assert kms.decrypt(envelope, context=CONTEXT) == SECRET
    kms.close()
    channel.close()


@pytest.mark.parametrize("key_name", [None, "", "tenant-secrets", f"{KEY_A}/cryptoKeyVersions/1"])
def test_gcp_rejects_invalid_key_names(key_name: str | None) -> None:
    with pytest.raises(ImproperlyConfigured, match="GCP_KMS_KEY_NAME"):
        GcpKms(key_name=key_name)


def test_fake_kms_answers_unimplemented_for_other_methods(fake_kms: FakeKmsServer) -> None:
    channel = grpc.insecure_channel(fake_kms.endpoint)
    client = kms_v1.KeyManagementServiceClient(transport=KeyManagementServiceGrpcTransport(channel=channel))

    with pytest.raises(api_exceptions.MethodNotImplemented):
        client.get_crypto_key(name=KEY_A, timeout=2, retry=None)
    channel.close()


# --- factory -------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_get_kms() -> Iterator[Callable[[], Kms]]:
    get_kms.cache_clear()
    yield get_kms
    get_kms.cache_clear()


def test_get_kms_local(settings: Settings, fresh_get_kms: Callable[[], Kms]) -> None:
    settings.KMS_BACKEND = "local"

    kms = fresh_get_kms()

    assert isinstance(kms, LocalKms)
    assert kms.primary_kid == "default"
    assert kms.decrypt(kms.encrypt(SECRET, context=CONTEXT), context=CONTEXT) == SECRET


def test_get_kms_gcp(settings: Settings, fresh_get_kms: Callable[[], Kms], fake_kms: FakeKmsServer) -> None:
    settings.KMS_BACKEND = "gcp"
    settings.GCP_KMS_KEY_NAME = KEY_A
    settings.GCP_KMS_ENDPOINT = fake_kms.endpoint

    kms = fresh_get_kms()

    assert isinstance(kms, GcpKms)
    assert kms.decrypt(kms.encrypt(SECRET, context=CONTEXT), context=CONTEXT) == SECRET
    kms.close()
