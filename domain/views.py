"""Plain records the read side hands out: what a user sees of a token, never its secret."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.token import TokenState


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    regenerated_at: datetime | None
    revoked_at: datetime | None
    revoke_reason: str | None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    last_used_agent: str | None = None
    use_count: int = 0
    scopes_exercised: list[str] = field(default_factory=list)

    def state(self, now: datetime) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return TokenState.EXPIRED
        return TokenState.ACTIVE

    @property
    def issued_at(self) -> datetime:
        """When the current value was issued: the last regeneration, or the creation."""
        return self.regenerated_at or self.created_at


@dataclass(frozen=True, slots=True)
class Credential:
    """What verification needs to know about a lookup id. The hash stays inside the process."""

    token_id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    expires_at: datetime | None
    revoked: bool
    secret_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    position: int
    at: datetime
    event_type: str
    token_id: uuid.UUID | None
    owner: str | None
    actor: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    username: str
    role: str
    created_at: datetime
