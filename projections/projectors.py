"""Projectors: each turns a batch of (position, event, notification) items into rows of its own tables.

A projector only reads its own tables, so each can be dropped and rebuilt alone. Batches are
applied with executemany where the rows are independent, which is what makes catch-up and
rebuild fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, NamedTuple, Protocol

from sqlalchemy import Connection, Table, insert, select, update

from domain.account import Account
from domain.integrity import GENESIS, link
from domain.token import Token
from projections import schema

Event = Any


class Item(NamedTuple):
    position: int
    event: Event
    notification: Any  # the stored form, for projectors that hash what is stored


Batch = Sequence[Item]


class Projector(Protocol):
    name: str
    tables: ClassVar[list[Table]]

    def apply(self, conn: Connection, batch: Batch) -> None: ...


class TokensProjector:
    """rm_tokens: every token as it stands now (the list users see, and what verification reads)."""

    name = "tokens"
    tables: ClassVar[list[Table]] = [schema.tokens]

    def apply(self, conn: Connection, batch: Batch) -> None:
        created = [_created_row(e) for _, e, _ in batch if type(e) is Token.Created]
        # Later events of a token created in this same batch must see its row: insert first,
        # then apply the rest in order.
        if created:
            conn.execute(insert(schema.tokens), created)
        t = schema.tokens
        for _, e, _ in batch:
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
        for _, e, _ in batch:
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
        existing = {r.token_id: r for r in conn.execute(select(t).where(t.c.token_id.in_(list(merged))))}
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
                    last_used_at=old.last_used_at,
                    last_used_ip=old.last_used_ip,
                    last_used_agent=old.last_used_agent,
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
        for _, e, _ in batch:
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
        for position, e, _ in batch:
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
                        **_typed_columns(e),
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
                        "actor": getattr(e, "actor", None),
                        "details": account_details(e),
                        "scopes": None,
                        "expires_at": None,
                        "used_first": None,
                        "used_last": None,
                        "use_count": None,
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


def _typed_columns(e: Event) -> dict[str, Any]:
    kind = type(e)
    return {
        "scopes": " ".join(e.scopes) if kind in (Token.Created, Token.Used) else None,
        "expires_at": e.expires_at if kind in (Token.Created, Token.Regenerated) else None,
        "used_first": e.first_used_at if kind is Token.Used else None,
        "used_last": e.last_used_at if kind is Token.Used else None,
        "use_count": e.count if kind is Token.Used else None,
    }


class UsageSummaryProjector:
    """rm_token_clients and rm_token_scopes: which clients used each token and when each scope
    was last exercised, merged from `Used` events."""

    name = "usage_summary"
    tables: ClassVar[list[Table]] = [schema.token_clients, schema.token_scopes]

    def apply(self, conn: Connection, batch: Batch) -> None:
        clients: dict[tuple[uuid.UUID, str], list[Any]] = {}
        scopes: dict[tuple[uuid.UUID, str], list[Any]] = {}
        for _, e, _ in batch:
            if type(e) is not Token.Used:
                continue
            for address in e.addresses:
                _widen(clients, (e.originator_id, address), e.first_used_at, e.last_used_at, 1)
            for scope in e.scopes:
                _widen(scopes, (e.originator_id, scope), e.first_used_at, e.last_used_at, 0)
        self._merge(conn, schema.token_clients, "address", ("first_seen", "last_seen", "windows"), clients)
        self._merge(conn, schema.token_scopes, "scope", ("first_exercised", "last_exercised", None), scopes)

    @staticmethod
    def _merge(
        conn: Connection,
        table: Table,
        key: str,
        columns: tuple[str, str, str | None],
        rows: dict[tuple[uuid.UUID, str], list[Any]],
    ) -> None:
        if not rows:
            return
        first, last, count = columns
        token_ids = list({token_id for token_id, _ in rows})
        existing = {
            (r.token_id, getattr(r, key)): r
            for r in conn.execute(select(table).where(table.c.token_id.in_(token_ids)))
        }
        inserts = []
        for (token_id, value), (lo, hi, n) in rows.items():
            old = existing.get((token_id, value))
            values = {first: lo, last: hi} | ({count: n} if count else {})
            if old is None:
                inserts.append({"token_id": token_id, key: value, **values})
                continue
            values[first] = min(lo, getattr(old, first))
            values[last] = max(hi, getattr(old, last))
            if count:
                values[count] = n + getattr(old, count)
            conn.execute(
                update(table)
                .where(table.c.token_id == token_id)
                .where(table.c[key] == value)
                .values(**values)
            )
        if inserts:
            conn.execute(insert(table), inserts)


def _widen(rows: dict[Any, list[Any]], key: Any, first: datetime, last: datetime, count: int) -> None:
    row = rows.get(key)
    if row is None:
        rows[key] = [first, last, count]
    else:
        row[0] = min(row[0], first)
        row[1] = max(row[1], last)
        row[2] += count


class ChainProjector:
    """rm_chain: the hash chain over every stored event (see domain.integrity)."""

    name = "chain"
    tables: ClassVar[list[Table]] = [schema.chain]

    def apply(self, conn: Connection, batch: Batch) -> None:
        c = schema.chain
        previous = conn.execute(select(c.c.digest).order_by(c.c.position.desc()).limit(1)).scalar() or GENESIS
        rows = []
        for position, _, n in batch:
            previous = link(previous, position, n.originator_id, n.originator_version, n.topic, n.state)
            rows.append({"position": position, "digest": previous})
        if rows:
            conn.execute(insert(c), rows)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def token_details(e: Event) -> dict[str, Any]:
    kind = type(e)
    if kind is Token.Created:
        return {
            "name": e.name,
            "scopes": e.scopes,
            "expires_at": _iso(e.expires_at),
            "lookup_id": e.lookup_id,
        }
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


ALL_PROJECTORS: tuple[type, ...] = (
    TokensProjector,
    LastUsedProjector,
    AuditProjector,
    AccountsProjector,
    UsageSummaryProjector,
    ChainProjector,
)
