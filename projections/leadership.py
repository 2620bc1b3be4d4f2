"""Which process runs the background catch-up: one per store at a time.

Every command catches the read models up itself before it answers (read your writes), so the
background loop only picks up events that no waiting process applied: those of a process that
died after committing, or written by other tools. One process doing that is enough; with
`serve --workers N` the others would only poll the log and queue on the write lock.

Leadership is a lock that the operating system or the database drops when its holder dies, so a
killed leader hands over by itself, at the next interval of another process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from pathlib import Path
from typing import Any, Protocol

import psycopg


class Leadership(Protocol):
    def try_lead(self) -> bool:
        """True while this process leads: takes the lead when it is free, keeps it once held."""
        ...

    def resign(self) -> None: ...


class AlwaysLead:
    """For a runner that is alone by construction (a test, a one-off tool)."""

    def try_lead(self) -> bool:
        return True

    def resign(self) -> None:
        pass


class FileLeadership:
    """SQLite: an exclusive flock on a file beside the database, held by an open descriptor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._leading = False

    def try_lead(self) -> bool:
        if self._leading:
            return True
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._leading = True
        return True

    def resign(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
        self._fd, self._leading = None, False


# Any fixed number will do, as long as nothing else on the server uses it for an advisory lock.
LEADER_LOCK_KEY = zlib.crc32(b"tokenledger projections leader") - 2**31


class PostgresLeadership:
    """PostgreSQL: a session-level advisory lock on a connection of its own. The server drops it
    when that connection ends, so a leader that dies or loses its connection hands over."""

    def __init__(self, conninfo: str, key: int = LEADER_LOCK_KEY) -> None:
        self.conninfo = conninfo
        self.key = key
        self._conn: Any = None
        self._leading = False

    def try_lead(self) -> bool:
        try:
            if self._conn is None:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            if self._leading:
                self._conn.execute("SELECT 1")  # still connected, so still holding the lock
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                self._leading = bool(row and row[0])
        except psycopg.Error:
            self.resign()  # the lock went with the connection; try again next time
            return False
        return self._leading

    def resign(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn, self._leading = None, False
