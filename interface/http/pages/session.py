"""Signed session cookies and CSRF tokens for the web pages.

The cookie holds the user name, a session id, the issue time and a fingerprint of the account's
password hash, signed with HMAC-SHA256: changing the password ends every session. CSRF tokens
are derived from the session id with the same key (synchronizer tokens, checked on every form);
before sign-in, the sign-in form uses a double-submit cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "tl_session"
LOGIN_CSRF_COOKIE = "tl_login_csrf"
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    session_id: str
    issued_at: float
    password_fingerprint: str


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class SessionSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the session key needs at least 32 bytes")
        self.key = key

    def _sign(self, payload: bytes) -> str:
        return (
            base64.urlsafe_b64encode(hmac.new(self.key, payload, hashlib.sha256).digest())
            .decode()
            .rstrip("=")
        )

    def issue(self, username: str, password_hash: str, now: float | None = None) -> tuple[str, Session]:
        session = Session(
            username, secrets.token_urlsafe(16), now or time.time(), password_fingerprint(password_hash)
        )
        payload = json.dumps(
            [session.username, session.session_id, session.issued_at, session.password_fingerprint]
        ).encode()
        encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{encoded}.{self._sign(payload)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        encoded, signature = cookie.rsplit(".", 1)
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            username, session_id, issued_at, fingerprint = json.loads(payload)
        except (ValueError, TypeError):
            return None
        if (now or time.time()) - float(issued_at) > SESSION_SECONDS:
            return None
        return Session(str(username), str(session_id), float(issued_at), str(fingerprint))

    def csrf_token(self, session_id: str) -> str:
        return self._sign(f"csrf:{session_id}".encode())

    def check_csrf(self, session_id: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session_id), token or "")
