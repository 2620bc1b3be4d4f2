"""One process per store runs the background projection catch-up, and a dead one hands over."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from interface.settings import Settings
from interface.wiring import build, leadership_for
from projections.database import Database
from tests.support import cheap_hasher

HOLD_AND_WAIT = """
import sys, time
from interface.wiring import leadership_for
from projections.database import Database
leadership = leadership_for(Database.parse(sys.argv[1]))
print("leading" if leadership.try_lead() else "not leading", flush=True)
time.sleep(600)
"""


def eventually(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_one_process_leads_until_it_resigns_then_the_next_takes_over(database_url: str) -> None:
    database = Database.parse(database_url)
    first, second = leadership_for(database), leadership_for(database)
    try:
        assert first.try_lead()
        assert not second.try_lead()
        assert first.try_lead()  # kept, not taken twice
        first.resign()
        assert second.try_lead()
        assert not first.try_lead()
    finally:
        first.resign()
        second.resign()


def test_a_killed_leader_hands_over_to_a_live_process(database_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, database_url], stdout=subprocess.PIPE, text=True
    )
    other = leadership_for(Database.parse(database_url))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "leading"
        assert not other.try_lead()
        child.kill()  # no clean-up runs: the OS or the server must drop the lock
        child.wait()
        assert eventually(other.try_lead)
    finally:
        child.kill()
        child.wait()
        other.resign()


def test_of_two_running_services_one_catches_up_in_the_background(settings: Settings) -> None:
    first, second = build(settings, hasher=cheap_hasher()), build(settings, hasher=cheap_hasher())
    changes: list[tuple[str, bool]] = []
    try:
        first.projections.start(0.05, on_leading=lambda leading: changes.append(("first", leading)))
        second.projections.start(0.05, on_leading=lambda leading: changes.append(("second", leading)))
        assert eventually(lambda: first.projections.leading or second.projections.leading)
        time.sleep(0.3)  # several intervals: the other one must still be waiting
        assert [first.projections.leading, second.projections.leading].count(True) == 1
        leader, follower = (first, second) if first.projections.leading else (second, first)

        leader.projections.stop()
        assert not leader.projections.leading
        assert eventually(lambda: follower.projections.leading)
        assert [leading for _, leading in changes] == [True, False, True]
    finally:
        first.close()
        second.close()
