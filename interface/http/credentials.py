"""Reading credentials from a request: Bearer, `token`, and HTTP Basic as git sends it."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass

from starlette.requests import HTTPConnection

TOKEN_PREFIX = "opat_"


@dataclass(frozen=True, slots=True)
class TokenCredential:
    value: str

    def __repr__(self) -> str:
        return "TokenCredential(<hidden>)"


@dataclass(frozen=True, slots=True)
class PasswordCredential:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"PasswordCredential(username={self.username!r}, password=<hidden>)"


Credential = TokenCredential | PasswordCredential


def parse_authorization(header: str | None) -> Credential | None:
    """`Bearer <value>`, `token <value>` (GitHub's form), or Basic.

    With Basic, a password that looks like a token is a token, whatever the user name (what git
    sends for https://x:<token>@host/repo.git); a token as the user name with an empty password
    is accepted too, as some tools send it that way.
    """
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    rest = rest.strip()
    if scheme in ("bearer", "token"):
        return TokenCredential(rest) if rest else None
    if scheme != "basic":
        return None
    try:
        decoded = base64.b64decode(rest, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    if password.startswith(TOKEN_PREFIX):
        return TokenCredential(password)
    if username.startswith(TOKEN_PREFIX) and not password:
        return TokenCredential(username)
    return PasswordCredential(username, password)


def _address(text: str) -> str | None:
    """A normalised IP address, without an IPv6 zone id (client-controlled, of any length)."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    return str(address)


def client_address(connection: HTTPConnection, trusted_proxies: frozenset[str]) -> str | None:
    """The client's address; X-Forwarded-For is believed only when the peer is a trusted proxy.

    A proxy appends the address it saw to whatever the client sent ("<anything>, <real>"), so
    the header is read from the right: the first entry that is not itself a trusted proxy is the
    client. The leftmost entries are the client's own words and never count."""
    peer = connection.client.host if connection.client else None
    headers = connection.headers
    return forwarded_client(peer, headers.get("x-forwarded-for"), headers.get("x-real-ip"), trusted_proxies)


def forwarded_client(
    peer: str | None, forwarded: str | None, real: str | None, trusted_proxies: frozenset[str]
) -> str | None:
    """`client_address` from the headers' values, for callers that read the headers themselves.
    The one place that decides whether the headers are believed."""
    if peer in trusted_proxies:
        if forwarded:
            for entry in reversed(forwarded.split(",")):
                address = _address(entry)
                if address is None:
                    return peer  # a garbled hop: believe nothing further left
                if address not in trusted_proxies:
                    return address
            return peer
        if real:
            return _address(real) or peer
    return peer
