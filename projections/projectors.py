"""Projectors: each turns a batch of (position, event, notification) items into rows of its own tables.

A projector only reads its own tables, so each can be dropped and rebuilt alone. Batches are
applied with executemany where the rows are independent, which is what makes catch-up and
rebuild fast.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, Protocol

from psycopg.types.json import Json
from sqlalchemy import Connection, Table, bindparam, insert, select, update

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
    """`apply` is called with each batch of a transaction; projectors that accumulate may also
    define `flush(conn)`, called once before the commit, and `discard()`, on a rollback."""

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
    """rm_last_used: when, from where and how each token was last used.

    Uses are summed in memory over the whole transaction and merged with the stored rows once,
    in `flush`: a rebuild (one transaction) then reads nothing and writes each row once.
    """

    name = "last_used"
    tables: ClassVar[list[Table]] = [schema.last_used]

    def __init__(self) -> None:
        self._pending: dict[uuid.UUID, dict[str, Any]] = {}

    def apply(self, conn: Connection, batch: Batch) -> None:
        merged = self._pending
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

    def flush(self, conn: Connection) -> None:
        merged, self._pending = self._pending, {}
        if not merged:
            return
        t = schema.last_used
        existing = {r.token_id: r for r in select_in(conn, t, t.c.token_id, list(merged))}
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
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
            updates.append(values)
        write_rows(conn, t, ("token_id",), inserts, updates)

    def discard(self) -> None:
        self._pending = {}


def select_in(conn: Connection, table: Table, column: Any, values: list[Any]) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(values), 500):
        rows.extend(conn.execute(select(table).where(column.in_(values[start : start + 500]))))
    return rows


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

    def __init__(self) -> None:
        # Owner and token name of each aggregate never change: remember them rather than ask
        # the table for every event (the misses of a batch are looked up in one query).
        self._subjects: dict[uuid.UUID, tuple[str, str]] = {}

    def apply(self, conn: Connection, batch: Batch) -> None:
        names = self._subjects
        if len(names) > 200_000:
            names.clear()
        missing = {
            e.originator_id
            for _, e, _ in batch
            if type(e) not in (Token.Created, Account.Registered) and e.originator_id not in names
        }
        if missing:
            names.update(self._subjects_of(conn, missing))
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
            bulk_insert(conn, schema.audit, rows)

    def _subject(self, conn: Connection, subject_id: uuid.UUID) -> tuple[str, str]:
        return self._subjects_of(conn, {subject_id}).get(subject_id, ("", ""))

    @staticmethod
    def _subjects_of(conn: Connection, subject_ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
        """Owner and token name of aggregates, from their Created or Registered audit rows."""
        a = schema.audit
        found: dict[uuid.UUID, tuple[str, str]] = {}
        ids = list(subject_ids)
        for start in range(0, len(ids), 500):
            query = select(a.c.subject_id, a.c.owner, a.c.token_name).where(
                a.c.subject_id.in_(ids[start : start + 500]), a.c.event_type.in_(("Created", "Registered"))
            )
            for row in conn.execute(query):
                found[row.subject_id] = (row.owner or "", row.token_name or "")
        return found


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with the driver's executemany, converting values here in one pass.

    For the audit table, the largest by far, SQLAlchemy's per-value bind processing took most of
    a rebuild's time. Values are stored exactly as the column types store them (the types
    read them back): on SQLite UUIDs as 32 hex digits, datetimes as naive UTC text, JSON as text.
    """
    columns = [c.name for c in table.columns]
    sqlite = conn.dialect.name == "sqlite"
    marker = "?" if sqlite else "%s"
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"  # noqa: S608 - names from our own schema
    )
    convert = _sqlite_value if sqlite else _postgres_value
    conn.exec_driver_sql(statement, [tuple(convert(row.get(c)) for c in columns) for row in rows])


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _postgres_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return Json(value)
    return value


def write_rows(
    conn: Connection,
    table: Table,
    keys: tuple[str, ...],
    inserts: list[dict[str, Any]],
    updates: list[dict[str, Any]],
) -> None:
    """A batch's inserts and updates, each as one executemany: one statement per batch rather
    than one per row, which had made rebuilds several times slower."""
    if inserts:
        conn.execute(insert(table), inserts)
    if updates:
        columns = [c for c in updates[0] if c not in keys]
        statement = (
            update(table)
            .where(*(table.c[k] == bindparam(f"k_{k}") for k in keys))
            .values({c: bindparam(f"v_{c}") for c in columns})
        )
        conn.execute(
            statement,
            [{f"k_{k}": row[k] for k in keys} | {f"v_{c}": row[c] for c in columns} for row in updates],
        )


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

    def __init__(self) -> None:
        self._clients: dict[tuple[uuid.UUID, str], list[Any]] = {}
        self._scopes: dict[tuple[uuid.UUID, str], list[Any]] = {}

    def apply(self, conn: Connection, batch: Batch) -> None:
        clients, scopes = self._clients, self._scopes
        for _, e, _ in batch:
            if type(e) is not Token.Used:
                continue
            for address in e.addresses:
                _widen(clients, (e.originator_id, address), e.first_used_at, e.last_used_at, 1)
            for scope in e.scopes:
                _widen(scopes, (e.originator_id, scope), e.first_used_at, e.last_used_at, 0)

    def flush(self, conn: Connection) -> None:
        clients, scopes = self._clients, self._scopes
        self.discard()
        self._merge(conn, schema.token_clients, "address", ("first_seen", "last_seen", "windows"), clients)
        self._merge(conn, schema.token_scopes, "scope", ("first_exercised", "last_exercised", None), scopes)

    def discard(self) -> None:
        self._clients, self._scopes = {}, {}

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
            (r.token_id, getattr(r, key)): r for r in select_in(conn, table, table.c.token_id, token_ids)
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for (token_id, value), (lo, hi, n) in rows.items():
            old = existing.get((token_id, value))
            values = {"token_id": token_id, key: value, first: lo, last: hi} | ({count: n} if count else {})
            if old is None:
                inserts.append(values)
                continue
            values[first] = min(lo, getattr(old, first))
            values[last] = max(hi, getattr(old, last))
            if count:
                values[count] = n + getattr(old, count)
            updates.append(values)
        write_rows(conn, table, ("token_id", key), inserts, updates)


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

    def __init__(self) -> None:
        # The head this transaction has written so far. Asking the table for it every batch made
        # a PostgreSQL rebuild quadratic: after the rebuild's DELETE, each backward index scan
        # for the newest row stepped over every deleted row above the ones written so far.
        self._head: str | None = None

    def apply(self, conn: Connection, batch: Batch) -> None:
        c = schema.chain
        previous = self._head
        if previous is None:
            newest = select(c.c.digest).order_by(c.c.position.desc()).limit(1)
            previous = conn.execute(newest).scalar() or GENESIS
        rows = []
        for position, _, n in batch:
            previous = link(previous, position, n.originator_id, n.originator_version, n.topic, n.state)
            rows.append({"position": position, "digest": previous})
        if rows:
            conn.execute(insert(c), rows)
        self._head = previous

    def flush(self, conn: Connection) -> None:
        self._head = None  # another process may extend the chain once this transaction commits

    def discard(self) -> None:
        self._head = None


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
