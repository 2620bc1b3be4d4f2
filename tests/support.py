"""Test helpers: the two fakes we allow (a clock, cheap hashing) and database set-up."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from application.hashing import Argon2Hasher, Argon2Parameters

POSTGRES_URL_VARIABLE = "TOKENLEDGER_TEST_POSTGRES_URL"
CHEAP_ARGON2 = Argon2Parameters(memory_kib=64, time_cost=1, parallelism=1)


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def cheap_hasher() -> Argon2Hasher:
    return Argon2Hasher(CHEAP_ARGON2)


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_URL_VARIABLE) or None


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    base = postgres_url()
    assert base is not None
    name = f"tl_test_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(base)
    admin = parts._replace(scheme="postgresql").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'tokenledger.sqlite'}"
    else:
        with fresh_postgres_database() as url:
            yield url
