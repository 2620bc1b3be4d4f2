"""Several real OS processes on one store (a SQLite file, a PostgreSQL database).

Each child process is started with the 'spawn' method, so it shares nothing with the test
process but the database: it builds its own service, as a server worker or a CLI run would.
Children meet at a barrier before the part that races, report what they saw through a pipe,
and never run for longer than a bounded timeout.
"""

from __future__ import annotations

import multiprocessing
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

import pytest

from application.ledger import Actor
from application.verification import Outcome
from domain import token_format
from domain.account import Role
from domain.errors import NameTaken, TokenRevoked
from domain.token import Token
from interface.settings import Settings
from interface.wiring import Service, build
from tests.support import CHEAP_ARGON2, FakeClock, cheap_hasher

SPAWN = multiprocessing.get_context("spawn")
TIMEOUT = 120.0  # seconds a child may take to start, build its service and report
ALICE = Actor(username="alice", role=Role.MEMBER)


def open_service(url: str, lock: Any = None) -> Service:
    """The service as a process builds it. `lock` staggers the children's start-up, so that what
    races is the command under test (start-up races have a test of their own, below)."""
    if lock is not None:
        with lock:
            return open_service(url)
    return build(
        Settings(database_url=url, usage_window_seconds=0, argon2=CHEAP_ARGON2),
        clock=FakeClock(),
        hasher=cheap_hasher(),
    )


# Child processes ---------------------------------------------------------------------------
# Each reports ("ok", payload) or ("error", traceback) as its last message.


def _child(target: Callable[..., Any], conn: Connection, *args: Any) -> None:
    try:
        conn.send(("ok", target(conn, *args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def regenerate_until_revoked(
    conn: Connection, url: str, lock: Any, token_id: uuid.UUID, barrier: Any, started: Any
) -> Any:
    """Regenerate over and over; stop when the token turns out revoked. Returns the values."""
    values: list[str] = []
    with open_service(url, lock) as service:
        barrier.wait(TIMEOUT)
        for _ in range(500):
            try:
                issued = service.ledger.regenerate_token(ALICE, token_id)
            except TokenRevoked:
                return {"values": values, "stopped": "revoked"}
            values.append(issued.value)
            started.set()
        return {"values": values, "stopped": "limit"}


def revoke_once_started(
    conn: Connection, url: str, lock: Any, token_id: uuid.UUID, barrier: Any, started: Any
) -> Any:
    with open_service(url, lock) as service:
        barrier.wait(TIMEOUT)
        if not started.wait(TIMEOUT):
            raise TimeoutError("the regenerating process never regenerated")
        return service.ledger.revoke_token(ALICE, token_id)


def create_names(conn: Connection, url: str, lock: Any, names: list[str], barrier: Any) -> Any:
    """Create a token for each name; per name, the token id and value, or 'taken'."""
    results: list[tuple[str, str | None, str | None]] = []
    with open_service(url, lock) as service:
        barrier.wait(TIMEOUT)
        for name in names:
            try:
                issued = service.ledger.create_token(ALICE, name=name, scopes=["repo"], expires_in_days=30)
            except NameTaken:
                results.append(("taken", None, None))
            else:
                results.append(("created", str(issued.record.id), issued.value))
    return results


def verify_warm_then_again(conn: Connection, url: str, values: list[str]) -> Any:
    """Verify each value twice (cold, then warm), say so, wait for the word, verify again."""
    with open_service(url) as service:
        before = []
        for value in values:
            cold = service.ledger.verify(value)
            warm = service.ledger.verify(value)
            before.append((cold.outcome.value, cold.used_argon2, warm.outcome.value, warm.used_argon2))
        conn.send(("warm", before))
        if not conn.poll(TIMEOUT):
            raise TimeoutError("no word from the test process")
        conn.recv()
        return [service.ledger.verify(value).outcome.value for value in values]


def start_in_step(conn: Connection, url: str, rounds: int, barrier: Any, failed: Any) -> Any:
    """Build and close the service in step with the other children, round after round; stop
    everybody after the first round in which any of them failed. Returns the failures."""
    failures: list[str] = []
    for _ in range(rounds):
        barrier.wait(TIMEOUT)
        try:
            open_service(url).close()
        except Exception as error:
            failures.append(f"{type(error).__module__}.{type(error).__name__}: {error}")
            failed.set()
        barrier.wait(TIMEOUT)
        if failed.is_set():
            break
    return failures


# Helpers -----------------------------------------------------------------------------------


class Child:
    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        self.conn, child_end = SPAWN.Pipe()
        self.process = SPAWN.Process(target=_child, args=(target, child_end, *args), daemon=True)
        self.process.start()
        child_end.close()

    def receive(self) -> tuple[str, Any]:
        if not self.conn.poll(TIMEOUT):
            raise AssertionError(f"child {self.process.pid} sent nothing within {TIMEOUT} s")
        return self.conn.recv()

    def result(self) -> Any:
        kind, payload = self.receive()
        assert kind == "ok", f"child {self.process.pid} failed:\n{payload}"
        self.process.join(TIMEOUT)
        return payload

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(TIMEOUT)
        self.conn.close()


@contextmanager
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.stop()


def assert_record_equals_replay(service: Service, token_id: uuid.UUID) -> Token:
    ledger = service.ledger
    aggregate: Token = ledger.repository.get(token_id)
    record = ledger.read.token(token_id)
    assert record is not None, "the token is missing from the read model"
    now = ledger.clock.now()
    assert (
        record.owner,
        record.name,
        sorted(record.scopes),
        record.state(now),
        record.created_at,
        record.expires_at,
        record.regenerated_at,
        record.revoked_at,
        record.revoke_reason,
        record.use_count,
        record.last_used_at,
    ) == (
        aggregate.owner,
        aggregate.name,
        sorted(aggregate.scopes),
        aggregate.state(now),
        aggregate.created_on,
        aggregate.expires_at,
        aggregate.regenerated_at,
        aggregate.revoked_at,
        aggregate.revoke_reason,
        aggregate.use_count,
        aggregate.last_used_at,
    )
    history = ledger.read.history(token_id)
    events = list(ledger.events.get(token_id))
    assert [(h.event_type, h.at) for h in history] == [(type(e).__name__, e.timestamp) for e in events]
    return aggregate


def assert_projections_at_head(service: Service) -> None:
    head = service.ledger.recorder.max_notification_id() or 0
    runner = service.projections
    assert runner.positions() == {p.name: head for p in runner.projectors}


@pytest.fixture
def store(database_url: str) -> Iterator[Service]:
    """The store as this process sees it, with alice registered."""
    with open_service(database_url) as service:
        service.ledger.register_account("alice", Role.MEMBER, "alice-password")
        yield service


# Tests -------------------------------------------------------------------------------------


def test_concurrent_regenerate_and_revoke_end_revoked_with_no_value_that_verifies(
    store: Service, database_url: str
) -> None:
    first = store.ledger.create_token(ALICE, name="CI", scopes=["repo"], expires_in_days=30)
    token_id = first.record.id
    lock, barrier, started = SPAWN.Lock(), SPAWN.Barrier(2), SPAWN.Event()
    with children() as running:
        regenerator = Child(regenerate_until_revoked, database_url, lock, token_id, barrier, started)
        running.append(regenerator)
        revoker = Child(revoke_once_started, database_url, lock, token_id, barrier, started)
        running.append(revoker)
        regenerated = regenerator.result()
        assert revoker.result() is True, "the revoke did not revoke"

    assert regenerated["stopped"] == "revoked", "the regenerating process never saw the revocation"
    values: list[str] = regenerated["values"]
    assert values, "no regeneration happened before the revoke"

    # Every acknowledged regeneration is in the store, in order, and none came after the revoke.
    events = list(store.ledger.events.get(token_id))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Created", *["Regenerated"] * len(values), "Revoked"]
    lookup_ids = [e.lookup_id for e in events if isinstance(e, Token.Regenerated)]
    assert lookup_ids == [token_format.parse(v).lookup_id for v in values]  # type: ignore[union-attr]

    aggregate = assert_record_equals_replay(store, token_id)
    assert aggregate.is_revoked
    assert_projections_at_head(store)
    for value in [first.value, *values]:
        assert not store.ledger.verify(value).ok, "a value of the revoked token still verifies"
    with open_service(database_url) as fresh:  # and in yet another service, with cold caches
        for value in [first.value, *values]:
            assert not fresh.ledger.verify(value).ok


def test_concurrent_creates_of_one_name_let_exactly_one_through(store: Service, database_url: str) -> None:
    # The two processes race on every name; the second spells it in another case.
    names = [f"Deploy {i}" for i in range(8)]
    lock, barrier = SPAWN.Lock(), SPAWN.Barrier(2)
    with children() as running:
        one = Child(create_names, database_url, lock, names, barrier)
        running.append(one)
        other = Child(create_names, database_url, lock, [n.upper() for n in names], barrier)
        running.append(other)
        first_results, second_results = one.result(), other.result()

    stored_names: dict[str, list[uuid.UUID]] = {}
    for n in store.ledger.recorder.select_notifications(start=0, limit=100_000, inclusive_of_start=False):
        event = store.ledger.mapper.to_domain_event(n)
        if isinstance(event, Token.Created):
            stored_names.setdefault(event.name.casefold(), []).append(event.originator_id)
    listed = store.ledger.tokens(ALICE, state="all")

    for name, mine, theirs in zip(names, first_results, second_results, strict=True):
        outcomes = sorted([mine[0], theirs[0]])
        assert outcomes == ["created", "taken"], f"{name!r}: {outcomes}"
        winner = mine if mine[0] == "created" else theirs
        winner_id = uuid.UUID(winner[1])
        # The loser left nothing behind: one token of that name in the store and in the list.
        assert stored_names[name.casefold()] == [winner_id]
        assert [r.id for r in listed if r.name.casefold() == name.casefold()] == [winner_id]
        verified = store.ledger.verify(winner[2])
        assert verified.ok and verified.token is not None and verified.token.token_id == winner_id
        assert_record_equals_replay(store, winner_id)
    assert_projections_at_head(store)


def test_revoke_and_regenerate_in_one_process_reject_values_cached_warm_in_another(
    store: Service, database_url: str
) -> None:
    revoked = store.ledger.create_token(ALICE, name="to revoke", scopes=["repo"], expires_in_days=30)
    regenerated = store.ledger.create_token(ALICE, name="to regenerate", scopes=["repo"], expires_in_days=30)
    kept = store.ledger.create_token(ALICE, name="kept", scopes=["repo"], expires_in_days=30)
    values = [revoked.value, regenerated.value, kept.value]
    with children() as running:
        verifier = Child(verify_warm_then_again, database_url, values)
        running.append(verifier)
        kind, before = verifier.receive()
        assert kind == "warm", f"the verifying process failed:\n{before}"
        for cold_outcome, cold_argon2, warm_outcome, warm_argon2 in before:
            assert (cold_outcome, cold_argon2) == ("valid", True)
            assert (warm_outcome, warm_argon2) == ("valid", False), "the second verification was not warm"

        assert store.ledger.revoke_token(ALICE, revoked.record.id) is True
        store.ledger.regenerate_token(ALICE, regenerated.record.id)
        verifier.conn.send("changed")  # only after both responses: the next verifications start later
        after = verifier.result()

    assert after == [Outcome.REVOKED.value, Outcome.UNKNOWN.value, Outcome.VALID.value]


def test_services_started_at_the_same_moment_in_several_processes_all_start(database_url: str) -> None:
    """Server workers (`serve --workers N`), CLI runs and a restarted server all build the
    service, often at the same moment: every one of them must start.

    On PostgreSQL the event store's CREATE TABLE / CREATE OR REPLACE FUNCTION statements, run
    by every start, fail one of two concurrent starts with "tuple concurrently updated" unless
    they are serialised (`interface.wiring` takes an advisory lock around them).
    """
    open_service(database_url).close()  # the store exists, as after `serve` prepared it
    processes, rounds = 3, 25
    barrier, failed = SPAWN.Barrier(processes), SPAWN.Event()
    with children() as running:
        for _ in range(processes):
            running.append(Child(start_in_step, database_url, rounds, barrier, failed))
        failures = [failure for child in running for failure in child.result()]
    assert failures == [], "a process failed to start while others started"
