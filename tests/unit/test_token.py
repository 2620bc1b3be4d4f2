"""The Token aggregate and the name claim that keeps names unique per owner."""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.domain import Aggregate

from domain.errors import InvalidName, NameTaken, TokenRevoked
from domain.scopes import Scopes
from domain.token import RevokeReason, Token, TokenName, TokenNameClaim, TokenState
from domain.usage import UsageSummary

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def new_token(
    *, expires_at: datetime | None = NOW + timedelta(days=30), name: str = "GitHub Actions"
) -> Token:
    return Token.create(
        owner="alice",
        name=TokenName.parse(name),
        scopes=Scopes.parse(["repo", "job"]),
        expires_at=expires_at,
        lookup_id="LOOKUP000001",
        secret_hash="$argon2id$hash-1",
        actor="alice",
        now=NOW,
    )


def summary(first: datetime, last: datetime | None = None, count: int = 1) -> UsageSummary:
    return UsageSummary(
        first_used_at=first,
        last_used_at=last or first,
        count=count,
        scopes=frozenset({"repo"}),
        addresses=("10.0.0.1",),
        user_agents=("git/2.43",),
    )


def fields_of(event_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(event_class)} - BASE_FIELDS


def test_token_has_exactly_four_event_types() -> None:
    events = {
        name
        for name, value in vars(Token).items()
        if inspect.isclass(value) and issubclass(value, Aggregate.Event) and value is not Token.Event
    }
    assert events == {"Created", "Used", "Regenerated", "Revoked"}


def test_created_event_carries_the_contract_fields() -> None:
    assert fields_of(Token.Created) == {
        "owner",
        "name",
        "scopes",
        "expires_at",
        "lookup_id",
        "secret_hash",
        "actor",
    }
    [created] = new_token().collect_events()
    assert type(created) is Token.Created
    assert created.owner == "alice"
    assert created.name == "GitHub Actions"
    assert created.scopes == ["repo", "job"]
    assert created.expires_at == NOW + timedelta(days=30)
    assert created.lookup_id == "LOOKUP000001"
    assert created.secret_hash == "$argon2id$hash-1"
    assert created.actor == "alice"
    assert created.timestamp == NOW


def test_used_event_carries_the_contract_fields() -> None:
    # secret_hash is the documented, defaulted addition for rehashing on use.
    assert fields_of(Token.Used) == {
        "first_used_at",
        "last_used_at",
        "count",
        "scopes",
        "addresses",
        "user_agents",
        "secret_hash",
    }
    token = new_token()
    token.collect_events()
    window = UsageSummary(
        first_used_at=NOW + timedelta(minutes=1),
        last_used_at=NOW + timedelta(minutes=2),
        count=3,
        scopes=frozenset({"repo:read", "job"}),
        addresses=("10.0.0.1", "10.0.0.2"),
        user_agents=("git/2.43",),
    )
    assert token.record_use(window, now=NOW + timedelta(minutes=3))
    [used] = token.collect_events()
    assert type(used) is Token.Used
    assert (used.first_used_at, used.last_used_at, used.count) == (
        NOW + timedelta(minutes=1),
        NOW + timedelta(minutes=2),
        3,
    )
    assert used.scopes == ["job", "repo:read"]
    assert used.addresses == ["10.0.0.1", "10.0.0.2"]
    assert used.user_agents == ["git/2.43"]
    assert used.secret_hash is None
    assert token.last_used_at == NOW + timedelta(minutes=2)
    assert token.use_count == 3


def test_regenerated_event_carries_the_contract_fields() -> None:
    assert fields_of(Token.Regenerated) == {"lookup_id", "secret_hash", "expires_at", "actor"}
    token = new_token()
    token.collect_events()
    later = NOW + timedelta(days=5)
    token.regenerate(
        lookup_id="LOOKUP000002", secret_hash="$argon2id$hash-2", expires_at=None, actor="bob", now=later
    )
    [regenerated] = token.collect_events()
    assert type(regenerated) is Token.Regenerated
    assert (regenerated.lookup_id, regenerated.secret_hash, regenerated.expires_at, regenerated.actor) == (
        "LOOKUP000002",
        "$argon2id$hash-2",
        None,
        "bob",
    )
    assert (token.lookup_id, token.secret_hash, token.expires_at, token.regenerated_at) == (
        "LOOKUP000002",
        "$argon2id$hash-2",
        None,
        later,
    )


def test_regenerate_keeps_name_and_scopes() -> None:
    token = new_token()
    token.regenerate(lookup_id="LOOKUP000002", secret_hash="h2", expires_at=None, actor="alice", now=NOW)
    assert (token.name, token.scopes, token.owner) == ("GitHub Actions", ["repo", "job"], "alice")


def test_revoked_event_carries_the_contract_fields() -> None:
    assert fields_of(Token.Revoked) == {"reason", "actor", "source"}
    token = new_token()
    token.collect_events()
    assert token.revoke(reason=RevokeReason.LEAKED, actor="scanner", source="revoke-endpoint", now=NOW)
    [revoked] = token.collect_events()
    assert type(revoked) is Token.Revoked
    assert (revoked.reason, revoked.actor, revoked.source) == ("leaked", "scanner", "revoke-endpoint")
    assert token.revoked_at == NOW


def test_revoke_reasons_are_the_documented_five() -> None:
    assert {r.value for r in RevokeReason} == {"user", "admin", "leaked", "bulk", "self"}


def test_revoking_twice_records_one_event() -> None:
    token = new_token()
    token.collect_events()
    assert token.revoke(reason=RevokeReason.USER, actor="alice", source="api", now=NOW)
    later = NOW + timedelta(hours=1)
    assert not token.revoke(reason=RevokeReason.ADMIN, actor="root", source="api", now=later)
    events = token.collect_events()
    assert [type(e) for e in events] == [Token.Revoked]
    assert token.revoke_reason == "user"
    assert token.revoked_at == NOW


def test_regenerating_a_revoked_token_raises_token_revoked() -> None:
    token = new_token()
    token.revoke(reason=RevokeReason.USER, actor="alice", source="api", now=NOW)
    token.collect_events()
    with pytest.raises(TokenRevoked):
        token.regenerate(lookup_id="LOOKUP000002", secret_hash="h2", expires_at=None, actor="alice", now=NOW)
    assert token.collect_events() == []
    assert token.lookup_id == "LOOKUP000001"


def test_an_expired_token_may_be_regenerated() -> None:
    token = new_token()
    later = NOW + timedelta(days=31)
    assert token.state(later) is TokenState.EXPIRED
    token.regenerate(
        lookup_id="LOOKUP000002",
        secret_hash="h2",
        expires_at=later + timedelta(days=30),
        actor="alice",
        now=later,
    )
    assert token.state(later) is TokenState.ACTIVE


def test_uses_after_revocation_are_refused() -> None:
    token = new_token()
    token.revoke(reason=RevokeReason.USER, actor="alice", source="api", now=NOW + timedelta(hours=1))
    token.collect_events()
    assert not token.record_use(summary(NOW + timedelta(hours=2)), now=NOW + timedelta(hours=3))
    assert token.collect_events() == []
    assert token.last_used_at is None


def test_uses_made_before_revocation_are_still_recorded_after_it() -> None:
    token = new_token()
    token.revoke(reason=RevokeReason.USER, actor="alice", source="api", now=NOW + timedelta(hours=1))
    token.collect_events()
    assert token.record_use(summary(NOW + timedelta(minutes=30)), now=NOW + timedelta(hours=2))
    assert [type(e) for e in token.collect_events()] == [Token.Used]


def test_use_with_a_fresh_hash_replaces_the_stored_hash() -> None:
    token = new_token()
    token.record_use(summary(NOW), now=NOW, secret_hash="$argon2id$rehashed")
    assert token.secret_hash == "$argon2id$rehashed"


def test_use_counts_add_up_over_windows() -> None:
    token = new_token()
    token.record_use(summary(NOW, count=2), now=NOW)
    token.record_use(summary(NOW + timedelta(minutes=1), count=5), now=NOW + timedelta(minutes=1))
    assert token.use_count == 7


def test_state_is_active_until_the_expiry_instant_and_expired_from_it() -> None:
    token = new_token(expires_at=NOW + timedelta(days=30))
    assert token.state(NOW) is TokenState.ACTIVE
    assert token.state(NOW + timedelta(days=30) - timedelta(microseconds=1)) is TokenState.ACTIVE
    assert token.state(NOW + timedelta(days=30)) is TokenState.EXPIRED


def test_a_token_without_expiry_never_expires() -> None:
    assert new_token(expires_at=None).state(NOW + timedelta(days=3650)) is TokenState.ACTIVE


def test_a_revoked_token_is_revoked_before_and_after_its_expiry() -> None:
    token = new_token(expires_at=NOW + timedelta(days=30))
    token.revoke(reason=RevokeReason.USER, actor="alice", source="api", now=NOW)
    assert token.state(NOW) is TokenState.REVOKED
    assert token.state(NOW + timedelta(days=60)) is TokenState.REVOKED


# Names -------------------------------------------------------------------------------------


def test_name_is_stripped() -> None:
    assert TokenName.parse("  Jenkins CI \n").text == "Jenkins CI"


def test_a_100_character_name_is_accepted() -> None:
    assert TokenName.parse("x" * 100).text == "x" * 100


def test_a_101_character_name_is_rejected() -> None:
    with pytest.raises(InvalidName, match="100"):
        TokenName.parse("x" * 101)


def test_length_is_counted_after_stripping() -> None:
    assert TokenName.parse(" " + "x" * 100 + " ").text == "x" * 100


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_blank_name_is_rejected(blank: str) -> None:
    with pytest.raises(InvalidName):
        TokenName.parse(blank)


@pytest.mark.parametrize("text", ["CI\nprod", "CI\x00", "tab\there", "bell\x07", "CI\u200b"])
def test_names_with_control_characters_are_rejected(text: str) -> None:
    with pytest.raises(InvalidName, match="printable"):
        TokenName.parse(text)


def test_unicode_names_are_accepted() -> None:
    assert TokenName.parse("Déploiement 🚀").text == "Déploiement 🚀"


@pytest.mark.parametrize("not_text", [None, 42, ["CI"]])
def test_a_name_that_is_not_a_string_is_rejected(not_text: object) -> None:
    with pytest.raises(InvalidName):
        TokenName.parse(not_text)


def test_names_compare_without_regard_to_case() -> None:
    assert TokenName.parse("GitHub Actions").key == TokenName.parse("github actions").key


# Name claims -------------------------------------------------------------------------------


def test_name_claim_id_depends_on_owner_and_case_insensitive_name() -> None:
    ci = TokenName.parse("CI")
    assert TokenNameClaim.id_for("alice", ci) == TokenNameClaim.id_for("alice", TokenName.parse("ci"))
    assert TokenNameClaim.id_for("alice", ci) != TokenNameClaim.id_for("bob", ci)
    assert TokenNameClaim.id_for("alice", ci) != TokenNameClaim.id_for("alice", TokenName.parse("CD"))


def test_a_second_claim_while_the_holder_is_active_raises_name_taken() -> None:
    name = TokenName.parse("CI")
    first, second = uuid.uuid4(), uuid.uuid4()
    claim = TokenNameClaim.claim_new("alice", name, first, NOW)
    claim.collect_events()
    with pytest.raises(NameTaken):
        claim.claim(name, second, holder_is_active=True, now=NOW)
    assert claim.token_id == first
    assert claim.collect_events() == []


def test_a_claim_passes_to_a_new_token_when_the_holder_is_no_longer_active() -> None:
    name = TokenName.parse("CI")
    first, second = uuid.uuid4(), uuid.uuid4()
    claim = TokenNameClaim.claim_new("alice", name, first, NOW)
    claim.claim(name, second, holder_is_active=False, now=NOW)
    assert claim.token_id == second


def test_a_released_name_may_be_claimed_again() -> None:
    name = TokenName.parse("CI")
    first, second = uuid.uuid4(), uuid.uuid4()
    claim = TokenNameClaim.claim_new("alice", name, first, NOW)
    claim.release(first, NOW)
    assert claim.token_id is None
    claim.claim(name, second, holder_is_active=True, now=NOW)
    assert claim.token_id == second


def test_only_the_holder_can_release_a_claim() -> None:
    name = TokenName.parse("CI")
    holder = uuid.uuid4()
    claim = TokenNameClaim.claim_new("alice", name, holder, NOW)
    claim.collect_events()
    claim.release(uuid.uuid4(), NOW)
    assert claim.token_id == holder
    assert claim.collect_events() == []
