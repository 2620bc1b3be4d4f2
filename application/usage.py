"""Usage recording off the hot path.

Verification only adds a use to an in-memory window (a dict update under a lock). A background
thread turns each token's window into one `Used` event every `window_seconds` (with a window of
0, every use becomes its own event, written as soon as the thread wakes) and writes them in one
batch. `stop()` flushes what is pending; a hard crash loses at most the uses of the current,
unflushed window.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from domain.usage import UsageWindow, Use

log = logging.getLogger("tokenledger.usage")


@dataclass
class PendingUsage:
    token_id: uuid.UUID
    window: UsageWindow
    # A fresh hash of the secret behind `rehash_lookup_id`, made because the hasher's parameters
    # changed; recorded only while that lookup id is still the token's current one.
    rehashed: str | None = None
    rehash_lookup_id: str | None = None


Batch = list[PendingUsage]


class UsageRecorder:
    def __init__(self, write_batch: Callable[[Batch], int], window_seconds: float) -> None:
        if window_seconds < 0:
            raise ValueError("the usage window cannot be negative")
        self.write_batch = write_batch
        self.window_seconds = window_seconds
        self._pending: dict[uuid.UUID, list[PendingUsage]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.events_written = 0

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def record(
        self, token_id: uuid.UUID, use: Use, rehashed: str | None = None, lookup_id: str | None = None
    ) -> None:
        with self._lock:
            windows = self._pending.setdefault(token_id, [])
            if windows and self.window_seconds > 0:
                pending = windows[-1]
                pending.window.add(use)
                if rehashed:
                    pending.rehashed, pending.rehash_lookup_id = rehashed, lookup_id
            else:
                windows.append(PendingUsage(token_id, UsageWindow.starting_with(use), rehashed, lookup_id))
        if self.window_seconds == 0:
            self._wake.set()

    def flush(self) -> int:
        """Write everything pending now; returns the number of `Used` events written."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            batch = [p for windows in pending.values() for p in windows]
            if not batch:
                return 0
            try:
                written = self.write_batch(batch)
            except Exception:
                # Nothing was committed: put the uses back so the next flush retries them.
                self._merge_back(pending)
                raise
            self.events_written += written
            return written

    def _merge_back(self, failed: dict[uuid.UUID, list[PendingUsage]]) -> None:
        with self._lock:
            for token_id, windows in failed.items():
                newer = self._pending.get(token_id, [])
                if self.window_seconds > 0 and newer:
                    for later in newer:
                        windows[-1].window.merge(later.window)
                        if later.rehashed:
                            windows[-1].rehashed = later.rehashed
                            windows[-1].rehash_lookup_id = later.rehash_lookup_id
                    newer = []
                self._pending[token_id] = windows + newer

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="usage-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.window_seconds if self.window_seconds > 0 else None
        while not self._stopping.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("writing usage failed; will retry with the next window")
                self._stopping.wait(1.0)

    def stop(self) -> None:
        """Stop the thread and flush what is pending (graceful shutdown)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
