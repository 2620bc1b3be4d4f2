"""Audit queries over rm_audit and the usage and chain tables (the AuditQueries port)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Row, and_, func, select

from domain.views import AuditEntry, AuditFilter, ClientUse, ScopeUse, TokenRecord
from projections import schema
from projections.queries import SqlReadModels

_a = schema.audit


USES_BY_ID = 500  # up to this many tokens, uses are selected by id (bound parameters stay few)


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        position=row.position,
        at=row.at,
        event_type=row.event_type,
        aggregate=row.aggregate,
        subject_id=row.subject_id,
        token_name=row.token_name,
        owner=row.owner,
        actor=row.actor,
        details=row.details,
    )


_entry_columns = (
    _a.c.position,
    _a.c.at,
    _a.c.event_type,
    _a.c.aggregate,
    _a.c.subject_id,
    _a.c.token_name,
    _a.c.owner,
    _a.c.actor,
    _a.c.details,
)


class SqlAuditQueries:
    def __init__(self, engine: Engine, read_models: SqlReadModels) -> None:
        self.engine = engine
        self.read_models = read_models

    def events(
        self, where: AuditFilter, *, after: int | None, limit: int, descending: bool
    ) -> Sequence[AuditEntry]:
        query = select(*_entry_columns)
        if where.owner is not None:
            query = query.where(_a.c.owner == where.owner)
        if where.token_id is not None:
            query = query.where(_a.c.subject_id == where.token_id)
        if where.event_types:
            query = query.where(_a.c.event_type.in_(where.event_types))
        if where.since is not None:
            query = query.where(_a.c.at >= where.since)
        if where.until is not None:
            query = query.where(_a.c.at <= where.until)
        if after is not None:
            query = query.where(_a.c.position < after if descending else _a.c.position > after)
        query = query.order_by(_a.c.position.desc() if descending else _a.c.position).limit(limit)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query)]

    def token_events(self, types: Iterable[str], *, until: datetime | None) -> Sequence[AuditEntry]:
        query = (
            select(*_entry_columns).where(_a.c.aggregate == "token").where(_a.c.event_type.in_(list(types)))
        )
        if until is not None:
            query = query.where(_a.c.at <= until)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query.order_by(_a.c.position))]

    def usage_until(self, instant: datetime) -> dict[uuid.UUID, tuple[datetime, int]]:
        query = (
            select(_a.c.subject_id, func.max(_a.c.used_last), func.sum(_a.c.use_count))
            .where(_a.c.event_type == "Used")
            .where(_a.c.at <= instant)
            .group_by(_a.c.subject_id)
        )
        with self.engine.connect() as conn:
            return {r[0]: (_utc(r[1]), r[2]) for r in conn.execute(query)}

    def uses_between(
        self, token_ids: Sequence[uuid.UUID], since: datetime, until: datetime
    ) -> Sequence[AuditEntry]:
        if not token_ids:
            return []
        in_window = (
            select(*_entry_columns)
            .where(and_(_a.c.event_type == "Used", _a.c.used_last >= since, _a.c.used_first <= until))
            .order_by(_a.c.position)
        )
        with self.engine.connect() as conn:
            if len(token_ids) <= USES_BY_ID:
                return [_entry(r) for r in conn.execute(in_window.where(_a.c.subject_id.in_(token_ids)))]
            # Many tokens: one pass over the window's uses, kept by id here. Chunks of ids would
            # each scan the same index range again (measured at 1M events, 5,000 tokens: ten
            # scans of half the log).
            wanted = set(token_ids)
            return [_entry(r) for r in conn.execute(in_window) if r.subject_id in wanted]

    def tokens(self) -> Sequence[TokenRecord]:
        return self.read_models.tokens(None)

    def clients(self) -> dict[uuid.UUID, list[ClientUse]]:
        t = schema.token_clients
        found: dict[uuid.UUID, list[ClientUse]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(t)):
                found.setdefault(r.token_id, []).append(
                    ClientUse(r.address, r.first_seen, r.last_seen, r.windows)
                )
        return found

    def scope_uses(self) -> dict[uuid.UUID, list[ScopeUse]]:
        t = schema.token_scopes
        found: dict[uuid.UUID, list[ScopeUse]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(t)):
                found.setdefault(r.token_id, []).append(
                    ScopeUse(r.scope, r.first_exercised, r.last_exercised)
                )
        return found

    def chain(self, *, after: int, limit: int) -> Sequence[tuple[int, str]]:
        c = schema.chain
        query = (
            select(c.c.position, c.c.digest).where(c.c.position > after).order_by(c.c.position).limit(limit)
        )
        with self.engine.connect() as conn:
            return [(r.position, r.digest) for r in conn.execute(query)]

    def chain_head(self) -> tuple[int, str] | None:
        c = schema.chain
        with self.engine.connect() as conn:
            row = conn.execute(
                select(c.c.position, c.c.digest).order_by(c.c.position.desc()).limit(1)
            ).first()
        return (row.position, row.digest) if row else None

    def chain_digest_at(self, position: int) -> str | None:
        c = schema.chain
        with self.engine.connect() as conn:
            return conn.execute(select(c.c.digest).where(c.c.position == position)).scalar()


def _utc(value: datetime | str) -> datetime:
    """Aggregates bypass the column type: on SQLite max() of a datetime comes back as text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
