"""The whole token lifecycle through a real server process and real HTTP."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from interface.client import ApiError, Client
from tests.e2e.server import Server, add_user


def test_token_lifecycle_over_http(server: Server, alice_password: str) -> None:
    with Client(server.url, username="alice", password=alice_password) as alice:
        created = alice.create_token("GitHub Actions", ["repo", "job"], expires_in_days=30)
        assert created.value and created.value.startswith("opat_")
        assert created.state == "active"
        assert [t.id for t in alice.list_tokens()] == [created.id]

        with Client(server.url, token=created.value) as ci:
            assert ci.whoami()["username"] == "alice"
            assert ci.auth_check("repo:read").allowed  # repo includes repo:read
            assert ci.auth_check("job").allowed
            assert ci.auth_check("admin:org").status == 403

        regenerated = alice.regenerate(created.id)
        assert regenerated.value != created.value
        assert regenerated.name == "GitHub Actions" and regenerated.scopes == ["repo", "job"]
        assert Client(server.url, token=created.value).auth_check().status == 401
        assert Client(server.url, token=regenerated.value).auth_check().status == 204

        alice.revoke(created.id)
        alice.revoke(created.id)  # again: still 204
        assert Client(server.url, token=regenerated.value).auth_check().status == 401
        assert alice.list_tokens() == []
        assert [t.id for t in alice.list_tokens(state="revoked")] == [created.id]
        events = [e["type"] for e in alice.events(created.id)]
        assert events[0] == "Created" and events[-1] == "Revoked" and "Regenerated" in events


def test_git_sends_the_token_as_basic_password(server: Server, alice_password: str) -> None:
    with Client(server.url, username="alice", password=alice_password) as alice:
        value = alice.create_token("Local CLI", ["repo:read"]).value
    assert value is not None
    for user in ("x-access-token", "alice", "anything"):
        basic = base64.b64encode(f"{user}:{value}".encode()).decode()
        response = httpx.get(
            server.url + "/api/v1/auth/check",
            params={"scope": "repo:read"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 204
        assert response.headers["x-token-owner"] == "alice"
    response = httpx.get(server.url + "/api/v1/auth/check", params={"scope": "repo"}, auth=("x", value))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_unauthenticated_check_carries_both_challenges(server: Server) -> None:
    response = httpx.get(server.url + "/api/v1/auth/check", headers={"Authorization": "Bearer opat_garbage"})
    assert response.status_code == 401
    challenges = response.headers.get_list("www-authenticate")
    assert any(c.startswith("Bearer") and 'error="invalid_token"' in c for c in challenges)
    assert any(c.startswith('Basic realm="Outpost"') for c in challenges)
    assert response.headers["content-type"] == "application/problem+json"


def test_member_cannot_see_another_members_token(
    server: Server, alice_password: str, bob_password: str
) -> None:
    with Client(server.url, username="alice", password=alice_password) as alice:
        token = alice.create_token("CI", ["repo"])
    with Client(server.url, username="bob", password=bob_password) as bob:
        for call in (
            lambda: bob.get_token(token.id),
            lambda: bob.revoke(token.id),
            lambda: bob.events(token.id),
        ):
            with pytest.raises(ApiError) as error:
                call()
            assert error.value.status == 404
        assert bob.list_tokens() == []
        with pytest.raises(ApiError) as error:
            bob.list_tokens(owner="alice")
        assert error.value.status == 403


def test_revoked_token_is_rejected_by_another_server_process(database_url: str, tmp_path: Path) -> None:
    first = Server(database_url, tmp_path).start()
    second = Server(database_url, tmp_path).start()
    try:
        password = add_user(database_url, "carol")
        with Client(first.url, username="carol", password=password) as carol:
            token = carol.create_token("Jenkins CI", ["job"])
            assert token.value
            # Warm both processes: each has now verified (and cached) the value.
            assert Client(first.url, token=token.value).auth_check("job").allowed
            assert Client(second.url, token=token.value).auth_check("job").allowed
            carol.revoke(token.id)
        assert Client(second.url, token=token.value).auth_check("job").status == 401
        assert Client(first.url, token=token.value).auth_check("job").status == 401
    finally:
        first.stop()
        second.stop()


def test_introspection_and_revocation_by_value(server: Server, alice_password: str) -> None:
    add_user(server.database_url, "gateway", role="service", password="gateway-password")
    with Client(server.url, username="alice", password=alice_password) as alice:
        value = alice.create_token("Deploy", ["service", "repo:read"], expires_in_days=90).value
        assert value
        with pytest.raises(ApiError) as error:
            alice.introspect(value)  # members may not introspect
        assert error.value.status == 403
    with Client(server.url, username="gateway", password="gateway-password") as gateway:
        info = gateway.introspect(value)
        assert info["active"] is True and info["username"] == "alice"
        assert set(info["scope"].split()) == {"service", "repo:read"} and info["exp"] > info["iat"]
        anyone = Client(server.url)
        anyone.report_leak(value)
        anyone.report_leak(value)  # idempotent, still 200
        anyone.report_leak("not a token at all")
        assert gateway.introspect(value) == {"active": False}
    assert Client(server.url, token=value).auth_check().status == 401


def test_sigterm_flushes_pending_usage(database_url: str, tmp_path: Path) -> None:
    # A window of an hour: nothing is written in the background, only by the graceful shutdown.
    server = Server(database_url, tmp_path, usage_window="3600").start()
    password = add_user(database_url, "dave")
    with Client(server.url, username="dave", password=password) as dave:
        token = dave.create_token("Nightly", ["repo:read"])
    assert token.value
    assert Client(server.url, token=token.value).auth_check("repo:read").allowed
    assert server.stop() == 0
    restarted = Server(database_url, tmp_path).start()
    try:
        with Client(restarted.url, username="dave", password=password) as dave:
            used = dave.get_token(token.id)
        assert used.last_used_at is not None
        assert used.last_used_ip == "127.0.0.1"
    finally:
        restarted.stop()


def test_auth_check_behind_a_proxy_records_the_client_it_forwarded_for(
    database_url: str, tmp_path: Path
) -> None:
    # The test client is 127.0.0.1, a trusted proxy by default: the address it appended counts,
    # not the leftmost entry, which the client itself made up.
    server = Server(database_url, tmp_path, usage_window="3600").start()
    password = add_user(database_url, "erin")
    with Client(server.url, username="erin", password=password) as erin:
        token = erin.create_token("Proxied", ["repo"])
    answer = httpx.get(
        server.url + "/api/v1/auth/check?scope=repo:read",
        headers={
            "Authorization": f"Bearer {token.value}",
            "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
            "User-Agent": "git/2.43.0",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["x-token-scopes"] == "repo"
    assert server.stop() == 0
    restarted = Server(database_url, tmp_path).start()
    try:
        with Client(restarted.url, username="erin", password=password) as erin:
            assert erin.get_token(token.id).last_used_ip == "198.51.100.7"
            (used,) = [e for e in erin.events(token.id) if e["type"] == "Used"]
        assert used["details"]["user_agents"] == ["git/2.43.0"]
        assert used["details"]["scopes"] == ["repo:read"]
    finally:
        restarted.stop()


def test_logs_never_contain_a_token_value_or_password(server: Server, alice_password: str) -> None:
    with Client(server.url, username="alice", password=alice_password) as alice:
        value = alice.create_token("Logged", ["repo"]).value
        assert value
        httpx.get(
            server.url + "/api/v1/auth/check",
            params={"token": value},
            headers={"Authorization": f"Bearer {value}"},
        )
        httpx.get(server.url + f"/api/v1/tokens/{value}", auth=("alice", alice_password))
    logs = server.logs()
    assert "/api/v1/auth/check" in logs  # the access log is there
    assert value not in logs
    assert value[5:] not in logs
    assert alice_password not in logs
