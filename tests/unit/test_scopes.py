"""Scopes: what a token may do."""

from __future__ import annotations

import pytest

from domain.errors import InvalidScopes
from domain.scopes import DESCRIPTIONS, Scope, Scopes, parse_scope

ALL_SCOPES = ["repo", "repo:read", "machine", "service", "job", "admin:org", "admin:ssh_key"]


def test_there_are_exactly_the_seven_documented_scopes() -> None:
    assert sorted(s.value for s in Scope) == sorted(ALL_SCOPES)


def test_every_scope_has_a_description() -> None:
    assert set(DESCRIPTIONS) == set(Scope)
    assert all(text.strip() for text in DESCRIPTIONS.values())


@pytest.mark.parametrize("text", ALL_SCOPES)
def test_each_documented_scope_parses(text: str) -> None:
    assert Scopes.parse([text]).as_list() == [text]


def test_repo_implies_repo_read() -> None:
    assert Scopes.parse(["repo"]).allows(Scope.REPO_READ)


def test_repo_read_does_not_imply_repo() -> None:
    assert not Scopes.parse(["repo:read"]).allows(Scope.REPO)


def test_a_scope_allows_only_itself_and_what_it_implies() -> None:
    scopes = Scopes.parse(["job"])
    assert scopes.allows(Scope.JOB)
    assert [s for s in Scope if scopes.allows(s)] == [Scope.JOB]


def test_effective_scopes_include_the_implied_ones() -> None:
    assert Scopes.parse(["repo", "job"]).effective() == {Scope.REPO, Scope.REPO_READ, Scope.JOB}


def test_admin_org_does_not_imply_other_admin_scopes() -> None:
    assert not Scopes.parse(["admin:org"]).allows(Scope.ADMIN_SSH_KEY)


def test_unknown_scope_error_lists_the_known_ones() -> None:
    with pytest.raises(InvalidScopes) as raised:
        Scopes.parse(["repo", "write:everything"])
    message = str(raised.value)
    assert "write:everything" in message
    for known in ALL_SCOPES:
        assert known in message
    assert raised.value.field == "scopes"


def test_parse_scope_rejects_a_different_case() -> None:
    with pytest.raises(InvalidScopes):
        parse_scope("REPO")


@pytest.mark.parametrize("empty", [[], "", "  ", ()])
def test_empty_scopes_are_rejected(empty: list[str] | str | tuple[str, ...]) -> None:
    with pytest.raises(InvalidScopes, match="at least one scope"):
        Scopes.parse(empty)


def test_duplicates_collapse() -> None:
    assert Scopes.parse(["repo", "job", "repo"]).as_list() == ["repo", "job"]


def test_order_is_stable_whatever_the_input_order() -> None:
    assert Scopes.parse(["admin:org", "repo:read", "repo"]).as_list() == ["repo", "repo:read", "admin:org"]
    assert Scopes.parse(["repo", "admin:org"]) == Scopes.parse(["admin:org", "repo"])


def test_a_string_of_scopes_separated_by_commas_or_spaces_parses() -> None:
    assert Scopes.parse("repo, job machine").as_list() == ["repo", "machine", "job"]


def test_scopes_read_as_a_space_separated_list() -> None:
    assert str(Scopes.parse(["job", "repo"])) == "repo job"
