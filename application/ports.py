"""What the application needs from the read side; the projections package provides it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from domain.views import AccountRecord, Credential, HistoryEntry, TokenRecord


class ReadModels(Protocol):
    def credential(self, lookup_id: str) -> Credential | None: ...

    def token(self, token_id: uuid.UUID) -> TokenRecord | None: ...

    def tokens(self, owner: str | None) -> Sequence[TokenRecord]:
        """Every token of `owner` (of everybody when None), newest first."""
        ...

    def history(self, token_id: uuid.UUID) -> Sequence[HistoryEntry]: ...

    def accounts(self) -> Sequence[AccountRecord]: ...

    def count_accounts(self) -> int: ...


class ReadModelSync(Protocol):
    def wait_for(self, position: int) -> None:
        """Return once every read model includes the notification at `position`."""
        ...
