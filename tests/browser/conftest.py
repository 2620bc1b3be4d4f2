"""Real browser tests: Playwright for Python driving Debian's Chromium, headless."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, Server, add_user

CHROMIUM = os.environ.get("TOKENLEDGER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.sync_api")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not Path(CHROMIUM).exists():
        skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """Screenshots of every page a test visits, for a reviewer: test-output/browser/<test>/."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder = Path(os.environ.get("TOKENLEDGER_TEST_OUTPUT", ROOT / "test-output")) / "browser" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def web(database_url: str, tmp_path: Path) -> Iterator[Server]:
    # A one-second usage window, so "last used" appears quickly after a use.
    server = Server(database_url, tmp_path, usage_window="1").start()
    add_user(database_url, "alice", password="alice-password")
    add_user(database_url, "bob", password="bob-password")
    try:
        yield server
    finally:
        server.stop()
