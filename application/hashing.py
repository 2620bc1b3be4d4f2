"""argon2id hashing of token secrets and account passwords (the SecretHasher port)."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """OWASP's minimum for argon2id by default: 19 MiB, two passes, one lane."""

    memory_kib: int = 19 * 1024
    time_cost: int = 2
    parallelism: int = 1


class Argon2Hasher:
    def __init__(self, parameters: Argon2Parameters | None = None) -> None:
        p = parameters or Argon2Parameters()
        self.parameters = p
        self._hasher = PasswordHasher(
            time_cost=p.time_cost, memory_cost=p.memory_kib, parallelism=p.parallelism, type=Type.ID
        )

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, secret_hash: str, secret: str) -> bool:
        try:
            return self._hasher.verify(secret_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, secret_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(secret_hash)
        except InvalidHashError:
            return True
