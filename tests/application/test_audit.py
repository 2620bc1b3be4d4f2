"""The Audit service on a real store (SQLite file and PostgreSQL): the log, points in time,
exposure windows, compliance, the hash chain and exports.

Every answer is known by construction: one scenario creates, uses, regenerates, revokes and lets
tokens expire at chosen instants of a fake clock (the only fakes are the clock and cheap argon2).
Tampering is done directly in the database, as an attacker with write access would.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import re
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import psycopg
import pytest
from rich.console import Console
from sqlalchemy import select

from application.audit import Audit, AuditPage
from application.hashing import Argon2Hasher, Argon2Parameters
from application.ledger import Actor, Ledger
from domain.account import Role
from domain.compliance import Policy
from domain.errors import InvalidScopes, PermissionDenied, ValidationError
from domain.scopes import Scopes
from domain.views import AuditEntry, Exposure, ExposureUse, TokenAsOf
from interface import reports
from interface.settings import Settings
from interface.wiring import Service, build
from projections import audit_queries, schema
from projections.database import Database
from tests.support import CHEAP_ARGON2, FakeClock, cheap_hasher


def at(month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# The instant the scenario ends and the compliance report is taken.
REPORT_TIME = at(4, 13)


@dataclass
class Scenario:
    """Token ids by name, and the value each token holds at the end."""

    ids: dict[str, uuid.UUID] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    def name_of(self, token_id: uuid.UUID) -> str:
        return next(name for name, i in self.ids.items() if i == token_id)


def use(
    ledger: Ledger,
    clock: FakeClock,
    value: str,
    when: datetime,
    scope: str,
    address: str,
    *,
    flush: bool = True,
) -> None:
    """One verified use of a value at `when`; with `flush`, written at once as a `Used` event."""
    clock.current = when
    verification = ledger.verify(value)
    assert verification.ok, verification
    agent = "git/2.43" if address.startswith("192.168.") else "ci-runner/1"
    ledger.record_use(verification, scope=scope, address=address, user_agent=agent)
    if flush:
        assert ledger.usage.flush() == 1


@pytest.fixture
def settings(database_url: str) -> Settings:
    """A usage window longer than any test: uses made without `flush` join the token's pending
    window, and each explicit flush writes it as one `Used` event, as the scenario describes."""
    return Settings(database_url=database_url, usage_window_seconds=60, argon2=CHEAP_ARGON2)


@pytest.fixture
def scenario(
    service: Service, ledger: Ledger, clock: FakeClock, alice: Actor, bob: Actor, admin: Actor
) -> Scenario:
    """Accounts alice, bob and root (admin) are registered at 2026-01-05 09:00, then:

    | when         | what                                                                     |
    | Jan  6 09:00 | alice creates CI [repo], 30 days (expires Feb 5 09:00)                   |
    | Jan  6 10:00 | alice creates Deploy [service repo:read], 30 days (expires Feb 5 10:00)  |
    | Jan  7 09:00 | bob creates Laptop [repo:read], no expiry                                |
    | Jan  7 10:00 | bob creates Org admin [admin:org], no expiry                             |
    | Jan  8 09:00 | CI reads (repo:read) from 10.0.0.1; 09:30 again from 10.0.0.2; one window |
    | Jan  9 09:00 | Laptop reads from 192.168.1.5                                            |
    | Jan 10 09:00 | alice regenerates CI (expires Feb 9 09:00)                               |
    | Jan 12 09:00 | CI writes (repo) from 10.0.0.3                                           |
    | Jan 15 09:00 | root revokes CI (reason admin)                                           |
    | Jan 20 09:00 | bob creates Nightly [repo], 30 days (expires Feb 19 09:00)               |
    | Feb 10 09:00 | bob regenerates Nightly (expires Mar 12 09:00)                           |
    | Feb 21 09:00 | Nightly writes (repo) from 172.16.0.9                                    |
    | Mar  1 09:00 | alice creates Shared CI [repo job], 90 days (expires May 30 09:00)       |
    | Mar 12 09:00 | Nightly expires                                                          |
    | Mar 20 09:00 | bob regenerates the expired Nightly (expires Apr 19 09:00)               |
    | Apr 10 09:00 | Shared CI reads from 10.1.0.1 - 10.1.0.4, one window                     |
    | Apr 12 09:00 | alice creates Fresh [job], 30 days                                       |
    | Apr 13 09:00 | the end (REPORT_TIME)                                                    |
    """
    s = Scenario()

    def create(actor: Actor, when: datetime, name: str, scopes: list[str], days: int | None) -> None:
        clock.current = when
        issued = ledger.create_token(actor, name=name, scopes=scopes, expires_in_days=days)
        s.ids[name], s.values[name] = issued.record.id, issued.value

    def regenerate(actor: Actor, when: datetime, name: str) -> None:
        clock.current = when
        s.values[name] = ledger.regenerate_token(actor, s.ids[name]).value

    create(alice, at(1, 6), "CI", ["repo"], 30)
    create(alice, at(1, 6, 10), "Deploy", ["service", "repo:read"], 30)
    create(bob, at(1, 7), "Laptop", ["repo:read"], None)
    create(bob, at(1, 7, 10), "Org admin", ["admin:org"], None)
    use(ledger, clock, s.values["CI"], at(1, 8), "repo:read", "10.0.0.1", flush=False)
    use(ledger, clock, s.values["CI"], at(1, 8, 9, 30), "repo:read", "10.0.0.2")
    use(ledger, clock, s.values["Laptop"], at(1, 9), "repo:read", "192.168.1.5")
    regenerate(alice, at(1, 10), "CI")
    use(ledger, clock, s.values["CI"], at(1, 12), "repo", "10.0.0.3")
    clock.current = at(1, 15)
    assert ledger.revoke_token(admin, s.ids["CI"])
    create(bob, at(1, 20), "Nightly", ["repo"], 30)
    regenerate(bob, at(2, 10), "Nightly")
    use(ledger, clock, s.values["Nightly"], at(2, 21), "repo", "172.16.0.9")
    create(alice, at(3, 1), "Shared CI", ["repo", "job"], 90)
    regenerate(bob, at(3, 20), "Nightly")
    for n in range(1, 5):
        use(ledger, clock, s.values["Shared CI"], at(4, 10), "repo:read", f"10.1.0.{n}", flush=n == 4)
    create(alice, at(4, 12), "Fresh", ["job"], 30)
    clock.current = REPORT_TIME
    return s


# What the whole log holds, oldest first: (event, owner, token name).
FULL_LOG = [
    ("Registered", "alice", None),
    ("Registered", "bob", None),
    ("Registered", "root", None),
    ("Created", "alice", "CI"),
    ("Created", "alice", "Deploy"),
    ("Created", "bob", "Laptop"),
    ("Created", "bob", "Org admin"),
    ("Used", "alice", "CI"),
    ("Used", "bob", "Laptop"),
    ("Regenerated", "alice", "CI"),
    ("Used", "alice", "CI"),
    ("Revoked", "alice", "CI"),
    ("Created", "bob", "Nightly"),
    ("Regenerated", "bob", "Nightly"),
    ("Used", "bob", "Nightly"),
    ("Created", "alice", "Shared CI"),
    ("Regenerated", "bob", "Nightly"),
    ("Used", "alice", "Shared CI"),
    ("Created", "alice", "Fresh"),
]


def brief(entries: list[AuditEntry]) -> list[tuple[str, str | None, str | None]]:
    return [(e.event_type, e.owner, e.token_name) for e in entries]


def everything(audit: Audit, actor: Actor, **filters: Any) -> list[AuditEntry]:
    return list(audit.iterate(actor, **filters))


def position_of(audit: Audit, admin: Actor, event: str, token_id: uuid.UUID, nth: int = 0) -> int:
    return everything(audit, admin, token_id=token_id, event_types=(event,))[nth].position


# The log ------------------------------------------------------------------------------------


def test_log_holds_every_event_oldest_first(service: Service, scenario: Scenario, admin: Actor) -> None:
    page = service.audit.log(admin, limit=100)
    assert page.next_cursor is None
    assert brief(page.entries) == FULL_LOG
    positions = [e.position for e in page.entries]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_log_entries_carry_time_token_actor_and_details(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    ci = scenario.ids["CI"]
    entries = everything(service.audit, admin, token_id=ci)
    assert [(e.event_type, e.at, e.actor) for e in entries] == [
        ("Created", at(1, 6), "alice"),
        ("Used", at(1, 8, 9, 30), None),
        ("Regenerated", at(1, 10), "alice"),
        ("Used", at(1, 12), None),
        ("Revoked", at(1, 15), "root"),
    ]
    assert all(e.subject_id == ci and e.aggregate == "token" and e.token_name == "CI" for e in entries)
    created, used, regenerated, _, revoked = entries
    assert created.details["scopes"] == ["repo"]
    assert created.details["expires_at"] == "2026-02-05T09:00:00+00:00"
    assert used.details == {
        "first_used_at": "2026-01-08T09:00:00+00:00",
        "last_used_at": "2026-01-08T09:30:00+00:00",
        "count": 2,
        "scopes": ["repo:read"],
        "addresses": ["10.0.0.1", "10.0.0.2"],
        "user_agents": ["ci-runner/1"],
        "rehashed": False,
    }
    assert regenerated.details["expires_at"] == "2026-02-09T09:00:00+00:00"
    assert revoked.details == {"reason": "admin", "source": "api"}


def test_log_filters_by_owner(service: Service, scenario: Scenario, admin: Actor) -> None:
    entries = everything(service.audit, admin, owner="bob")
    assert brief(entries) == [row for row in FULL_LOG if row[1] == "bob"]


def test_log_filters_by_token(service: Service, scenario: Scenario, admin: Actor) -> None:
    entries = everything(service.audit, admin, token_id=scenario.ids["Nightly"])
    assert [e.event_type for e in entries] == ["Created", "Regenerated", "Used", "Regenerated"]


def test_log_filters_by_event_types(service: Service, scenario: Scenario, admin: Actor) -> None:
    entries = everything(service.audit, admin, event_types=("Revoked", "Regenerated"))
    assert [(e.event_type, e.token_name, e.at) for e in entries] == [
        ("Regenerated", "CI", at(1, 10)),
        ("Revoked", "CI", at(1, 15)),
        ("Regenerated", "Nightly", at(2, 10)),
        ("Regenerated", "Nightly", at(3, 20)),
    ]


def test_log_filters_by_time_range_inclusive(service: Service, scenario: Scenario, admin: Actor) -> None:
    entries = everything(service.audit, admin, since=at(1, 8, 0), until=at(1, 12))
    assert [(e.event_type, e.token_name, e.at) for e in entries] == [
        ("Used", "CI", at(1, 8, 9, 30)),
        ("Used", "Laptop", at(1, 9)),
        ("Regenerated", "CI", at(1, 10)),
        ("Used", "CI", at(1, 12)),
    ]


def test_log_filters_combine(service: Service, scenario: Scenario, admin: Actor) -> None:
    entries = everything(service.audit, admin, owner="bob", event_types=("Created",), since=at(1, 7, 9, 30))
    assert brief(entries) == [("Created", "bob", "Org admin"), ("Created", "bob", "Nightly")]


def test_log_newest_first_is_the_reverse(service: Service, scenario: Scenario, admin: Actor) -> None:
    oldest = everything(service.audit, admin)
    newest = everything(service.audit, admin, newest_first=True)
    assert newest == list(reversed(oldest))


def test_log_rejects_unknown_types_bad_limits_and_inverted_ranges(service: Service, admin: Actor) -> None:
    with pytest.raises(ValidationError):
        service.audit.log(admin, event_types=("Deleted",))
    for limit in (0, 1001):
        with pytest.raises(ValidationError):
            service.audit.log(admin, limit=limit)
    with pytest.raises(ValidationError):
        service.audit.log(admin, since=at(2, 1), until=at(1, 1))


def pages(audit: Audit, actor: Actor, limit: int, **filters: Any) -> list[AuditPage]:
    found: list[AuditPage] = []
    cursor = None
    while True:
        page = audit.log(actor, cursor=cursor, limit=limit, **filters)
        found.append(page)
        if page.next_cursor is None:
            return found
        assert len(found) < 100, "paging does not end"
        cursor = page.next_cursor


@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest-first", "newest-first"])
def test_paging_by_two_walks_every_entry_once(
    service: Service, scenario: Scenario, admin: Actor, newest_first: bool
) -> None:
    walked = pages(service.audit, admin, 2, newest_first=newest_first)
    assert [len(p.entries) for p in walked] == [2] * 9 + [1]
    assert all(p.next_cursor == p.entries[-1].position for p in walked[:-1])
    expected = FULL_LOG[::-1] if newest_first else FULL_LOG
    assert brief([e for p in walked for e in p.entries]) == expected


def test_paging_ends_without_an_empty_page_when_the_last_page_is_full(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    walked = pages(service.audit, admin, 2, owner="alice")  # alice has exactly 10 entries
    assert [len(p.entries) for p in walked] == [2, 2, 2, 2, 2]
    assert brief([e for p in walked for e in p.entries]) == [row for row in FULL_LOG if row[1] == "alice"]


def test_cursor_is_stable_while_events_are_appended(
    service: Service, ledger: Ledger, clock: FakeClock, scenario: Scenario, admin: Actor, alice: Actor
) -> None:
    first = service.audit.log(admin, limit=2)
    newest = service.audit.log(admin, limit=2, newest_first=True)
    clock.current = at(4, 14)
    late = ledger.create_token(alice, name="Late", scopes=["job"], expires_in_days=30)
    ledger.revoke_token(alice, late.record.id)

    rest: list[AuditEntry] = []
    cursor = first.next_cursor
    while cursor is not None:
        page = service.audit.log(admin, limit=2, cursor=cursor)
        rest.extend(page.entries)
        cursor = page.next_cursor
    assert brief(first.entries + rest) == [
        *FULL_LOG,
        ("Created", "alice", "Late"),
        ("Revoked", "alice", "Late"),
    ]

    older: list[AuditEntry] = []
    cursor = newest.next_cursor
    while cursor is not None:
        page = service.audit.log(admin, limit=2, cursor=cursor, newest_first=True)
        older.extend(page.entries)
        cursor = page.next_cursor
    assert brief(newest.entries + older) == FULL_LOG[::-1]


def test_paging_skips_over_gaps_in_postgresql_positions(
    service: Service, ledger: Ledger, clock: FakeClock, backend: str, alice: Actor, admin: Actor
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite positions (rowids) have no gaps")
    store = StoredEvents(service)
    for name in ("One", "Two", "Three"):
        store.burn_positions(5)
        clock.advance(minutes=1)
        ledger.create_token(alice, name=name, scopes=["job"], expires_in_days=30)
    walked = pages(service.audit, admin, 1, event_types=("Created",))
    positions = [p.entries[0].position for p in walked]
    assert [p.entries[0].token_name for p in walked] == ["One", "Two", "Three"]
    assert all(b - a > 5 for a, b in itertools.pairwise(positions))
    newest = pages(service.audit, admin, 1, event_types=("Created",), newest_first=True)
    assert [p.entries[0].token_name for p in newest] == ["Three", "Two", "One"]
    assert service.audit.verify().ok


# Access -------------------------------------------------------------------------------------


def test_a_member_sees_only_their_own_entries(service: Service, scenario: Scenario, alice: Actor) -> None:
    entries = everything(service.audit, alice)
    assert brief(entries) == [row for row in FULL_LOG if row[1] == "alice"]
    assert everything(service.audit, alice, owner="alice") == entries


def test_a_member_filtering_on_another_owners_token_gets_nothing(
    service: Service, scenario: Scenario, alice: Actor
) -> None:
    assert everything(service.audit, alice, token_id=scenario.ids["Laptop"]) == []


def test_a_member_asking_for_another_owner_is_denied(
    service: Service, scenario: Scenario, alice: Actor
) -> None:
    with pytest.raises(PermissionDenied):
        service.audit.log(alice, owner="bob")


def test_org_wide_queries_are_denied_to_members(service: Service, scenario: Scenario, alice: Actor) -> None:
    with pytest.raises(PermissionDenied):
        service.audit.as_of(alice, at(2, 1))
    with pytest.raises(PermissionDenied):
        service.audit.exposure(alice, "repo", at(1, 1), at(2, 1))
    with pytest.raises(PermissionDenied):
        service.audit.compliance(alice)


def test_an_admin_acting_through_a_token_without_admin_org_is_a_member(
    service: Service, scenario: Scenario
) -> None:
    via_token = Actor("root", Role.ADMIN, via_token=uuid.uuid4(), scopes=Scopes.parse(["repo"]))
    assert brief(everything(service.audit, via_token)) == [("Registered", "root", None)]
    with pytest.raises(PermissionDenied):
        service.audit.log(via_token, owner="alice")
    with pytest.raises(PermissionDenied):
        service.audit.compliance(via_token)


def test_an_admin_token_with_admin_org_reads_the_whole_log(service: Service, scenario: Scenario) -> None:
    via_token = Actor("root", Role.ADMIN, via_token=uuid.uuid4(), scopes=Scopes.parse(["admin:org"]))
    assert brief(everything(service.audit, via_token)) == FULL_LOG
    assert brief(everything(service.audit, via_token, owner="alice")) == [
        r for r in FULL_LOG if r[1] == "alice"
    ]


def test_a_members_own_admin_org_token_does_not_open_the_organisations_audit(
    service: Service, ledger: Ledger, scenario: Scenario, alice: Actor
) -> None:
    # A member may grant admin:org to their own token (as on GitHub), but a token never gives more
    # than its owner has: it does not open the organisation's audit.
    issued = ledger.create_token(alice, name="Escalate", scopes=["admin:org"], expires_in_days=30)
    via_token = Actor("alice", Role.MEMBER, via_token=issued.record.id, scopes=Scopes.parse(["admin:org"]))
    with pytest.raises(PermissionDenied):
        service.audit.log(via_token, owner="bob")
    with pytest.raises(PermissionDenied):
        service.audit.compliance(via_token)


ARGON2_LIKE = re.compile(r"\$argon2")
HEX_DIGEST_LIKE = re.compile(r"\b[0-9a-f]{40,}\b")


def test_entries_never_carry_a_hash_or_secret(
    service: Service, settings: Settings, ledger: Ledger, clock: FakeClock, alice: Actor, admin: Actor
) -> None:
    issued = ledger.create_token(alice, name="Rehashed", scopes=["repo"], expires_in_days=30)
    ledger.change_password("alice", "alice-new-password", alice)
    # Another process with stronger argon2 parameters rehashes the secret on use: the `Used`
    # event then carries the new hash, which the audit entry must not show.
    stronger = Argon2Hasher(Argon2Parameters(memory_kib=128, time_cost=2, parallelism=1))
    with build(settings, clock=clock, hasher=stronger) as other:
        verification = other.ledger.verify(issued.value)
        assert verification.rehashed is not None
        other.ledger.record_use(verification, scope="repo", address="10.9.9.9", user_agent="curl/8")
        assert other.ledger.usage.flush() == 1
    ledger.regenerate_token(alice, issued.record.id)
    ledger.revoke_token(alice, issued.record.id)

    entries = everything(service.audit, admin)
    assert {e.event_type for e in entries} == {
        "Registered",
        "PasswordChanged",
        "Created",
        "Used",
        "Regenerated",
        "Revoked",
    }
    used = next(e for e in entries if e.event_type == "Used")
    assert used.details["rehashed"] is True
    with service.read_models.engine.connect() as conn:
        stored_hashes = set(conn.execute(select(schema.tokens.c.secret_hash)).scalars())
    stored_hashes.add(verification.rehashed)
    for entry in entries:
        text = json.dumps(reports.entry_json(entry))
        assert "secret_hash" not in text and "password_hash" not in text, text
        assert not ARGON2_LIKE.search(text), text
        assert not HEX_DIGEST_LIKE.search(text), text
        assert not any(h in text for h in stored_hashes), text
        assert issued.value not in text and issued.value[5:] not in text


# Point in time ------------------------------------------------------------------------------


def as_of(service: Service, admin: Actor, instant: datetime, scenario: Scenario) -> dict[str, TokenAsOf]:
    found = service.audit.as_of(admin, instant)
    by_name = {t.name: t for t in found}
    assert len(by_name) == len(found)
    assert all(scenario.ids[name] == t.id for name, t in by_name.items())
    return by_name


def state_of(t: TokenAsOf) -> tuple[Any, ...]:
    return (
        t.owner,
        t.state,
        t.scopes,
        t.created_at,
        t.expires_at,
        t.regenerated_at,
        t.revoked_at,
        t.last_used_at,
    )


def test_as_of_before_any_token_is_empty(service: Service, scenario: Scenario, admin: Actor) -> None:
    assert service.audit.as_of(admin, at(1, 6, 8, 59)) == []


def test_as_of_the_creation_instant_includes_the_token(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    assert list(as_of(service, admin, at(1, 6), scenario)) == ["CI"]


def test_as_of_between_events(service: Service, scenario: Scenario, admin: Actor) -> None:
    tokens = service.audit.as_of(admin, at(1, 8, 12))
    assert [(t.owner, t.name) for t in tokens] == [
        ("alice", "CI"),
        ("alice", "Deploy"),
        ("bob", "Laptop"),
        ("bob", "Org admin"),
    ]
    found = {t.name: state_of(t) for t in tokens}
    assert found == {
        "CI": ("alice", "active", ["repo"], at(1, 6), at(2, 5), None, None, at(1, 8, 9, 30)),
        "Deploy": ("alice", "active", ["repo:read", "service"], at(1, 6, 10), at(2, 5, 10), None, None, None),
        "Laptop": ("bob", "active", ["repo:read"], at(1, 7), None, None, None, None),
        "Org admin": ("bob", "active", ["admin:org"], at(1, 7, 10), None, None, None, None),
    }


def test_as_of_after_a_regeneration_shows_the_new_expiry_and_last_use(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    found = as_of(service, admin, at(1, 12, 12), scenario)
    assert state_of(found["CI"]) == (
        "alice",
        "active",
        ["repo"],
        at(1, 6),
        at(2, 9),
        at(1, 10),
        None,
        at(1, 12),
    )
    assert found["Laptop"].last_used_at == at(1, 9)


def test_as_of_after_a_revocation(service: Service, scenario: Scenario, admin: Actor) -> None:
    found = as_of(service, admin, at(1, 16), scenario)
    ci = found["CI"]
    assert state_of(ci) == ("alice", "revoked", ["repo"], at(1, 6), at(2, 9), at(1, 10), at(1, 15), at(1, 12))
    assert ci.revoke_reason == "admin"
    assert as_of(service, admin, at(1, 14), scenario)["CI"].state == "active"


def test_as_of_after_an_expiry(service: Service, scenario: Scenario, admin: Actor) -> None:
    found = as_of(service, admin, at(2, 6, 0), scenario)
    assert {name: t.state for name, t in found.items()} == {
        "CI": "revoked",
        "Deploy": "expired",
        "Laptop": "active",
        "Org admin": "active",
        "Nightly": "active",
    }
    assert found["Deploy"].expires_at == at(2, 5, 10)
    assert as_of(service, admin, at(2, 5, 9, 59), scenario)["Deploy"].state == "active"


def test_as_of_follows_a_token_expired_and_then_regenerated(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    expired = as_of(service, admin, at(3, 15), scenario)["Nightly"]
    assert state_of(expired) == ("bob", "expired", ["repo"], at(1, 20), at(3, 12), at(2, 10), None, at(2, 21))
    back = as_of(service, admin, at(3, 21), scenario)["Nightly"]
    assert state_of(back) == ("bob", "active", ["repo"], at(1, 20), at(4, 19), at(3, 20), None, at(2, 21))


def test_as_of_now_matches_the_current_token_records(
    service: Service, ledger: Ledger, scenario: Scenario, admin: Actor
) -> None:
    found = as_of(service, admin, REPORT_TIME, scenario)
    assert set(found) == set(scenario.ids)
    for name, then in found.items():
        now = ledger.token(admin, scenario.ids[name])
        assert (then.state, then.expires_at, then.regenerated_at, then.revoked_at, then.last_used_at) == (
            now.state(REPORT_TIME).value,
            now.expires_at,
            now.regenerated_at,
            now.revoked_at,
            now.last_used_at,
        ), name


def test_as_of_counts_uses_as_the_token_record_does(
    service: Service, ledger: Ledger, scenario: Scenario, admin: Actor
) -> None:
    # CI made 2 uses in its first usage window and 1 in its second: 3 uses, as the token record says.
    assert ledger.token(admin, scenario.ids["CI"]).use_count == 3
    assert as_of(service, admin, at(1, 8, 12), scenario)["CI"].use_count == 2
    assert as_of(service, admin, REPORT_TIME, scenario)["CI"].use_count == 3


def test_as_of_an_instant_without_a_zone_is_taken_as_utc(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    naive = service.audit.as_of(admin, at(1, 8, 12).replace(tzinfo=None))
    assert naive == service.audit.as_of(admin, at(1, 8, 12))


# Exposure -----------------------------------------------------------------------------------


def exposure(
    service: Service, admin: Actor, scope: str, since: datetime, until: datetime
) -> list[tuple[Any, ...]]:
    found: list[Exposure] = service.audit.exposure(admin, scope, since, until)
    return [(x.name, x.owner, x.scopes, x.active_from, x.active_until, x.uses) for x in found]


@pytest.fixture(params=["by-id", "one-scan"])
def uses_query(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Uses are read by token id for a few tokens and in one scan of the window for many: both
    must give the same answers (one-scan is what a large organisation gets)."""
    if request.param == "one-scan":
        monkeypatch.setattr(audit_queries, "USES_BY_ID", 0)
    return request.param


def test_exposure_lists_a_token_revoked_in_the_window_with_its_uses(
    service: Service, scenario: Scenario, admin: Actor, uses_query: str
) -> None:
    # repo covers repo:read; CI's first value was retired by the regeneration before the window.
    # Spans are the part of the window in which the token was usable.
    found = exposure(service, admin, "repo:read", at(1, 11, 0), at(1, 20, 0))
    assert found == [
        (
            "CI",
            "alice",
            ["repo"],
            at(1, 11, 0),
            at(1, 15),
            [ExposureUse(at(1, 12), at(1, 12), 1, ["repo"], ["10.0.0.3"], ["ci-runner/1"])],
        ),
        ("Deploy", "alice", ["repo:read", "service"], at(1, 11, 0), at(1, 20, 0), []),
        ("Laptop", "bob", ["repo:read"], at(1, 11, 0), at(1, 20, 0), []),
    ]


def test_exposure_for_repo_excludes_tokens_that_only_read(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    found = exposure(service, admin, "repo", at(1, 11, 0), at(1, 20, 0))
    assert [row[0] for row in found] == ["CI"]


def test_exposure_lists_uses_overlapping_the_window_with_addresses(
    service: Service, scenario: Scenario, admin: Actor, uses_query: str
) -> None:
    found = exposure(service, admin, "repo:read", at(1, 8, 9, 15), at(1, 8, 10))
    name, owner, scopes, active_from, active_until, uses = found[0]
    assert (name, owner, scopes, active_from, active_until) == (
        "CI",
        "alice",
        ["repo"],
        at(1, 8, 9, 15),
        at(1, 8, 10),
    )
    assert uses == [
        ExposureUse(at(1, 8), at(1, 8, 9, 30), 2, ["repo:read"], ["10.0.0.1", "10.0.0.2"], ["ci-runner/1"])
    ]
    assert [row[0] for row in found[1:]] == ["Deploy", "Laptop"]


def test_exposure_excludes_tokens_expired_or_revoked_before_the_window(
    service: Service, scenario: Scenario, admin: Actor, uses_query: str
) -> None:
    # Deploy expired Feb 5 10:00 and CI was revoked Jan 15; Nightly's regeneration on Feb 10 kept
    # it usable past its first expiry (Feb 19) until Mar 12.
    found = exposure(service, admin, "repo:read", at(2, 6, 0), at(2, 25, 0))
    assert found == [
        (
            "Nightly",
            "bob",
            ["repo"],
            at(2, 6, 0),
            at(2, 25, 0),
            [ExposureUse(at(2, 21), at(2, 21), 1, ["repo"], ["172.16.0.9"], ["ci-runner/1"])],
        ),
        ("Laptop", "bob", ["repo:read"], at(2, 6, 0), at(2, 25, 0), []),
    ]


def test_exposure_excludes_a_token_in_the_gap_between_expiry_and_regeneration(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    found = exposure(service, admin, "repo", at(3, 13, 0), at(3, 19, 0))
    assert found == [("Shared CI", "alice", ["repo", "job"], at(3, 13, 0), at(3, 19, 0), [])]
    after = exposure(service, admin, "repo", at(3, 19, 0), at(3, 21, 0))
    assert [(row[0], row[3], row[4]) for row in after] == [
        ("Shared CI", at(3, 19, 0), at(3, 21, 0)),
        ("Nightly", at(3, 20), at(3, 21, 0)),
    ]


def test_exposure_boundaries_at_revocation(service: Service, scenario: Scenario, admin: Actor) -> None:
    assert "CI" not in [row[0] for row in exposure(service, admin, "repo", at(1, 15), at(1, 16))]
    assert [row[0] for row in exposure(service, admin, "repo", at(1, 15, 8, 59), at(1, 16))] == ["CI"]


def test_exposure_of_an_admin_scope(service: Service, scenario: Scenario, admin: Actor) -> None:
    found = exposure(service, admin, "admin:org", at(1, 1), at(4, 1))
    assert found == [("Org admin", "bob", ["admin:org"], at(1, 7, 10), at(4, 1), [])]


def test_exposure_rejects_unknown_scopes_and_inverted_windows(service: Service, admin: Actor) -> None:
    with pytest.raises(InvalidScopes):
        service.audit.exposure(admin, "repo:write", at(1, 1), at(2, 1))
    with pytest.raises(ValidationError):
        service.audit.exposure(admin, "repo", at(2, 1), at(1, 1))


# Compliance ---------------------------------------------------------------------------------

EXPECTED_FINDINGS = [
    ("high", "bob", "Org admin", "admin_scope"),
    ("medium", "alice", "Shared CI", "shared"),
    ("medium", "alice", "Shared CI", "unused_scopes"),
    ("medium", "bob", "Laptop", "no_expiry"),
    ("medium", "bob", "Laptop", "stale"),  # stale: no scope advice on top (revoking is the advice)
    ("medium", "bob", "Org admin", "never_used"),
    ("medium", "bob", "Org admin", "no_expiry"),
    ("low", "alice", "Fresh", "never_used"),
    ("low", "bob", "Laptop", "not_rotated"),
    ("low", "bob", "Org admin", "not_rotated"),
    ("info", "bob", "Nightly", "expiring_soon"),
]


def test_compliance_report_findings_for_the_scenario(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    report = service.audit.compliance(admin)
    assert report.generated_at == REPORT_TIME
    assert [(f.severity.value, f.owner, f.token_name, f.rule) for f in report.findings] == EXPECTED_FINDINGS
    assert all(f.token_id == scenario.ids[f.token_name] for f in report.findings)
    messages = {(f.token_name, f.rule): (f.message, f.recommendation) for f in report.findings}
    assert messages[("Shared CI", "unused_scopes")] == (
        "scopes repo (write), job not exercised in 90 days",
        "narrow it to repo:read (least privilege)",
    )
    assert messages[("Shared CI", "shared")][0] == "used from 4 different addresses in 30 days"
    assert messages[("Laptop", "stale")][0] == "not used for 94 days"
    assert messages[("Nightly", "expiring_soon")][0] == "expires in 6 days"
    assert messages[("Fresh", "never_used")][0] == "not used yet"
    assert report.active_tokens == 5
    assert {o.owner: (o.active_tokens, o.findings) for o in report.owners} == {
        "alice": (2, {"high": 0, "medium": 2, "low": 1, "info": 0}),
        "bob": (3, {"high": 1, "medium": 4, "low": 2, "info": 1}),
    }
    assert report.by_severity == {"high": 1, "medium": 6, "low": 3, "info": 1}


def test_compliance_policy_changes_the_findings(service: Service, scenario: Scenario, admin: Actor) -> None:
    report = service.audit.compliance(admin, Policy(stale_days=100, unused_scope_days=100, max_clients=4))
    rules = {(f.token_name, f.rule) for f in report.findings}
    assert ("Laptop", "stale") not in rules and ("Shared CI", "shared") not in rules
    assert ("Org admin", "never_used") in rules  # created 96 days ago, younger than 100: low
    assert (
        next(f for f in report.findings if f.token_name == "Org admin" and f.rule == "never_used").severity
        == "low"
    )


class _Cells(HTMLParser):
    """The tables of a page: each a list of rows, each row a list of cell texts (chunks joined by '|')."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.rows = []
            self.tables.append(self.rows)
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("|".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def findings_in_html(page: str) -> set[tuple[str, str, str]]:
    parser = _Cells()
    parser.feed(page)
    (table,) = [t for t in parser.tables if t and t[0][:2] == ["severity", "rule"]]
    found = set()
    for row in table[1:]:
        _name, token_id = row[3].split("|")
        found.add((token_id, row[1], row[0]))
    assert len(found) == len(table) - 1
    return found


def findings_in_table(table: Any) -> set[tuple[str, ...]]:
    console = Console(record=True, width=400, file=io.StringIO())
    console.print(table)
    rows = set()
    for line in console.export_text().splitlines():
        if line.startswith("│"):
            rows.add(tuple(cell.strip() for cell in line.strip("│").split("│")))
    return rows


def test_every_report_format_carries_the_same_findings(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    report = service.audit.compliance(admin)
    expected = {(str(f.token_id), f.rule, f.severity.value) for f in report.findings}
    assert len(expected) == len(EXPECTED_FINDINGS)

    as_json = json.loads(json.dumps(reports.report_json(report)))
    assert {(f["token_id"], f["rule"], f["severity"]) for f in as_json["findings"]} == expected
    assert as_json["summary"]["findings"] == len(expected)
    assert as_json["summary"]["by_severity"] == {"high": 1, "medium": 6, "low": 3, "info": 1}

    rows = list(csv.DictReader(io.StringIO(reports.report_csv(report))))
    assert {(r["token_id"], r["rule"], r["severity"]) for r in rows} == expected
    assert len(rows) == len(expected)

    page = reports.report_html(report)
    assert findings_in_html(page) == expected
    parser = _Cells()
    parser.feed(page)
    (owners,) = [t for t in parser.tables if t and t[0][0] == "owner"]
    assert owners[1:] == [["alice", "2", "0", "2", "1", "0"], ["bob", "3", "1", "4", "2", "1"]]
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert 'src="' not in page and "<link" not in page

    table_rows = findings_in_table(reports.report_table(report))
    assert table_rows == {
        (f.severity.value, f.owner, f.token_name, f.message, f.recommendation) for f in report.findings
    }


# Tamper evidence ----------------------------------------------------------------------------


class StoredEvents:
    """Direct access to the stored events, as someone with write access to the database."""

    def __init__(self, service: Service) -> None:
        self.database = Database.parse(service.settings.database_url)
        self.table = service.ledger.recorder.events_table_name
        self.position = "rowid" if self.database.is_sqlite else "notification_id"
        self.placeholder = "?" if self.database.is_sqlite else "%s"

    def execute(self, sql: str, *params: Any) -> list[Any]:
        sql = sql.format(table=self.table, position=self.position).replace("?", self.placeholder)
        if self.database.is_sqlite:
            with closing(sqlite3.connect(self.database.sqlite_path)) as conn:
                rows = conn.execute(sql, params).fetchall()
                conn.commit()
                return rows
        with psycopg.connect(self.database.psycopg_conninfo()) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def positions(self) -> list[int]:
        return [r[0] for r in self.execute("SELECT {position} FROM {table} ORDER BY {position}")]

    def state(self, position: int) -> bytes:
        return bytes(self.execute("SELECT state FROM {table} WHERE {position} = ?", position)[0][0])

    def set_state(self, position: int, state: bytes) -> None:
        self.execute("UPDATE {table} SET state = ? WHERE {position} = ?", state, position)

    def delete(self, position: int) -> None:
        self.execute("DELETE FROM {table} WHERE {position} = ?", position)

    def swap_states(self, first: int, second: int) -> None:
        a, b = self.state(first), self.state(second)
        self.set_state(first, b)
        self.set_state(second, a)

    def swap_positions(self, first: int, second: int) -> None:
        spare = 10**9
        self.execute("UPDATE {table} SET {position} = ? WHERE {position} = ?", spare, first)
        self.execute("UPDATE {table} SET {position} = ? WHERE {position} = ?", first, second)
        self.execute("UPDATE {table} SET {position} = ? WHERE {position} = ?", second, spare)

    def burn_positions(self, count: int) -> None:
        """PostgreSQL only: take sequence values nobody will use, leaving a gap in positions."""
        for _ in range(count):
            self.execute(f"SELECT nextval(pg_get_serial_sequence('{self.table}', 'notification_id'))")


def test_verify_accepts_an_intact_log(service: Service, scenario: Scenario) -> None:
    positions = StoredEvents(service).positions()
    check = service.audit.verify()
    assert check.ok, check
    assert check.checked == len(positions)
    assert (check.head_position, check.head_digest) == service.audit.digest()
    assert check.head_position == positions[-1]
    assert check.first_bad_position is None and check.problem is None and check.unchained == 0


def test_verify_reports_progress_in_batches(service: Service, scenario: Scenario) -> None:
    calls: list[tuple[int, int]] = []
    check = service.audit.verify(progress=lambda n, last: calls.append((n, last)), batch=5)
    assert check.ok
    assert calls[-1] == (check.checked, check.head_position)
    assert [n for n, _ in calls[:-1]] == list(range(5, check.checked + 1, 5))


def _tamper_change(store: StoredEvents, service: Service, admin: Actor, s: Scenario) -> tuple[int, str]:
    # Hide an admin token: its Created event now grants repo:read.
    p = position_of(service.audit, admin, "Created", s.ids["Org admin"])
    state = store.state(p)
    assert b"admin:org" in state
    store.set_state(p, state.replace(b"admin:org", b"repo:read"))
    return p, "changed or reordered"


def _tamper_delete(store: StoredEvents, service: Service, admin: Actor, s: Scenario) -> tuple[int, str]:
    # Un-revoke CI by deleting its Revoked event.
    p = position_of(service.audit, admin, "Revoked", s.ids["CI"])
    store.delete(p)
    return p, "missing"


def _tamper_swap_states(store: StoredEvents, service: Service, admin: Actor, s: Scenario) -> tuple[int, str]:
    first = position_of(service.audit, admin, "Regenerated", s.ids["CI"])
    second = position_of(service.audit, admin, "Used", s.ids["Nightly"])
    store.swap_states(second, first)
    return first, "changed or reordered"


def _tamper_swap_positions(
    store: StoredEvents, service: Service, admin: Actor, s: Scenario
) -> tuple[int, str]:
    first = position_of(service.audit, admin, "Created", s.ids["Laptop"])
    second = position_of(service.audit, admin, "Revoked", s.ids["CI"])
    store.swap_positions(first, second)
    return first, "changed or reordered"


TAMPERINGS: dict[str, Callable[[StoredEvents, Service, Actor, Scenario], tuple[int, str]]] = {
    "change": _tamper_change,
    "delete": _tamper_delete,
    "swap-states": _tamper_swap_states,
    "swap-positions": _tamper_swap_positions,
}


@pytest.mark.parametrize("kind", list(TAMPERINGS))
def test_verify_names_the_first_tampered_position(
    service: Service, scenario: Scenario, admin: Actor, kind: str
) -> None:
    store = StoredEvents(service)
    before = store.positions()
    head = service.audit.digest()
    bad, problem = TAMPERINGS[kind](store, service, admin, scenario)
    check = service.audit.verify()
    assert not check.ok
    assert check.first_bad_position == bad
    assert check.problem is not None and problem in check.problem
    assert check.checked == len([p for p in before if p < bad])
    assert (check.head_position, check.head_digest) == head


def test_verify_detects_tampering_at_the_first_and_last_positions(
    service: Service, scenario: Scenario
) -> None:
    store = StoredEvents(service)
    positions = store.positions()
    store.set_state(positions[-1], store.state(positions[-1]) + b" ")
    assert service.audit.verify().first_bad_position == positions[-1]
    store.set_state(positions[0], store.state(positions[0]) + b" ")
    assert service.audit.verify().first_bad_position == positions[0]


def test_verify_detects_a_row_inserted_into_a_gap(
    service: Service, ledger: Ledger, clock: FakeClock, backend: str, alice: Actor
) -> None:
    if backend != "postgres":
        pytest.skip("only PostgreSQL positions have gaps to insert into")
    store = StoredEvents(service)
    store.burn_positions(3)
    clock.advance(minutes=1)
    ledger.create_token(alice, name="After the gap", scopes=["job"], expires_in_days=30)
    positions = store.positions()
    gap = next(p + 1 for p, q in itertools.pairwise(positions) if q - p > 1)
    assert service.audit.verify().ok
    store.execute(
        "INSERT INTO {table} (originator_id, originator_version, topic, state, {position})"
        " VALUES (?, ?, ?, ?, ?)",
        uuid.uuid4(),
        1,
        "domain.token:Token.Revoked",
        b"{}",
        gap,
    )
    check = service.audit.verify()
    assert not check.ok and check.first_bad_position == gap
    assert check.problem is not None and "inserted" in check.problem


def test_verify_against_a_recorded_digest(
    service: Service, ledger: Ledger, clock: FakeClock, scenario: Scenario, alice: Actor
) -> None:
    recorded = service.audit.digest()
    clock.advance(minutes=1)
    ledger.create_token(alice, name="Later", scopes=["job"], expires_in_days=30)
    assert service.audit.digest()[0] > recorded[0]
    assert service.audit.verify(expect=recorded).ok

    wrong = service.audit.verify(expect=(recorded[0], "f" * 64))
    assert not wrong.ok and wrong.first_bad_position == recorded[0]
    assert wrong.problem is not None and "recorded outside" in wrong.problem

    beyond = service.audit.verify(expect=(recorded[0] + 10_000, recorded[1]))
    assert not beyond.ok and beyond.first_bad_position == recorded[0] + 10_000


def test_a_rewritten_chain_is_caught_by_the_digest_recorded_outside(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    recorded = service.audit.digest()
    store = StoredEvents(service)
    tampered, _ = _tamper_change(store, service, admin, scenario)
    assert service.audit.verify().first_bad_position == tampered
    # The attacker also rebuilds the chain over the changed events: it is consistent again...
    service.projections.rebuild("chain")
    assert service.audit.verify().ok
    # ...but no longer ends in the head recorded outside the system.
    check = service.audit.verify(expect=recorded)
    assert not check.ok and check.first_bad_position == recorded[0]


def test_rebuilding_the_chain_yields_the_same_head(service: Service, scenario: Scenario) -> None:
    before = service.audit.digest()
    assert before[0] > 0
    assert service.projections.rebuild("chain") == len(StoredEvents(service).positions())
    assert service.audit.digest() == before
    assert service.audit.verify().ok


def test_an_empty_log_has_the_genesis_digest(service: Service) -> None:
    assert service.audit.digest() == (0, "0" * 64)
    check = service.audit.verify()
    assert check.ok and check.checked == 0


# Export -------------------------------------------------------------------------------------


def export_lines(service: Service) -> list[str]:
    buffer = io.StringIO()
    service.audit.export(buffer)
    return buffer.getvalue().splitlines(keepends=True)


def verify_lines(service: Service, lines: list[str]) -> Any:
    return service.audit.verify_export(io.StringIO("".join(lines)))


def test_export_round_trips_and_verifies(service: Service, scenario: Scenario) -> None:
    buffer = io.StringIO()
    calls: list[tuple[int, int]] = []
    position, digest, count = service.audit.export(buffer, progress=lambda n, last: calls.append((n, last)))
    assert (position, digest) == service.audit.digest()
    positions = StoredEvents(service).positions()
    assert count == len(positions) and calls[-1] == (count, position)

    lines = buffer.getvalue().splitlines()
    header, *entries, trailer = (json.loads(line) for line in lines)
    assert header["format"] == "tokenledger-audit-export" and header["exported_at"] == REPORT_TIME.isoformat()
    assert [e["position"] for e in entries] == positions
    assert trailer == {"head": {"position": position, "digest": digest}, "events": count}
    assert entries[-1]["digest"] == digest

    check = service.audit.verify_export(io.StringIO(buffer.getvalue()))
    assert check.ok, check
    assert (check.checked, check.head_position, check.head_digest) == (count, position, digest)


def _entry_index(lines: list[str], position: int) -> int:
    return next(i for i, line in enumerate(lines) if json.loads(line).get("position") == position)


def test_a_changed_export_line_is_detected_at_its_position(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    lines = export_lines(service)
    p = position_of(service.audit, admin, "Revoked", scenario.ids["CI"])
    i = _entry_index(lines, p)
    entry = json.loads(lines[i])
    state = base64.b64decode(entry["state"]).replace(b'"admin"', b'"user"')
    entry["state"] = base64.b64encode(state).decode()
    lines[i] = json.dumps(entry) + "\n"
    check = verify_lines(service, lines)
    assert not check.ok and check.first_bad_position == p


def test_a_removed_export_line_is_detected_at_the_next_position(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    lines = export_lines(service)
    p = position_of(service.audit, admin, "Revoked", scenario.ids["CI"])
    i = _entry_index(lines, p)
    following = json.loads(lines[i + 1])["position"]
    del lines[i]
    check = verify_lines(service, lines)
    assert not check.ok and check.first_bad_position == following


def test_a_truncated_export_is_detected(service: Service, scenario: Scenario) -> None:
    lines = export_lines(service)
    without_trailer = verify_lines(service, lines[:-1])
    assert not without_trailer.ok
    assert without_trailer.problem is not None and "truncated" in without_trailer.problem
    cut_short = verify_lines(service, lines[:-4])
    assert not cut_short.ok


def test_an_export_with_an_entry_dropped_at_the_end_fails_on_its_trailer(
    service: Service, scenario: Scenario
) -> None:
    lines = export_lines(service)
    del lines[-2]
    check = verify_lines(service, lines)
    assert not check.ok and check.problem is not None and "trailer" in check.problem


def test_a_reforged_export_is_caught_against_the_live_chain(
    service: Service, scenario: Scenario, admin: Actor
) -> None:
    from domain.integrity import GENESIS, link

    lines = export_lines(service)
    p = position_of(service.audit, admin, "Created", scenario.ids["Org admin"])
    previous, forged = GENESIS, [lines[0]]
    for line in lines[1:-1]:
        entry = json.loads(line)
        state = base64.b64decode(entry["state"])
        if entry["position"] == p:
            state = state.replace(b"admin:org", b"repo:read")
            entry["state"] = base64.b64encode(state).decode()
        previous = link(
            previous,
            entry["position"],
            entry["originator_id"],
            entry["originator_version"],
            entry["topic"],
            state,
        )
        entry["digest"] = previous
        forged.append(json.dumps(entry) + "\n")
    trailer = json.loads(lines[-1])
    trailer["head"]["digest"] = previous
    forged.append(json.dumps(trailer) + "\n")
    check = verify_lines(service, forged)
    assert not check.ok
    assert check.problem is not None and "live log" in check.problem


def test_something_that_is_not_an_export_is_rejected(service: Service) -> None:
    with pytest.raises(ValidationError):
        service.audit.verify_export(io.StringIO('{"format": "something-else"}\n'))
    with pytest.raises(ValidationError):
        service.audit.verify_export(io.StringIO("not json\n"))


def test_an_export_of_another_store_verifies_on_its_own(
    service: Service, scenario: Scenario, tmp_path: Any, clock: FakeClock
) -> None:
    lines = export_lines(service)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'other.sqlite'}", argon2=CHEAP_ARGON2)
    with build(settings, clock=clock, hasher=cheap_hasher()) as other:
        check = other.audit.verify_export(io.StringIO("".join(lines)))
    assert check.ok, check
