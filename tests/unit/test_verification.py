"""The pure parts of verification: the failed-attempts limiter, the verified-value cache, the outcome.

The Verifier itself reads the read models; its behaviour is tested on a real store in
tests/application/test_ledger.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from application.verification import Outcome, SlidingWindowLimiter, Verification, VerifiedCache, VerifiedToken
from domain.scopes import Scope, Scopes


def test_a_lookup_id_is_blocked_once_it_reaches_the_failure_limit() -> None:
    limiter = SlidingWindowLimiter(limit=3, window_seconds=60)
    for second in range(3):
        assert not limiter.is_blocked("abc", 1000.0 + second)
        limiter.record("abc", 1000.0 + second)
    assert limiter.is_blocked("abc", 1003.0)


def test_failures_of_one_lookup_id_do_not_block_another() -> None:
    limiter = SlidingWindowLimiter(limit=1, window_seconds=60)
    limiter.record("abc", 1000.0)
    assert limiter.is_blocked("abc", 1000.0)
    assert not limiter.is_blocked("xyz", 1000.0)


def test_the_block_lifts_once_failures_leave_the_window() -> None:
    limiter = SlidingWindowLimiter(limit=2, window_seconds=60)
    limiter.record("abc", 1000.0)
    limiter.record("abc", 1010.0)
    assert limiter.is_blocked("abc", 1059.0)
    assert not limiter.is_blocked("abc", 1060.0)


def test_the_limiter_forgets_the_oldest_lookup_ids_beyond_its_size() -> None:
    limiter = SlidingWindowLimiter(limit=1, window_seconds=60, max_keys=2)
    for key in ("a", "b", "c"):
        limiter.record(key, 1000.0)
    assert not limiter.is_blocked("a", 1000.0)
    assert limiter.is_blocked("b", 1000.0)
    assert limiter.is_blocked("c", 1000.0)


def test_cache_matches_only_the_hash_a_value_verified_against() -> None:
    cache = VerifiedCache()
    digest = cache.digest("opat_value")
    cache.remember(digest, "hash-1")
    assert cache.matches(digest, "hash-1")
    assert not cache.matches(digest, "hash-2")  # regenerated or rehashed since
    assert not cache.matches(cache.digest("opat_other"), "hash-1")


def test_cache_does_not_keep_values() -> None:
    cache = VerifiedCache()
    digest = cache.digest("opat_secret_value")
    assert b"opat_secret_value" not in digest
    assert "opat_secret_value" not in repr(cache._entries)


def test_cache_digests_are_keyed_per_process() -> None:
    assert VerifiedCache().digest("opat_value") != VerifiedCache().digest("opat_value")


def test_cache_evicts_the_least_recent_entries_beyond_its_size() -> None:
    cache = VerifiedCache(max_entries=2)
    first, second, third = (cache.digest(v) for v in ("one", "two", "three"))
    cache.remember(first, "h1")
    cache.remember(second, "h2")
    cache.remember(third, "h3")
    assert not cache.matches(first, "h1")
    assert cache.matches(second, "h2")
    assert cache.matches(third, "h3")


def verified(scopes: list[str]) -> Verification:
    token = VerifiedToken(
        token_id=uuid.uuid4(),
        lookup_id="AAAAAAAAAAAA",
        owner="alice",
        name="CI",
        scopes=Scopes.parse(scopes),
        expires_at=datetime(2026, 2, 1, tzinfo=UTC),
    )
    return Verification(Outcome.VALID, token)


def test_a_valid_verification_allows_its_scopes_and_what_they_imply() -> None:
    result = verified(["repo"])
    assert result.ok
    assert result.allows(Scope.REPO)
    assert result.allows(Scope.REPO_READ)
    assert result.allows(None)
    assert not result.allows(Scope.ADMIN_ORG)


def test_a_failed_verification_allows_nothing() -> None:
    result = Verification(Outcome.REVOKED)
    assert not result.ok
    assert not result.allows(None)
    assert not result.allows(Scope.REPO)
