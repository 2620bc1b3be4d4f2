"""A process killed with SIGKILL while it writes leaves a store that restarts consistent.

A child process (started with 'spawn', sharing nothing with the test but the database) creates,
uses, regenerates and revokes tokens in a loop and is killed:

- anywhere: after the store has grown by some events, at whatever point the loop has reached
  (three times over, so three different points);
- after a command's events are committed and before the read models include them;
- inside a catch-up transaction, after some projections have applied a batch;
- inside a projection rebuild, after its rows were deleted and partly written again.

The last three pause the child at that point (it tells the test through a pipe and waits for
an answer that never comes) so the kill lands exactly there. Then the service is built again,
as a restarted server would, and the store and read models must agree: every projection at the
head of the log, every token in the read models exactly once and equal to its replay, every
audit and chain row present once, and a rebuild of every projection giving identical rows.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from application.ledger import Actor, Ledger
from domain.account import Account, Role
from domain.token import Token
from interface.settings import Settings
from interface.wiring import Service, build
from projections import schema
from projections.database import Database
from tests.support import CHEAP_ARGON2, FakeClock, cheap_hasher

SPAWN = multiprocessing.get_context("spawn")
TIMEOUT = 120.0  # seconds for a child to start and reach its crash point, or the store to grow
ALICE = Actor(username="alice", role=Role.MEMBER)
WARM_UP = 4  # commands run normally before a crash point is armed


def open_service(url: str, clock: FakeClock | None = None) -> Service:
    return build(
        Settings(database_url=url, usage_window_seconds=0, argon2=CHEAP_ARGON2),
        clock=clock or FakeClock(),
        hasher=cheap_hasher(),
    )


# The child ---------------------------------------------------------------------------------


def one_round(ledger: Ledger, clock: FakeClock, prefix: str, i: int) -> None:
    """One turn of the loop: create, use, sometimes regenerate and use, revoke, revoke all."""
    issued = ledger.create_token(ALICE, name=f"{prefix}-{i}", scopes=["repo", "job"], expires_in_days=30)
    for scope in ("repo", "job"):
        verified = ledger.verify(issued.value)
        assert verified.ok
        ledger.record_use(verified, scope=scope, address=f"10.0.{i % 7}.1", user_agent="ci/1.0")
    ledger.usage.flush()
    if i % 2 == 0:
        again = ledger.regenerate_token(ALICE, issued.record.id)
        verified = ledger.verify(again.value)
        assert verified.ok
        ledger.record_use(verified, scope="repo", address="10.9.9.9", user_agent="git/2.45")
        ledger.usage.flush()
    if i % 3 == 0:
        ledger.revoke_token(ALICE, issued.record.id)
    if i % 7 == 6:
        ledger.revoke_all(ALICE, issued_before=clock.now())
    clock.advance(seconds=1)


def pause_forever(conn: Connection, what: str, detail: Any) -> None:
    """Tell the test where we are, then wait for an answer that never comes: the kill."""
    conn.send((what, detail))
    conn.recv()
    raise AssertionError("the test answered instead of killing this process")


def write_until_killed(conn: Connection, url: str, crash_point: str) -> None:
    try:
        clock = FakeClock()
        service = open_service(url, clock)
        ledger, runner = service.ledger, service.projections
        prefix = uuid.uuid4().hex[:8]
        for i in range(WARM_UP):
            one_round(ledger, clock, prefix, i)
        if crash_point == "after-commit":
            # The ledger waits for its read models through runner.wait_for, right after save.
            runner.wait_for = lambda position: pause_forever(conn, "committed", position)  # type: ignore[method-assign]
        elif crash_point == "inside-catch-up":
            last = runner.projectors[-1]  # every other projector has applied the batch by then
            apply = last.apply

            def apply_then_pause(db: Any, batch: Any) -> None:
                apply(db, batch)
                pause_forever(conn, "catch-up", [item.position for item in batch])

            last.apply = apply_then_pause  # type: ignore[method-assign]
        elif crash_point == "inside-rebuild":
            tokens = next(p for p in runner.projectors if p.name == "tokens")
            apply = tokens.apply

            def rebuild_then_pause(db: Any, batch: Any) -> None:
                apply(db, batch)
                pause_forever(conn, "rebuild", batch[-1].position)

            tokens.apply = rebuild_then_pause  # type: ignore[method-assign]
            runner.rebuild("tokens")
        if crash_point == "anywhere":
            conn.send(("writing", None))
        for i in range(WARM_UP, 100_000):
            one_round(ledger, clock, prefix, i)
        conn.send(("error", "the loop ended before the kill"))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


class Writer:
    def __init__(self, url: str, crash_point: str) -> None:
        self.conn, child_end = SPAWN.Pipe()
        self.process = SPAWN.Process(
            target=write_until_killed, args=(child_end, url, crash_point), daemon=True
        )
        self.process.start()
        child_end.close()

    def receive(self) -> tuple[str, Any]:
        if not self.conn.poll(TIMEOUT):
            raise AssertionError(f"the writing process sent nothing within {TIMEOUT} s")
        what, detail = self.conn.recv()
        assert what != "error", f"the writing process failed:\n{detail}"
        return what, detail

    def kill(self) -> None:
        if self.conn.poll():  # a failure it reported just before the kill
            self.receive()
        assert self.process.is_alive(), "the writing process ended by itself"
        self.process.kill()  # SIGKILL: no cleanup, no flush, open transactions cut off
        self.process.join(TIMEOUT)
        assert self.process.exitcode == -9
        self.conn.close()


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    started: list[Writer] = []
    yield started
    for writer in started:
        if writer.process.is_alive():
            writer.process.kill()
        writer.process.join(TIMEOUT)


@pytest.fixture
def prepared(database_url: str) -> str:
    with open_service(database_url) as service:
        service.ledger.register_account("alice", Role.MEMBER, "alice-password")
    return database_url


# Checks ------------------------------------------------------------------------------------


def table_rows(engine: Engine, table: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def read_model_positions(url: str) -> dict[str, int]:
    """The projections' positions as stored, read without building (or catching up) anything."""
    engine = Database.parse(url).engine(writer=False)
    try:
        with engine.connect() as conn:
            return {r.name: r.position for r in conn.execute(select(schema.positions))}
    finally:
        engine.dispose()


def projected_positions(url: str) -> set[int]:
    """Log positions with a row in the hash chain or the audit index, read without building."""
    engine = Database.parse(url).engine(writer=False)
    try:
        with engine.connect() as conn:
            chain = set(conn.execute(select(schema.chain.c.position)).scalars())
            return chain | set(conn.execute(select(schema.audit.c.position)).scalars())
    finally:
        engine.dispose()


def assert_consistent_after_restart(url: str) -> dict[str, int]:
    """Build the service again and check store and read models agree. Returns counts."""
    with open_service(url) as service:
        ledger, runner = service.ledger, service.projections
        engine = runner.engine
        notifications = ledger.recorder.select_notifications(
            start=0, limit=10_000_000, inclusive_of_start=False
        )
        head = ledger.recorder.max_notification_id() or 0
        assert notifications and notifications[-1].id == head
        assert runner.positions() == {p.name: head for p in runner.projectors}, (
            "a projection is not at the head"
        )

        events = [(n.id, ledger.mapper.to_domain_event(n)) for n in notifications]
        token_ids = [e.originator_id for _, e in events if isinstance(e, Token.Created)]
        listed = table_rows(engine, schema.tokens)
        counts = Counter(row[0] for row in listed)
        assert sorted(counts) == sorted(token_ids), (
            "the read model lacks a stored token, or has one not stored"
        )
        assert max(counts.values()) == 1, "a token is in the read model twice"
        assert sorted(r.id for r in ledger.read.tokens(None)) == sorted(token_ids)

        audited = [p for p, e in events if isinstance(e, Token.Event | Account.Event)]  # not name claims
        assert [row[0] for row in table_rows(engine, schema.audit)] == audited, (
            "audit rows differ from the log"
        )
        chained = [row[0] for row in table_rows(engine, schema.chain)]
        assert chained == [n.id for n in notifications], "the hash chain differs from the log"
        accounts = [e.username for _, e in events if isinstance(e, Account.Registered)]
        assert sorted(row[0] for row in table_rows(engine, schema.accounts)) == sorted(accounts)

        now = ledger.clock.now()
        for token_id in token_ids:
            aggregate: Token = ledger.repository.get(token_id)
            record = ledger.read.token(token_id)
            assert record is not None
            assert (
                record.owner,
                record.name,
                sorted(record.scopes),
                record.state(now),
                record.created_at,
                record.expires_at,
                record.regenerated_at,
                record.revoked_at,
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
                aggregate.use_count,
                aggregate.last_used_at,
            ), "a read-model record differs from the replay of its events"
            credential = ledger.read.credential(aggregate.lookup_id)
            assert credential is not None and credential.token_id == token_id
            assert credential.revoked is aggregate.is_revoked

        for projector in runner.projectors:
            before = [table_rows(engine, table) for table in projector.tables]
            runner.rebuild(projector.name)
            after = [table_rows(engine, table) for table in projector.tables]
            assert after == before, f"rebuilding {projector.name} gives other rows than catching up did"
        assert runner.positions() == {p.name: head for p in runner.projectors}

        with engine.connect() as conn:
            used = conn.execute(select(func.count()).select_from(schema.last_used)).scalar_one()
        return {"events": len(notifications), "tokens": len(token_ids), "used": used}


def wait_for_head(service: Service, at_least: int) -> None:
    """Poll the store (bounded) until the log reaches `at_least`."""
    deadline = time.monotonic() + TIMEOUT
    while (service.ledger.recorder.max_notification_id() or 0) < at_least:
        assert time.monotonic() < deadline, f"the store did not reach position {at_least} within {TIMEOUT} s"
        time.sleep(0.05)


# Tests -------------------------------------------------------------------------------------


def test_killed_anywhere_in_a_write_loop_three_times_restarts_consistent(
    prepared: str, writers: list[Writer]
) -> None:
    with open_service(prepared) as observer:
        for _ in range(3):
            writer = Writer(prepared, "anywhere")
            writers.append(writer)
            assert writer.receive()[0] == "writing"
            start = observer.ledger.recorder.max_notification_id() or 0
            wait_for_head(observer, start + 40)
            writer.kill()
    counts = assert_consistent_after_restart(prepared)
    assert counts["tokens"] >= 3 * WARM_UP and counts["used"] > 0


def test_killed_after_a_commit_before_the_read_models_caught_up_restarts_consistent(
    prepared: str, writers: list[Writer]
) -> None:
    writer = Writer(prepared, "after-commit")
    writers.append(writer)
    what, position = writer.receive()
    assert what == "committed"
    writer.kill()
    behind = read_model_positions(prepared)
    assert all(p < position for p in behind.values()), "the crash point was not reached as intended"

    assert position not in projected_positions(prepared)

    assert_consistent_after_restart(prepared)
    assert position in projected_positions(prepared), "the committed event never reached the read models"


def test_killed_inside_a_catch_up_transaction_keeps_rows_and_positions_together(
    prepared: str, writers: list[Writer]
) -> None:
    writer = Writer(prepared, "inside-catch-up")
    writers.append(writer)
    what, batch = writer.receive()
    assert what == "catch-up"
    writer.kill()
    # Every projection had applied the batch in the cut-off transaction; none of it may stay.
    assert all(p < min(batch) for p in read_model_positions(prepared).values()), (
        "a position outlived its rows"
    )
    assert not set(batch) & projected_positions(prepared), "rows outlived their transaction"

    assert_consistent_after_restart(prepared)
    assert set(batch) <= projected_positions(prepared)


def test_killed_inside_a_projection_rebuild_keeps_the_old_rows_until_restart(
    prepared: str, writers: list[Writer]
) -> None:
    writer = Writer(prepared, "inside-rebuild")
    writers.append(writer)
    what, _ = writer.receive()
    assert what == "rebuild"
    writer.kill()

    counts = assert_consistent_after_restart(prepared)
    assert counts["tokens"] == WARM_UP
