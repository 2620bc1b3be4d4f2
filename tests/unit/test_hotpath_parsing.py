"""The auth-check route's own header and query reading answers what Starlette's would."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from interface.http.hotpath import _read_headers, _wanted_scope


def request(query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": query, "headers": headers or []}
    )


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"scope=repo",
        b"scope=repo:read",
        b"scope=repo%3Aread",
        b"scope=",
        b"scope=a+b",
        b"scope=repo&scope=job",
        b"other=1&scope=job",
        b"scope=repo;x=1",
        b"scope=a=b",
        b"scopes=repo",
        b"scope=\xc3\xa9",
    ],
)
def test_the_wanted_scope_is_what_the_query_parser_reads(query: bytes) -> None:
    assert _wanted_scope(request(query)) == request(query).query_params.get("scope")


def test_headers_are_read_as_starlette_reads_them_first_value_first() -> None:
    raw = [
        (b"user-agent", b"git/2.43"),
        (b"authorization", b"Bearer one"),
        (b"authorization", b"Bearer two"),
        (b"x-forwarded-for", b"10.0.0.1, 10.0.0.2"),
        (b"accept", b"*/*"),
        (b"x-real-ip", b"\xe9"),
    ]
    starlette = request(headers=raw).headers
    ours = _read_headers(raw)
    for name in ("authorization", "user-agent", "x-forwarded-for", "x-real-ip"):
        assert ours[name.encode()] == starlette.get(name)
    assert b"accept" not in ours
