"""Usage windows: many uses of a token summarised into one `Used` event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

MAX_ADDRESSES = 10
MAX_USER_AGENTS = 10
MAX_USER_AGENT_LENGTH = 200
MAX_ADDRESS_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Use:
    at: datetime
    scope: str | None
    address: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class UsageSummary:
    first_used_at: datetime
    last_used_at: datetime
    count: int
    scopes: frozenset[str]
    addresses: tuple[str, ...]
    user_agents: tuple[str, ...]


@dataclass
class UsageWindow:
    """Accumulates uses; the address and user-agent lists are bounded, most recent kept."""

    first_used_at: datetime
    last_used_at: datetime
    count: int = 0
    scopes: set[str] = field(default_factory=set)
    addresses: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)

    @classmethod
    def starting_with(cls, use: Use) -> UsageWindow:
        window = cls(first_used_at=use.at, last_used_at=use.at)
        window.add(use)
        return window

    def add(self, use: Use) -> None:
        self.count += 1
        self.first_used_at = min(self.first_used_at, use.at)
        self.last_used_at = max(self.last_used_at, use.at)
        if use.scope:
            self.scopes.add(use.scope)
        address = use.address[:MAX_ADDRESS_LENGTH] if use.address else None
        _remember(self.addresses, address, MAX_ADDRESSES)
        agent = use.user_agent[:MAX_USER_AGENT_LENGTH] if use.user_agent else None
        _remember(self.user_agents, agent, MAX_USER_AGENTS)

    def merge(self, other: UsageWindow) -> None:
        """Fold a later window into this one (used when a write failed and is retried)."""
        self.count += other.count
        self.first_used_at = min(self.first_used_at, other.first_used_at)
        self.last_used_at = max(self.last_used_at, other.last_used_at)
        self.scopes |= other.scopes
        for address in other.addresses:
            _remember(self.addresses, address, MAX_ADDRESSES)
        for agent in other.user_agents:
            _remember(self.user_agents, agent, MAX_USER_AGENTS)

    def summary(self) -> UsageSummary:
        return UsageSummary(
            first_used_at=self.first_used_at,
            last_used_at=self.last_used_at,
            count=self.count,
            scopes=frozenset(self.scopes),
            addresses=tuple(self.addresses),
            user_agents=tuple(self.user_agents),
        )


def _remember(items: list[str], item: str | None, limit: int) -> None:
    """Keep `item` as the most recent entry of a bounded list of distinct values."""
    if not item:
        return
    if item in items:
        items.remove(item)
    items.append(item)
    del items[:-limit]
