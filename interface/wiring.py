"""The composition root: the one place that builds the application from settings."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from application.audit import Audit
from application.clock import SystemClock
from application.hashing import Argon2Hasher
from application.ledger import Ledger
from domain.ports import Clock, SecretHasher
from interface.settings import Settings
from projections.audit_queries import SqlAuditQueries
from projections.database import Database
from projections.leadership import FileLeadership, Leadership, PostgresLeadership
from projections.projectors import ALL_PROJECTORS
from projections.queries import CredentialReader, SqlReadModels
from projections.runner import ProjectionRunner


@dataclass
class Service:
    settings: Settings
    database: Database
    ledger: Ledger
    projections: ProjectionRunner
    read_models: SqlReadModels
    audit: Audit

    def close(self) -> None:
        self.projections.stop()
        self.ledger.close()
        self.projections.engine.dispose()
        self.read_models.engine.dispose()
        self.read_models.credentials.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def build(settings: Settings, *, clock: Clock | None = None, hasher: SecretHasher | None = None) -> Service:
    database = Database.parse(settings.database_url)
    runner = ProjectionRunner(
        database.engine(writer=True), [p() for p in ALL_PROJECTORS], leadership=leadership_for(database)
    )
    read_models = SqlReadModels(database.engine(writer=False), CredentialReader(database))
    with _schema_lock(database):
        ledger = _ledger(settings, database, clock, hasher, read_models, runner)
        runner.bind(ledger.recorder, ledger.mapper)
        runner.create_tables()
    runner.catch_up()
    audit = Audit(ledger, SqlAuditQueries(read_models.engine, read_models))
    return Service(settings, database, ledger, runner, read_models, audit)


def leadership_for(database: Database) -> Leadership:
    """One background catch-up per store: a lock the OS or the database drops with its holder."""
    if database.is_sqlite:
        return FileLeadership(database.sqlite_path.with_name(database.sqlite_path.name + ".leader"))
    return PostgresLeadership(database.psycopg_conninfo())


# Any fixed number will do, as long as nothing else on the server uses it for an advisory lock.
_SCHEMA_LOCK_KEY = zlib.crc32(b"tokenledger schema") - 2**31


@contextlib.contextmanager
def _schema_lock(database: Database) -> Iterator[None]:
    """Serialise the start-up DDL of processes that start at the same moment (server workers,
    CLI runs): on PostgreSQL, concurrent CREATE TABLE / CREATE OR REPLACE FUNCTION statements
    of the event store fail one of them with "tuple concurrently updated". SQLite serialises
    writers itself."""
    if database.is_sqlite:
        yield
        return
    with psycopg.connect(database.psycopg_conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))


def _ledger(
    settings: Settings,
    database: Database,
    clock: Clock | None,
    hasher: SecretHasher | None,
    read_models: SqlReadModels,
    runner: ProjectionRunner,
) -> Ledger:
    return Ledger(
        database.eventsourcing_env()
        | {"AGGREGATE_CACHE_MAXSIZE": "10000", "AGGREGATE_CACHE_FASTFORWARD": "y"},
        clock=clock or SystemClock(),
        hasher=hasher or Argon2Hasher(settings.argon2),
        read_models=read_models,
        sync=runner,
        usage_window_seconds=settings.usage_window_seconds,
        failure_limit=settings.failure_limit,
        failure_window_seconds=settings.failure_window_seconds,
    )
