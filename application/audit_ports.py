"""What the audit service needs from the read side."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from domain.views import AuditEntry, AuditFilter, ClientUse, ScopeUse, TokenRecord


class AuditQueries(Protocol):
    def events(
        self, where: AuditFilter, *, after: int | None, limit: int, descending: bool
    ) -> Sequence[AuditEntry]: ...

    def token_events(self, types: Iterable[str], *, until: datetime | None) -> Sequence[AuditEntry]:
        """Token events of the given types at or before `until`, in log order."""
        ...

    def usage_until(self, instant: datetime) -> dict[uuid.UUID, tuple[datetime, int]]:
        """Per token: the last use and the number of uses recorded at or before `instant`."""
        ...

    def uses_between(
        self, token_ids: Sequence[uuid.UUID], since: datetime, until: datetime
    ) -> Sequence[AuditEntry]:
        """Used events whose window overlaps [since, until], for these tokens."""
        ...

    def tokens(self) -> Sequence[TokenRecord]: ...

    def clients(self) -> dict[uuid.UUID, list[ClientUse]]: ...

    def scope_uses(self) -> dict[uuid.UUID, list[ScopeUse]]: ...

    def chain(self, *, after: int, limit: int) -> Sequence[tuple[int, str]]: ...

    def chain_head(self) -> tuple[int, str] | None: ...

    def chain_digest_at(self, position: int) -> str | None: ...
