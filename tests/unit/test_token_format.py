"""The token value format: recognisable by scanners, checksummed, never showing its secret."""

from __future__ import annotations

import math
import re

import pytest

from domain import token_format
from domain.token_format import (
    ALPHABET,
    PREFIX,
    SECRET_LENGTH,
    TOKEN_PATTERN,
    TOKEN_RE,
    VALUE_LENGTH,
    TokenValue,
    generate,
    is_well_formed,
)


@pytest.fixture
def value() -> str:
    return generate().value


def test_value_starts_with_the_visible_prefix(value: str) -> None:
    assert value.startswith("opat_")
    assert PREFIX == "opat_"


def test_every_value_has_the_same_length() -> None:
    lengths = {len(generate().value) for _ in range(200)}
    assert lengths == {VALUE_LENGTH}
    assert len("opat_") + 61 == VALUE_LENGTH


def test_value_after_the_prefix_is_base62(value: str) -> None:
    body = value.removeprefix("opat_")
    assert set(body) <= set(ALPHABET)
    assert set(ALPHABET) == set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def test_secret_carries_at_least_256_bits() -> None:
    token = generate()
    assert len(token.secret) == SECRET_LENGTH
    assert SECRET_LENGTH * math.log2(len(ALPHABET)) >= 256


def test_secrets_do_not_repeat() -> None:
    secrets = {generate().secret for _ in range(1000)}
    assert len(secrets) == 1000


def test_secret_uses_the_whole_alphabet() -> None:
    # A generator that drew from a smaller range (hex, digits) would never cover all 62 characters.
    seen = set("".join(generate().secret for _ in range(200)))
    assert seen == set(ALPHABET)


def test_generated_value_is_well_formed(value: str) -> None:
    assert is_well_formed(value)


def test_value_splits_back_into_its_lookup_id_and_secret() -> None:
    token = generate()
    parsed = token_format.parse(token.value)
    assert parsed == token


def test_checksum_detects_every_single_character_change(value: str) -> None:
    missed = [
        (position, replacement)
        for position in range(len(value))
        for replacement in ALPHABET + "_"
        if replacement != value[position]
        and is_well_formed(value[:position] + replacement + value[position + 1 :])
    ]
    assert missed == []


def test_checksum_detects_swapped_neighbours(value: str) -> None:
    body = value.removeprefix("opat_")
    position = next(i for i in range(len(body) - 1) if body[i] != body[i + 1])
    swapped = body[:position] + body[position + 1] + body[position] + body[position + 2 :]
    assert not is_well_formed("opat_" + swapped)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "opat_",
        "ghp_" + "a" * 36,
        "not a token at all",
    ],
)
def test_strings_without_the_token_shape_are_not_well_formed(text: str) -> None:
    assert not is_well_formed(text)


def test_value_with_surrounding_whitespace_is_not_well_formed(value: str) -> None:
    assert not is_well_formed(f" {value}")
    assert not is_well_formed(f"{value}\n")


def test_truncated_or_extended_value_is_not_well_formed(value: str) -> None:
    assert not is_well_formed(value[:-1])
    assert not is_well_formed(value + "A")


def test_value_with_non_ascii_digit_is_not_well_formed(value: str) -> None:
    assert not is_well_formed(value[:10] + "\u0663" + value[11:])  # ARABIC-INDIC DIGIT THREE


def test_documented_pattern_matches_generated_values() -> None:
    for _ in range(200):
        assert re.fullmatch(TOKEN_PATTERN, generate().value)


def test_documented_pattern_finds_a_value_embedded_in_a_git_remote(value: str) -> None:
    text = f"git remote add origin https://ci:{value}@git.example.com/team/repo.git"
    assert TOKEN_RE.findall(text) == [value]


def test_documented_pattern_does_not_match_other_prefixes() -> None:
    assert re.fullmatch(TOKEN_PATTERN, "opat-" + "a" * 61) is None
    assert re.fullmatch(TOKEN_PATTERN, "opat_" + "a" * 60) is None


def test_repr_and_str_never_show_the_secret() -> None:
    token = generate()
    for shown in (repr(token), str(token), f"{token}", f"{token!r}", repr([token])):
        assert token.secret not in shown
        assert token.value not in shown
        assert token.lookup_id in shown


def test_token_value_built_by_hand_has_a_valid_checksum() -> None:
    token = TokenValue(lookup_id="A" * 12, secret="b" * SECRET_LENGTH)
    assert is_well_formed(token.value)
