"""Scopes: what a token may do, as a small frozen value object."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from domain.errors import InvalidScopes


class Scope(StrEnum):
    REPO = "repo"
    REPO_READ = "repo:read"
    MACHINE = "machine"
    SERVICE = "service"
    JOB = "job"
    ADMIN_ORG = "admin:org"
    ADMIN_SSH_KEY = "admin:ssh_key"


DESCRIPTIONS: dict[Scope, str] = {
    Scope.REPO: "Read and write access to repositories (includes repo:read).",
    Scope.REPO_READ: "Read-only access to repositories: enough for a pipeline that only reads code.",
    Scope.MACHINE: "Act as a machine user: register and run build machines.",
    Scope.SERVICE: "Call platform services on behalf of the owner.",
    Scope.JOB: "Run and manage CI/CD jobs.",
    Scope.ADMIN_ORG: "Administer the organisation: members, audit log and compliance reports.",
    Scope.ADMIN_SSH_KEY: "Manage SSH keys.",
}

# A granted scope also grants the scopes listed here.
IMPLIED: dict[Scope, frozenset[Scope]] = {Scope.REPO: frozenset({Scope.REPO_READ})}

ADMIN_SCOPES = frozenset({Scope.ADMIN_ORG, Scope.ADMIN_SSH_KEY})


def parse_scope(text: str) -> Scope:
    try:
        return Scope(text)
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise InvalidScopes("scopes", f"unknown scope {text!r}; known scopes: {known}") from None


@dataclass(frozen=True, slots=True)
class Scopes:
    """The scopes granted to a token: at least one, no duplicates, kept in a stable order."""

    granted: frozenset[Scope]

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Scopes:
        if isinstance(texts, str):
            return _parse_text(texts)
        scopes = frozenset(parse_scope(t.strip()) for t in texts)
        if not scopes:
            raise InvalidScopes("scopes", "a token needs at least one scope")
        return cls(scopes)

    def allows(self, scope: Scope) -> bool:
        return scope in self.granted or any(scope in IMPLIED.get(g, ()) for g in self.granted)

    def effective(self) -> frozenset[Scope]:
        implied = (s for g in self.granted for s in IMPLIED.get(g, ()))
        return self.granted | frozenset(implied)

    def as_list(self) -> list[str]:
        return list(_in_order(self.granted))

    def __str__(self) -> str:
        return " ".join(_in_order(self.granted))


# Every verification parses the stored scopes and every answer prints them; there are only 128
# sets of the seven scopes, so both are remembered (the bound keeps odd spellings from piling up).
_RANK = {scope: rank for rank, scope in enumerate(Scope)}


@lru_cache(maxsize=1024)
def _parse_text(text: str) -> Scopes:
    return Scopes.parse(text.replace(",", " ").split())


@lru_cache(maxsize=256)
def _in_order(granted: frozenset[Scope]) -> tuple[str, ...]:
    return tuple(s.value for s in sorted(granted, key=_RANK.__getitem__))
