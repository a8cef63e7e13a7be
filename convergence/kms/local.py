"""Local KMS: DEKs wrapped by AES-256-GCM master keys held in process (development, CI, offline).

``KMS_LOCAL_KEY`` format (the generated key file holds the same text):

* a single standard-base64 32-byte key, e.g. the output of ``openssl rand -base64 32``; its kid is
  ``default``; or
* a keyring ``kid1:<b64>,kid2:<b64>``: kids are 1-64 characters of ``[A-Za-z0-9_.-]``, and the **last**
  entry is the primary. New envelopes are wrapped by the primary; old envelopes are unwrapped by the kid
  recorded in them (``kek="local:<kid>"``), so rotation is: append a new kid, re-encrypt in the
  background, then drop the old kid. An envelope whose kid is no longer in the keyring fails closed.

With no ``KMS_LOCAL_KEY``, development uses ``KMS_LOCAL_KEY_PATH`` and generates it (mode 0600) on first
use; every other environment refuses, since a key generated on one box would make data unreadable
everywhere else.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

from convergence.kms.base import DecryptionError, EncryptionContext, Kms
from convergence.kms.envelope import DEK_BYTES, NONCE_BYTES, TAG_BYTES, WrappedKey, open_envelope, seal

DEFAULT_KID = "default"
KEK_PREFIX = "local:"
_KID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_WRAPPED_DEK_BYTES = NONCE_BYTES + DEK_BYTES + TAG_BYTES
_PING_AAD = b"convergence:ping"


class LocalKms(Kms):
    """Envelope encryption with a local keyring ``{kid: 32-byte key}``; the last kid is the primary."""

    kind = "local"

    def __init__(self, keyring: Mapping[str, bytes]) -> None:
        if not keyring:
            raise ImproperlyConfigured("local KMS keyring is empty")
        for kid, key in keyring.items():
            if not _KID_RE.fullmatch(kid):
                raise ImproperlyConfigured(f"local KMS kid {kid!r} must match {_KID_RE.pattern}")
            if len(key) != DEK_BYTES:
                raise ImproperlyConfigured(f"local KMS key {kid!r} must be {DEK_BYTES} bytes")
        self._keyring = dict(keyring)
        self._primary_kid = list(self._keyring)[-1]

    def __repr__(self) -> str:
        # Never the keys themselves: this repr can end up in logs and tracebacks.
        return f"LocalKms(kids={list(self._keyring)!r}, primary={self._primary_kid!r})"

    @property
    def primary_kid(self) -> str:
        return self._primary_kid

    @classmethod
    def from_settings(cls) -> LocalKms:
        """Build from ``KMS_LOCAL_KEY``, else the development key file (generated if missing).

        Raises ``ImproperlyConfigured`` for a malformed key, or when no key is configured outside
        ``ENVIRONMENT=development``.
        """
        from django.conf import settings

        if settings.KMS_LOCAL_KEY:
            return cls(parse_keyring(settings.KMS_LOCAL_KEY, source="KMS_LOCAL_KEY"))
        if settings.ENVIRONMENT != "development":
            raise ImproperlyConfigured(
                "KMS_LOCAL_KEY (or KMS_LOCAL_KEY_FILE) is required outside development; "
                "the generated key file is for development only"
            )
        path = Path(settings.KMS_LOCAL_KEY_PATH)
        ensure_key_file(path)
        return cls(parse_keyring(path.read_text(), source=str(path)))

    def encrypt(self, plaintext: bytes, *, context: EncryptionContext) -> bytes:
        """Seal ``plaintext`` under a fresh DEK wrapped by the primary key (``convergence.kms.envelope``)."""
        return seal(plaintext, associated_data=context.associated_data(), wrap=self._wrap)

    def decrypt(self, envelope: bytes, *, context: EncryptionContext) -> bytes:
        """Open an envelope with the kid recorded in it; ``DecryptionError`` on any mismatch."""
        return open_envelope(envelope, associated_data=context.associated_data(), unwrap=self._unwrap)

    def ping(self) -> None:
        """A wrap/unwrap round trip under the primary key (cannot fail short of a broken install)."""
        dek = os.urandom(DEK_BYTES)
        if self._unwrap(self._wrap(dek, _PING_AAD), _PING_AAD) != dek:
            raise DecryptionError("local KMS round trip returned a different key")

    def _wrap(self, dek: bytes, associated_data: bytes) -> WrappedKey:
        kid = self._primary_kid
        # A random nonce per wrap: the same master key wraps many DEKs, and GCM must never reuse one.
        nonce = os.urandom(NONCE_BYTES)
        wrapped = nonce + AESGCM(self._keyring[kid]).encrypt(nonce, dek, associated_data)
        return WrappedKey(kek=KEK_PREFIX + kid, kek_version=kid, wrapped_dek=wrapped)

    def _unwrap(self, wrapped: WrappedKey, associated_data: bytes) -> bytes:
        if not wrapped.kek.startswith(KEK_PREFIX):
            raise DecryptionError("envelope was not wrapped by a local key")
        kid = wrapped.kek.removeprefix(KEK_PREFIX)
        if kid != wrapped.kek_version:
            raise DecryptionError("envelope key id and key version disagree")
        key = self._keyring.get(kid)
        if key is None:
            raise DecryptionError(f"envelope was wrapped by local key {kid!r}, which is not in the keyring")
        if len(wrapped.wrapped_dek) != _WRAPPED_DEK_BYTES:
            raise DecryptionError("envelope wrapped data key has the wrong length")
        nonce, sealed = wrapped.wrapped_dek[:NONCE_BYTES], wrapped.wrapped_dek[NONCE_BYTES:]
        try:
            return AESGCM(key).decrypt(nonce, sealed, associated_data)
        except InvalidTag:
            raise DecryptionError("envelope data key failed authentication") from None


def parse_keyring(spec: str, *, source: str) -> dict[str, bytes]:
    """Parse the ``KMS_LOCAL_KEY`` format (module docstring) into an ordered ``{kid: key}``.

    ``source`` names the setting or file in error messages, which never include the key text.
    """
    spec = spec.strip()
    if not spec:
        raise ImproperlyConfigured(f"{source}: no key given")
    # ':' never occurs in base64, so its presence alone tells the keyring form from a bare key.
    if ":" not in spec:
        return {DEFAULT_KID: _decode_key(spec, source=source, kid=DEFAULT_KID)}
    keyring: dict[str, bytes] = {}
    for entry in spec.split(","):
        kid, separator, encoded = entry.strip().partition(":")
        if not separator or not _KID_RE.fullmatch(kid):
            raise ImproperlyConfigured(
                f"{source}: each entry must be kid:base64 with kid matching {_KID_RE.pattern}"
            )
        if kid in keyring:
            raise ImproperlyConfigured(f"{source}: kid {kid!r} appears twice")
        keyring[kid] = _decode_key(encoded.strip(), source=source, kid=kid)
    return keyring


def ensure_key_file(path: Path) -> None:
    """Create ``path`` holding a fresh ``default:<b64>`` keyring, mode 0600, unless it already exists.

    Safe against concurrent first starts: the key is written to a private temporary file and hard-linked
    into place, so a reader never sees a partial file and exactly one generated key wins.
    """
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key = base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")
    # mkstemp creates the file 0600 regardless of umask, so the key is never readable by others.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".kms_local.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{DEFAULT_KID}:{key}\n")
            handle.flush()
            os.fsync(handle.fileno())
        # Losing the race to another process is fine: everyone then reads the winner's key.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _decode_key(encoded: str, *, source: str, kid: str) -> bytes:
    try:
        key = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ImproperlyConfigured(f"{source}: key {kid!r} is not valid base64") from None
    if len(key) != DEK_BYTES:
        raise ImproperlyConfigured(f"{source}: key {kid!r} must decode to {DEK_BYTES} bytes")
    return key
