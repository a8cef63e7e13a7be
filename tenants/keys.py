"""Key material: generation, format checks and hashing. No database access here."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
TENANT_KEY_RANDOM_LENGTH = 32
ADMIN_KEY_RANDOM_LENGTH = 40
_TENANT_KEY = re.compile(r"^sk_(?P<tenant_id>[a-z][a-z0-9_]{2,49})_(?P<secret>[A-Za-z0-9]{32})$")
_ADMIN_KEY = re.compile(r"^ak_[A-Za-z0-9]{40}$")


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def hash_key(raw: str) -> str:
    """SHA-256 hex digest. Keys carry ~190 bits of entropy, so a fast hash is the right tool
    (a password hasher would cost ~10^5 times more per request for no gain)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_tenant_key(tenant_id: str) -> str:
    """``sk_{tenant_id}_{32 base62}``."""
    return f"sk_{tenant_id}_{_random(TENANT_KEY_RANDOM_LENGTH)}"


def tenant_id_from_key(raw: str) -> str | None:
    """The tenant id embedded in a well-formed tenant key, or None if the key is malformed.
    The embedded id is only a routing hint: authentication is the hash lookup."""
    match = _TENANT_KEY.fullmatch(raw)
    return match.group("tenant_id") if match else None


def tenant_key_display_prefix(raw: str) -> str:
    """What staff and tenants see: the tenant part plus four characters of the secret."""
    return raw[: -(TENANT_KEY_RANDOM_LENGTH - 4)]


def generate_admin_key() -> str:
    return f"ak_{_random(ADMIN_KEY_RANDOM_LENGTH)}"


def is_admin_key_format(raw: str) -> bool:
    return bool(_ADMIN_KEY.fullmatch(raw))


def digests_equal(left: str, right: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(left.encode(), right.encode())
