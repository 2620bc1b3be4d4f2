"""Usage windows: many uses of a token summarised into one Used event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.usage import MAX_ADDRESSES, MAX_USER_AGENT_LENGTH, MAX_USER_AGENTS, UsageWindow, Use

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def use(
    seconds: float = 0,
    *,
    scope: str | None = "repo",
    address: str | None = "10.0.0.1",
    user_agent: str | None = "git/2.43",
) -> Use:
    return Use(at=T0 + timedelta(seconds=seconds), scope=scope, address=address, user_agent=user_agent)


def test_a_window_starts_with_one_use() -> None:
    summary = UsageWindow.starting_with(use()).summary()
    assert (summary.count, summary.first_used_at, summary.last_used_at) == (1, T0, T0)
    assert summary.scopes == {"repo"}
    assert summary.addresses == ("10.0.0.1",)
    assert summary.user_agents == ("git/2.43",)


def test_uses_accumulate_count_and_time_range() -> None:
    window = UsageWindow.starting_with(use(10))
    window.add(use(40))
    window.add(use(5))  # recorded late, made earlier
    summary = window.summary()
    assert summary.count == 3
    assert summary.first_used_at == T0 + timedelta(seconds=5)
    assert summary.last_used_at == T0 + timedelta(seconds=40)


def test_scopes_exercised_are_collected_once_each() -> None:
    window = UsageWindow.starting_with(use(scope="repo"))
    window.add(use(scope="job"))
    window.add(use(scope="repo"))
    window.add(use(scope=None))
    assert window.summary().scopes == {"repo", "job"}


def test_repeated_address_is_listed_once_as_the_most_recent() -> None:
    window = UsageWindow.starting_with(use(address="10.0.0.1"))
    window.add(use(address="10.0.0.2"))
    window.add(use(address="10.0.0.1"))
    assert window.summary().addresses == ("10.0.0.2", "10.0.0.1")


def test_address_list_is_bounded_and_keeps_the_most_recent() -> None:
    window = UsageWindow.starting_with(use(address="10.0.0.0"))
    for i in range(1, 25):
        window.add(use(i, address=f"10.0.0.{i}"))
    addresses = window.summary().addresses
    assert len(addresses) == MAX_ADDRESSES == 10
    assert addresses == tuple(f"10.0.0.{i}" for i in range(15, 25))


def test_user_agent_list_is_bounded_and_keeps_the_most_recent() -> None:
    window = UsageWindow.starting_with(use(user_agent="agent-0"))
    for i in range(1, 25):
        window.add(use(i, user_agent=f"agent-{i}"))
    agents = window.summary().user_agents
    assert len(agents) == MAX_USER_AGENTS == 10
    assert agents == tuple(f"agent-{i}" for i in range(15, 25))


def test_long_user_agents_are_cut_short() -> None:
    window = UsageWindow.starting_with(use(user_agent="x" * 5000))
    assert window.summary().user_agents == ("x" * MAX_USER_AGENT_LENGTH,)


def test_uses_without_address_or_user_agent_still_count() -> None:
    window = UsageWindow.starting_with(use(address=None, user_agent=None, scope=None))
    window.add(use(address="", user_agent=""))
    summary = window.summary()
    assert summary.count == 2
    assert summary.addresses == ()
    assert summary.user_agents == ()


def test_merge_folds_a_later_window_into_an_earlier_one() -> None:
    earlier = UsageWindow.starting_with(use(0, scope="repo", address="10.0.0.1", user_agent="a"))
    earlier.add(use(10, scope="repo", address="10.0.0.2", user_agent="b"))
    later = UsageWindow.starting_with(use(60, scope="job", address="10.0.0.1", user_agent="c"))
    earlier.merge(later)
    summary = earlier.summary()
    assert summary.count == 3
    assert (summary.first_used_at, summary.last_used_at) == (T0, T0 + timedelta(seconds=60))
    assert summary.scopes == {"repo", "job"}
    assert summary.addresses == ("10.0.0.2", "10.0.0.1")
    assert summary.user_agents == ("a", "b", "c")


def test_merge_keeps_the_lists_bounded_to_the_most_recent() -> None:
    earlier = UsageWindow.starting_with(use(0, address="old-0"))
    for i in range(1, 10):
        earlier.add(use(i, address=f"old-{i}"))
    later = UsageWindow.starting_with(use(100, address="new-0"))
    for i in range(1, 5):
        later.add(use(100 + i, address=f"new-{i}"))
    earlier.merge(later)
    addresses = earlier.summary().addresses
    assert len(addresses) == MAX_ADDRESSES
    assert addresses[-5:] == tuple(f"new-{i}" for i in range(5))
    assert addresses[:5] == tuple(f"old-{i}" for i in range(5, 10))


def test_summary_is_a_snapshot_not_affected_by_later_uses() -> None:
    window = UsageWindow.starting_with(use(0))
    summary = window.summary()
    window.add(use(5, address="10.9.9.9"))
    assert summary.count == 1
    assert summary.addresses == ("10.0.0.1",)
