"""The envelope format shared by every KMS backend.

An envelope is compact UTF-8 JSON (keys in this order, no whitespace)::

    {"v":1,"kek":"local:<kid>" | "projects/…/cryptoKeys/<key>",
     "kek_version":"<kid>" | "projects/…/cryptoKeys/<key>/cryptoKeyVersions/<n>",
     "wdek":"<b64>","nonce":"<b64>","ct":"<b64>"}

* ``v``: format version, always 1 for now; anything else is rejected.
* ``kek`` / ``kek_version``: which key-encryption key wrapped the DEK. ``kek_version`` is what a rotation
  job searches for (rows still wrapped by an old version).
* ``wdek``: the 32-byte data key (DEK) as wrapped by the backend, opaque here. The backend wraps it with
  ``context.associated_data()`` as associated data, so the DEK itself is bound to tenant/field/record.
* ``nonce``: 12 random bytes; ``ct``: AES-256-GCM ciphertext with its 16-byte tag appended.
* Base64 is the standard alphabet with padding, canonical (unused trailing bits zero).

The data is encrypted under the DEK with associated data ``context.associated_data() + b"\\x00" +
header``, where ``header`` is the canonical JSON of ``{"kek", "kek_version", "v"}``. The context part binds
the ciphertext to its tenant/field/record; the header part means the key metadata cannot be edited (say,
to hide a row from a rotation job) without decryption failing. The split is unambiguous because JSON
escapes NUL, so the header never contains a raw ``\\x00``.

Every failure to parse or authenticate raises ``DecryptionError`` with a message that names the problem
but never includes key material, DEKs or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from convergence.kms.base import DecryptionError

VERSION = 1
DEK_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_FIELDS = ("v", "kek", "kek_version", "wdek", "nonce", "ct")


@dataclass(frozen=True)
class WrappedKey:
    """A DEK as wrapped by a backend, with the KEK (and its version) that can unwrap it."""

    kek: str
    kek_version: str
    wrapped_dek: bytes


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope. ``ciphertext`` includes the GCM tag."""

    kek: str
    kek_version: str
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes

    @property
    def wrapped_key(self) -> WrappedKey:
        return WrappedKey(kek=self.kek, kek_version=self.kek_version, wrapped_dek=self.wrapped_dek)


#: ``wrap(dek, associated_data)``: wrap a fresh DEK under the backend's current primary KEK.
Wrap = Callable[[bytes, bytes], WrappedKey]
#: ``unwrap(wrapped_key, associated_data)``: the DEK, or ``DecryptionError`` (unknown KEK, wrong AAD).
Unwrap = Callable[[WrappedKey, bytes], bytes]


def seal(plaintext: bytes, *, associated_data: bytes, wrap: Wrap) -> bytes:
    """Encrypt ``plaintext`` under a fresh DEK wrapped by ``wrap``; return the serialized envelope.

    A new DEK and nonce per call, so two envelopes of the same plaintext never share bytes beyond the
    KEK ids. Errors raised by ``wrap`` (``KmsError``) propagate unchanged.
    """
    dek = AESGCM.generate_key(bit_length=DEK_BYTES * 8)
    wrapped = wrap(dek, associated_data)
    nonce = os.urandom(NONCE_BYTES)
    aad = _data_aad(associated_data, kek=wrapped.kek, kek_version=wrapped.kek_version)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, aad)
    document = {
        "v": VERSION,
        "kek": wrapped.kek,
        "kek_version": wrapped.kek_version,
        "wdek": _b64encode(wrapped.wrapped_dek),
        "nonce": _b64encode(nonce),
        "ct": _b64encode(ciphertext),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def open_envelope(envelope: bytes, *, associated_data: bytes, unwrap: Unwrap) -> bytes:
    """Return the plaintext of a serialized envelope, or raise ``DecryptionError``.

    Parsing, KEK lookup, DEK unwrapping and the GCM tag all fail closed. ``unwrap`` may also raise a plain
    ``KmsError`` (KMS unreachable), which propagates: that is an outage, not a bad ciphertext.
    """
    parsed = parse(envelope)
    dek = unwrap(parsed.wrapped_key, associated_data)
    if len(dek) != DEK_BYTES:
        raise DecryptionError("envelope data key has the wrong length")
    aad = _data_aad(associated_data, kek=parsed.kek, kek_version=parsed.kek_version)
    try:
        return AESGCM(dek).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        raise DecryptionError("envelope ciphertext failed authentication") from None


def parse(envelope: bytes) -> Envelope:
    """Parse and shape-check a serialized envelope without decrypting it (``DecryptionError`` if malformed).

    Useful on its own to read ``kek``/``kek_version`` for rotation bookkeeping.
    """
    try:
        document = json.loads(envelope)
    except (ValueError, TypeError, RecursionError):
        # ValueError covers JSONDecodeError and UnicodeDecodeError; RecursionError is deeply nested junk.
        raise DecryptionError("envelope is not valid JSON") from None
    if not isinstance(document, dict) or set(document) != set(_FIELDS):
        raise DecryptionError("envelope does not have the expected fields")
    # bool is an int subclass: reject ``true`` explicitly so it cannot pass for version 1.
    if type(document["v"]) is not int or document["v"] != VERSION:
        raise DecryptionError("envelope has an unsupported format version")
    kek, kek_version = document["kek"], document["kek_version"]
    if not isinstance(kek, str) or not kek or not isinstance(kek_version, str):
        raise DecryptionError("envelope has an invalid key-encryption key id")
    wrapped_dek = _b64decode(document["wdek"], "wdek")
    nonce = _b64decode(document["nonce"], "nonce")
    ciphertext = _b64decode(document["ct"], "ct")
    if not wrapped_dek:
        raise DecryptionError("envelope wrapped data key is empty")
    if len(nonce) != NONCE_BYTES:
        raise DecryptionError("envelope nonce has the wrong length")
    if len(ciphertext) < TAG_BYTES:
        raise DecryptionError("envelope ciphertext is truncated")
    return Envelope(
        kek=kek, kek_version=kek_version, wrapped_dek=wrapped_dek, nonce=nonce, ciphertext=ciphertext
    )


def _data_aad(associated_data: bytes, *, kek: str, kek_version: str) -> bytes:
    header = json.dumps({"kek": kek, "kek_version": kek_version, "v": VERSION}, sort_keys=True)
    return associated_data + b"\x00" + header.encode()


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise DecryptionError(f"envelope field {name} is not a string")
    try:
        encoded = value.encode("ascii")
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecryptionError(f"envelope field {name} is not valid base64") from None
    # The decoder ignores the unused low bits of the last character; insisting on the canonical form
    # keeps envelopes non-malleable (one byte string per envelope, so any edit is detected).
    if base64.b64encode(decoded) != encoded:
        raise DecryptionError(f"envelope field {name} is not canonical base64")
    return decoded
