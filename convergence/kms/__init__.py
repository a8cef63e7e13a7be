"""KMS adapter, selected by ``KMS_BACKEND``. Nothing outside this package imports google.cloud.kms."""

from __future__ import annotations

import functools

from convergence.kms.base import DecryptionError, EncryptionContext, Kms, KmsError

__all__ = ["DecryptionError", "EncryptionContext", "Kms", "KmsError", "get_kms"]


@functools.cache
def get_kms() -> Kms:
    """The process-wide KMS configured by settings (built on first use)."""
    from django.conf import settings

    if settings.KMS_BACKEND == "gcp":
        from convergence.kms.gcp import GcpKms

        return GcpKms(key_name=settings.GCP_KMS_KEY_NAME, endpoint=settings.GCP_KMS_ENDPOINT)
    from convergence.kms.local import LocalKms

    return LocalKms.from_settings()
