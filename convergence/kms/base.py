"""Envelope encryption. Each ``encrypt`` makes a fresh AES-256-GCM data key (DEK), encrypts the
plaintext locally with the associated data, and stores the DEK wrapped by a key-encryption key (KEK):
a local master key (``local``) or a Cloud KMS CryptoKey (``gcp``). The associated data binds a
ciphertext to its tenant, field and record: moved anywhere else it fails to decrypt (fails closed)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class KmsError(Exception):
    """Encryption or decryption failed. Never carries key material or plaintext."""


class DecryptionError(KmsError):
    """The ciphertext was tampered with, swapped to another tenant/field/record, or wrapped by a key we
    do not hold. Callers must treat this as fatal for the operation: there is no plaintext fallback."""


@dataclass(frozen=True)
class EncryptionContext:
    """What a ciphertext is bound to. ``record_id`` may be empty when the record has no id yet."""

    tenant_id: str
    field: str
    record_id: str = ""

    def associated_data(self) -> bytes:
        return f"convergence:v1:{self.tenant_id}:{self.field}:{self.record_id}".encode()


class Kms(ABC):
    #: "local" or "gcp"
    kind: str = ""

    @abstractmethod
    def encrypt(self, plaintext: bytes, *, context: EncryptionContext) -> bytes:
        """Return a self-describing envelope (version, KEK id, wrapped DEK, nonce, ciphertext+tag)."""

    @abstractmethod
    def decrypt(self, envelope: bytes, *, context: EncryptionContext) -> bytes:
        """Return the plaintext, or raise ``DecryptionError`` (tampered, wrong context, unknown KEK)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``KmsError`` if the KEK cannot be used right now."""
