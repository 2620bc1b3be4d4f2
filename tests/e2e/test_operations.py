"""Operations through a real server: health, readiness, metrics, the OpenAPI document, throttling."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain import token_format
from tests.e2e.server import ROOT, Server, add_user, cli_env

PROBLEM_JSON = "application/problem+json"

# Appends one event (an account registration) the way any process writing to the store would,
# but with Application.save alone: the read models are not caught up afterwards.
APPEND_ONE_EVENT = """
from domain.account import Account, Role
from interface.settings import Settings
from interface.wiring import build

with build(Settings.from_env()) as service:
    ledger = service.ledger
    account = Account.register(
        username="outsider",
        role=Role.MEMBER,
        password_hash=ledger.hasher.hash("outsider-password"),
        now=ledger.clock.now(),
    )
    ledger.save(account)
"""


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def samples(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def verifications(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], outcome: str) -> float:
    return found.get(("tokenledger_verifications_total", (("outcome", outcome),)), 0.0)


# Health and readiness ----------------------------------------------------------------------


def test_healthz_answers_200(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_while_read_models_lag_and_200_once_a_command_catches_up(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The background catch-up runs once at start, then not for an hour: only a command catches up.
    monkeypatch.setenv("TOKENLEDGER_PROJECTION_INTERVAL_SECONDS", "3600")
    server = Server(database_url, tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/readyz").status_code == 200

            appended = subprocess.run(
                [sys.executable, "-c", APPEND_ONE_EVENT],
                env=cli_env(database_url),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert appended.returncode == 0, appended.stderr

            body = assert_problem(http.get("/readyz"), 503)
            assert "1 events behind" in body["detail"]
            assert samples(http)[("tokenledger_projection_lag_events", ())] == 1
            assert http.get("/healthz").status_code == 200  # lagging is not dead

            created = http.post(
                "/api/v1/tokens",
                auth=("admin", server.admin_password or ""),
                json={"name": "After the lag", "scopes": ["repo:read"]},
            )
            assert created.status_code == 201, created.text

            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready"}
            assert samples(http)[("tokenledger_projection_lag_events", ())] == 0
    finally:
        server.stop()


# Metrics -----------------------------------------------------------------------------------


def test_metrics_count_verifications_by_outcome_with_latency_lag_and_usage_queue(
    database_url: str, tmp_path: Path
) -> None:
    # An hour-long usage window: the use stays queued, so the queue gauge has something to show.
    server = Server(database_url, tmp_path, usage_window="3600").start()
    try:
        password = add_user(database_url, "alice")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            made = http.post(
                "/api/v1/tokens", auth=("alice", password), json={"name": "Metered", "scopes": ["repo:read"]}
            )
            gone = http.post(
                "/api/v1/tokens", auth=("alice", password), json={"name": "Gone", "scopes": ["job"]}
            )
            assert made.status_code == gone.status_code == 201
            revoked = http.delete(f"/api/v1/tokens/{gone.json()['id']}", auth=("alice", password))
            assert revoked.status_code == 204

            def check(value: str, scope: str | None = None) -> int:
                params = {"scope": scope} if scope else None
                headers = {"Authorization": f"Bearer {value}"}
                return http.get("/api/v1/auth/check", params=params, headers=headers).status_code

            value = made.json()["token"]
            assert [check(value), check(value, "repo:read"), check(value)] == [204, 204, 204]
            assert check(value, "admin:org") == 403  # verified, then refused the scope
            assert [check("nope"), check("opat_short")] == [401, 401]
            assert check(token_format.generate().value) == 401
            assert check(gone.json()["token"]) == 401

            found = samples(http)
        assert verifications(found, "valid") == 4
        assert verifications(found, "malformed") == 2
        assert verifications(found, "unknown") == 1
        assert verifications(found, "revoked") == 1
        assert found[("tokenledger_verification_seconds_count", ())] == 8
        assert found[("tokenledger_verification_seconds_bucket", (("le", "+Inf"),))] == 8
        assert found[("tokenledger_verification_seconds_sum", ())] > 0
        assert sum(1 for name, _ in found if name == "tokenledger_verification_seconds_bucket") > 5
        assert found[("tokenledger_projection_lag_events", ())] == 0
        assert found[("tokenledger_usage_queue_tokens", ())] == 1
    finally:
        server.stop()


# The OpenAPI document ----------------------------------------------------------------------

OPERATIONS_OUTSIDE_THE_PREFIX = {"/healthz", "/readyz", "/metrics"}


def documented_in_api_md() -> set[tuple[str, str]]:
    """Every `METHOD /path` that docs/api.md names, as (method, full path with {} for parameters)."""
    text = (ROOT / "docs" / "api.md").read_text()
    found = set()
    for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)", text):
        full = path if path in OPERATIONS_OUTSIDE_THE_PREFIX else "/api/v1" + path
        found.add((method.lower(), re.sub(r"\{[^}]*\}", "{}", full)))
    return found


def in_openapi(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, re.sub(r"\{[^}]*\}", "{}", path))
        for path, operations in document["paths"].items()
        for method in operations
    }


def test_openapi_documents_every_path_of_the_api_docs(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    wanted = documented_in_api_md()
    assert len(wanted) >= 16, wanted  # the docs' tables were read
    assert ("get", "/api/v1/auth/check") in wanted
    assert wanted - in_openapi(document) == set()
    check = document["paths"]["/api/v1/auth/check"]["get"]
    assert {"204", "401", "403"} <= check["responses"].keys()
    assert http.get("/docs").status_code == 200


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def has_example(document: dict[str, Any], media: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    schema = resolve(document, media.get("schema", {}))
    branches = [resolve(document, s) for s in schema.get("anyOf", []) + schema.get("oneOf", [])] + [schema]
    if "items" in schema:
        branches.append(resolve(document, schema["items"]))
    return any("example" in s or "examples" in s for s in branches)


def test_every_request_body_in_openapi_has_an_example(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    bodies = {
        f"{method.upper()} {path} ({media_type})": media
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items()
    }
    assert len(bodies) >= 5, bodies.keys()  # create, regenerate, revoke-all, introspect, revoke
    assert [name for name, media in bodies.items() if not has_example(document, media)] == []


def test_every_json_answer_in_openapi_has_an_example(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    answers = {
        f"{method.upper()} {path} {status}": media
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation.get("responses", {}).items()
        if status.startswith("2")
        for media_type, media in response.get("content", {}).items()
        if media_type == "application/json"
    }
    assert len(answers) >= 15, answers.keys()
    assert [name for name, media in answers.items() if not has_example(document, media)] == []


# Throttling --------------------------------------------------------------------------------


def test_revoke_endpoint_answers_429_to_the_31st_report_from_one_address(
    http: httpx.Client, server: Server, alice_password: str
) -> None:
    created = http.post(
        "/api/v1/tokens", auth=("alice", alice_password), json={"name": "CI", "scopes": ["job"]}
    )
    value = created.json()["token"]

    for i in range(30):
        assert http.post("/api/v1/revoke", data={"token": f"garbage-{i}"}).status_code == 200
    throttled = http.post("/api/v1/revoke", data={"token": value})
    assert_problem(throttled, 429)
    assert int(throttled.headers["retry-after"]) > 0
    # The throttled report changed nothing: the value still works.
    assert http.get("/api/v1/auth/check", headers={"Authorization": f"Bearer {value}"}).status_code == 204

    # The limit is per address: a report from another client (through the trusted local proxy) counts.
    other = http.post("/api/v1/revoke", data={"token": value}, headers={"X-Forwarded-For": "198.51.100.7"})
    assert other.status_code == 200
    assert http.get("/api/v1/auth/check", headers={"Authorization": f"Bearer {value}"}).status_code == 401


@pytest.mark.parametrize(
    "uvicorn_trusts_the_proxy", [True, False], ids=["default-config", "only-TOKENLEDGER_TRUSTED_PROXIES"]
)
def test_revoke_limit_is_not_dodged_by_a_forged_forwarded_for_entry(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uvicorn_trusts_the_proxy: bool
) -> None:
    # A proxy such as nginx (`proxy_add_x_forwarded_for`) appends the real client address to
    # whatever X-Forwarded-For the client sent: "<forged>, <real>". The real one must count.
    # With the default configuration uvicorn (proxy_headers, FORWARDED_ALLOW_IPS=127.0.0.1)
    # rewrites the client address from the right before the application sees it.
    # When only TOKENLEDGER_TRUSTED_PROXIES trusts the proxy, tokenledger reads the header from
    # the right itself: the first address that is not a trusted proxy is the client.
    if not uvicorn_trusts_the_proxy:
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")
    server = Server(database_url, tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(30):
                forwarded = {"X-Forwarded-For": f"203.0.113.{i}, 198.51.100.7"}
                reported = http.post("/api/v1/revoke", data={"token": "garbage"}, headers=forwarded)
                assert reported.status_code == 200
            forwarded = {"X-Forwarded-For": "203.0.113.200, 198.51.100.7"}
            assert_problem(http.post("/api/v1/revoke", data={"token": "garbage"}, headers=forwarded), 429)
    finally:
        server.stop()


def test_eleventh_failed_sign_in_answers_429_even_to_the_right_password(
    http: httpx.Client, server: Server, alice_password: str, bob_password: str
) -> None:
    for _ in range(10):
        assert_problem(http.get("/api/v1/tokens", auth=("alice", "wrong-guess")), 401)
    throttled = http.get("/api/v1/tokens", auth=("alice", "wrong-guess"))
    assert_problem(throttled, 429)
    assert int(throttled.headers["retry-after"]) > 0
    # Even the right password waits now; other users do not.
    assert_problem(http.get("/api/v1/tokens", auth=("alice", alice_password)), 429)
    assert http.get("/api/v1/tokens", auth=("bob", bob_password)).status_code == 200
