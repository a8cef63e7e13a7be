"""An in-process fake of the Cloud KMS gRPC service: ``Encrypt`` and ``Decrypt`` only.

No emulator exists for Cloud KMS, so tests point the official client at this server through an
insecure channel. Each CryptoKey gets an AES-256-GCM key derived from its name (HMAC of a per-server
secret), so ciphertexts from one key never decrypt under another. AAD and the CRC32C fields behave as in
Cloud KMS: a wrong AAD, foreign ciphertext or checksum mismatch is ``INVALID_ARGUMENT``; any other
method is ``UNIMPLEMENTED`` (gRPC's default for unregistered methods). ``unavailable = True`` makes every
call fail with ``UNAVAILABLE``; ``corrupt_checksums = True`` returns wrong response checksums.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from concurrent import futures
from typing import Any

import google_crc32c
import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud import kms_v1

SERVICE = "google.cloud.kms.v1.KeyManagementService"
_CRYPTO_KEY = re.compile(
    r"(projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+)(/cryptoKeyVersions/1)?"
)


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


class FakeKmsServer:
    """A started-on-demand fake KMS on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)
        self.unavailable = False
        self.corrupt_checksums = False
        self.calls: list[str] = []
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeKmsServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "Encrypt": grpc.unary_unary_rpc_method_handler(
                self._encrypt,
                request_deserializer=kms_v1.EncryptRequest.deserialize,
                response_serializer=kms_v1.EncryptResponse.serialize,
            ),
            "Decrypt": grpc.unary_unary_rpc_method_handler(
                self._decrypt,
                request_deserializer=kms_v1.DecryptRequest.deserialize,
                response_serializer=kms_v1.DecryptResponse.serialize,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    def __enter__(self) -> FakeKmsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _key_for(
        self, name: str, context: grpc.ServicerContext, *, allow_version: bool
    ) -> tuple[str, AESGCM]:
        """The CryptoKey name and its derived AES key (Encrypt also accepts a version name)."""
        match = _CRYPTO_KEY.fullmatch(name)
        if match is None or (match.group(2) and not allow_version):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid resource name")
        assert match is not None
        crypto_key = match.group(1)
        return crypto_key, AESGCM(hmac.new(self._secret, crypto_key.encode(), hashlib.sha256).digest())

    def _check(self, request: Any, field: str, context: grpc.ServicerContext) -> bool:
        """Verify ``<field>_crc32c`` when the client sent it; report whether it was verified."""
        if f"{field}_crc32c" not in request:
            return False
        if getattr(request, f"{field}_crc32c") != _crc(getattr(request, field)):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"checksum in field {field}_crc32c did not match")
        return True

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls.append(method)
        if self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "fake KMS is unavailable")

    def _encrypt(
        self, request: kms_v1.EncryptRequest, context: grpc.ServicerContext
    ) -> kms_v1.EncryptResponse:
        self._enter("Encrypt", context)
        crypto_key, key = self._key_for(request.name, context, allow_version=True)
        verified_plaintext = self._check(request, "plaintext", context)
        verified_aad = self._check(request, "additional_authenticated_data", context)
        nonce = os.urandom(12)
        ciphertext = nonce + key.encrypt(nonce, request.plaintext, request.additional_authenticated_data)
        crc = _crc(ciphertext) ^ (1 if self.corrupt_checksums else 0)
        return kms_v1.EncryptResponse(
            name=f"{crypto_key}/cryptoKeyVersions/1",
            ciphertext=ciphertext,
            ciphertext_crc32c=crc,
            verified_plaintext_crc32c=verified_plaintext,
            verified_additional_authenticated_data_crc32c=verified_aad,
        )

    def _decrypt(
        self, request: kms_v1.DecryptRequest, context: grpc.ServicerContext
    ) -> kms_v1.DecryptResponse:
        self._enter("Decrypt", context)
        _, key = self._key_for(request.name, context, allow_version=False)
        self._check(request, "ciphertext", context)
        self._check(request, "additional_authenticated_data", context)
        nonce, sealed = request.ciphertext[:12], request.ciphertext[12:]
        try:
            plaintext = key.decrypt(nonce, sealed, request.additional_authenticated_data)
        except (InvalidTag, ValueError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Decryption failed: the ciphertext is invalid.")
        crc = _crc(plaintext) ^ (1 if self.corrupt_checksums else 0)
        return kms_v1.DecryptResponse(plaintext=plaintext, plaintext_crc32c=crc, used_primary=True)
