"""The token value format: `opat_` + lookup id + secret + CRC32 checksum, all base62.

A value is recognisable by secret scanners (fixed prefix, fixed length, one alphabet) and
self-checking: the last six characters are the CRC32 of everything before them, so a mistyped
or random string is rejected offline, without a database read or a hash.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "opat_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LOOKUP_ID_LENGTH = 12  # ~71 bits: public, only needs to be unique
SECRET_LENGTH = 43  # 62**43 > 2**256
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
VALUE_LENGTH = len(PREFIX) + LOOKUP_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH

# Documented in the README; scanners may use it as is.
TOKEN_PATTERN = r"opat_[0-9A-Za-z]{61}"
TOKEN_RE = re.compile(rf"\b{TOKEN_PATTERN}\b")
_FULL_RE = re.compile(rf"{TOKEN_PATTERN}")
LOOKUP_ID_RE = re.compile(rf"[0-9A-Za-z]{{{LOOKUP_ID_LENGTH}}}")


def encode_base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    if number:
        raise ValueError("number does not fit in the given width")
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    return encode_base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


@dataclass(frozen=True, slots=True)
class TokenValue:
    """A token value split into its parts. Its repr never shows the secret."""

    lookup_id: str
    secret: str

    @property
    def value(self) -> str:
        body = PREFIX + self.lookup_id + self.secret
        return body + checksum(body)

    def __repr__(self) -> str:
        return f"TokenValue(lookup_id={self.lookup_id!r}, secret=<hidden>)"

    __str__ = __repr__


def _random_base62(length: int) -> str:
    return encode_base62(secrets.randbelow(62**length), length)


def generate() -> TokenValue:
    """A new random value, its secret drawn from the `secrets` module."""
    return TokenValue(lookup_id=_random_base62(LOOKUP_ID_LENGTH), secret=_random_base62(SECRET_LENGTH))


def is_well_formed(text: str) -> bool:
    """True when `text` has the token shape and a matching checksum (no I/O)."""
    return parse(text) is not None


def parse(text: str) -> TokenValue | None:
    """Split a value into lookup id and secret, or None when it is malformed or mistyped."""
    if len(text) != VALUE_LENGTH or not _FULL_RE.fullmatch(text):
        return None
    body, check = text[:-CHECKSUM_LENGTH], text[-CHECKSUM_LENGTH:]
    if checksum(body) != check:
        return None
    start = len(PREFIX)
    return TokenValue(
        lookup_id=body[start : start + LOOKUP_ID_LENGTH],
        secret=body[start + LOOKUP_ID_LENGTH :],
    )


def has_token_shape(text: str) -> bool:
    """True for the shape alone, checksum not checked: tells 'malformed' from 'bad checksum'."""
    return len(text) == VALUE_LENGTH and _FULL_RE.fullmatch(text) is not None
