"""The ledger: one application service over the event store, one method per use case.

Every command loads the aggregates it touches, calls the domain, saves them in one atomic
`save(...)`, then waits until the read models include the new events before it returns
(read your writes), so its response never runs ahead of what verification and lists see.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from application.ports import ReadModels, ReadModelSync
from application.usage import Batch, UsageRecorder
from application.verification import Verification, Verifier
from domain import token_format
from domain.account import Account, Role, check_password, normalise_username
from domain.errors import (
    AccountNotFound,
    AuthenticationFailed,
    Conflict,
    InvalidUsername,
    NameTaken,
    PermissionDenied,
    TokenNotFound,
    UsernameTaken,
    ValidationError,
)
from domain.expiry import expires_at as compute_expiry
from domain.expiry import validate_days
from domain.ports import Clock, SecretHasher
from domain.scopes import Scope, Scopes
from domain.token import RevokeReason, Token, TokenName, TokenNameClaim, TokenState
from domain.usage import Use
from domain.views import AccountRecord, HistoryEntry, TokenRecord

log = logging.getLogger("tokenledger.ledger")

T = TypeVar("T")
COMMAND_ATTEMPTS = 5
READ_YOUR_WRITES_ATTEMPTS = 3
# Reads of a path that does not depend on the secret take as long as a real check.
_DUMMY_SECRET = "not-a-real-password"

_keep = object()  # "keep the current expiry duration" on regenerate


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: an account, possibly acting through one of its tokens."""

    username: str
    role: Role
    via_token: uuid.UUID | None = None
    scopes: Scopes | None = None

    @property
    def is_admin(self) -> bool:
        """An admin account; through a token, only if the token also grants admin:org (a
        member's token with admin:org gives no more than the member has)."""
        if self.role is not Role.ADMIN:
            return False
        return self.via_token is None or (self.scopes is not None and self.scopes.allows(Scope.ADMIN_ORG))

    @property
    def label(self) -> str:
        return self.username if self.via_token is None else f"{self.username} (token {self.via_token})"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token record with its value: the only place a value ever leaves the ledger."""

    record: TokenRecord
    value: str

    def __repr__(self) -> str:
        return f"IssuedToken(record={self.record!r}, value=<hidden>)"


class Ledger(Application[uuid.UUID]):
    name = "tokenledger"
    is_snapshotting_enabled = True
    snapshotting_intervals = {Token: 100}

    def __init__(
        self,
        env: dict[str, str],
        *,
        clock: Clock,
        hasher: SecretHasher,
        read_models: ReadModels,
        sync: ReadModelSync,
        usage_window_seconds: float = 60.0,
        failure_limit: int = 10,
        failure_window_seconds: float = 60.0,
    ) -> None:
        super().__init__(env)
        self.clock = clock
        self.hasher = hasher
        self.read = read_models
        self.sync = sync
        self.verifier = Verifier(
            read_models, hasher, failure_limit=failure_limit, failure_window_seconds=failure_window_seconds
        )
        self.usage = UsageRecorder(self._write_usage, usage_window_seconds)
        self._dummy_hash = hasher.hash(_DUMMY_SECRET)

    # Accounts ----------------------------------------------------------------------------

    def register_account(self, username: str, role: Role | str, password: str) -> AccountRecord:
        username = normalise_username(username)
        role = role if isinstance(role, Role) else Role.parse(role)
        account = Account.register(
            username=username,
            role=role,
            password_hash=self.hasher.hash(check_password(password)),
            now=self.clock.now(),
        )
        try:
            self._save(account)
        except IntegrityError:
            raise UsernameTaken(username) from None
        return AccountRecord(username=username, role=role.value, created_at=account.created_on)

    def change_password(self, username: str, password: str, actor: Actor) -> None:
        account = self._account(username)
        if actor.username != account.username and not actor.is_admin:
            raise PermissionDenied("only an admin may change another account's password")
        password_hash = self.hasher.hash(check_password(password))

        def change() -> list[Any]:
            current = self._account(account.username)
            current.change_password(password_hash=password_hash, actor=actor.label, now=self.clock.now())
            return [current]

        self._command(change)

    def change_role(self, username: str, role: Role | str, actor: Actor) -> None:
        if not actor.is_admin:
            raise PermissionDenied("only an admin may change roles")
        role = role if isinstance(role, Role) else Role.parse(role)

        def change() -> list[Any]:
            account = self._account(username)
            account.change_role(role=role, actor=actor.label, now=self.clock.now())
            return [account]

        self._command(change)

    def authenticate(self, username: str, password: str) -> Actor:
        """Check a password. Unknown names cost the same argon2 time as wrong passwords."""
        try:
            account = self._account(username)
        except (AccountNotFound, ValidationError):
            self.hasher.verify(self._dummy_hash, password)
            raise AuthenticationFailed("wrong username or password") from None
        if not self.hasher.verify(account.password_hash, password):
            raise AuthenticationFailed("wrong username or password")
        if self.hasher.needs_rehash(account.password_hash):
            self._rehash_password(account.username, password)
        return Actor(username=account.username, role=account.role)

    def _rehash_password(self, username: str, password: str) -> None:
        password_hash = self.hasher.hash(password)

        def rehash() -> list[Any]:
            account = self._account(username)
            account.change_password(password_hash=password_hash, actor="system:rehash", now=self.clock.now())
            return [account]

        try:
            self._command(rehash)
        except Conflict:
            log.warning("password rehash skipped after concurrent changes")

    def account(self, username: str) -> AccountRecord:
        account = self._account(username)
        return AccountRecord(
            username=account.username, role=account.role.value, created_at=account.created_on
        )

    def session_account(self, username: str) -> Account:
        """The account behind a web session, with its password hash to check the session against."""
        return self._account(username)

    def accounts(self) -> Sequence[AccountRecord]:
        return self.read.accounts()

    def has_accounts(self) -> bool:
        return self.read.count_accounts() > 0

    def _account(self, username: str) -> Account:
        name = normalise_username(username)
        try:
            return self.repository.get(Account.id_for(name))
        except AggregateNotFoundError:
            raise AccountNotFound(name) from None

    # Token commands ----------------------------------------------------------------------

    def create_token(
        self,
        actor: Actor,
        *,
        name: str,
        scopes: Sequence[str] | str,
        expires_in_days: int | None,
        owner: str | None = None,
    ) -> IssuedToken:
        owner = self._owner_for(actor, owner)
        token_name = TokenName.parse(name)
        token_scopes = Scopes.parse(scopes)
        validate_days(expires_in_days)
        value = token_format.generate()
        secret_hash = self.hasher.hash(value.secret)

        def create() -> list[Any]:
            now = self.clock.now()
            token = Token.create(
                owner=owner,
                name=token_name,
                scopes=token_scopes,
                expires_at=compute_expiry(now, expires_in_days),
                lookup_id=value.lookup_id,
                secret_hash=secret_hash,
                actor=actor.label,
                now=now,
            )
            return [token, self._claim_name(owner, token_name, token.id, now)]

        token, _claim = self._command(create, conflict=lambda: NameTaken(token_name.text))
        return IssuedToken(record=self._saved_record(token.id), value=value.value)

    def _claim_name(self, owner: str, name: TokenName, token_id: uuid.UUID, now: datetime) -> TokenNameClaim:
        try:
            claim: TokenNameClaim = self.repository.get(TokenNameClaim.id_for(owner, name))
        except AggregateNotFoundError:
            return TokenNameClaim.claim_new(owner, name, token_id, now)
        holder_active = (
            claim.token_id is not None and self._token(claim.token_id).state(now) is TokenState.ACTIVE
        )
        claim.claim(name, token_id, holder_is_active=holder_active, now=now)
        return claim

    def regenerate_token(
        self, actor: Actor, token_id: uuid.UUID, *, expires_in_days: int | object | None = _keep
    ) -> IssuedToken:
        record = self.token(actor, token_id)
        if expires_in_days is not _keep:
            validate_days(expires_in_days)  # type: ignore[arg-type]
        value = token_format.generate()
        secret_hash = self.hasher.hash(value.secret)

        def regenerate() -> list[Any]:
            now = self.clock.now()
            token = self._token(record.id)
            days = _remaining_policy(token, record) if expires_in_days is _keep else expires_in_days
            touched: list[Any] = [token]
            if token.state(now) is TokenState.EXPIRED:
                # An expired token gave up its name; it may only come back if nobody took it.
                name = TokenName(token.name)
                claim = self._claim_name(token.owner, name, token.id, now)
                touched.append(claim)
            token.regenerate(
                lookup_id=value.lookup_id,
                secret_hash=secret_hash,
                expires_at=compute_expiry(now, days),  # type: ignore[arg-type]
                actor=actor.label,
                now=now,
            )
            return touched

        self._command(regenerate)
        return IssuedToken(record=self._saved_record(record.id), value=value.value)

    def revoke_token(
        self,
        actor: Actor,
        token_id: uuid.UUID,
        *,
        reason: RevokeReason | None = None,
        source: str = "api",
    ) -> bool:
        """Revoke one token; True if this call revoked it, False if it already was."""
        record = self.token(actor, token_id)
        if reason is None:
            reason = RevokeReason.USER if record.owner == actor.username else RevokeReason.ADMIN
        return self._revoke_ids([record.id], reason=reason, actor=actor.label, source=source) == 1

    def revoke_all(
        self,
        actor: Actor,
        *,
        owner: str | None = None,
        issued_before: datetime | None = None,
        all_owners: bool = False,
        source: str = "api",
    ) -> int:
        """Revoke every token not yet revoked of an owner (or of everybody), optionally only those
        whose value was issued before an instant. Expired tokens are included: once revoked they
        can no longer be regenerated."""
        if all_owners:
            if not actor.is_admin:
                raise PermissionDenied("only an admin may revoke the tokens of every owner")
            scope_owner = None
        else:
            scope_owner = self._owner_for(actor, owner)
        now = self.clock.now()
        ids = [
            r.id
            for r in self.read.tokens(scope_owner)
            if r.revoked_at is None and (issued_before is None or r.issued_at < issued_before)
        ]
        return self._revoke_ids(ids, reason=RevokeReason.BULK, actor=actor.label, source=source, now=now)

    def revoke_by_value(self, value: str, *, reporter: str, source: str = "revoke-endpoint") -> bool:
        """RFC 7009 leak intake: whoever holds a value may revoke it. True if it was active."""
        # The verifier's path: no argon2 for malformed, unknown or revoked values, and the
        # failed-attempts limit, so this open endpoint cannot be used to burn CPU either.
        verification = self.verifier.verify(value, self.clock.now())
        if not verification.ok or verification.token is None:
            return False
        token_id = verification.token.token_id
        return self._revoke_ids([token_id], reason=RevokeReason.LEAKED, actor=reporter, source=source) == 1

    def revoke_self(self, verified: Verification, *, source: str = "api") -> bool:
        token = _require(verified)
        return (
            self._revoke_ids(
                [token.token_id], reason=RevokeReason.SELF, actor=_self_actor(verified), source=source
            )
            == 1
        )

    def rotate_self(self, verified: Verification) -> IssuedToken:
        token = _require(verified)
        actor = Actor(username=token.owner, role=Role.MEMBER, via_token=token.token_id, scopes=token.scopes)
        return self.regenerate_token(actor, token.token_id)

    def _revoke_ids(
        self,
        ids: Sequence[uuid.UUID],
        *,
        reason: RevokeReason,
        actor: str,
        source: str,
        now: datetime | None = None,
    ) -> int:
        if not ids:
            return 0
        revoked = 0

        def revoke() -> list[Any]:
            nonlocal revoked
            revoked = 0
            at = now or self.clock.now()
            touched: list[Any] = []
            for token_id in ids:
                token = self._token(token_id)
                if token.revoke(reason=reason, actor=actor, source=source, now=at):
                    revoked += 1
                    touched.append(token)
                    claim = self._existing_claim(token)
                    if claim is not None:
                        claim.release(token.id, at)
                        touched.append(claim)
            return touched

        self._command(revoke)
        return revoked

    def _existing_claim(self, token: Token) -> TokenNameClaim | None:
        try:
            return self.repository.get(TokenNameClaim.id_for(token.owner, TokenName(token.name)))
        except AggregateNotFoundError:
            return None

    # Verification and use ----------------------------------------------------------------

    def verify(self, value: str) -> Verification:
        return self.verifier.verify(value, self.clock.now())

    def record_use(
        self,
        verification: Verification,
        *,
        scope: str | None = None,
        address: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        token = _require(verification)
        use = Use(at=self.clock.now(), scope=scope, address=address, user_agent=user_agent)
        self.usage.record(token.token_id, use, verification.rehashed, token.lookup_id)

    def _write_usage(self, batch: Batch) -> int:
        """One transaction for the whole batch; returns the number of `Used` events written."""
        written = 0

        def write() -> list[Any]:
            nonlocal written
            written = 0
            now = self.clock.now()
            touched: dict[uuid.UUID, Token] = {}
            for pending in batch:
                token = touched.get(pending.token_id)
                if token is None:
                    try:
                        token = self._token(pending.token_id)
                    except TokenNotFound:
                        continue
                # A rehash belongs to the value that was verified; after a regeneration it
                # would put the old secret back, so it is dropped.
                rehash = pending.rehashed if pending.rehash_lookup_id == token.lookup_id else None
                if token.record_use(pending.window.summary(), now=now, secret_hash=rehash):
                    touched[token.id] = token
                    written += 1
            return list(touched.values())

        self._command(write, wait_for_read_models=False)
        try:
            self.sync.wait_for(self.recorder.max_notification_id() or 0)
        except Exception:
            # The events are committed: retrying them would write them twice. The read models
            # catch up on the next command or background pass.
            log.exception("read models did not catch up after writing usage")
        return written

    # Queries (read models only) ----------------------------------------------------------

    def token(self, actor: Actor, token_id: uuid.UUID) -> TokenRecord:
        """One token; someone else's token is 'not found' (never 'forbidden') unless actor is admin."""
        record = self.read.token(token_id)
        if record is None or (record.owner != actor.username and not actor.is_admin):
            raise TokenNotFound(token_id)
        return record

    def tokens(self, actor: Actor, *, owner: str | None = None, state: str = "active") -> list[TokenRecord]:
        wanted = _parse_state(state)
        if owner == "*" and not actor.is_admin:
            raise PermissionDenied("only an admin may list every owner's tokens")
        scope_owner = None if owner == "*" else self._owner_for(actor, owner)
        now = self.clock.now()
        return [r for r in self.read.tokens(scope_owner) if wanted is None or r.state(now) is wanted]

    def history(self, actor: Actor, token_id: uuid.UUID) -> Sequence[HistoryEntry]:
        record = self.token(actor, token_id)
        return self.read.history(record.id)

    # Helpers -----------------------------------------------------------------------------

    def _owner_for(self, actor: Actor, owner: str | None) -> str:
        if owner is None:
            return actor.username
        try:
            wanted = normalise_username(owner)
        except InvalidUsername as error:
            raise InvalidUsername("owner", error.detail) from None  # the field the caller named
        if wanted == actor.username:
            return actor.username
        if not actor.is_admin:
            raise PermissionDenied("only an admin may act on another owner's tokens")
        return self._account(owner).username

    def _token(self, token_id: uuid.UUID) -> Token:
        try:
            return self.repository.get(token_id)
        except AggregateNotFoundError:
            raise TokenNotFound(token_id) from None

    def _saved_record(self, token_id: uuid.UUID) -> TokenRecord:
        record = self.read.token(token_id)
        if record is None:  # read-your-writes makes this unreachable; say so loudly if not
            raise RuntimeError(f"read model lacks token {token_id} after its command returned")
        return record

    def _save(self, *aggregates: Any, wait_for_read_models: bool = True) -> None:
        recordings = self.save(*aggregates)
        if recordings and wait_for_read_models:
            position = recordings[-1].notification.id
            # The change is stored: from here on, failing the command would report as lost a
            # change that was made (and, for a create, lose the only copy of the value). A busy
            # read-model store gets more tries before the error is let through.
            for attempt in range(1, READ_YOUR_WRITES_ATTEMPTS + 1):
                try:
                    self.sync.wait_for(position)
                    break
                except Exception:
                    if attempt == READ_YOUR_WRITES_ATTEMPTS:
                        raise
                    log.warning("read models not caught up to %s (attempt %s); retrying", position, attempt)

    def _command(
        self,
        build: Callable[[], list[T]],
        conflict: Callable[[], Exception] | None = None,
        *,
        wait_for_read_models: bool = True,
    ) -> list[T]:
        """Run `build` and save what it touched; on a concurrent write, reload and try again."""
        for _ in range(COMMAND_ATTEMPTS):
            touched = build()
            try:
                self._save(*touched, wait_for_read_models=wait_for_read_models)
            except IntegrityError:
                continue
            return touched
        raise (conflict() if conflict else Conflict("the token changed concurrently; try again"))

    @contextmanager
    def running(self) -> Iterator[Ledger]:
        """Background usage writing for as long as the block runs; flushed on the way out."""
        self.usage.start()
        try:
            yield self
        finally:
            self.usage.stop()


def _parse_state(state: str) -> TokenState | None:
    if state == "all":
        return None
    try:
        return TokenState(state)
    except ValueError:
        raise ValidationError("state", "state must be active, expired, revoked or all") from None


def _remaining_policy(token: Token, record: TokenRecord) -> int | None:
    """Regenerating keeps the token's lifetime: a 30-day token gets 30 new days."""
    if token.expires_at is None:
        return None
    issued = record.issued_at
    days = round((token.expires_at - issued).total_seconds() / 86400)
    return min((30, 60, 90), key=lambda allowed: abs(allowed - days))


def _require(verification: Verification) -> Any:
    if not verification.ok or verification.token is None:
        raise AuthenticationFailed("token is not valid")
    return verification.token


def _self_actor(verification: Verification) -> str:
    token = _require(verification)
    return f"{token.owner} (token {token.token_id})"
