"""Usage recording off the hot path.

Verification only adds a use to an in-memory window (a dict update under a lock). A background
thread turns each token's window into one `Used` event every `window_seconds` (at once when the
window is 0) and writes all of them in one batch. `stop()` flushes what is pending; a hard crash
loses at most the uses of the current, unflushed window.
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
    window: UsageWindow
    rehashed: str | None = None


Batch = dict[uuid.UUID, PendingUsage]


class UsageRecorder:
    def __init__(self, write_batch: Callable[[Batch], None], window_seconds: float) -> None:
        if window_seconds < 0:
            raise ValueError("the usage window cannot be negative")
        self.write_batch = write_batch
        self.window_seconds = window_seconds
        self._pending: Batch = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.events_written = 0

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def record(self, token_id: uuid.UUID, use: Use, rehashed: str | None = None) -> None:
        with self._lock:
            pending = self._pending.get(token_id)
            if pending is None:
                self._pending[token_id] = PendingUsage(UsageWindow.starting_with(use), rehashed)
            else:
                pending.window.add(use)
                pending.rehashed = rehashed or pending.rehashed
        if self.window_seconds == 0:
            self._wake.set()

    def flush(self) -> int:
        """Write everything pending now; returns the number of tokens written."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                self.write_batch(batch)
            except Exception:
                # Put the uses back so the next flush retries them; nothing acknowledged is dropped.
                self._merge_back(batch)
                raise
            self.events_written += len(batch)
            return len(batch)

    def _merge_back(self, batch: Batch) -> None:
        with self._lock:
            for token_id, pending in batch.items():
                newer = self._pending.get(token_id)
                if newer is not None:
                    pending.window.merge(newer.window)
                    pending.rehashed = newer.rehashed or pending.rehashed
                self._pending[token_id] = pending

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
