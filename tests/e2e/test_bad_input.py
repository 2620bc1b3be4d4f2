"""Bad client input through a real server: a 4xx RFC 9457 problem, never a 5xx, and no change.

One server per backend serves the whole module (starting one per case would cost minutes). Every
bad request runs inside `nothing_changes`, which compares every owner's tokens in every state
before and after, and checks that the server logged no unexpected error.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from domain import token_format
from tests.conftest import BACKENDS
from tests.e2e.server import Server, add_user
from tests.support import fresh_database

PROBLEM_JSON = "application/problem+json"
PROBLEM_MEMBERS = {"type", "title", "status", "detail"}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(backend, tmp_path_factory.mktemp(f"db-{backend}")) as url:
        yield url


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(database_url, tmp_path_factory.mktemp("server")).start()
    try:
        yield srv
    finally:
        if srv.process is not None:
            srv.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    """A client that keeps no cookies: every request carries only the credentials it names."""
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    with httpx.Client(base_url=server.url, cookies=no_cookies, timeout=30) as client:
        yield client


@dataclass(frozen=True)
class World:
    """Who exists on the module's server, and the tokens the bad requests must leave alone."""

    http: httpx.Client
    admin: tuple[str, str]
    alice: tuple[str, str]
    bob: tuple[str, str]
    gateway: tuple[str, str]
    alice_token_id: str
    alice_token_value: str
    bob_token_id: str


@pytest.fixture(scope="module")
def world(server: Server, http: httpx.Client) -> World:
    assert server.admin_password
    alice = ("alice", add_user(server.database_url, "alice"))
    bob = ("bob", add_user(server.database_url, "bob"))
    gateway = ("gateway", add_user(server.database_url, "gateway", role="service"))
    add_user(server.database_url, "carol")  # only ever signs in with a wrong password
    existing = http.post(
        "/api/v1/tokens",
        auth=alice,
        json={"name": "Existing", "scopes": ["repo"], "expires_in_days": 30},
    )
    assert existing.status_code == 201, existing.text
    theirs = http.post("/api/v1/tokens", auth=bob, json={"name": "Bob CI", "scopes": ["job"]})
    assert theirs.status_code == 201, theirs.text
    return World(
        http=http,
        admin=("admin", server.admin_password),
        alice=alice,
        bob=bob,
        gateway=gateway,
        alice_token_id=existing.json()["id"],
        alice_token_value=existing.json()["token"],
        bob_token_id=theirs.json()["id"],
    )


def every_token(world: World) -> list[dict[str, Any]]:
    response = world.http.get("/api/v1/tokens", params={"owner": "*", "state": "all"}, auth=world.admin)
    assert response.status_code == 200, response.text
    # Last use is left out: the few checks with a valid value below are real uses, written in the
    # background, and may land during a later test.
    usage = ("last_used_at", "last_used_ip")
    records = [{k: v for k, v in token.items() if k not in usage} for token in response.json()]
    return sorted(records, key=lambda t: t["id"])


@contextmanager
def nothing_changes(server: Server, world: World) -> Iterator[None]:
    before = every_token(world)
    assert before, "the module's tokens should exist"
    logged = len(server.logs())
    yield
    assert every_token(world) == before
    assert "unexpected error" not in server.logs()[logged:]


def assert_problem(response: httpx.Response, status: int, fields: set[str] | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body = response.json()
    assert body.keys() >= PROBLEM_MEMBERS, body
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if fields is not None:
        assert {error["field"] for error in body["errors"]} == fields, body
        assert all(error["detail"] for error in body["errors"])
    return body


def basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


VALID = {"name": "New token", "scopes": ["repo:read"], "expires_in_days": 30}

INVALID_CREATE_BODIES = [
    pytest.param(VALID | {"scopes": ["repo", "delete:everything"]}, {"scopes"}, id="unknown-scope"),
    pytest.param(VALID | {"scopes": ["REPO"]}, {"scopes"}, id="scope-in-capitals"),
    pytest.param(VALID | {"scopes": []}, {"scopes"}, id="empty-scopes"),
    pytest.param(VALID | {"scopes": "repo"}, {"scopes"}, id="scopes-not-a-list"),
    pytest.param(VALID | {"scopes": [1]}, {"scopes.0"}, id="scope-not-a-string"),
    pytest.param(VALID | {"expires_in_days": 7}, {"expires_in_days"}, id="expiry-7-days"),
    pytest.param(VALID | {"expires_in_days": "30"}, {"expires_in_days"}, id="expiry-as-string"),
    pytest.param(VALID | {"expires_in_days": True}, {"expires_in_days"}, id="expiry-as-boolean"),
    pytest.param(VALID | {"expires_in_days": -30}, {"expires_in_days"}, id="expiry-negative"),
    pytest.param(VALID | {"name": ""}, {"name"}, id="empty-name"),
    pytest.param(VALID | {"name": " \t  "}, {"name"}, id="whitespace-name"),
    pytest.param(VALID | {"name": "a" * 101}, {"name"}, id="101-character-name"),
    pytest.param(VALID | {"name": "CI\x00job"}, {"name"}, id="nul-in-name"),
    pytest.param(VALID | {"name": "line\nbreak"}, {"name"}, id="newline-in-name"),
    pytest.param(VALID | {"name": "zero\u200bwidth"}, {"name"}, id="zero-width-space-in-name"),
    pytest.param(VALID | {"name": 42}, {"name"}, id="name-not-a-string"),
    pytest.param(VALID | {"colour": "red"}, {"colour"}, id="unknown-field"),
    pytest.param(VALID | {"owner": "bob"}, {"owner"}, id="owner-is-not-a-create-field"),
    pytest.param({"scopes": ["repo"]}, {"name"}, id="name-missing"),
    pytest.param(
        {"name": "", "scopes": [], "expires_in_days": 7},
        {"name", "scopes", "expires_in_days"},
        id="three-bad",
    ),
]


@pytest.mark.parametrize(("body", "fields"), INVALID_CREATE_BODIES)
def test_invalid_token_fields_answer_422_naming_each_field(
    server: Server, world: World, body: dict[str, Any], fields: set[str]
) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens", auth=world.alice, json=body)
        assert_problem(response, 422, fields)


def test_json_array_instead_of_object_answers_422(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens", auth=world.alice, json=[VALID])
        assert_problem(response, 422, {"body"})


def test_missing_body_answers_422(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens", auth=world.alice)
        assert_problem(response, 422, {"body"})
        response = world.http.post(
            "/api/v1/tokens", auth=world.alice, headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 422, {"body"})


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"name": "New token", "scopes": ["repo"]', id="unterminated"),
        pytest.param(b"{'name': 'single quotes'}", id="single-quotes"),
        pytest.param(b"name=New&scopes=repo", id="form-encoded"),
        pytest.param(b'{"name": "\xff\xfe", "scopes": ["repo"]}', id="not-utf-8"),
        pytest.param(b"[" * 20000 + b"]" * 20000, id="nested-20000-deep"),
        pytest.param(
            b'{"name": "x", "scopes": ["repo"], "expires_in_days": ' + b"9" * 5000 + b"}", id="5000-digits"
        ),
    ],
)
def test_malformed_json_answers_a_4xx_problem(server: Server, world: World, raw: bytes) -> None:
    with nothing_changes(server, world):
        response = world.http.post(
            "/api/v1/tokens",
            auth=world.alice,
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        # docs/api.md: 400 for a malformed request; the server answers a syntax error with 422.
        assert response.status_code in (400, 422), response.text
        assert_problem(response, response.status_code)


def test_body_over_64_kib_answers_413(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens", auth=world.alice, json=VALID | {"name": "x" * 70_000})
        assert_problem(response, 413)
        response = world.http.post("/api/v1/revoke", data={"token": "x" * 70_000})
        assert_problem(response, 413)


def test_chunked_body_over_64_kib_answers_413(server: Server, world: World) -> None:
    # No Content-Length to check up front: the limit is enforced while the body streams in.
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "Chunked", "scopes": ["repo"], "expires_in_days": 30, "padding": "'
        for _ in range(70):
            yield b"a" * 1024
        yield b'"}'

    with nothing_changes(server, world):
        response = world.http.post(
            "/api/v1/tokens",
            auth=world.alice,
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert_problem(response, 413)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({"expires_in_days": 7}, {"expires_in_days"}, id="expiry-7-days"),
        pytest.param({"expires_in_days": "60"}, {"expires_in_days"}, id="expiry-as-string"),
        pytest.param({"name": "Renamed"}, {"name"}, id="unknown-field"),
        pytest.param([{"expires_in_days": 60}], {"body"}, id="json-array"),
    ],
)
def test_invalid_regenerate_body_answers_422_and_keeps_the_value(
    server: Server, world: World, body: Any, fields: set[str]
) -> None:
    with nothing_changes(server, world):
        response = world.http.post(
            f"/api/v1/tokens/{world.alice_token_id}/regenerate", auth=world.alice, json=body
        )
        assert_problem(response, 422, fields)
    check = world.http.get(
        "/api/v1/auth/check", headers={"Authorization": f"Bearer {world.alice_token_value}"}
    )
    assert check.status_code == 204


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({"issued_before": "last tuesday"}, {"issued_before"}, id="date-not-a-date"),
        pytest.param({"issued_before": "0000-01-01T00:00:00Z"}, {"issued_before"}, id="year-zero"),
        pytest.param({"everything": True}, {"everything"}, id="unknown-field"),
        pytest.param({"all_owners": "everyone"}, {"all_owners"}, id="all-owners-not-a-boolean"),
    ],
)
def test_invalid_revoke_all_body_answers_422_and_revokes_nothing(
    server: Server, world: World, body: dict[str, Any], fields: set[str]
) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens/revoke-all", auth=world.admin, json=body)
        assert_problem(response, 422, fields)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/regenerate"), ("DELETE", ""), ("GET", "/events")],
)
def test_unknown_token_id_answers_404(server: Server, world: World, method: str, suffix: str) -> None:
    unknown = uuid.uuid4()
    with nothing_changes(server, world):
        response = world.http.request(method, f"/api/v1/tokens/{unknown}{suffix}", auth=world.alice)
        assert_problem(response, 404)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/regenerate"), ("DELETE", ""), ("GET", "/events")],
)
def test_someone_elses_token_answers_404(server: Server, world: World, method: str, suffix: str) -> None:
    with nothing_changes(server, world):
        response = world.http.request(
            method, f"/api/v1/tokens/{world.bob_token_id}{suffix}", auth=world.alice
        )
        assert_problem(response, 404)


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("not-a-uuid", id="words"),
        pytest.param("12345", id="digits"),
        pytest.param("6f1c4b2e-0000-0000-0000", id="truncated-uuid"),
        pytest.param("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", id="uuid-shaped"),
        pytest.param("<script>alert(1)</script>", id="markup"),
        pytest.param(token_format.generate().value, id="a-token-value"),
    ],
)
@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("POST", "/regenerate"), ("DELETE", ""), ("GET", "/events")]
)
def test_non_uuid_token_id_answers_404_without_echoing_it(
    server: Server, world: World, bad_id: str, method: str, suffix: str
) -> None:
    with nothing_changes(server, world):
        response = world.http.request(
            method, "/api/v1/tokens/" + quote(bad_id, safe="") + suffix, auth=world.alice
        )
        assert_problem(response, 404)
        assert bad_id not in response.text
        assert quote(bad_id, safe="") not in response.text
        assert "script" not in response.text


@pytest.mark.parametrize("name", ["Existing", "existing", "  EXISTING  "])
def test_duplicate_active_name_answers_409(server: Server, world: World, name: str) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens", auth=world.alice, json=VALID | {"name": name})
        assert_problem(response, 409)


def test_member_listing_another_owner_answers_403(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        response = world.http.get("/api/v1/tokens", params={"owner": "bob"}, auth=world.alice)
        assert_problem(response, 403)
        assert "Bob CI" not in response.text


def test_member_revoking_another_owners_tokens_answers_403(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens/revoke-all", auth=world.alice, json={"owner": "bob"})
        assert_problem(response, 403)


def test_member_revoking_all_owners_answers_403_and_revokes_nothing(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens/revoke-all", auth=world.alice, json={"all_owners": True})
        assert_problem(response, 403)


@pytest.mark.parametrize("state", ["deleted", "ACTIVE", "", "active,revoked", "a" * 300])
def test_unknown_state_filter_answers_422(server: Server, world: World, state: str) -> None:
    with nothing_changes(server, world):
        response = world.http.get("/api/v1/tokens", params={"state": state}, auth=world.alice)
        assert_problem(response, 422, {"state"})


@pytest.mark.parametrize("owner", ["Not A Name", "a" * 65, "-leading-dash"])
def test_invalid_owner_filter_answers_422_naming_owner(server: Server, world: World, owner: str) -> None:
    # The error names the parameter the client sent (`owner`), not the domain's `username`.
    with nothing_changes(server, world):
        response = world.http.get("/api/v1/tokens", params={"owner": owner}, auth=world.admin)
        assert_problem(response, 422, {"owner"})


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        pytest.param("/api/v1/introspect", "gateway", id="introspect"),
        pytest.param("/api/v1/revoke", None, id="revoke"),
    ],
)
@pytest.mark.parametrize(
    "form",
    [
        pytest.param({}, id="empty-form"),
        pytest.param({"tokne": "opat_typo"}, id="misspelt-field"),
        pytest.param({"token_type_hint": "access_token"}, id="hint-only"),
    ],
)
def test_missing_token_form_field_answers_422(
    server: Server, world: World, path: str, auth: str | None, form: dict[str, str]
) -> None:
    credentials = world.gateway if auth else None
    with nothing_changes(server, world):
        response = world.http.post(path, data=form, auth=credentials)
        assert_problem(response, 422, {"token"})


@pytest.mark.parametrize("with_token", [False, True], ids=["no-credential", "valid-token"])
@pytest.mark.parametrize("scope", ["root", "REPO", "repo:write", "admin", "repo read"])
def test_auth_check_with_unknown_scope_answers_400(
    server: Server, world: World, scope: str, with_token: bool
) -> None:
    headers = {"Authorization": f"Bearer {world.alice_token_value}"} if with_token else {}
    with nothing_changes(server, world):
        response = world.http.get("/api/v1/auth/check", params={"scope": scope}, headers=headers)
        body = assert_problem(response, 400)
        assert "known scopes" in body["detail"]


def basic_challenge(response: httpx.Response) -> bool:
    return any(c.lower().startswith("basic ") for c in response.headers.get_list("www-authenticate"))


@pytest.mark.parametrize("username", ["carol", "nobody-by-this-name"])
def test_wrong_password_answers_401_with_a_basic_challenge(
    server: Server, world: World, username: str
) -> None:
    with nothing_changes(server, world):
        response = world.http.post("/api/v1/tokens", auth=(username, "not-the-password"), json=VALID)
        body = assert_problem(response, 401)
        assert basic_challenge(response)
        # The same answer whether or not the account exists.
        assert body["detail"] == "wrong username or password"


MANAGEMENT = [
    pytest.param("GET", "/api/v1/tokens", None, id="list"),
    pytest.param("POST", "/api/v1/tokens", VALID, id="create"),
    pytest.param("POST", "/api/v1/tokens/revoke-all", {"all_owners": True}, id="revoke-all"),
    pytest.param("POST", "/api/v1/introspect", None, id="introspect"),
]


@pytest.mark.parametrize(("method", "path", "body"), MANAGEMENT)
def test_no_credentials_answers_401(server: Server, world: World, method: str, path: str, body: Any) -> None:
    with nothing_changes(server, world):
        response = world.http.request(method, path, json=body)
        assert_problem(response, 401)
        assert basic_challenge(response)


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/regenerate"), ("DELETE", "")])
def test_no_credentials_on_a_token_answers_401(
    server: Server, world: World, method: str, suffix: str
) -> None:
    with nothing_changes(server, world):
        response = world.http.request(method, f"/api/v1/tokens/{world.alice_token_id}{suffix}")
        assert_problem(response, 401)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/user"), ("POST", "/api/v1/tokens/self/rotate"), ("DELETE", "/api/v1/tokens/self")],
)
def test_token_endpoints_without_a_token_answer_401(
    server: Server, world: World, method: str, path: str
) -> None:
    with nothing_changes(server, world):
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer opat_garbage"}):
            response = world.http.request(method, path, headers=headers)
            assert_problem(response, 401)
        # An account's password is not a token.
        response = world.http.request(method, path, auth=world.alice)
        assert_problem(response, 401)


BAD_AUTHORIZATION = [
    pytest.param("Basic !!!not-base64!!!", id="invalid-base64"),
    pytest.param("Basic YWxpY2U", id="truncated-base64"),
    pytest.param("Basic " + base64.b64encode(b"alice").decode(), id="no-colon"),
    pytest.param("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), id="not-utf-8"),
    pytest.param("Basic", id="empty-basic"),
    pytest.param("Digest username=alice", id="unknown-scheme"),
    pytest.param("alice:alice-password", id="no-scheme"),
]


@pytest.mark.parametrize("header", BAD_AUTHORIZATION)
@pytest.mark.parametrize(
    "path", ["/api/v1/tokens", "/api/v1/user", "/api/v1/auth/check"], ids=["management", "user", "auth-check"]
)
def test_malformed_authorization_header_answers_401(
    server: Server, world: World, header: str, path: str
) -> None:
    with nothing_changes(server, world):
        response = world.http.get(path, headers={"Authorization": header})
        assert_problem(response, 401)
        assert basic_challenge(response)


def test_a_token_is_not_an_account_for_management(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        for headers in (
            {"Authorization": f"Bearer {world.alice_token_value}"},
            basic(f"alice:{world.alice_token_value}".encode()),
        ):
            response = world.http.post("/api/v1/tokens", json=VALID, headers=headers)
            assert_problem(response, 401)


def test_member_introspecting_answers_403(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        response = world.http.post(
            "/api/v1/introspect", data={"token": world.alice_token_value}, auth=world.bob
        )
        assert_problem(response, 403)


def test_unknown_path_and_method_answer_problems(server: Server, world: World) -> None:
    with nothing_changes(server, world):
        assert_problem(world.http.get("/api/v1/nothing-here", auth=world.alice), 404)
        assert_problem(world.http.put("/api/v1/tokens", auth=world.alice, json=VALID), 405)


def test_module_server_never_answered_a_server_error(server: Server, world: World) -> None:
    """Runs last in the module (pytest keeps file order): the access log has no 5xx at all."""
    logs = server.logs()
    assert '"status": 5' not in logs
    assert "Traceback" not in logs
