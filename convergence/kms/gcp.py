"""Cloud KMS: DEKs wrapped by a Cloud KMS CryptoKey through the ``Encrypt``/``Decrypt`` RPCs.

The KEK never leaves Cloud KMS; only the 32-byte DEK travels, with the envelope's associated data as
``additional_authenticated_data`` so the wrapped DEK is bound to tenant/field/record as well. Every RPC
carries CRC32C checksums both ways (Cloud KMS's data-integrity guidelines). One RPC per encrypt or
decrypt; an outage fails closed with ``KmsError``, never a plaintext fallback.

``endpoint`` (``GCP_KMS_ENDPOINT``, ``host:port``) is for a local fake or emulator and uses a
**plaintext** gRPC channel without credentials; leave it unset to reach Cloud KMS with Application
Default Credentials.
"""

from __future__ import annotations

import re
import threading

import google_crc32c
import grpc
from django.core.exceptions import ImproperlyConfigured
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry, if_exception_type
from google.auth import exceptions as auth_exceptions
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import KeyManagementServiceGrpcTransport

from convergence.kms.base import DecryptionError, EncryptionContext, Kms, KmsError
from convergence.kms.envelope import WrappedKey, open_envelope, seal

_KEY_NAME_RE = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")
_PING_PLAINTEXT = b"convergence-ping"
_PING_AAD = b"convergence:ping"
#: Outages: retried within the deadline, then reported as "KMS unavailable".
_TRANSIENT = (api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded)
#: On Decrypt these mean the ciphertext, its AAD or its key is wrong: the envelope is bad, not the KMS.
_BAD_CIPHERTEXT = (api_exceptions.InvalidArgument, api_exceptions.FailedPrecondition, api_exceptions.NotFound)


class GcpKms(Kms):
    """Envelope encryption whose DEKs are wrapped by the Cloud KMS CryptoKey ``key_name``."""

    kind = "gcp"

    def __init__(
        self,
        *,
        key_name: str | None,
        endpoint: str | None = None,
        channel: grpc.Channel | None = None,
        timeout: float = 10.0,
    ) -> None:
        """``channel`` (tests) wins over ``endpoint``; ``timeout`` bounds each call including retries.

        ``key_name`` accepts ``None`` only to turn a missing ``GCP_KMS_KEY_NAME`` into
        ``ImproperlyConfigured`` here rather than a confusing RPC error later.
        """
        if not key_name or not _KEY_NAME_RE.fullmatch(key_name):
            # A CryptoKeyVersion name would pin encryption to one version and defeat rotation.
            raise ImproperlyConfigured(
                "GCP_KMS_KEY_NAME must be projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>"
            )
        self.key_name: str = key_name
        self._endpoint = endpoint
        self._channel = channel
        self._owned_channel: grpc.Channel | None = None
        self._timeout = timeout
        self._retry = Retry(
            predicate=if_exception_type(*_TRANSIENT),
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=timeout,
        )
        self._client: kms_v1.KeyManagementServiceClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GcpKms(key_name={self.key_name!r}, endpoint={self._endpoint!r})"

    def encrypt(self, plaintext: bytes, *, context: EncryptionContext) -> bytes:
        """Seal ``plaintext`` under a fresh DEK wrapped by the CryptoKey's primary version.

        ``KmsError`` when Cloud KMS is unreachable or refuses (disabled key, permissions).
        """
        return seal(plaintext, associated_data=context.associated_data(), wrap=self._wrap)

    def decrypt(self, envelope: bytes, *, context: EncryptionContext) -> bytes:
        """Open an envelope wrapped by this CryptoKey (any of its versions).

        ``DecryptionError`` for a tampered or misplaced envelope, or one from another CryptoKey; plain
        ``KmsError`` when Cloud KMS is unreachable, which callers may retry later.
        """
        return open_envelope(envelope, associated_data=context.associated_data(), unwrap=self._unwrap)

    def ping(self) -> None:
        """Encrypt a small probe with the CryptoKey; ``KmsError`` if that is not possible right now."""
        self._wrap(_PING_PLAINTEXT, _PING_AAD)

    def close(self) -> None:
        """Close the channel this instance opened (a caller-provided ``channel`` stays open)."""
        with self._lock:
            if self._owned_channel is not None:
                self._owned_channel.close()
            self._owned_channel = None
            self._client = None

    def _get_client(self) -> kms_v1.KeyManagementServiceClient:
        # Built on first use so that importing settings or building the adapter never touches the
        # network or credentials; the lock keeps threads from each opening a channel.
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> kms_v1.KeyManagementServiceClient:
        channel = self._channel
        if channel is None and self._endpoint:
            # The default transport always speaks TLS, which a local fake does not; hence our own channel.
            channel = self._owned_channel = grpc.insecure_channel(self._endpoint)
        if channel is not None:
            return kms_v1.KeyManagementServiceClient(
                transport=KeyManagementServiceGrpcTransport(channel=channel)
            )
        try:
            return kms_v1.KeyManagementServiceClient()
        except auth_exceptions.GoogleAuthError as exc:
            raise KmsError(f"Cloud KMS credentials are not available ({type(exc).__name__})") from None

    def _wrap(self, dek: bytes, associated_data: bytes) -> WrappedKey:
        request = kms_v1.EncryptRequest(
            name=self.key_name,
            plaintext=dek,
            plaintext_crc32c=_crc32c(dek),
            additional_authenticated_data=associated_data,
            additional_authenticated_data_crc32c=_crc32c(associated_data),
        )
        try:
            response = self._get_client().encrypt(request=request, retry=self._retry, timeout=self._timeout)
        except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as exc:
            raise _kms_error(exc, operation="encrypt") from None
        # Integrity failures are corruption in transit, not a bad envelope: KmsError, so callers retry.
        if not (
            response.verified_plaintext_crc32c and response.verified_additional_authenticated_data_crc32c
        ):
            raise KmsError("Cloud KMS encrypt: request checksum not verified (corrupted in transit)")
        if response.ciphertext_crc32c != _crc32c(response.ciphertext):
            raise KmsError("Cloud KMS encrypt: response checksum mismatch (corrupted in transit)")
        if not response.name.startswith(f"{self.key_name}/cryptoKeyVersions/"):
            raise KmsError("Cloud KMS encrypt: response names a different CryptoKey")
        return WrappedKey(kek=self.key_name, kek_version=response.name, wrapped_dek=response.ciphertext)

    def _unwrap(self, wrapped: WrappedKey, associated_data: bytes) -> bytes:
        # Only our own CryptoKey: an envelope naming another key is foreign data (or an attempt to have
        # us unwrap with a key this service account can reach for other reasons).
        if wrapped.kek != self.key_name:
            raise DecryptionError("envelope was wrapped by a different CryptoKey")
        if not wrapped.kek_version.startswith(f"{self.key_name}/cryptoKeyVersions/"):
            raise DecryptionError("envelope key version does not belong to its CryptoKey")
        request = kms_v1.DecryptRequest(
            name=self.key_name,
            ciphertext=wrapped.wrapped_dek,
            ciphertext_crc32c=_crc32c(wrapped.wrapped_dek),
            additional_authenticated_data=associated_data,
            additional_authenticated_data_crc32c=_crc32c(associated_data),
        )
        try:
            response = self._get_client().decrypt(request=request, retry=self._retry, timeout=self._timeout)
        except _BAD_CIPHERTEXT as exc:
            raise DecryptionError(f"Cloud KMS could not unwrap the data key ({type(exc).__name__})") from None
        except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as exc:
            raise _kms_error(exc, operation="decrypt") from None
        if response.plaintext_crc32c != _crc32c(response.plaintext):
            raise KmsError("Cloud KMS decrypt: response checksum mismatch (corrupted in transit)")
        return response.plaintext


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _kms_error(exc: Exception, *, operation: str) -> KmsError:
    """A ``KmsError`` naming the failure class only: server messages may echo request details."""
    if isinstance(exc, (*_TRANSIENT, api_exceptions.RetryError)):
        return KmsError(f"Cloud KMS unavailable during {operation} ({type(exc).__name__}); try again later")
    return KmsError(f"Cloud KMS {operation} failed ({type(exc).__name__})")
