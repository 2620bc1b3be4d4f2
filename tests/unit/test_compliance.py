"""Compliance rules, one by one: `domain.compliance.assess` and `summarise` on hand-built records.

Pure domain code: no store, no clock; every instant is relative to a fixed NOW.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.compliance import Finding, Policy, Severity, assess, summarise
from domain.views import ClientUse, ScopeUse, TokenRecord

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = Policy()


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def days_ahead(days: float) -> datetime:
    return NOW + timedelta(days=days)


def token(**changes: Any) -> TokenRecord:
    """A healthy token: read-only, expires in 30 days, issued 10 days ago, used yesterday."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "owner": "alice",
        "name": "CI",
        "scopes": ["repo:read"],
        "created_at": days_ago(10),
        "expires_at": days_ahead(30),
        "regenerated_at": None,
        "revoked_at": None,
        "revoke_reason": None,
        "last_used_at": days_ago(1),
        "last_used_ip": "10.0.0.1",
    }
    values.update(changes)
    return TokenRecord(**values)


def exercised(*scopes: str, at: datetime | None = None) -> list[ScopeUse]:
    when = at or days_ago(1)
    return [ScopeUse(scope, first_exercised=when, last_exercised=when) for scope in scopes]


def clients(*addresses: str, last_seen: datetime | None = None) -> list[ClientUse]:
    seen = last_seen or days_ago(1)
    return [ClientUse(address, first_seen=days_ago(20), last_seen=seen, windows=1) for address in addresses]


def findings_of(
    record: TokenRecord,
    client_uses: Sequence[ClientUse] = (),
    scope_uses: Sequence[ScopeUse] | None = None,
    policy: Policy = POLICY,
) -> dict[str, Finding]:
    """The findings keyed by rule (each rule fires at most once per token)."""
    if scope_uses is None:
        scope_uses = exercised(*record.scopes)
    found = assess(record, client_uses, scope_uses, NOW, policy)
    rules = [f.rule for f in found]
    assert len(rules) == len(set(rules)), f"a rule fired twice: {rules}"
    return {f.rule: f for f in found}


# A healthy token ----------------------------------------------------------------------------


def test_a_healthy_token_has_no_findings() -> None:
    assert findings_of(token(), clients("10.0.0.1")) == {}


def test_findings_name_the_token_and_its_owner() -> None:
    record = token(owner="bob", name="Jenkins CI", scopes=["admin:org"])
    (finding,) = findings_of(record).values()
    assert (finding.token_id, finding.owner, finding.token_name) == (record.id, "bob", "Jenkins CI")


# Admin scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["admin:org", "admin:ssh_key"])
def test_an_admin_scope_is_a_high_severity_finding(scope: str) -> None:
    found = findings_of(token(scopes=["repo:read", scope]))
    assert set(found) == {"admin_scope"}
    assert found["admin_scope"].severity is Severity.HIGH
    assert scope in found["admin_scope"].message
    assert found["admin_scope"].recommendation


def test_both_admin_scopes_make_one_finding_naming_both() -> None:
    found = findings_of(token(scopes=["admin:ssh_key", "admin:org"]))
    assert found["admin_scope"].message == "grants administrative scope admin:org, admin:ssh_key"


def test_non_admin_scopes_are_not_an_admin_finding() -> None:
    scopes = ["repo", "repo:read", "machine", "service", "job"]
    assert "admin_scope" not in findings_of(token(scopes=scopes))


# Expiry -------------------------------------------------------------------------------------


def test_a_token_without_expiry_is_a_medium_finding_recommending_an_expiry() -> None:
    found = findings_of(token(expires_at=None))
    assert set(found) == {"no_expiry"}
    assert found["no_expiry"].severity is Severity.MEDIUM
    assert found["no_expiry"].message == "never expires"
    assert "30, 60 or 90 days" in found["no_expiry"].recommendation


@pytest.mark.parametrize(
    ("expires_at", "message"),
    [
        (days_ahead(7), "expires in 7 days"),
        (days_ahead(1), "expires in 1 day"),
        (NOW + timedelta(hours=3), "expires in 0 days"),
    ],
)
def test_a_token_expiring_within_7_days_is_an_info_finding(expires_at: datetime, message: str) -> None:
    found = findings_of(token(expires_at=expires_at))
    assert set(found) == {"expiring_soon"}
    assert found["expiring_soon"].severity is Severity.INFO
    assert found["expiring_soon"].message == message


def test_a_token_expiring_after_7_days_is_not_expiring_soon() -> None:
    assert findings_of(token(expires_at=days_ahead(7) + timedelta(seconds=1))) == {}


def test_the_expiring_period_follows_the_policy() -> None:
    found = findings_of(token(expires_at=days_ahead(20)), policy=Policy(expiring_days=21))
    assert set(found) == {"expiring_soon"}


# Use ----------------------------------------------------------------------------------------


def test_a_recent_token_never_used_is_a_low_finding() -> None:
    found = findings_of(token(created_at=days_ago(89), last_used_at=None), scope_uses=[])
    assert set(found) == {"never_used"}
    assert found["never_used"].severity is Severity.LOW
    assert found["never_used"].message == "not used yet"


def test_a_token_never_used_in_the_whole_stale_period_is_a_medium_finding() -> None:
    # Issued recently (regenerated), so the only finding is that it was never used.
    record = token(created_at=days_ago(90), regenerated_at=days_ago(5), last_used_at=None)
    found = findings_of(record, scope_uses=[])
    assert set(found) == {"never_used"}
    assert found["never_used"].severity is Severity.MEDIUM
    assert found["never_used"].message == "never used in the 90 days since it was created"
    assert found["never_used"].recommendation == "revoke it"


def test_a_token_not_used_for_longer_than_the_stale_period_is_stale() -> None:
    record = token(last_used_at=days_ago(91))
    found = findings_of(record, scope_uses=exercised("repo:read", at=days_ago(91)))
    assert "stale" in found and "never_used" not in found
    assert found["stale"].severity is Severity.MEDIUM
    assert found["stale"].message == "not used for 91 days"


def test_a_token_used_within_the_stale_period_is_not_stale() -> None:
    record = token(last_used_at=days_ago(89))
    assert findings_of(record, scope_uses=exercised("repo:read", at=days_ago(89))) == {}


def test_the_stale_period_follows_the_policy() -> None:
    record = token(last_used_at=days_ago(31))
    policy = Policy(stale_days=30, unused_scope_days=90)
    found = findings_of(record, scope_uses=exercised("repo:read", at=days_ago(31)), policy=policy)
    assert set(found) == {"stale"}
    assert found["stale"].message == "not used for 31 days"


# Least privilege ----------------------------------------------------------------------------


def test_repo_used_only_for_reads_recommends_repo_read() -> None:
    found = findings_of(token(scopes=["repo"]), scope_uses=exercised("repo:read"))
    assert set(found) == {"unused_scopes"}
    finding = found["unused_scopes"]
    assert finding.severity is Severity.MEDIUM
    assert finding.message == "scope repo (write) not exercised in 90 days"
    assert finding.recommendation == "narrow it to repo:read (least privilege)"


def test_every_unused_scope_is_named_and_the_narrower_set_is_recommended() -> None:
    record = token(scopes=["repo", "job", "service"])
    found = findings_of(record, scope_uses=exercised("repo:read", "service"))
    finding = found["unused_scopes"]
    assert finding.message == "scopes repo (write), job not exercised in 90 days"
    assert finding.recommendation == "narrow it to repo:read service (least privilege)"


def test_scopes_all_exercised_are_not_a_finding() -> None:
    assert findings_of(token(scopes=["repo", "job"]), scope_uses=exercised("repo", "job")) == {}


def test_a_scope_exercised_only_before_the_period_counts_as_unused() -> None:
    uses = exercised("repo:read") + exercised("job", at=days_ago(91))
    found = findings_of(token(scopes=["repo:read", "job"]), scope_uses=uses)
    assert found["unused_scopes"].message == "scope job not exercised in 90 days"
    assert found["unused_scopes"].recommendation == "narrow it to repo:read (least privilege)"


def test_a_token_that_exercised_no_scope_is_told_to_narrow_to_fewer_scopes() -> None:
    found = findings_of(token(scopes=["repo:read", "job"]), scope_uses=[])
    assert found["unused_scopes"].message == "scopes repo:read, job not exercised in 90 days"
    assert found["unused_scopes"].recommendation == "narrow it to fewer scopes (least privilege)"


def test_a_never_used_token_gets_no_unused_scopes_finding() -> None:
    found = findings_of(token(scopes=["repo", "job"], last_used_at=None), scope_uses=[])
    assert set(found) == {"never_used"}


# Shared tokens ------------------------------------------------------------------------------


def test_a_token_used_from_more_than_max_clients_addresses_is_shared() -> None:
    found = findings_of(token(), clients("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"))
    assert set(found) == {"shared"}
    assert found["shared"].severity is Severity.MEDIUM
    assert found["shared"].message == "used from 4 different addresses in 30 days"
    assert "separate token" in found["shared"].recommendation


def test_max_clients_addresses_is_not_shared() -> None:
    assert findings_of(token(), clients("10.0.0.1", "10.0.0.2", "10.0.0.3")) == {}


def test_addresses_not_seen_in_the_clients_period_do_not_count() -> None:
    recent = clients("10.0.0.1", "10.0.0.2", "10.0.0.3")
    old = clients("10.0.0.9", last_seen=days_ago(31))
    assert findings_of(token(), recent + old) == {}


def test_the_client_limit_follows_the_policy() -> None:
    found = findings_of(token(), clients("10.0.0.1", "10.0.0.2"), policy=Policy(max_clients=1))
    assert found["shared"].message == "used from 2 different addresses in 30 days"


# Rotation -----------------------------------------------------------------------------------


def test_a_value_older_than_the_rotation_period_is_not_rotated() -> None:
    found = findings_of(token(created_at=days_ago(90)))
    assert set(found) == {"not_rotated"}
    assert found["not_rotated"].severity is Severity.LOW
    assert found["not_rotated"].message == "value not rotated for 90 days"


def test_a_regeneration_resets_the_rotation_clock() -> None:
    assert findings_of(token(created_at=days_ago(400), regenerated_at=days_ago(89))) == {}


def test_a_value_regenerated_long_ago_is_not_rotated() -> None:
    found = findings_of(token(created_at=days_ago(400), regenerated_at=days_ago(120)))
    assert found["not_rotated"].message == "value not rotated for 120 days"


def test_the_rotation_period_follows_the_policy() -> None:
    found = findings_of(token(created_at=days_ago(31)), policy=Policy(rotation_days=30))
    assert set(found) == {"not_rotated"}


# Several findings ---------------------------------------------------------------------------


def test_one_token_can_carry_every_applicable_finding() -> None:
    record = token(
        scopes=["repo", "admin:org"], expires_at=None, created_at=days_ago(200), last_used_at=days_ago(2)
    )
    addresses = clients("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    found = findings_of(record, addresses, scope_uses=exercised("repo:read"))
    assert set(found) == {"admin_scope", "no_expiry", "unused_scopes", "shared", "not_rotated"}
    assert found["unused_scopes"].message == "scopes repo (write), admin:org not exercised in 90 days"
    assert found["unused_scopes"].recommendation == "narrow it to repo:read (least privilege)"


# Summary ------------------------------------------------------------------------------------


def test_summary_counts_findings_per_owner_and_by_severity() -> None:
    alice_admin = token(owner="alice", name="Admin", scopes=["admin:org"], expires_at=None)  # high, medium
    alice_ok = token(owner="alice", name="Fine")
    bob_old = token(owner="bob", name="Old", created_at=days_ago(100), last_used_at=None)  # medium, low
    bob_soon = token(owner="bob", name="Soon", expires_at=days_ahead(2))  # info
    carol_ok = token(owner="carol", name="Fine")
    tokens = [bob_soon, carol_ok, alice_ok, bob_old, alice_admin]
    found = [
        f for t in tokens for f in assess(t, [], exercised(*t.scopes) if t.last_used_at else [], NOW, POLICY)
    ]
    assert sorted((f.owner, f.token_name, f.rule) for f in found) == [
        ("alice", "Admin", "admin_scope"),
        ("alice", "Admin", "no_expiry"),
        ("bob", "Old", "never_used"),
        ("bob", "Old", "not_rotated"),
        ("bob", "Soon", "expiring_soon"),
    ]

    report = summarise(tokens, found, NOW, POLICY)

    assert report.generated_at == NOW and report.policy == POLICY
    assert report.active_tokens == 5
    summary = {o.owner: (o.active_tokens, o.findings) for o in report.owners}
    assert [o.owner for o in report.owners] == ["alice", "bob", "carol"]
    assert summary == {
        "alice": (2, {"high": 1, "medium": 1, "low": 0, "info": 0}),
        "bob": (2, {"high": 0, "medium": 1, "low": 1, "info": 1}),
        "carol": (1, {"high": 0, "medium": 0, "low": 0, "info": 0}),
    }
    assert report.by_severity == {"high": 1, "medium": 2, "low": 1, "info": 1}
    assert list(report.by_severity) == ["high", "medium", "low", "info"]
    assert report.by_rule == {
        "admin_scope": 1,
        "no_expiry": 1,
        "never_used": 1,
        "not_rotated": 1,
        "expiring_soon": 1,
    }


def test_summary_orders_findings_by_severity_then_owner_token_and_rule() -> None:
    tokens = [
        token(owner="bob", name="B", scopes=["admin:org"], expires_at=None),
        token(owner="alice", name="Z", expires_at=None),
        token(owner="alice", name="A", expires_at=days_ahead(1)),
        token(owner="alice", name="Y", scopes=["admin:org"]),
    ]
    found = [f for t in tokens for f in assess(t, [], exercised(*t.scopes), NOW, POLICY)]
    report = summarise(tokens, found, NOW, POLICY)
    assert [(f.severity.value, f.owner, f.token_name, f.rule) for f in report.findings] == [
        ("high", "alice", "Y", "admin_scope"),
        ("high", "bob", "B", "admin_scope"),
        ("medium", "alice", "Z", "no_expiry"),
        ("medium", "bob", "B", "no_expiry"),
        ("info", "alice", "A", "expiring_soon"),
    ]


def test_summary_of_no_tokens_is_empty() -> None:
    report = summarise([], [], NOW, POLICY)
    assert report.findings == [] and report.owners == [] and report.active_tokens == 0
    assert report.by_severity == {"high": 0, "medium": 0, "low": 0, "info": 0}
    assert report.by_rule == {}
