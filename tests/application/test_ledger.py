"""The Ledger on a real store (SQLite file and PostgreSQL): commands, queries, verification, usage.

Fakes only at the edges: the clock, and argon2 with cheap parameters. Where a test counts argon2
work it wraps a real cheap hasher; nothing else is replaced.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from application.hashing import Argon2Hasher, Argon2Parameters
from application.ledger import Actor, IssuedToken, Ledger
from application.verification import Outcome
from domain import token_format
from domain.account import Account, Role
from domain.errors import (
    AuthenticationFailed,
    InvalidExpiry,
    InvalidName,
    InvalidScopes,
    NameTaken,
    PermissionDenied,
    TokenNotFound,
    TokenRevoked,
    UsernameTaken,
    ValidationError,
)
from domain.scopes import Scope
from domain.token import TokenState
from interface.settings import Settings
from interface.wiring import Service, build
from projections import schema
from tests.support import FakeClock, cheap_hasher

STRONGER_ARGON2 = Argon2Parameters(memory_kib=128, time_cost=2, parallelism=1)


class CountingHasher:
    """A real argon2id hasher that counts the work it does."""

    def __init__(self, inner: Argon2Hasher | None = None) -> None:
        self.inner = inner or cheap_hasher()
        self.verifications = 0

    def hash(self, secret: str) -> str:
        return self.inner.hash(secret)

    def verify(self, secret_hash: str, secret: str) -> bool:
        self.verifications += 1
        return self.inner.verify(secret_hash, secret)

    def needs_rehash(self, secret_hash: str) -> bool:
        return self.inner.needs_rehash(secret_hash)


@pytest.fixture
def counting() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def counted(
    service: Service, settings: Settings, clock: FakeClock, counting: CountingHasher
) -> Iterator[Ledger]:
    """A second ledger on the same store (as another server process would be) that counts argon2."""
    with build(settings, clock=clock, hasher=counting) as other:
        counting.verifications = 0
        yield other.ledger


@pytest.fixture
def stronger(service: Service, settings: Settings, clock: FakeClock) -> Iterator[Ledger]:
    """A ledger on the same store whose hasher uses other (stronger) argon2 parameters."""
    with build(settings, clock=clock, hasher=Argon2Hasher(STRONGER_ARGON2)) as other:
        yield other.ledger


@pytest.fixture
def windowed(service: Service, settings: Settings, clock: FakeClock) -> Iterator[Ledger]:
    """A ledger on the same store with a 60-second usage window."""
    with build(replace(settings, usage_window_seconds=60), clock=clock, hasher=cheap_hasher()) as other:
        yield other.ledger


def create(
    ledger: Ledger,
    actor: Actor,
    name: str = "GitHub Actions",
    scopes: tuple[str, ...] = ("repo",),
    days: int | None = 30,
) -> IssuedToken:
    return ledger.create_token(actor, name=name, scopes=list(scopes), expires_in_days=days)


def event_types(ledger: Ledger, actor: Actor, token_id: uuid.UUID) -> list[str]:
    return [entry.event_type for entry in ledger.history(actor, token_id)]


def wrong_secret_for(value: str) -> str:
    """A well-formed value with the same lookup id as `value` but another secret."""
    parsed = token_format.parse(value)
    assert parsed is not None
    return token_format.TokenValue(lookup_id=parsed.lookup_id, secret=token_format.generate().secret).value


def stored_events(ledger: Ledger, aggregate_id: uuid.UUID) -> list[Any]:
    return [ledger.mapper.to_domain_event(s) for s in ledger.recorder.select_events(aggregate_id)]


def head(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


# Create ------------------------------------------------------------------------------------


def test_create_returns_a_well_formed_value_and_the_token_record(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice, name="GitHub Actions", scopes=("repo", "job"), days=30)
    assert token_format.is_well_formed(issued.value)
    record = issued.record
    assert isinstance(record.id, uuid.UUID)
    assert record.owner == "alice"
    assert record.name == "GitHub Actions"
    assert record.scopes == ["repo", "job"]
    assert record.state(clock.now()) is TokenState.ACTIVE
    assert record.created_at == clock.now()
    assert record.expires_at == clock.now() + timedelta(days=30)
    assert record.last_used_at is None
    assert record.last_used_ip is None
    assert record.regenerated_at is None
    assert record.revoked_at is None


def test_created_value_verifies_with_the_granted_scopes(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice, name="CI", scopes=("repo",))
    result = ledger.verify(issued.value)
    assert result.outcome is Outcome.VALID
    assert result.token is not None
    assert (result.token.token_id, result.token.owner, result.token.name) == (issued.record.id, "alice", "CI")
    assert result.allows(Scope.REPO_READ)
    assert not result.allows(Scope.ADMIN_ORG)


def test_the_value_is_shown_only_by_create(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    secret = issued.value[len("opat_") + 12 : -6]
    assert issued.value not in repr(issued)
    shown = [
        repr(ledger.token(alice, issued.record.id)),
        repr(ledger.tokens(alice, state="all")),
        repr(ledger.history(alice, issued.record.id)),
    ]
    for text in shown:
        assert issued.value not in text
        assert secret not in text


def test_no_value_secret_or_password_is_stored(service: Service, ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    secrets = [
        issued.value,
        issued.value[len("opat_") + 12 : -6],
        regenerated.value,
        regenerated.value[len("opat_") + 12 : -6],
        "alice-password",
    ]
    stored = [n.state.decode("utf-8", "replace") for n in ledger.recorder.select_notifications(None, 10_000)]
    with service.read_models.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            stored.extend(repr(row) for row in conn.execute(select(table)))
    assert len(stored) > 5
    leaks = [s for s in secrets if any(s in text for text in stored)]
    assert leaks == []


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"name": "CI", "scopes": ["repo", "write:all"], "expires_in_days": 30}, InvalidScopes),
        ({"name": "CI", "scopes": [], "expires_in_days": 30}, InvalidScopes),
        ({"name": "CI", "scopes": ["repo"], "expires_in_days": 45}, InvalidExpiry),
        ({"name": "CI", "scopes": ["repo"], "expires_in_days": 0}, InvalidExpiry),
        ({"name": "  ", "scopes": ["repo"], "expires_in_days": 30}, InvalidName),
        ({"name": "x" * 101, "scopes": ["repo"], "expires_in_days": 30}, InvalidName),
    ],
)
def test_invalid_create_is_rejected_and_changes_nothing(
    ledger: Ledger, alice: Actor, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    before = head(ledger)
    with pytest.raises(error):
        ledger.create_token(alice, **kwargs)
    assert head(ledger) == before
    assert ledger.tokens(alice, state="all") == []


def test_a_30_day_token_expires_exactly_30_days_after_creation(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    created_at = clock.now()
    issued = create(ledger, alice, days=30)
    assert issued.record.expires_at == created_at + timedelta(days=30)
    clock.current = created_at + timedelta(days=30) - timedelta(microseconds=1)
    assert ledger.verify(issued.value).outcome is Outcome.VALID
    assert ledger.token(alice, issued.record.id).state(clock.now()) is TokenState.ACTIVE
    clock.current = created_at + timedelta(days=30)
    assert ledger.verify(issued.value).outcome is Outcome.EXPIRED
    assert ledger.token(alice, issued.record.id).state(clock.now()) is TokenState.EXPIRED


@pytest.mark.parametrize("days", [60, 90])
def test_60_and_90_day_tokens_expire_after_their_lifetime(
    ledger: Ledger, alice: Actor, clock: FakeClock, days: int
) -> None:
    issued = create(ledger, alice, days=days)
    assert issued.record.expires_at == clock.now() + timedelta(days=days)


def test_a_token_without_expiry_keeps_working(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    issued = create(ledger, alice, days=None)
    assert issued.record.expires_at is None
    clock.advance(days=3650)
    assert ledger.verify(issued.value).outcome is Outcome.VALID


# Listing -----------------------------------------------------------------------------------


def test_tokens_are_listed_by_state(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    short = create(ledger, alice, name="Short", days=30)
    forever = create(ledger, alice, name="Forever", days=None)
    gone = create(ledger, alice, name="Gone", days=90)
    ledger.revoke_token(alice, gone.record.id)
    clock.advance(days=31)

    def names(state: str) -> set[str]:
        return {r.name for r in ledger.tokens(alice, state=state)}

    assert names("active") == {"Forever"}
    assert names("expired") == {"Short"}
    assert names("revoked") == {"Gone"}
    assert names("all") == {"Short", "Forever", "Gone"}
    assert ledger.tokens(alice) == ledger.tokens(alice, state="active")
    assert short.record.id != forever.record.id


def test_listing_with_an_unknown_state_is_rejected(ledger: Ledger, alice: Actor) -> None:
    with pytest.raises(ValidationError):
        ledger.tokens(alice, state="deleted")


def test_tokens_are_listed_newest_first(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    for name in ("First", "Second", "Third"):
        create(ledger, alice, name=name)
        clock.advance(minutes=1)
    assert [r.name for r in ledger.tokens(alice)] == ["Third", "Second", "First"]


# Ownership ---------------------------------------------------------------------------------


def test_a_member_cannot_see_another_members_token(ledger: Ledger, alice: Actor, bob: Actor) -> None:
    issued = create(ledger, alice)
    with pytest.raises(TokenNotFound):
        ledger.token(bob, issued.record.id)
    with pytest.raises(TokenNotFound):
        ledger.history(bob, issued.record.id)
    assert ledger.tokens(bob, state="all") == []


def test_a_member_cannot_regenerate_or_revoke_another_members_token(
    ledger: Ledger, alice: Actor, bob: Actor
) -> None:
    issued = create(ledger, alice)
    before = head(ledger)
    with pytest.raises(TokenNotFound):
        ledger.regenerate_token(bob, issued.record.id)
    with pytest.raises(TokenNotFound):
        ledger.revoke_token(bob, issued.record.id)
    assert head(ledger) == before
    assert ledger.verify(issued.value).outcome is Outcome.VALID


def test_a_member_cannot_list_or_bulk_revoke_another_members_tokens(
    ledger: Ledger, alice: Actor, bob: Actor
) -> None:
    issued = create(ledger, alice)
    with pytest.raises(PermissionDenied):
        ledger.tokens(bob, owner="alice")
    with pytest.raises(PermissionDenied):
        ledger.revoke_all(bob, owner="alice")
    assert ledger.verify(issued.value).ok


def test_a_member_cannot_create_a_token_for_someone_else(ledger: Ledger, alice: Actor, bob: Actor) -> None:
    with pytest.raises(PermissionDenied):
        ledger.create_token(bob, name="CI", scopes=["repo"], expires_in_days=30, owner="alice")
    assert ledger.tokens(alice, state="all") == []


def test_an_admin_can_see_and_act_on_a_members_token(ledger: Ledger, alice: Actor, admin: Actor) -> None:
    issued = create(ledger, alice)
    assert ledger.token(admin, issued.record.id).name == "GitHub Actions"
    assert [r.id for r in ledger.tokens(admin, owner="alice")] == [issued.record.id]
    assert issued.record.id in {r.id for r in ledger.tokens(admin, owner="*")}
    regenerated = ledger.regenerate_token(admin, issued.record.id)
    assert ledger.verify(regenerated.value).ok
    assert ledger.revoke_token(admin, issued.record.id)
    assert ledger.verify(regenerated.value).outcome is Outcome.REVOKED
    last = ledger.history(admin, issued.record.id)[-1]
    assert (last.event_type, last.actor, last.details["reason"]) == ("Revoked", "root", "admin")


def test_an_admin_can_create_a_token_for_a_member(ledger: Ledger, alice: Actor, admin: Actor) -> None:
    issued = ledger.create_token(admin, name="Deploy", scopes=["job"], expires_in_days=30, owner="alice")
    assert issued.record.owner == "alice"
    assert [r.id for r in ledger.tokens(alice)] == [issued.record.id]
    assert ledger.history(alice, issued.record.id)[0].actor == "root"


def test_a_members_token_with_admin_org_gives_no_power_over_other_members(
    ledger: Ledger, alice: Actor, bob: Actor
) -> None:
    bobs = create(ledger, bob)
    try:
        minted = create(ledger, alice, name="Org", scopes=("admin:org",))
    except PermissionDenied:
        return  # refusing to grant admin:org to a member is one correct answer
    verified = ledger.verify(minted.value).token
    assert verified is not None
    # The ledger's own shape of "alice acting through her token" (see Ledger.rotate_self).
    through_token = Actor(
        username="alice", role=Role.MEMBER, via_token=verified.token_id, scopes=verified.scopes
    )
    # A token is admin only when its owner is: admin:org on a member's token grants nothing more.
    with pytest.raises(TokenNotFound):
        ledger.token(through_token, bobs.record.id)
    with pytest.raises(PermissionDenied):
        ledger.revoke_all(through_token, all_owners=True)
    assert ledger.verify(bobs.value).ok


def test_an_unknown_token_id_is_not_found(ledger: Ledger, alice: Actor, admin: Actor) -> None:
    missing = uuid.uuid4()
    for actor in (alice, admin):
        with pytest.raises(TokenNotFound):
            ledger.token(actor, missing)
        with pytest.raises(TokenNotFound):
            ledger.revoke_token(actor, missing)
        with pytest.raises(TokenNotFound):
            ledger.regenerate_token(actor, missing)


# Regenerate --------------------------------------------------------------------------------


def test_regenerate_keeps_name_and_scopes_and_issues_a_new_value(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice, name="Jenkins CI", scopes=("repo:read", "job"))
    clock.advance(days=3)
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    assert regenerated.value != issued.value
    assert token_format.is_well_formed(regenerated.value)
    record = regenerated.record
    assert record.id == issued.record.id
    assert (record.name, record.scopes) == ("Jenkins CI", ["repo:read", "job"])
    assert record.created_at == issued.record.created_at
    assert record.regenerated_at == clock.now()
    assert event_types(ledger, alice, issued.record.id) == ["Created", "Regenerated"]


def test_regenerated_token_old_value_stops_verifying_at_once(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    assert ledger.verify(issued.value).ok  # cached as verified in this process
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    assert not ledger.verify(issued.value).ok
    assert ledger.verify(regenerated.value).outcome is Outcome.VALID


def test_regenerated_token_old_value_is_rejected_by_another_process(
    ledger: Ledger, counted: Ledger, alice: Actor
) -> None:
    issued = create(ledger, alice)
    assert counted.verify(issued.value).ok
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    assert not counted.verify(issued.value).ok
    assert counted.verify(regenerated.value).ok


def test_regenerate_keeps_the_lifetime_by_default(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    issued = create(ledger, alice, days=60)
    clock.advance(days=10)
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    assert regenerated.record.expires_at == clock.now() + timedelta(days=60)
    clock.advance(days=5)
    again = ledger.regenerate_token(alice, issued.record.id)
    assert again.record.expires_at == clock.now() + timedelta(days=60)


def test_regenerate_keeps_no_expiry_by_default(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    issued = create(ledger, alice, days=None)
    clock.advance(days=10)
    assert ledger.regenerate_token(alice, issued.record.id).record.expires_at is None


def test_regenerate_with_an_explicit_expiry_changes_the_lifetime(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice, days=30)
    clock.advance(days=1)
    longer = ledger.regenerate_token(alice, issued.record.id, expires_in_days=90)
    assert longer.record.expires_at == clock.now() + timedelta(days=90)
    never = ledger.regenerate_token(alice, issued.record.id, expires_in_days=None)
    assert never.record.expires_at is None


def test_regenerate_with_an_invalid_expiry_changes_nothing(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    with pytest.raises(InvalidExpiry):
        ledger.regenerate_token(alice, issued.record.id, expires_in_days=45)
    assert ledger.verify(issued.value).ok
    assert event_types(ledger, alice, issued.record.id) == ["Created"]


def test_a_revoked_token_cannot_be_regenerated(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    ledger.revoke_token(alice, issued.record.id)
    with pytest.raises(TokenRevoked):
        ledger.regenerate_token(alice, issued.record.id)
    assert event_types(ledger, alice, issued.record.id) == ["Created", "Revoked"]
    assert ledger.verify(issued.value).outcome is Outcome.REVOKED


def test_an_expired_token_can_be_regenerated_and_works_again(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice, days=30)
    clock.advance(days=45)
    assert ledger.verify(issued.value).outcome is Outcome.EXPIRED
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    assert regenerated.record.expires_at == clock.now() + timedelta(days=30)
    assert regenerated.record.state(clock.now()) is TokenState.ACTIVE
    assert ledger.verify(regenerated.value).ok


# Revoke ------------------------------------------------------------------------------------


def test_revoked_token_is_rejected(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    issued = create(ledger, alice)
    assert ledger.verify(issued.value).ok
    assert ledger.revoke_token(alice, issued.record.id) is True
    assert ledger.verify(issued.value).outcome is Outcome.REVOKED
    record = ledger.token(alice, issued.record.id)
    assert record.state(clock.now()) is TokenState.REVOKED
    assert (record.revoked_at, record.revoke_reason) == (clock.now(), "user")


def test_revoked_token_is_rejected_by_a_process_that_verified_it_before(
    ledger: Ledger, counted: Ledger, alice: Actor
) -> None:
    issued = create(ledger, alice)
    assert counted.verify(issued.value).ok
    ledger.revoke_token(alice, issued.record.id)
    assert counted.verify(issued.value).outcome is Outcome.REVOKED


def test_revoking_twice_returns_false_and_writes_no_event(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    assert ledger.revoke_token(alice, issued.record.id) is True
    before = head(ledger)
    assert ledger.revoke_token(alice, issued.record.id) is False
    assert head(ledger) == before
    assert event_types(ledger, alice, issued.record.id) == ["Created", "Revoked"]


def test_a_revoke_racing_a_regenerate_leaves_no_value_working(
    ledger: Ledger, counted: Ledger, alice: Actor
) -> None:
    issued = create(ledger, alice)

    def regenerate() -> str | None:
        try:
            return counted.regenerate_token(alice, issued.record.id).value
        except TokenRevoked:
            return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        regenerated = pool.submit(regenerate)
        revoked = pool.submit(ledger.revoke_token, alice, issued.record.id)
        new_value, was_revoked = regenerated.result(), revoked.result()
    assert was_revoked is True
    assert not ledger.verify(issued.value).ok
    assert new_value is None or not counted.verify(new_value).ok
    assert ledger.tokens(alice) == []


def test_revoke_records_reason_actor_and_source(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    ledger.revoke_token(alice, issued.record.id, source="cli")
    last = ledger.history(alice, issued.record.id)[-1]
    assert (last.event_type, last.actor, last.details) == (
        "Revoked",
        "alice",
        {"reason": "user", "source": "cli"},
    )


def test_revoke_all_revokes_every_token_of_the_owner_only(ledger: Ledger, alice: Actor, bob: Actor) -> None:
    first = create(ledger, alice, name="One")
    second = create(ledger, alice, name="Two")
    bobs = create(ledger, bob, name="One")
    assert ledger.revoke_all(alice) == 2
    assert ledger.verify(first.value).outcome is Outcome.REVOKED
    assert ledger.verify(second.value).outcome is Outcome.REVOKED
    assert ledger.verify(bobs.value).ok
    assert ledger.tokens(alice) == []
    assert {r.revoke_reason for r in ledger.tokens(alice, state="revoked")} == {"bulk"}


def test_revoke_all_leaves_already_revoked_tokens_alone(ledger: Ledger, alice: Actor) -> None:
    gone = create(ledger, alice, name="Gone")
    create(ledger, alice, name="Live")
    ledger.revoke_token(alice, gone.record.id)
    assert ledger.revoke_all(alice) == 1
    assert event_types(ledger, alice, gone.record.id) == ["Created", "Revoked"]
    assert ledger.revoke_all(alice) == 0


def test_revoke_all_issued_before_spares_values_issued_after(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    old = create(ledger, alice, name="Old")
    rotated = create(ledger, alice, name="Rotated")
    clock.advance(hours=1)
    cut = clock.now()
    clock.advance(hours=1)
    new_value = ledger.regenerate_token(alice, rotated.record.id)
    fresh = create(ledger, alice, name="Fresh")
    assert ledger.revoke_all(alice, issued_before=cut) == 1
    assert ledger.verify(old.value).outcome is Outcome.REVOKED
    assert ledger.verify(new_value.value).ok
    assert ledger.verify(fresh.value).ok


def test_revoke_all_of_every_owner_needs_an_admin(
    ledger: Ledger, alice: Actor, bob: Actor, admin: Actor
) -> None:
    alices = create(ledger, alice)
    bobs = create(ledger, bob)
    with pytest.raises(PermissionDenied):
        ledger.revoke_all(alice, all_owners=True)
    assert ledger.verify(bobs.value).ok
    assert ledger.revoke_all(admin, all_owners=True) == 2
    assert ledger.verify(alices.value).outcome is Outcome.REVOKED
    assert ledger.verify(bobs.value).outcome is Outcome.REVOKED


def test_an_admin_can_bulk_revoke_one_members_tokens(
    ledger: Ledger, alice: Actor, bob: Actor, admin: Actor
) -> None:
    alices = create(ledger, alice)
    bobs = create(ledger, bob)
    assert ledger.revoke_all(admin, owner="alice") == 1
    assert ledger.verify(alices.value).outcome is Outcome.REVOKED
    assert ledger.verify(bobs.value).ok


def test_revoke_by_value_revokes_a_leaked_token(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    assert ledger.revoke_by_value(issued.value, reporter="secret-scanner") is True
    assert ledger.verify(issued.value).outcome is Outcome.REVOKED
    last = ledger.history(alice, issued.record.id)[-1]
    assert (last.event_type, last.actor, last.details["reason"]) == ("Revoked", "secret-scanner", "leaked")
    assert ledger.revoke_by_value(issued.value, reporter="secret-scanner") is False
    assert event_types(ledger, alice, issued.record.id) == ["Created", "Revoked"]


def test_revoke_by_value_ignores_values_that_are_not_the_token(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    before = head(ledger)
    assert ledger.revoke_by_value("opat_garbage", reporter="x") is False
    assert ledger.revoke_by_value(token_format.generate().value, reporter="x") is False
    assert ledger.revoke_by_value(wrong_secret_for(issued.value), reporter="x") is False
    assert head(ledger) == before
    assert ledger.verify(issued.value).ok


def test_a_token_can_rotate_itself(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice, name="CI", scopes=("job",))
    rotated = ledger.rotate_self(ledger.verify(issued.value))
    assert (rotated.record.id, rotated.record.name, rotated.record.scopes) == (
        issued.record.id,
        "CI",
        ["job"],
    )
    assert not ledger.verify(issued.value).ok
    assert ledger.verify(rotated.value).ok
    last = ledger.history(alice, issued.record.id)[-1]
    assert (last.event_type, last.actor) == ("Regenerated", f"alice (token {issued.record.id})")


def test_a_token_can_revoke_itself(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    assert ledger.revoke_self(ledger.verify(issued.value)) is True
    assert ledger.verify(issued.value).outcome is Outcome.REVOKED
    assert ledger.token(alice, issued.record.id).revoke_reason == "self"


def test_an_invalid_value_can_neither_rotate_nor_revoke_itself(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    before = head(ledger)
    with pytest.raises(AuthenticationFailed):
        ledger.rotate_self(ledger.verify(wrong_secret_for(issued.value)))
    with pytest.raises(AuthenticationFailed):
        ledger.revoke_self(ledger.verify("opat_nothing"))
    assert head(ledger) == before


# Names -------------------------------------------------------------------------------------


def test_names_are_unique_among_an_owners_active_tokens_ignoring_case(ledger: Ledger, alice: Actor) -> None:
    create(ledger, alice, name="GitHub Actions")
    before = head(ledger)
    with pytest.raises(NameTaken):
        create(ledger, alice, name="github actions")
    with pytest.raises(NameTaken):
        create(ledger, alice, name="  GITHUB ACTIONS ")
    assert head(ledger) == before
    assert [r.name for r in ledger.tokens(alice, state="all")] == ["GitHub Actions"]


def test_concurrent_creates_of_one_name_let_exactly_one_through(
    ledger: Ledger, counted: Ledger, alice: Actor
) -> None:
    ledgers = [ledger, counted] * 4

    def attempt(which: Ledger) -> str:
        try:
            create(which, alice, name="Deploy")
        except NameTaken:
            return "taken"
        return "created"

    with ThreadPoolExecutor(max_workers=len(ledgers)) as pool:
        results = list(pool.map(attempt, ledgers))
    assert sorted(results) == ["created"] + ["taken"] * (len(ledgers) - 1)
    assert [r.name for r in ledger.tokens(alice, state="all")] == ["Deploy"]


def test_two_owners_may_use_the_same_name(ledger: Ledger, alice: Actor, bob: Actor) -> None:
    create(ledger, alice, name="CI")
    assert create(ledger, bob, name="CI").record.owner == "bob"


def test_a_name_is_free_again_after_revoke(ledger: Ledger, alice: Actor) -> None:
    first = create(ledger, alice, name="CI")
    ledger.revoke_token(alice, first.record.id)
    second = create(ledger, alice, name="ci")
    assert second.record.id != first.record.id
    with pytest.raises(NameTaken):
        create(ledger, alice, name="CI")


def test_a_name_is_free_again_after_expiry(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    first = create(ledger, alice, name="CI", days=30)
    clock.advance(days=30)
    second = create(ledger, alice, name="CI")
    assert second.record.id != first.record.id
    assert [r.name for r in ledger.tokens(alice)] == ["CI"]


def test_an_expired_token_cannot_be_regenerated_into_a_duplicate_name(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    old = create(ledger, alice, name="CI", days=30)
    clock.advance(days=31)
    new = create(ledger, alice, name="ci")
    before = head(ledger)
    with pytest.raises(NameTaken):
        ledger.regenerate_token(alice, old.record.id)
    assert head(ledger) == before
    assert ledger.token(alice, old.record.id).state(clock.now()) is TokenState.EXPIRED
    assert ledger.verify(new.value).ok


def test_an_expired_token_regenerated_takes_its_name_back(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    old = create(ledger, alice, name="CI", days=30)
    clock.advance(days=31)
    ledger.regenerate_token(alice, old.record.id)
    with pytest.raises(NameTaken):
        create(ledger, alice, name="CI")


# Verification ------------------------------------------------------------------------------


def test_malformed_bad_checksum_and_unknown_values_are_rejected_without_argon2(
    ledger: Ledger, counted: Ledger, counting: CountingHasher, alice: Actor
) -> None:
    issued = create(ledger, alice)
    last = issued.value[-1]
    mistyped = issued.value[:-1] + ("a" if last != "a" else "b")
    cases = {
        "": Outcome.MALFORMED,
        "hunter2": Outcome.MALFORMED,
        issued.value + "x": Outcome.MALFORMED,
        f"Bearer {issued.value}": Outcome.MALFORMED,
        mistyped: Outcome.BAD_CHECKSUM,
        token_format.generate().value: Outcome.UNKNOWN,
    }
    outcomes = {text: counted.verify(text).outcome for text in cases}
    assert outcomes == cases
    assert counting.verifications == 0


def test_a_wrong_secret_is_rejected(
    ledger: Ledger, counted: Ledger, counting: CountingHasher, alice: Actor
) -> None:
    issued = create(ledger, alice)
    result = counted.verify(wrong_secret_for(issued.value))
    assert result.outcome is Outcome.WRONG_SECRET
    assert result.token is None
    assert counting.verifications == 1


def test_warm_verification_does_no_argon2(
    ledger: Ledger, counted: Ledger, counting: CountingHasher, alice: Actor
) -> None:
    issued = create(ledger, alice)
    assert counted.verify(issued.value).ok
    assert counting.verifications == 1
    for _ in range(5):
        assert counted.verify(issued.value).ok
    assert counting.verifications == 1


def test_failed_attempts_are_throttled_after_the_limit(
    ledger: Ledger, counted: Ledger, counting: CountingHasher, alice: Actor, settings: Settings
) -> None:
    issued = create(ledger, alice)
    limit = settings.failure_limit
    outcomes = [counted.verify(wrong_secret_for(issued.value)).outcome for _ in range(limit)]
    assert outcomes == [Outcome.WRONG_SECRET] * limit
    assert counting.verifications == limit
    for _ in range(5):
        assert counted.verify(wrong_secret_for(issued.value)).outcome is Outcome.THROTTLED
    assert counting.verifications == limit


def test_throttling_one_lookup_id_leaves_other_tokens_alone(
    ledger: Ledger, counted: Ledger, alice: Actor, settings: Settings
) -> None:
    attacked = create(ledger, alice, name="Attacked")
    other = create(ledger, alice, name="Other")
    for _ in range(settings.failure_limit + 1):
        counted.verify(wrong_secret_for(attacked.value))
    assert counted.verify(wrong_secret_for(attacked.value)).outcome is Outcome.THROTTLED
    assert counted.verify(other.value).outcome is Outcome.VALID


def test_throttling_lifts_after_the_failure_window(
    ledger: Ledger,
    counted: Ledger,
    counting: CountingHasher,
    alice: Actor,
    clock: FakeClock,
    settings: Settings,
) -> None:
    issued = create(ledger, alice)
    for _ in range(settings.failure_limit):
        counted.verify(wrong_secret_for(issued.value))
    assert counted.verify(issued.value).outcome is Outcome.THROTTLED
    clock.advance(seconds=settings.failure_window_seconds + 1)
    spent = counting.verifications
    assert counted.verify(issued.value).outcome is Outcome.VALID
    assert counting.verifications == spent + 1


def test_a_value_verified_before_the_throttle_keeps_working(
    ledger: Ledger, counted: Ledger, alice: Actor, settings: Settings
) -> None:
    issued = create(ledger, alice)
    assert counted.verify(issued.value).ok
    for _ in range(settings.failure_limit + 1):
        counted.verify(wrong_secret_for(issued.value))
    assert counted.verify(issued.value).outcome is Outcome.VALID


def test_expired_token_is_rejected_without_argon2(
    ledger: Ledger, counted: Ledger, counting: CountingHasher, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice, days=30)
    clock.advance(days=31)
    assert counted.verify(issued.value).outcome is Outcome.EXPIRED
    assert counting.verifications == 0


def test_revoked_token_is_rejected_without_argon2(
    ledger: Ledger, counted: Ledger, counting: CountingHasher, alice: Actor
) -> None:
    issued = create(ledger, alice)
    ledger.revoke_token(alice, issued.record.id)
    assert counted.verify(issued.value).outcome is Outcome.REVOKED
    assert counting.verifications == 0


# Usage -------------------------------------------------------------------------------------


def test_each_flush_writes_one_used_event_per_token(ledger: Ledger, alice: Actor, clock: FakeClock) -> None:
    first = create(ledger, alice, name="First")
    second = create(ledger, alice, name="Second")
    ledger.record_use(ledger.verify(first.value), scope="repo", address="10.0.0.1")
    assert ledger.usage.flush() == 1
    clock.advance(seconds=5)
    ledger.record_use(ledger.verify(first.value), scope="repo", address="10.0.0.2")
    ledger.record_use(ledger.verify(second.value), scope="repo", address="10.0.0.3")
    assert ledger.usage.flush() == 2
    assert ledger.usage.flush() == 0
    assert event_types(ledger, alice, first.record.id) == ["Created", "Used", "Used"]
    assert event_types(ledger, alice, second.record.id) == ["Created", "Used"]
    assert ledger.token(alice, first.record.id).use_count == 2


def test_a_token_with_thousands_of_used_events_loads_from_a_snapshot(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice)
    verification = ledger.verify(issued.value)
    for _ in range(2_000):
        clock.advance(seconds=1)
        ledger.record_use(verification, scope="repo", address="10.0.0.1")
    assert ledger.usage.flush() == 2_000  # a window of 0: one Used event per use

    (snapshot,) = ledger.snapshots.get(issued.record.id, desc=True, limit=1)
    token = ledger.repository.get(issued.record.id)
    # Loading starts from the newest snapshot and replays only what came after it.
    assert token.version == 2_001
    assert token.version - snapshot.originator_version < Ledger.snapshotting_intervals[type(token)]
    assert token.use_count == 2_000 == ledger.token(alice, issued.record.id).use_count
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    assert ledger.verify(regenerated.value).outcome is Outcome.VALID


def test_uses_within_a_window_become_one_used_event(
    ledger: Ledger, windowed: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice, scopes=("repo",))
    start = clock.now()
    uses = [
        ("repo", "10.0.0.1", "git/2.43"),
        ("repo:read", "10.0.0.2", "curl/8.5"),
        ("repo", "10.0.0.1", "git/2.43"),
        (None, "10.0.0.3", "git/2.44"),
    ]
    with windowed.running():
        for scope, address, agent in uses:
            clock.advance(seconds=10)
            windowed.record_use(windowed.verify(issued.value), scope=scope, address=address, user_agent=agent)
    used = [e for e in ledger.history(alice, issued.record.id) if e.event_type == "Used"]
    assert len(used) == 1
    details = used[0].details
    assert details["count"] == 4
    assert details["first_used_at"] == (start + timedelta(seconds=10)).isoformat()
    assert details["last_used_at"] == (start + timedelta(seconds=40)).isoformat()
    assert sorted(details["scopes"]) == ["repo", "repo:read"]
    assert details["addresses"] == ["10.0.0.2", "10.0.0.1", "10.0.0.3"]
    assert details["user_agents"] == ["curl/8.5", "git/2.43", "git/2.44"]


def test_usage_written_by_two_processes_at_once_adds_up(
    ledger: Ledger, counted: Ledger, alice: Actor
) -> None:
    issued = create(ledger, alice)
    for which in (ledger, counted):
        for _ in range(3):
            which.record_use(which.verify(issued.value), scope="repo")
    with ThreadPoolExecutor(max_workers=2) as pool:
        written = list(pool.map(lambda which: which.usage.flush(), [ledger, counted]))
    # A usage window of 0 (these fixtures) writes one event per use.
    assert written == [3, 3]
    assert ledger.token(alice, issued.record.id).use_count == 6
    assert event_types(ledger, alice, issued.record.id) == ["Created"] + ["Used"] * 6


def test_last_use_shows_in_the_token_record_after_the_flush(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice)
    clock.advance(hours=2)
    ledger.record_use(
        ledger.verify(issued.value), scope="repo:read", address="192.0.2.7", user_agent="git/2.43"
    )
    assert ledger.token(alice, issued.record.id).last_used_at is None
    ledger.usage.flush()
    record = ledger.token(alice, issued.record.id)
    assert record.last_used_at == clock.now()
    assert record.last_used_ip == "192.0.2.7"
    assert record.last_used_agent == "git/2.43"
    assert record.use_count == 1
    assert record.scopes_exercised == ["repo:read"]


def test_running_flushes_pending_usage_on_exit(
    ledger: Ledger, windowed: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice)
    with windowed.running():
        windowed.record_use(windowed.verify(issued.value), address="10.0.0.1")
        assert "Used" not in event_types(ledger, alice, issued.record.id)
    assert event_types(ledger, alice, issued.record.id) == ["Created", "Used"]
    assert ledger.token(alice, issued.record.id).last_used_at == clock.now()
    assert windowed.usage.queue_depth == 0


def test_a_long_client_address_does_not_stall_the_read_models(ledger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    # An IPv6 address with a zone id: Python's ipaddress accepts it, so the HTTP layer passes it on.
    address = "fe80::1%" + "x" * 100
    # Addresses are bounded like user agents: an oversized one (an IPv6 zone id can be any
    # length) must never make a read model refuse a row and stall every later command.
    ledger.record_use(ledger.verify(issued.value), address=address)
    ledger.usage.flush()
    later = create(ledger, alice, name="Later")
    assert {r.name for r in ledger.tokens(alice)} == {"GitHub Actions", "Later"}
    assert ledger.token(alice, issued.record.id).use_count == 1
    assert ledger.verify(later.value).ok


def test_uses_of_a_token_revoked_before_them_are_not_recorded(
    ledger: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice)
    verified = ledger.verify(issued.value)
    ledger.revoke_token(alice, issued.record.id)
    clock.advance(seconds=1)
    ledger.record_use(verified, address="10.0.0.1")
    ledger.usage.flush()
    assert event_types(ledger, alice, issued.record.id) == ["Created", "Revoked"]
    assert ledger.token(alice, issued.record.id).last_used_at is None


def test_recording_use_of_a_failed_verification_is_refused(ledger: Ledger) -> None:
    with pytest.raises(AuthenticationFailed):
        ledger.record_use(ledger.verify("opat_nothing"))
    assert ledger.usage.queue_depth == 0


# Rehashing ---------------------------------------------------------------------------------


def test_a_token_hashed_with_old_parameters_is_rehashed_with_its_next_use(
    service: Service, ledger: Ledger, stronger: Ledger, alice: Actor
) -> None:
    issued = create(ledger, alice)
    lookup_id = issued.value[len("opat_") : len("opat_") + 12]
    old_hash = service.read_models.credential(lookup_id)
    assert old_hash is not None and "m=64," in old_hash.secret_hash

    result = stronger.verify(issued.value)
    assert result.ok and result.rehashed is not None
    stronger.record_use(result, address="10.0.0.1")
    stronger.usage.flush()

    used = ledger.history(alice, issued.record.id)[-1]
    assert (used.event_type, used.details["rehashed"]) == ("Used", True)
    credential = service.read_models.credential(lookup_id)
    assert credential is not None
    assert f"m={STRONGER_ARGON2.memory_kib},t={STRONGER_ARGON2.time_cost}," in credential.secret_hash
    assert stronger.verify(issued.value).outcome is Outcome.VALID
    assert stronger.verify(issued.value).rehashed is None


def test_a_rehash_is_recorded_once(ledger: Ledger, stronger: Ledger, alice: Actor) -> None:
    issued = create(ledger, alice)
    stronger.record_use(stronger.verify(issued.value))
    stronger.usage.flush()
    stronger.record_use(stronger.verify(issued.value))
    stronger.usage.flush()
    rehashed = [
        e.details["rehashed"] for e in ledger.history(alice, issued.record.id) if e.event_type == "Used"
    ]
    assert rehashed == [True, False]


def test_a_rehash_of_the_old_value_does_not_undo_a_regeneration(
    ledger: Ledger, stronger: Ledger, alice: Actor
) -> None:
    issued = create(ledger, alice)
    stronger.record_use(stronger.verify(issued.value))  # rehashed; written with the next flush
    regenerated = ledger.regenerate_token(alice, issued.record.id)
    stronger.usage.flush()
    # The rehash of the old secret is dropped once the token was regenerated; it must never
    # overwrite the hash that Regenerated set.
    assert ledger.verify(regenerated.value).outcome is Outcome.VALID
    assert not ledger.verify(issued.value).ok


def test_a_password_is_rehashed_on_login(ledger: Ledger, stronger: Ledger, alice: Actor) -> None:
    account_id = Account.id_for("alice")
    assert [type(e).__name__ for e in stored_events(ledger, account_id)] == ["Registered"]
    assert stronger.authenticate("alice", "alice-password").username == "alice"
    events = stored_events(ledger, account_id)
    assert [type(e).__name__ for e in events] == ["Registered", "PasswordChanged"]
    assert events[-1].actor == "system:rehash"
    assert f"m={STRONGER_ARGON2.memory_kib},t={STRONGER_ARGON2.time_cost}," in events[-1].password_hash
    stronger.authenticate("alice", "alice-password")
    assert len(stored_events(ledger, account_id)) == 2
    with pytest.raises(AuthenticationFailed):
        stronger.authenticate("alice", "wrong-password")


def test_authenticating_an_unknown_user_fails_after_one_argon2_verification(
    counted: Ledger, counting: CountingHasher
) -> None:
    with pytest.raises(AuthenticationFailed):
        counted.authenticate("nobody", "some-password")
    assert counting.verifications == 1
    with pytest.raises(AuthenticationFailed):
        counted.authenticate("Not A Name!", "some-password")
    assert counting.verifications == 2


def test_authenticating_with_a_wrong_password_fails(ledger: Ledger, alice: Actor) -> None:
    with pytest.raises(AuthenticationFailed, match="wrong username or password"):
        ledger.authenticate("alice", "bob-password")


def test_a_username_can_be_registered_once(ledger: Ledger, alice: Actor) -> None:
    with pytest.raises(UsernameTaken):
        ledger.register_account("Alice", "member", "another-password")
    assert ledger.authenticate("alice", "alice-password").username == "alice"


# Read your writes --------------------------------------------------------------------------


def test_every_command_is_visible_to_queries_as_soon_as_it_returns(
    ledger: Ledger, counted: Ledger, alice: Actor, clock: FakeClock
) -> None:
    issued = create(ledger, alice)
    token_id = issued.record.id
    assert ledger.token(alice, token_id).name == "GitHub Actions"
    assert [r.id for r in ledger.tokens(alice)] == [token_id]

    clock.advance(minutes=1)
    ledger.regenerate_token(alice, token_id)
    assert ledger.token(alice, token_id).regenerated_at == clock.now()

    clock.advance(minutes=1)
    ledger.record_use(ledger.verify(create(ledger, alice, name="Used").value), address="10.0.0.9")
    ledger.usage.flush()
    assert [r.last_used_ip for r in ledger.tokens(alice) if r.name == "Used"] == ["10.0.0.9"]

    ledger.revoke_token(alice, token_id)
    assert ledger.token(alice, token_id).revoked_at == clock.now()
    assert counted.token(alice, token_id).revoked_at == clock.now()  # another process, same store

    assert ledger.revoke_all(alice) == 1
    assert ledger.tokens(alice) == []
