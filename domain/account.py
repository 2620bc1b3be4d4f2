"""The Account aggregate: people and services that manage tokens or ask about them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum

from eventsourcing.domain import Aggregate

from domain.errors import InvalidPassword, InvalidRole, InvalidUsername

USERNAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,38})")
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024
NAMESPACE = uuid.UUID("0b0e3f3c-4a55-4f7e-8f5e-2f2d1f0c9a77")


class Role(StrEnum):
    MEMBER = "member"
    ADMIN = "admin"
    SERVICE = "service"

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text)
        except ValueError:
            raise InvalidRole("role", f"role must be member, admin or service, not {text!r}") from None


def normalise_username(text: str) -> str:
    name = text.strip().lower()
    if not USERNAME_RE.fullmatch(name):
        raise InvalidUsername(
            "username",
            "username must be 1-39 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def check_password(password: str) -> str:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidPassword(
            "password", f"password must be {PASSWORD_MIN_LENGTH}-{PASSWORD_MAX_LENGTH} characters"
        )
    return password


class Account(Aggregate):
    class Registered(Aggregate.Created):
        username: str
        role: str
        password_hash: str

    def __init__(self, username: str, role: str, password_hash: str) -> None:
        self.username = username
        self.role = Role(role)
        self.password_hash = password_hash

    @staticmethod
    def id_for(username: str) -> uuid.UUID:
        """Deterministic, so a username can be registered once even under concurrency."""
        return uuid.uuid5(NAMESPACE, f"account\n{username}")

    @classmethod
    def register(cls, *, username: str, role: Role, password_hash: str, now: datetime) -> Account:
        return cls._create(
            cls.Registered,
            id=cls.id_for(username),
            timestamp=now,
            username=username,
            role=role.value,
            password_hash=password_hash,
        )

    class PasswordChanged(Aggregate.Event):
        password_hash: str
        actor: str

        def apply(self, account: Account) -> None:
            account.password_hash = self.password_hash

    def change_password(self, *, password_hash: str, actor: str, now: datetime) -> None:
        self.trigger_event(self.PasswordChanged, timestamp=now, password_hash=password_hash, actor=actor)

    class RoleChanged(Aggregate.Event):
        role: str
        actor: str

        def apply(self, account: Account) -> None:
            account.role = Role(self.role)

    def change_role(self, *, role: Role, actor: str, now: datetime) -> bool:
        if role == self.role:
            return False
        self.trigger_event(self.RoleChanged, timestamp=now, role=role.value, actor=actor)
        return True
