"""Ports: the small interfaces the domain and application need from the outside world."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SecretHasher(Protocol):
    def hash(self, secret: str) -> str: ...

    def verify(self, secret_hash: str, secret: str) -> bool:
        """True when `secret` matches; False (never an exception) when it does not."""
        ...

    def needs_rehash(self, secret_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        ...
