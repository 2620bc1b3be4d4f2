"""Queries over the read models: the application's ReadModels port, in SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Row, func, select

from domain.views import AccountRecord, Credential, HistoryEntry, TokenRecord
from projections import schema

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


class SqlReadModels:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def credential(self, lookup_id: str) -> Credential | None:
        query = select(
            _t.c.id, _t.c.owner, _t.c.name, _t.c.scopes, _t.c.expires_at, _t.c.revoked_at, _t.c.secret_hash
        ).where(_t.c.lookup_id == lookup_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Credential(
            token_id=row.id,
            owner=row.owner,
            name=row.name,
            scopes=row.scopes.split(),
            expires_at=row.expires_at,
            revoked=row.revoked_at is not None,
            secret_hash=row.secret_hash,
        )

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
