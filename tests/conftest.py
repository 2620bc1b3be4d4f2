from __future__ import annotations

from collections.abc import Iterator

import pytest

from application.ledger import Actor, Ledger
from domain.account import Role
from interface.settings import Settings
from interface.wiring import Service, build
from tests.support import CHEAP_ARGON2, FakeClock, cheap_hasher, fresh_database, postgres_url

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(postgres_url() is None, reason="TOKENLEDGER_TEST_POSTGRES_URL is not set"),
        ],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, usage_window_seconds=0, argon2=CHEAP_ARGON2)


@pytest.fixture
def service(settings: Settings, clock: FakeClock) -> Iterator[Service]:
    svc = build(settings, clock=clock, hasher=cheap_hasher())
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def ledger(service: Service) -> Ledger:
    return service.ledger


@pytest.fixture
def alice(ledger: Ledger) -> Actor:
    ledger.register_account("alice", Role.MEMBER, "alice-password")
    return ledger.authenticate("alice", "alice-password")


@pytest.fixture
def bob(ledger: Ledger) -> Actor:
    ledger.register_account("bob", Role.MEMBER, "bob-password")
    return ledger.authenticate("bob", "bob-password")


@pytest.fixture
def admin(ledger: Ledger) -> Actor:
    ledger.register_account("root", Role.ADMIN, "root-password")
    return ledger.authenticate("root", "root-password")
