from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server, add_user


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    srv = Server(database_url, tmp_path).start()
    try:
        yield srv
    finally:
        if srv.process is not None:
            srv.stop()


@pytest.fixture
def alice_password(server: Server) -> str:
    return add_user(server.database_url, "alice")


@pytest.fixture
def bob_password(server: Server) -> str:
    return add_user(server.database_url, "bob")
