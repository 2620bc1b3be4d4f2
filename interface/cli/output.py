"""How the command line shows things: tables as tables, times as people read them."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.views import HistoryEntry, TokenRecord

# Piped output is read by people too (and by tests): give tables room rather than rich's 80 columns.
# markup=False: names, scopes and messages are user text and are printed as typed ("[bold]CI"
# is a legal token name); styling is applied with Text objects instead.
out = Console(
    highlight=False, soft_wrap=True, markup=False, emoji=False, width=None if sys.stdout.isatty() else 160
)
err = Console(
    stderr=True,
    highlight=False,
    soft_wrap=True,
    markup=False,
    emoji=False,
    width=None if sys.stderr.isatty() else 160,
)


def when(value: datetime | None, *, never: str = "never") -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else never


def token_table(records: Sequence[TokenRecord], now: datetime) -> Table:
    table = Table(show_lines=False)
    for column in ("id", "owner", "name", "scopes", "state", "created", "expires", "last used"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(
            str(r.id),
            r.owner,
            r.name,
            " ".join(r.scopes),
            r.state(now).value,
            when(r.created_at),
            when(r.expires_at),
            when(r.last_used_at) + (f" from {r.last_used_ip}" if r.last_used_ip else ""),
        )
    return table


def history_table(entries: Sequence[HistoryEntry]) -> Table:
    table = Table()
    for column in ("position", "time", "event", "actor", "details"):
        table.add_column(column, overflow="fold")
    for e in entries:
        details = ", ".join(f"{k}={_short(v)}" for k, v in e.details.items() if v not in (None, [], ""))
        table.add_row(str(e.position), when(e.at), e.event_type, e.actor or "", details)
    return table


def _short(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def record_json(r: TokenRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "owner": r.owner,
        "name": r.name,
        "scopes": r.scopes,
        "state": r.state(now).value,
        "created_at": r.created_at.isoformat(),
        "expires_at": r.expires_at.isoformat() if r.expires_at else None,
        "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
        "last_used_ip": r.last_used_ip,
        "regenerated_at": r.regenerated_at.isoformat() if r.regenerated_at else None,
        "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
    }


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
