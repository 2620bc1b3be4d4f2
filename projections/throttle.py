"""A sliding-window limiter kept in the database, so every server worker sees the same counts.

Failed sign-ins and leak reports are rare and off the hot path: one indexed count per check and
one insert per recorded event are cheap next to argon2, and unlike a per-process limiter the
limit holds however many workers share the load (with N workers an in-memory limiter would allow
N times the attempts).
"""

from __future__ import annotations

import itertools

from sqlalchemy import Engine, delete, func, insert, select

from projections import schema

PRUNE_EVERY = 100  # records between deletions of expired rows


class SqlLimiter:
    """At most `limit` events per key in any `window_seconds` (same interface as the in-memory
    `SlidingWindowLimiter`; `now` is wall-clock time in seconds, the same in every process)."""

    def __init__(self, reader: Engine, writer: Engine, name: str, limit: int, window_seconds: float) -> None:
        self.reader = reader  # counts: on SQLite a deferred transaction, no write lock
        self.writer = writer
        self.name = name
        self.limit = limit
        self.window = window_seconds
        self._records = itertools.count(1)

    def is_blocked(self, key: str, now: float) -> bool:
        t = schema.throttle
        query = (
            select(func.count())
            .select_from(t)
            .where(t.c.limiter == self.name, t.c.key == key[:512], t.c.at > now - self.window)
        )
        with self.reader.connect() as conn:
            return conn.execute(query).scalar_one() >= self.limit

    def record(self, key: str, now: float) -> None:
        t = schema.throttle
        with self.writer.begin() as conn:
            conn.execute(insert(t).values(limiter=self.name, key=key[:512], at=now))
            if next(self._records) % PRUNE_EVERY == 0:
                conn.execute(delete(t).where(t.c.limiter == self.name, t.c.at <= now - self.window))
