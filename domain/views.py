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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event as the audit log shows it: never a hash or a secret."""

    position: int
    at: datetime
    event_type: str
    aggregate: str  # "token" or "account"
    subject_id: uuid.UUID
    token_name: str | None
    owner: str | None
    actor: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenAsOf:
    """A token as it stood at an instant, rebuilt from its events up to that instant."""

    id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    state: str
    created_at: datetime
    expires_at: datetime | None
    regenerated_at: datetime | None
    revoked_at: datetime | None
    revoke_reason: str | None
    last_used_at: datetime | None
    use_count: int


@dataclass(frozen=True, slots=True)
class ExposureUse:
    first_used_at: datetime
    last_used_at: datetime
    count: int
    scopes: list[str]
    addresses: list[str]
    user_agents: list[str]


@dataclass(frozen=True, slots=True)
class Exposure:
    """A token that could exercise a scope during a window, and what it did in it."""

    id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    active_from: datetime
    active_until: datetime | None
    uses: list[ExposureUse]

    @property
    def exercised(self) -> bool:
        return bool(self.uses)


@dataclass(frozen=True, slots=True)
class ClientUse:
    address: str
    first_seen: datetime
    last_seen: datetime
    windows: int


@dataclass(frozen=True, slots=True)
class ScopeUse:
    scope: str
    first_exercised: datetime
    last_exercised: datetime


@dataclass(frozen=True, slots=True)
class AuditFilter:
    owner: str | None = None
    token_id: uuid.UUID | None = None
    event_types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
