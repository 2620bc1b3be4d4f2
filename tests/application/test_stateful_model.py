"""Random sequences of commands against a real store, checked after every step.

A Hypothesis state machine creates, uses, regenerates and revokes tokens (one at a time, in bulk
and by value), rebuilds projections, restarts the service and moves the fake clock. After every
step it checks that

- the read models (lists, single records, history) say exactly what a replay of the events in
  the store says, and that both agree with a plain model of what should have happened;
- regenerated-away and revoked values never verify, current values of active tokens do, and
  current values of expired tokens do not.

It runs on SQLite and on PostgreSQL, each example on an empty store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from application.ledger import Actor, Ledger
from application.verification import Outcome
from domain.account import Role
from domain.errors import NameTaken, TokenRevoked
from domain.scopes import Scope
from domain.token import Token, TokenState
from interface.settings import Settings
from interface.wiring import Service, build
from projections.database import Database
from projections.projectors import token_details
from tests.support import CHEAP_ARGON2, FakeClock, cheap_hasher

OWNERS = ("alice", "bob")
# Names that collide without regard to case ("CI" and "ci"), and some that do not.
NAMES = ("CI", "ci", "Deploy", "Local CLI")
KEEP = "keep"  # regenerate without naming a new lifetime: the token keeps its own
EVENT_NAMES = {
    Token.Created: "Created",
    Token.Used: "Used",
    Token.Regenerated: "Regenerated",
    Token.Revoked: "Revoked",
}
CREATED_TOPIC = get_topic(Token.Created)
STEPS = (
    timedelta(seconds=1),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=29),
    timedelta(days=31),
    timedelta(days=61),
    timedelta(days=91),
)


@dataclass
class ModelToken:
    """What the test expects of one token, kept independently of the service."""

    id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    lifetime_days: int | None
    created_at: datetime
    issued_at: datetime
    expires_at: datetime | None
    value: str
    old_values: list[str] = field(default_factory=list)
    regenerated_at: datetime | None = None
    revoked_at: datetime | None = None
    uses: int = 0
    pending_uses: int = 0

    def state(self, now: datetime) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return TokenState.EXPIRED
        return TokenState.ACTIVE


def empty_store(url: str) -> None:
    """Make the database empty again, for the next example (cheaper than a new database)."""
    database = Database.parse(url)
    if database.is_sqlite:
        for path in (
            database.sqlite_path,
            Path(f"{database.sqlite_path}-wal"),
            Path(f"{database.sqlite_path}-shm"),
        ):
            path.unlink(missing_ok=True)
        return
    with psycopg.connect(database.psycopg_conninfo(), autocommit=True) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(f'public.{t}' for t in tables)} RESTART IDENTITY CASCADE")


class LedgerMachine(RuleBasedStateMachine):
    database_url: ClassVar[str]  # set per backend by the test below

    def __init__(self) -> None:
        super().__init__()
        empty_store(self.database_url)
        self.clock = FakeClock()
        self.settings = Settings(database_url=self.database_url, usage_window_seconds=0, argon2=CHEAP_ARGON2)
        self.service = self._build()
        try:
            for owner in OWNERS:
                self.ledger.register_account(owner, Role.MEMBER, f"{owner}-password")
            self.ledger.register_account("root", Role.ADMIN, "root-password")
        except BaseException:
            self.service.close()
            raise
        self.actors = {owner: Actor(username=owner, role=Role.MEMBER) for owner in OWNERS}
        self.admin = Actor(username="root", role=Role.ADMIN)
        self.model: dict[uuid.UUID, ModelToken] = {}

    def _build(self) -> Service:
        return build(self.settings, clock=self.clock, hasher=cheap_hasher())

    def teardown(self) -> None:
        self.service.close()

    @property
    def ledger(self) -> Ledger:
        return self.service.ledger

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def _tokens(self) -> list[ModelToken]:
        # Insertion order, so that Hypothesis draws the same token when it replays an example.
        return list(self.model.values())

    def _name_held_by_other(self, owner: str, name: str, other_than: uuid.UUID | None = None) -> bool:
        return any(
            t.owner == owner
            and t.name.casefold() == name.casefold()
            and t.id != other_than
            and t.state(self.now) is TokenState.ACTIVE
            for t in self.model.values()
        )

    # Rules -------------------------------------------------------------------------------

    @initialize(
        tokens=st.lists(
            st.tuples(st.sampled_from(OWNERS), st.sampled_from(NAMES), st.sampled_from([30, 60, 90, None])),
            min_size=1,
            max_size=4,
        )
    )
    def some_tokens(self, tokens: list[tuple[str, str, int | None]]) -> None:
        for owner, name, days in tokens:
            self.create(owner, name, ["repo"], days)

    @rule(
        owner=st.sampled_from(OWNERS),
        name=st.sampled_from(NAMES),
        scopes=st.lists(st.sampled_from([s.value for s in Scope]), min_size=1, max_size=3, unique=True),
        days=st.sampled_from([30, 60, 90, None]),
    )
    def create(self, owner: str, name: str, scopes: list[str], days: int | None) -> None:
        actor = self.actors[owner]
        if self._name_held_by_other(owner, name):
            with pytest.raises(NameTaken):
                self.ledger.create_token(actor, name=name, scopes=scopes, expires_in_days=days)
            return
        issued = self.ledger.create_token(actor, name=name, scopes=scopes, expires_in_days=days)
        record = issued.record
        expires_at = None if days is None else self.now + timedelta(days=days)
        assert record.id not in self.model
        assert (record.owner, record.name, sorted(record.scopes)) == (owner, name, sorted(scopes))
        assert record.expires_at == expires_at
        assert record.state(self.now) is TokenState.ACTIVE
        self.model[record.id] = ModelToken(
            id=record.id,
            owner=owner,
            name=name,
            scopes=sorted(scopes),
            lifetime_days=days,
            created_at=self.now,
            issued_at=self.now,
            expires_at=expires_at,
            value=issued.value,
        )

    @precondition(lambda self: self.model)
    @rule(data=st.data(), uses=st.integers(min_value=1, max_value=3), flush=st.booleans())
    def use(self, data: st.DataObject, uses: int, flush: bool) -> None:
        """Verify a token's current value and record the uses; maybe leave them pending."""
        token = data.draw(st.sampled_from(self._tokens()), label="token")
        for _ in range(uses):
            result = self.ledger.verify(token.value)
            if token.state(self.now) is not TokenState.ACTIVE:
                assert not result.ok
                return
            assert result.ok, result.outcome
            assert result.token is not None and result.token.token_id == token.id
            scope = data.draw(st.sampled_from([None, *token.scopes]), label="scope")
            self.ledger.record_use(result, scope=scope, address="203.0.113.7", user_agent="git/2.45")
            token.pending_uses += 1
        if flush:
            self.flush_usage()

    @rule()
    def flush_usage(self) -> None:
        pending = [t for t in self.model.values() if t.pending_uses]
        # With a usage window of 0 every use is its own `Used` event ("0 means one event per use").
        assert self.ledger.usage.flush() == sum(t.pending_uses for t in pending)
        for token in pending:
            # A use made before a revocation is kept even if it is written after it.
            token.uses += token.pending_uses
            token.pending_uses = 0

    @precondition(lambda self: self.model)
    @rule(data=st.data(), days=st.sampled_from([KEEP, 30, 60, 90, None]))
    def regenerate(self, data: st.DataObject, days: int | str | None) -> None:
        token = data.draw(st.sampled_from(self._tokens()), label="token")
        actor = self.actors[token.owner]
        kwargs: dict[str, Any] = {} if days == KEEP else {"expires_in_days": days}
        state = token.state(self.now)
        if state is TokenState.REVOKED:
            with pytest.raises(TokenRevoked):
                self.ledger.regenerate_token(actor, token.id, **kwargs)
            return
        if state is TokenState.EXPIRED and self._name_held_by_other(token.owner, token.name, token.id):
            # An expired token gave up its name, and another active token has taken it.
            with pytest.raises(NameTaken):
                self.ledger.regenerate_token(actor, token.id, **kwargs)
            return
        issued = self.ledger.regenerate_token(actor, token.id, **kwargs)
        lifetime = token.lifetime_days if days == KEEP else days
        assert lifetime is None or isinstance(lifetime, int)
        token.old_values.append(token.value)
        token.value = issued.value
        token.lifetime_days = lifetime
        token.issued_at = token.regenerated_at = self.now
        token.expires_at = None if lifetime is None else self.now + timedelta(days=lifetime)
        assert issued.value not in token.old_values
        assert issued.record.id == token.id
        assert issued.record.expires_at == token.expires_at
        assert issued.record.state(self.now) is TokenState.ACTIVE

    @precondition(lambda self: self.model)
    @rule(data=st.data(), how=st.sampled_from(["id", "value", "old value"]))
    def revoke(self, data: st.DataObject, how: str) -> None:
        token = data.draw(st.sampled_from(self._tokens()), label="token")
        was_revoked = token.revoked_at is not None
        if how == "id":
            changed = self.ledger.revoke_token(self.actors[token.owner], token.id)
        elif how == "value":
            changed = self.ledger.revoke_by_value(token.value, reporter="secret-scanner")
            if token.state(self.now) is TokenState.EXPIRED:
                # An expired value no longer verifies, so it cannot revoke: RFC 7009 answers as
                # for any inactive value, and the owner can still regenerate or revoke by id.
                assert changed is False
                return
        else:
            if not token.old_values:
                return
            old = data.draw(st.sampled_from(token.old_values), label="old value")
            # A regenerated-away value is dead: it cannot revoke the token that replaced it.
            assert self.ledger.revoke_by_value(old, reporter="secret-scanner") is False
            return
        assert changed is (not was_revoked)
        if not was_revoked:
            token.revoked_at = self.now

    @precondition(lambda self: any(t.revoked_at is None for t in self.model.values()))
    @rule(owner=st.sampled_from(OWNERS), only_issued_before_now=st.booleans())
    def revoke_all(self, owner: str, only_issued_before_now: bool) -> None:
        before = self.now if only_issued_before_now else None
        expected = [
            t
            for t in self.model.values()
            if t.owner == owner and t.revoked_at is None and (before is None or t.issued_at < before)
        ]
        count = self.ledger.revoke_all(self.actors[owner], issued_before=before)
        assert count == len(expected)
        for token in expected:
            token.revoked_at = self.now

    @rule(data=st.data())
    def rebuild_projection(self, data: st.DataObject) -> None:
        names = [p.name for p in self.service.projections.projectors]
        self.service.projections.rebuild(data.draw(st.sampled_from(names), label="projection"))

    @rule(step=st.sampled_from(STEPS))
    def advance_clock(self, step: timedelta) -> None:
        self.clock.advance(seconds=step.total_seconds())

    @precondition(
        lambda self: any(t.expires_at and t.expires_at > self.clock.now() for t in self.model.values())
    )
    @rule(data=st.data())
    def advance_clock_to_an_expiry(self, data: st.DataObject) -> None:
        """Land exactly on an expiry instant: a token is expired at its `expires_at`."""
        instants = sorted({t.expires_at for t in self._tokens() if t.expires_at and t.expires_at > self.now})
        self.clock.current = data.draw(st.sampled_from(instants), label="expiry")

    @rule()
    def restart(self) -> None:
        """A graceful restart: pending usage flushed, then a new service (cold caches) on the store."""
        self.flush_usage()
        self.service.close()
        self.service = self._build()

    # Invariants --------------------------------------------------------------------------

    @invariant()
    def read_models_equal_replay_of_the_store(self) -> None:
        ledger = self.ledger
        now = self.now
        positions = self._notification_positions()
        stored_token_ids = {oid for (oid, _), (_, topic) in positions.items() if topic == CREATED_TOPIC}
        assert stored_token_ids == set(self.model), (
            "the store holds tokens the model does not (or lacks some)"
        )

        listed = ledger.tokens(self.admin, owner="*", state="all")
        assert sorted(r.id for r in listed) == sorted(self.model), "the list lacks or repeats a token"
        created = [r.created_at for r in listed]
        assert created == sorted(created, reverse=True), "the list is not newest first"
        by_id = {r.id: r for r in listed}

        for token in self.model.values():
            aggregate: Token = ledger.repository.get(token.id)
            record = ledger.token(self.actors[token.owner], token.id)
            assert record == by_id[token.id], "one record and the list disagree"
            replayed = {
                "owner": aggregate.owner,
                "name": aggregate.name,
                "scopes": sorted(aggregate.scopes),
                "state": aggregate.state(now),
                "created_at": aggregate.created_on,
                "expires_at": aggregate.expires_at,
                "regenerated_at": aggregate.regenerated_at,
                "revoked_at": aggregate.revoked_at,
                "last_used_at": aggregate.last_used_at,
                "use_count": aggregate.use_count,
            }
            projected = {
                "owner": record.owner,
                "name": record.name,
                "scopes": sorted(record.scopes),
                "state": record.state(now),
                "created_at": record.created_at,
                "expires_at": record.expires_at,
                "regenerated_at": record.regenerated_at,
                "revoked_at": record.revoked_at,
                "last_used_at": record.last_used_at,
                "use_count": record.use_count,
            }
            assert projected == replayed, f"read model differs from replay for {token.name!r}"
            assert record.revoke_reason == aggregate.revoke_reason
            expected = {
                "owner": token.owner,
                "name": token.name,
                "scopes": token.scopes,
                "state": token.state(now),
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "regenerated_at": token.regenerated_at,
                "revoked_at": token.revoked_at,
                "use_count": token.uses,
            }
            assert {k: replayed[k] for k in expected} == expected, "the store says otherwise than the model"
            self._check_history(token, positions)

        for owner, actor in self.actors.items():
            mine = {t.id for t in self.model.values() if t.owner == owner}
            assert {r.id for r in ledger.tokens(actor, state="all")} == mine, f"{owner}'s list is wrong"
        for state in TokenState:
            wanted = {t.id for t in self.model.values() if t.state(now) is state}
            assert {r.id for r in ledger.tokens(self.admin, owner="*", state=state.value)} == wanted, state

        head = ledger.recorder.max_notification_id() or 0
        runner = self.service.projections
        assert runner.positions() == {p.name: head for p in runner.projectors}, (
            "a projection is off the log head"
        )

    def _notification_positions(self) -> dict[tuple[uuid.UUID, int], tuple[int, str]]:
        """(aggregate id, version) -> (position in the log, topic), for every stored event."""
        notifications = self.ledger.recorder.select_notifications(
            start=0, limit=1_000_000, inclusive_of_start=False
        )
        return {(n.originator_id, n.originator_version): (n.id, n.topic) for n in notifications}

    def _check_history(
        self, token: ModelToken, positions: dict[tuple[uuid.UUID, int], tuple[int, str]]
    ) -> None:
        events = list(self.ledger.events.get(token.id))
        history = self.ledger.history(self.actors[token.owner], token.id)
        replayed = [
            (
                positions[(token.id, e.originator_version)][0],
                EVENT_NAMES[type(e)],
                e.timestamp,
                token_details(e),
            )
            for e in events
        ]
        projected = [(h.position, h.event_type, h.at, h.details) for h in history]
        assert projected == replayed, f"history of {token.name!r} differs from its events"
        assert all(h.token_id == token.id and h.owner == token.owner for h in history)
        kinds = [h.event_type for h in history]
        assert kinds.count("Regenerated") == len(token.old_values)
        assert kinds.count("Revoked") == (token.revoked_at is not None)
        assert kinds.count("Used") == token.uses, "not one Used event per use with a window of 0"

    @invariant()
    def only_current_values_of_active_tokens_verify(self) -> None:
        now = self.now
        for token in self.model.values():
            for old in token.old_values:
                result = self.ledger.verify(old)
                assert result.outcome is Outcome.UNKNOWN, "a regenerated-away value still verifies"
            result = self.ledger.verify(token.value)
            state = token.state(now)
            if state is TokenState.ACTIVE:
                assert result.ok, f"the current value of an active token fails: {result.outcome}"
                assert result.token is not None and result.token.token_id == token.id
            elif state is TokenState.REVOKED:
                assert result.outcome is Outcome.REVOKED, "a revoked value still verifies"
            else:
                assert result.outcome is Outcome.EXPIRED, "an expired value still verifies"


SETTINGS = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_random_command_sequences_keep_read_models_equal_to_replay_and_dead_values_dead(
    backend: str, database_url: str
) -> None:
    machine = type(f"LedgerMachine_{backend}", (LedgerMachine,), {"database_url": database_url})
    run_state_machine_as_test(machine, settings=SETTINGS)
