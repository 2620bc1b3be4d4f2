"""Database settings shared by the event store and the read models: one URL selects both."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, create_engine, event

SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseUrlError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Database:
    url: str

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path:
        path = self.url.removeprefix("sqlite:///")
        return Path(path)

    @classmethod
    def parse(cls, url: str) -> Database:
        scheme = url.split(":", 1)[0]
        if scheme == "sqlite":
            if not url.startswith("sqlite:///") or url == "sqlite:///":
                raise DatabaseUrlError("a SQLite URL looks like sqlite:///path/to/file.sqlite")
            return cls(url)
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            parts = urlsplit(url)
            if not parts.path.strip("/"):
                raise DatabaseUrlError(
                    "a PostgreSQL URL names its database: postgresql://user@host:5432/dbname"
                )
            return cls(url)
        raise DatabaseUrlError("TOKENLEDGER_DATABASE_URL must start with sqlite:/// or postgresql://")

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for the same database."""
        if self.is_sqlite:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": str(SQLITE_BUSY_TIMEOUT_MS // 1000),
            }
        parts = urlsplit(self.url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/"),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or os.environ.get("USER", "postgres")),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": "10",
            "POSTGRES_MAX_OVERFLOW": "10",
            "POSTGRES_LOCK_TIMEOUT": "10",
        }

    def psycopg_conninfo(self) -> str:
        parts = urlsplit(self.url)
        return parts._replace(scheme="postgresql").geturl()

    def sqlalchemy_url(self) -> str:
        if self.is_sqlite:
            return self.url
        parts = urlsplit(self.url)
        return parts._replace(scheme="postgresql+psycopg").geturl()

    def engine(self, *, writer: bool) -> Engine:
        """A SQLAlchemy engine. On SQLite the writer engine takes the write lock when it begins,
        so two catch-ups never interleave; readers begin deferred and see a WAL snapshot."""
        if not self.is_sqlite:
            return create_engine(self.sqlalchemy_url(), pool_size=10, max_overflow=10, pool_recycle=1800)
        engine = create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, begins transactions
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if writer:
                # Read models only: they are rebuilt from the log and commit their positions with
                # their rows, so losing the last commits to a power cut costs a catch-up, never
                # consistency. The event store's own connections keep synchronous=FULL.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection):  # type: ignore[no-untyped-def]
            connection.exec_driver_sql(begin)

        return engine
