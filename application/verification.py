"""Token verification, the hot path.

Order of checks, cheapest first: shape and checksum (no I/O), the lookup id in the read model
(one indexed read, which is also what makes revocation strict across processes), then a
process-local cache of values already verified, and only then argon2, guarded by a limit on
failed attempts per lookup id so guessing cannot make the server burn CPU.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from application.ports import ReadModels
from domain import token_format
from domain.ports import SecretHasher
from domain.scopes import Scope, Scopes
from domain.views import Credential


class Outcome(StrEnum):
    VALID = "valid"
    MALFORMED = "malformed"
    BAD_CHECKSUM = "bad_checksum"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    WRONG_SECRET = "wrong_secret"
    THROTTLED = "throttled"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    token_id: uuid.UUID
    lookup_id: str
    owner: str
    name: str
    scopes: Scopes
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Verification:
    outcome: Outcome
    token: VerifiedToken | None = None
    # A fresh hash when the hasher's parameters changed: the caller records it with the use.
    rehashed: str | None = None
    used_argon2: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.VALID

    def allows(self, scope: Scope | None) -> bool:
        return self.token is not None and (scope is None or self.token.scopes.allows(scope))


class Limiter(Protocol):
    """Counts events (failed sign-ins, leak reports) per key over a sliding window."""

    def is_blocked(self, key: str, now: float) -> bool: ...

    def record(self, key: str, now: float) -> None: ...


class SlidingWindowLimiter:
    """At most `limit` events per key in any `window` seconds (failed checks, reports, logins)."""

    def __init__(self, limit: int, window_seconds: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def is_blocked(self, key: str, now: float) -> bool:
        with self._lock:
            return len(self._recent(key, now)) >= self.limit

    def record(self, key: str, now: float) -> None:
        with self._lock:
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)


class VerifiedCache:
    """Digests of values that verified, each with the hash it verified against.

    An entry is used only while the read model still holds that same hash for the token, so
    regeneration (new hash) and revocation (row marked revoked) need no invalidation message
    between processes. Keys are keyed BLAKE2 digests: the values themselves are not kept.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, value: str) -> bytes:
        return hashlib.blake2b(value.encode(), key=self._key, digest_size=20).digest()

    def matches(self, digest: bytes, secret_hash: str) -> bool:
        return self._entries.get(digest) == secret_hash

    def remember(self, digest: bytes, secret_hash: str) -> None:
        with self._lock:
            self._entries[digest] = secret_hash
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class Verifier:
    def __init__(
        self,
        read_models: ReadModels,
        hasher: SecretHasher,
        *,
        failure_limit: int = 10,
        failure_window_seconds: float = 60.0,
        cache_entries: int = 100_000,
    ) -> None:
        self.read_models = read_models
        self.hasher = hasher
        self.cache = VerifiedCache(cache_entries)
        self.limiter = SlidingWindowLimiter(failure_limit, failure_window_seconds)

    def verify(self, value: str, now: datetime) -> Verification:
        parsed = token_format.parse(value)
        if parsed is None:
            if token_format.has_token_shape(value):
                return Verification(Outcome.BAD_CHECKSUM)
            return Verification(Outcome.MALFORMED)
        credential = self.read_models.credential(parsed.lookup_id)
        if credential is None:
            return Verification(Outcome.UNKNOWN)
        if credential.revoked:
            return Verification(Outcome.REVOKED)
        if credential.expires_at is not None and credential.expires_at <= now:
            return Verification(Outcome.EXPIRED)
        digest = self.cache.digest(value)
        if self.cache.matches(digest, credential.secret_hash):
            return Verification(Outcome.VALID, _verified(credential, parsed.lookup_id))
        return self._verify_with_argon2(parsed, credential, digest, now)

    def _verify_with_argon2(
        self, parsed: token_format.TokenValue, credential: Credential, digest: bytes, now: datetime
    ) -> Verification:
        instant = now.timestamp()
        if self.limiter.is_blocked(parsed.lookup_id, instant):
            return Verification(Outcome.THROTTLED)
        if not self.hasher.verify(credential.secret_hash, parsed.secret):
            self.limiter.record(parsed.lookup_id, instant)
            return Verification(Outcome.WRONG_SECRET, used_argon2=True)
        rehashed = None
        if self.hasher.needs_rehash(credential.secret_hash):
            rehashed = self.hasher.hash(parsed.secret)
        # Remember the hash this value verified against: once the rehash is recorded the read
        # model holds the new one, and the next use verifies (and is cached) against that.
        self.cache.remember(digest, credential.secret_hash)
        return Verification(
            Outcome.VALID, _verified(credential, parsed.lookup_id), rehashed=rehashed, used_argon2=True
        )


def _verified(credential: Credential, lookup_id: str) -> VerifiedToken:
    return VerifiedToken(
        token_id=credential.token_id,
        lookup_id=lookup_id,
        owner=credential.owner,
        name=credential.name,
        scopes=Scopes.parse(credential.scopes),
        expires_at=credential.expires_at,
    )
