"""The hash chain that makes the event log tamper-evident.

digest(n) = SHA-256(digest(n-1) | position | originator id | version | topic | SHA-256(state))

Each digest covers everything stored at its position and, through the previous digest, every
position before it. Changing, deleting or reordering a stored event changes the digest at that
position and at every later one; the head digest, recorded outside the system, proves that
nothing before it changed.
"""

from __future__ import annotations

import hashlib
import uuid

GENESIS = "0" * 64


def link(
    previous: str, position: int, originator_id: uuid.UUID | str, version: int, topic: str, state: bytes
) -> str:
    body = "|".join(
        (previous, str(position), str(originator_id), str(version), topic, hashlib.sha256(state).hexdigest())
    )
    return hashlib.sha256(body.encode()).hexdigest()
