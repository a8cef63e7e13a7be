"""Who is acting: recorded on audit entries (and later on runs)."""

from __future__ import annotations

from dataclasses import dataclass

from tenants.models import ActorType


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    user_id: str = ""
    request_id: str = ""

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(type=ActorType.SYSTEM, id=name)

    @classmethod
    def staff(cls, username: str) -> Actor:
        return cls(type=ActorType.STAFF, id=username, user_id=username)
