"""The composition root: the one place that builds the application from settings."""

from __future__ import annotations

from dataclasses import dataclass

from application.audit import Audit
from application.clock import SystemClock
from application.hashing import Argon2Hasher
from application.ledger import Ledger
from domain.ports import Clock, SecretHasher
from interface.settings import Settings
from projections.audit_queries import SqlAuditQueries
from projections.database import Database
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
    runner = ProjectionRunner(database.engine(writer=True), [p() for p in ALL_PROJECTORS])
    read_models = SqlReadModels(database.engine(writer=False), CredentialReader(database))
    ledger = Ledger(
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
    runner.bind(ledger.recorder, ledger.mapper)
    runner.create_tables()
    runner.catch_up()
    audit = Audit(ledger, SqlAuditQueries(read_models.engine, read_models))
    return Service(settings, database, ledger, runner, read_models, audit)
