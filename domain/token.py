"""The Token aggregate and the index that keeps token names unique per owner."""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from eventsourcing.domain import Aggregate

from domain.errors import InvalidName, NameTaken, TokenRevoked
from domain.scopes import Scopes
from domain.usage import UsageSummary

NAME_MAX_LENGTH = 100
NAMESPACE = uuid.UUID("6f1c2b52-5d0e-4c53-9b8e-0d7f2f8e6a11")


class TokenState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class RevokeReason(StrEnum):
    USER = "user"
    ADMIN = "admin"
    LEAKED = "leaked"
    BULK = "bulk"
    SELF = "self"


@dataclass(frozen=True, slots=True)
class TokenName:
    """A descriptive name: 1-100 printable characters, compared without regard to case."""

    text: str

    @classmethod
    def parse(cls, text: object) -> TokenName:
        if not isinstance(text, str):
            raise InvalidName("name", "name must be a string")
        # NFC: "Café" typed with a combining accent is the same name as with a precomposed é.
        text = unicodedata.normalize("NFC", text.strip())
        if not text:
            raise InvalidName("name", "name must not be empty")
        if len(text) > NAME_MAX_LENGTH:
            raise InvalidName("name", f"name must be at most {NAME_MAX_LENGTH} characters")
        if not text.isprintable():
            raise InvalidName("name", "name must contain printable characters only")
        return cls(text)

    @property
    def key(self) -> str:
        return self.text.casefold()


class Token(Aggregate):
    """A personal access token. Its value is never stored: only the argon2id hash of its secret."""

    class Created(Aggregate.Created):
        owner: str
        name: str
        scopes: list[str]
        expires_at: datetime | None
        lookup_id: str
        secret_hash: str
        actor: str

    def __init__(
        self,
        owner: str,
        name: str,
        scopes: list[str],
        expires_at: datetime | None,
        lookup_id: str,
        secret_hash: str,
        actor: str,
    ) -> None:
        self.owner = owner
        self.name = name
        self.scopes = list(scopes)
        self.expires_at = expires_at
        self.lookup_id = lookup_id
        self.secret_hash = secret_hash
        self.regenerated_at: datetime | None = None
        self.revoked_at: datetime | None = None
        self.revoke_reason: str | None = None
        self.last_used_at: datetime | None = None
        self.use_count = 0

    @classmethod
    def create(
        cls,
        *,
        owner: str,
        name: TokenName,
        scopes: Scopes,
        expires_at: datetime | None,
        lookup_id: str,
        secret_hash: str,
        actor: str,
        now: datetime,
    ) -> Token:
        return cls._create(
            cls.Created,
            timestamp=now,
            owner=owner,
            name=name.text,
            scopes=scopes.as_list(),
            expires_at=expires_at,
            lookup_id=lookup_id,
            secret_hash=secret_hash,
            actor=actor,
        )

    def state(self, now: datetime) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return TokenState.EXPIRED
        return TokenState.ACTIVE

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    # Regenerate --------------------------------------------------------------------------

    class Regenerated(Aggregate.Event):
        lookup_id: str
        secret_hash: str
        expires_at: datetime | None
        actor: str

        def apply(self, token: Token) -> None:
            token.lookup_id = self.lookup_id
            token.secret_hash = self.secret_hash
            token.expires_at = self.expires_at
            token.regenerated_at = self.timestamp

    def regenerate(
        self, *, lookup_id: str, secret_hash: str, expires_at: datetime | None, actor: str, now: datetime
    ) -> None:
        """A new value, same name and scopes. An expired token may be regenerated; a revoked one not."""
        if self.is_revoked:
            raise TokenRevoked(self.id)
        self.trigger_event(
            self.Regenerated,
            timestamp=now,
            lookup_id=lookup_id,
            secret_hash=secret_hash,
            expires_at=expires_at,
            actor=actor,
        )

    # Revoke ------------------------------------------------------------------------------

    class Revoked(Aggregate.Event):
        reason: str
        actor: str
        source: str

        def apply(self, token: Token) -> None:
            token.revoked_at = self.timestamp
            token.revoke_reason = self.reason

    def revoke(self, *, reason: RevokeReason, actor: str, source: str, now: datetime) -> bool:
        """Revoke once; revoking again changes nothing and returns False."""
        if self.is_revoked:
            return False
        self.trigger_event(self.Revoked, timestamp=now, reason=reason.value, actor=actor, source=source)
        return True

    # Use ---------------------------------------------------------------------------------

    class Used(Aggregate.Event):
        first_used_at: datetime
        last_used_at: datetime
        count: int
        scopes: list[str]
        addresses: list[str]
        user_agents: list[str]
        # Set when the hasher's parameters changed and the secret was hashed again on use.
        # Added with a default, so events stored before it still load (see docs/events.md).
        secret_hash: str | None = None

        def apply(self, token: Token) -> None:
            token.last_used_at = self.last_used_at
            token.use_count += self.count
            if self.secret_hash is not None:
                token.secret_hash = self.secret_hash

    def record_use(self, summary: UsageSummary, *, now: datetime, secret_hash: str | None = None) -> bool:
        """Record one usage window. Uses made after revocation are refused (returns False)."""
        if self.revoked_at is not None and summary.first_used_at > self.revoked_at:
            return False
        self.trigger_event(
            self.Used,
            timestamp=now,
            first_used_at=summary.first_used_at,
            last_used_at=summary.last_used_at,
            count=summary.count,
            scopes=sorted(summary.scopes),
            addresses=list(summary.addresses),
            user_agents=list(summary.user_agents),
            secret_hash=secret_hash,
        )
        return True


class TokenNameClaim(Aggregate):
    """Holds one owner's token name for at most one active token at a time.

    Its id is derived from owner and name, so two concurrent creates of one name write the
    same aggregate version and the event store lets only one of them through.
    """

    class Created(Aggregate.Created):
        owner: str
        name_key: str
        token_id: uuid.UUID

    def __init__(self, owner: str, name_key: str, token_id: uuid.UUID) -> None:
        self.owner = owner
        self.name_key = name_key
        self.token_id: uuid.UUID | None = token_id

    @staticmethod
    def id_for(owner: str, name: TokenName) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"token-name\n{owner}\n{name.key}")

    @classmethod
    def claim_new(cls, owner: str, name: TokenName, token_id: uuid.UUID, now: datetime) -> TokenNameClaim:
        return cls._create(
            cls.Created,
            id=cls.id_for(owner, name),
            timestamp=now,
            owner=owner,
            name_key=name.key,
            token_id=token_id,
        )

    class Claimed(Aggregate.Event):
        token_id: uuid.UUID

        def apply(self, claim: TokenNameClaim) -> None:
            claim.token_id = self.token_id

    class Released(Aggregate.Event):
        token_id: uuid.UUID

        def apply(self, claim: TokenNameClaim) -> None:
            claim.token_id = None

    def claim(self, name: TokenName, token_id: uuid.UUID, *, holder_is_active: bool, now: datetime) -> None:
        if self.token_id is not None and holder_is_active:
            raise NameTaken(name.text)
        self.trigger_event(self.Claimed, timestamp=now, token_id=token_id)

    def release(self, token_id: uuid.UUID, now: datetime) -> None:
        if self.token_id == token_id:
            self.trigger_event(self.Released, timestamp=now, token_id=token_id)
