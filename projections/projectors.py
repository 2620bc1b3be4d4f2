"""Projectors: each turns a batch of (position, event) pairs into rows of its own tables.

A projector only reads its own tables, so each can be dropped and rebuilt alone. Batches are
applied with executemany where the rows are independent, which is what makes catch-up and
rebuild fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import Connection, Table, insert, select, update

from domain.account import Account
from domain.token import Token
from projections import schema

Event = Any
Batch = Sequence[tuple[int, Event]]


class Projector(Protocol):
    name: str
    tables: ClassVar[list[Table]]

    def apply(self, conn: Connection, batch: Batch) -> None: ...


class TokensProjector:
    """rm_tokens: every token as it stands now (the list users see, and what verification reads)."""

    name = "tokens"
    tables: ClassVar[list[Table]] = [schema.tokens]

    def apply(self, conn: Connection, batch: Batch) -> None:
        created = [_created_row(e) for _, e in batch if type(e) is Token.Created]
        # Later events of a token created in this same batch must see its row: insert first,
        # then apply the rest in order.
        if created:
            conn.execute(insert(schema.tokens), created)
        t = schema.tokens
        for _, e in batch:
            kind = type(e)
            if kind is Token.Regenerated:
                values = {
                    "lookup_id": e.lookup_id,
                    "secret_hash": e.secret_hash,
                    "expires_at": e.expires_at,
                    "regenerated_at": e.timestamp,
                }
            elif kind is Token.Revoked:
                values = {"revoked_at": e.timestamp, "revoke_reason": e.reason}
            elif kind is Token.Used and e.secret_hash is not None:
                values = {"secret_hash": e.secret_hash}
            else:
                continue
            conn.execute(update(t).where(t.c.id == e.originator_id).values(**values))


def _created_row(e: Token.Created) -> dict[str, Any]:
    return {
        "id": e.originator_id,
        "owner": e.owner,
        "name": e.name,
        "scopes": " ".join(e.scopes),
        "lookup_id": e.lookup_id,
        "secret_hash": e.secret_hash,
        "created_at": e.timestamp,
        "created_by": e.actor,
        "expires_at": e.expires_at,
    }


class LastUsedProjector:
    """rm_last_used: when, from where and how each token was last used."""

    name = "last_used"
    tables: ClassVar[list[Table]] = [schema.last_used]

    def apply(self, conn: Connection, batch: Batch) -> None:
        merged: dict[uuid.UUID, dict[str, Any]] = {}
        for _, e in batch:
            if type(e) is not Token.Used:
                continue
            row = merged.get(e.originator_id)
            if row is None:
                merged[e.originator_id] = row = {"use_count": 0, "scopes": set(), "last_used_at": None}
            row["use_count"] += e.count
            row["scopes"].update(e.scopes)
            if row["last_used_at"] is None or e.last_used_at >= row["last_used_at"]:
                row["last_used_at"] = e.last_used_at
                row["ip"] = e.addresses[-1] if e.addresses else None
                row["agent"] = e.user_agents[-1] if e.user_agents else None
        if not merged:
            return
        t = schema.last_used
        existing = {
            r.token_id: r
            for r in conn.execute(select(t).where(t.c.token_id.in_(list(merged))))
        }
        inserts = []
        for token_id, row in merged.items():
            old = existing.get(token_id)
            values = {
                "token_id": token_id,
                "last_used_at": row["last_used_at"],
                "last_used_ip": row["ip"],
                "last_used_agent": row["agent"],
                "use_count": row["use_count"],
                "scopes_exercised": " ".join(sorted(row["scopes"])),
            }
            if old is None:
                inserts.append(values)
                continue
            if old.last_used_at > row["last_used_at"]:  # an older window flushed late
                values.update(
                    last_used_at=old.last_used_at, last_used_ip=old.last_used_ip, last_used_agent=old.last_used_agent
                )
            values["use_count"] += old.use_count
            values["scopes_exercised"] = " ".join(sorted(row["scopes"] | set(old.scopes_exercised.split())))
            conn.execute(update(t).where(t.c.token_id == token_id).values(**values))
        if inserts:
            conn.execute(insert(t), inserts)


class AccountsProjector:
    name = "accounts"
    tables: ClassVar[list[Table]] = [schema.accounts]

    def apply(self, conn: Connection, batch: Batch) -> None:
        t = schema.accounts
        for _, e in batch:
            kind = type(e)
            if kind is Account.Registered:
                conn.execute(
                    insert(t).values(
                        username=e.username, account_id=e.originator_id, role=e.role, created_at=e.timestamp
                    )
                )
            elif kind is Account.RoleChanged:
                conn.execute(update(t).where(t.c.account_id == e.originator_id).values(role=e.role))


class AuditProjector:
    """rm_audit: one row per token or account event, indexed for filtered queries.

    Details never include a hash or a secret.
    """

    name = "audit"
    tables: ClassVar[list[Table]] = [schema.audit]
    _token_kinds: ClassVar[dict[type, str]] = {
        Token.Created: "Created",
        Token.Used: "Used",
        Token.Regenerated: "Regenerated",
        Token.Revoked: "Revoked",
    }
    _account_kinds: ClassVar[dict[type, str]] = {
        Account.Registered: "Registered",
        Account.PasswordChanged: "PasswordChanged",
        Account.RoleChanged: "RoleChanged",
    }

    def apply(self, conn: Connection, batch: Batch) -> None:
        names: dict[uuid.UUID, tuple[str, str]] = {}
        rows = []
        for position, e in batch:
            kind = type(e)
            if kind in self._token_kinds:
                if kind is Token.Created:
                    names[e.originator_id] = (e.owner, e.name)
                owner, name = names.get(e.originator_id) or self._subject(conn, e.originator_id)
                names[e.originator_id] = (owner, name)
                rows.append(
                    {
                        "position": position,
                        "at": e.timestamp,
                        "event_type": self._token_kinds[kind],
                        "aggregate": "token",
                        "subject_id": e.originator_id,
                        "token_name": name,
                        "owner": owner,
                        "actor": getattr(e, "actor", None),
                        "details": token_details(e),
                    }
                )
            elif kind in self._account_kinds:
                if kind is Account.Registered:
                    username = e.username
                    names[e.originator_id] = (username, "")
                else:
                    username = (names.get(e.originator_id) or self._subject(conn, e.originator_id))[0]
                rows.append(
                    {
                        "position": position,
                        "at": e.timestamp,
                        "event_type": self._account_kinds[kind],
                        "aggregate": "account",
                        "subject_id": e.originator_id,
                        "token_name": None,
                        "owner": username,
                        "actor": getattr(e, "actor", username),
                        "details": account_details(e),
                    }
                )
        if rows:
            conn.execute(insert(schema.audit), rows)

    @staticmethod
    def _subject(conn: Connection, subject_id: uuid.UUID) -> tuple[str, str]:
        """Owner and token name of an aggregate, from its first audit row."""
        a = schema.audit
        row = conn.execute(
            select(a.c.owner, a.c.token_name)
            .where(a.c.subject_id == subject_id)
            .order_by(a.c.position)
            .limit(1)
        ).first()
        return (row.owner or "", row.token_name or "") if row else ("", "")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def token_details(e: Event) -> dict[str, Any]:
    kind = type(e)
    if kind is Token.Created:
        return {"name": e.name, "scopes": e.scopes, "expires_at": _iso(e.expires_at), "lookup_id": e.lookup_id}
    if kind is Token.Regenerated:
        return {"expires_at": _iso(e.expires_at), "lookup_id": e.lookup_id}
    if kind is Token.Revoked:
        return {"reason": e.reason, "source": e.source}
    if kind is Token.Used:
        return {
            "first_used_at": _iso(e.first_used_at),
            "last_used_at": _iso(e.last_used_at),
            "count": e.count,
            "scopes": e.scopes,
            "addresses": e.addresses,
            "user_agents": e.user_agents,
            "rehashed": e.secret_hash is not None,
        }
    return {}


def account_details(e: Event) -> dict[str, Any]:
    if type(e) is Account.Registered:
        return {"role": e.role}
    if type(e) is Account.RoleChanged:
        return {"role": e.role}
    return {}


ALL_PROJECTORS: tuple[type, ...] = (TokensProjector, LastUsedProjector, AuditProjector, AccountsProjector)
