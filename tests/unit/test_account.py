"""The Account aggregate: registration, password changes, roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.account import Account, Role, check_password, normalise_username
from domain.errors import InvalidPassword, InvalidRole, InvalidUsername

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def registered(username: str = "alice", role: Role = Role.MEMBER) -> Account:
    return Account.register(username=username, role=role, password_hash="hash-1", now=NOW)


def test_registration_records_username_role_and_password_hash() -> None:
    account = registered(role=Role.ADMIN)
    [event] = account.collect_events()
    assert type(event) is Account.Registered
    assert (event.username, event.role, event.password_hash) == ("alice", "admin", "hash-1")
    assert event.timestamp == NOW
    assert account.role is Role.ADMIN


def test_account_id_is_derived_from_the_username() -> None:
    assert registered("alice").id == Account.id_for("alice")
    assert Account.id_for("alice") != Account.id_for("bob")


@pytest.mark.parametrize(
    "text, expected", [("Alice", "alice"), ("  bob.smith ", "bob.smith"), ("ci-bot_2", "ci-bot_2")]
)
def test_usernames_are_normalised_to_lower_case_without_spaces(text: str, expected: str) -> None:
    assert normalise_username(text) == expected


@pytest.mark.parametrize(
    "text", ["", "   ", "-alice", ".alice", "alice smith", "alice:bob", "a" * 40, "ålice"]
)
def test_invalid_usernames_are_rejected(text: str) -> None:
    with pytest.raises(InvalidUsername):
        normalise_username(text)


def test_a_39_character_username_is_accepted() -> None:
    assert normalise_username("a" * 39) == "a" * 39


def test_passwords_shorter_than_eight_characters_are_rejected() -> None:
    with pytest.raises(InvalidPassword):
        check_password("1234567")
    assert check_password("12345678") == "12345678"


def test_overlong_passwords_are_rejected() -> None:
    with pytest.raises(InvalidPassword):
        check_password("x" * 1025)


@pytest.mark.parametrize("text", ["member", "admin", "service"])
def test_the_three_roles_parse(text: str) -> None:
    assert Role.parse(text).value == text


def test_unknown_role_is_rejected_naming_the_valid_ones() -> None:
    with pytest.raises(InvalidRole, match="member, admin or service"):
        Role.parse("owner")


def test_password_change_records_the_new_hash_and_the_actor() -> None:
    account = registered()
    account.change_password(password_hash="hash-2", actor="system:rehash", now=NOW + timedelta(days=1))
    events = account.collect_events()
    assert [type(e) for e in events] == [Account.Registered, Account.PasswordChanged]
    assert (events[1].password_hash, events[1].actor) == ("hash-2", "system:rehash")
    assert account.password_hash == "hash-2"


def test_role_change_records_an_event() -> None:
    account = registered()
    assert account.change_role(role=Role.ADMIN, actor="root", now=NOW)
    events = account.collect_events()
    assert type(events[-1]) is Account.RoleChanged
    assert (events[-1].role, events[-1].actor) == ("admin", "root")
    assert account.role is Role.ADMIN


def test_changing_to_the_same_role_records_nothing() -> None:
    account = registered()
    account.collect_events()
    assert not account.change_role(role=Role.MEMBER, actor="root", now=NOW)
    assert account.collect_events() == []
