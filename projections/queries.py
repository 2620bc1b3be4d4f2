"""Queries over the read models: the application's ReadModels port, in SQL."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, Row, func, select

from domain.views import AccountRecord, Credential, HistoryEntry, TokenRecord
from projections import schema
from projections.database import Database

_t = schema.tokens
_u = schema.last_used
_a = schema.audit

_record_query = select(
    _t.c.id,
    _t.c.owner,
    _t.c.name,
    _t.c.scopes,
    _t.c.created_at,
    _t.c.expires_at,
    _t.c.regenerated_at,
    _t.c.revoked_at,
    _t.c.revoke_reason,
    _u.c.last_used_at,
    _u.c.last_used_ip,
    _u.c.last_used_agent,
    _u.c.use_count,
    _u.c.scopes_exercised,
).select_from(_t.outerjoin(_u, _u.c.token_id == _t.c.id))


def _token_record(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        owner=row.owner,
        name=row.name,
        scopes=row.scopes.split(),
        created_at=row.created_at,
        expires_at=row.expires_at,
        regenerated_at=row.regenerated_at,
        revoked_at=row.revoked_at,
        revoke_reason=row.revoke_reason,
        last_used_at=row.last_used_at,
        last_used_ip=row.last_used_ip,
        last_used_agent=row.last_used_agent,
        use_count=row.use_count or 0,
        scopes_exercised=(row.scopes_exercised or "").split(),
    )


class CredentialReader:
    """The verification read, on a raw DB-API connection per thread.

    It runs on every request, so it skips what SQLAlchemy adds (pool checkout, transaction
    events, result processing): about 170 microseconds on SQLite, against a few for the read
    itself. Autocommit: each read is its own statement and sees every committed revocation.
    """

    _SQL = (
        "SELECT id, owner, name, scopes, expires_at, revoked_at, secret_hash "
        "FROM rm_tokens WHERE lookup_id = {}"
    )

    def __init__(self, database: Database) -> None:
        self.database = database
        self._local = threading.local()
        self._opened: list[Any] = []
        self._opened_lock = threading.Lock()
        self._sql = self._SQL.format("?" if database.is_sqlite else "%s")

    def _connect(self) -> Any:
        if self.database.is_sqlite:
            conn = sqlite3.connect(
                str(self.database.sqlite_path), isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA query_only = ON")
        else:
            conn = psycopg.connect(self.database.psycopg_conninfo(), autocommit=True)
        with self._opened_lock:
            self._opened.append(conn)
        return conn

    def _execute(self, lookup_id: str) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        try:
            return conn.execute(self._sql, (lookup_id,)).fetchone()
        except (sqlite3.Error, psycopg.Error):
            # A broken connection (server restart): reconnect once, then let errors through.
            self._local.conn = None
            conn.close()
            conn = self._local.conn = self._connect()
            return conn.execute(self._sql, (lookup_id,)).fetchone()

    def credential(self, lookup_id: str) -> Credential | None:
        row = self._execute(lookup_id)
        if row is None:
            return None
        token_id, owner, name, scopes, expires_at, revoked_at, secret_hash = row
        if self.database.is_sqlite:  # SQLite keeps UUIDs as hex text and datetimes as naive UTC text
            token_id = uuid.UUID(token_id)
            expires_at = datetime.fromisoformat(expires_at).replace(tzinfo=UTC) if expires_at else None
        return Credential(
            token_id=token_id,
            owner=owner,
            name=name,
            scopes=scopes.split(),
            expires_at=expires_at,
            revoked=revoked_at is not None,
            secret_hash=secret_hash,
        )

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()


class SqlReadModels:
    def __init__(self, engine: Engine, credentials: CredentialReader) -> None:
        self.engine = engine
        self.credentials = credentials

    def credential(self, lookup_id: str) -> Credential | None:
        return self.credentials.credential(lookup_id)

    def token(self, token_id: uuid.UUID) -> TokenRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(_record_query.where(_t.c.id == token_id)).first()
        return _token_record(row) if row else None

    def tokens(self, owner: str | None) -> Sequence[TokenRecord]:
        query = _record_query.order_by(_t.c.created_at.desc(), _t.c.id)
        if owner is not None:
            query = query.where(_t.c.owner == owner)
        with self.engine.connect() as conn:
            return [_token_record(r) for r in conn.execute(query)]

    def history(self, token_id: uuid.UUID) -> Sequence[HistoryEntry]:
        query = select(_a).where(_a.c.subject_id == token_id).order_by(_a.c.position)
        with self.engine.connect() as conn:
            return [
                HistoryEntry(
                    position=r.position,
                    at=r.at,
                    event_type=r.event_type,
                    token_id=r.subject_id,
                    owner=r.owner,
                    actor=r.actor,
                    details=r.details,
                )
                for r in conn.execute(query)
            ]

    def accounts(self) -> Sequence[AccountRecord]:
        a = schema.accounts
        with self.engine.connect() as conn:
            return [
                AccountRecord(username=r.username, role=r.role, created_at=r.created_at)
                for r in conn.execute(select(a).order_by(a.c.username))
            ]

    def count_accounts(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(schema.accounts)).scalar_one()
