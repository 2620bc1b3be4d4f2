"""Leaks and rotation through a real server: `scan --report` revokes what it finds, `rotate-self`
replaces a pipeline's value. Both backends, real processes, real HTTP."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain import token_format
from interface.client import Client
from tests.conftest import BACKENDS
from tests.e2e.server import TOKENLEDGER, Server, add_user, free_port
from tests.support import fresh_database


@dataclass(frozen=True)
class Served:
    server: Server
    alice_password: str

    @property
    def url(self) -> str:
        return self.server.url

    def alice(self) -> Client:
        return Client(self.url, username="alice", password=self.alice_password)


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server per backend for this module: each test makes its own tokens, so none sees another's."""
    workdir = tmp_path_factory.mktemp("leaks")
    with fresh_database(request.param, workdir) as url:
        server = Server(url, workdir).start()
        try:
            yield Served(server, add_user(url, "alice"))
        finally:
            server.stop()


def tokenledger(
    cwd: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENLEDGER_", "GIT_"))}
    return subprocess.run(
        [str(TOKENLEDGER), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean | {"COLUMNS": "250", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull} | env,
        timeout=120,
        check=False,
    )


def git(repo: Path, *args: str) -> None:
    identity = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com"}
    identity |= {
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    subprocess.run(
        ["git", *args], cwd=repo, env=os.environ | identity, capture_output=True, check=True, timeout=60
    )


def lookup(value: str) -> str:
    parsed = token_format.parse(value)
    assert parsed is not None
    return parsed.lookup_id


def status(served: Served, value: str) -> int:
    with Client(served.url, token=value) as client:
        return client.auth_check().status


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {r["lookup_id"]: r["outcome"] for r in report["report"]}


# scan --report --------------------------------------------------------------------------------


def test_report_revokes_found_tokens_once_and_is_idempotent(served: Served, tmp_path: Path) -> None:
    with served.alice() as alice:
        active = alice.create_token("GitHub Actions", ["repo:read"])
        other = alice.create_token("Jenkins CI", ["job"])
        inactive = alice.create_token("Old laptop", ["repo"])
        in_history = alice.create_token("Removed from the repo", ["repo"])
        alice.revoke(inactive.id)
    values = [t.value for t in (active, other, inactive, in_history)]
    assert all(values)
    a, b, c, h = (v for v in values if v)

    repo = tmp_path / "leaky"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "old.env").write_text(f"TOKEN={h}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "oops")
    git(repo, "rm", "-q", "old.env")
    git(repo, "commit", "-q", "-m", "remove it")
    (repo / "ci.yml").write_text(f"token: {a}\nagain: {a}\n")
    (repo / "Jenkinsfile").write_text(
        f"env.TOKEN = '{b}'\n// mistyped: {b[:-1]}{'A' if b[-1] != 'A' else 'B'}\n"
    )
    (repo / "notes.txt").write_text(f"revoked long ago: {c}\n")

    first = tokenledger(repo, "scan", "--git-history", "--report", served.url, "--format", "json")
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)
    assert outcomes(report) == {
        lookup(a): "revoked",
        lookup(b): "revoked",
        lookup(h): "revoked",
        lookup(c): "already inactive",
    }
    assert len(report["report"]) == 4  # one report per value, though `a` is found twice
    assert [status(served, v) for v in (a, b, c, h)] == [401, 401, 401, 401]
    for output in (first.stdout, first.stderr):
        assert not any(v in output for v in (a, b, c, h))

    with served.alice() as alice:
        revoked = alice.events(active.id)[-1]
        assert revoked["type"] == "Revoked" and revoked["details"]["reason"] == "leaked"
        history = {t.id: len(alice.events(t.id)) for t in (active, other, inactive, in_history)}

        second = tokenledger(repo, "scan", "--git-history", "--report", served.url)
        assert second.returncode == 1, second.stderr
        inactive_rows = [line for line in second.stdout.splitlines() if "already inactive" in line]
        assert all(any(lookup(v) in row for row in inactive_rows) for v in (a, b, c, h))
        assert " revoked " not in second.stdout
        assert {t.id: len(alice.events(t.id)) for t in (active, other, inactive, in_history)} == history
        assert not any(v in second.stdout + second.stderr for v in (a, b, c, h))


def test_the_report_is_not_recorded_as_a_use_of_the_leaked_token(served: Served, tmp_path: Path) -> None:
    """The exposure query read after a leak must not list the scanner among the token's users."""
    with served.alice() as alice:
        leaked = alice.create_token("Leaked, never used", ["repo", "job"])
        barrier = alice.create_token("Barrier", ["job"])
    assert leaked.value and barrier.value
    (tmp_path / "leak.txt").write_text(f"{leaked.value}\n")
    run = tokenledger(tmp_path, "scan", "--report", served.url, "--format", "json")
    assert run.returncode == 1, run.stderr
    assert outcomes(json.loads(run.stdout)) == {lookup(leaked.value): "revoked"}

    # A use made after the scan: once its `Used` event is written, any use the scan made is too.
    assert status(served, barrier.value) == 204
    with served.alice() as alice:
        deadline = time.monotonic() + 60
        while not any(e["type"] == "Used" for e in alice.events(barrier.id)):
            assert time.monotonic() < deadline, "the barrier's use was never written"
            time.sleep(0.1)
        assert [e["type"] for e in alice.events(leaked.id)][-1] == "Revoked"
        assert "Used" not in [e["type"] for e in alice.events(leaked.id)]
        assert alice.get_token(leaked.id).last_used_at is None


def test_report_without_git_history_leaves_a_removed_token_active(served: Served, tmp_path: Path) -> None:
    with served.alice() as alice:
        removed = alice.create_token("Removed", ["repo"]).value
        present = alice.create_token("Present", ["repo"]).value
    assert removed and present
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text(f"{removed}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    (repo / "a.txt").write_text(f"{present}\n")
    git(repo, "commit", "-q", "-am", "two")
    run = tokenledger(repo, "scan", "--report", served.url, "--format", "json")
    assert run.returncode == 1, run.stderr
    assert outcomes(json.loads(run.stdout)) == {lookup(present): "revoked"}
    assert (status(served, present), status(served, removed)) == (401, 204)


def test_report_waits_out_the_intakes_rate_limit(tmp_path: Path) -> None:
    """The intake takes 30 reports a minute from one address: the 31st value waits, and is revoked."""
    with fresh_database("sqlite", tmp_path) as url:
        server = Server(url, tmp_path).start()
        try:
            password = add_user(url, "alice")
            with Client(server.url, username="alice", password=password) as alice:
                values = [alice.create_token(f"Leaked {i}", ["job"]).value for i in range(31)]
            assert all(values)
            (tmp_path / "dump.txt").write_text("".join(f"{v}\n" for v in values))
            run = tokenledger(tmp_path, "scan", "dump.txt", "--report", server.url, "--format", "json")
            assert run.returncode == 1, run.stderr
            assert outcomes(json.loads(run.stdout)) == {lookup(v): "revoked" for v in values if v}
            assert "the leak intake asks to slow down" in run.stderr
            assert {status(Served(server, password), v) for v in values if v} == {401}
        finally:
            server.stop()


def test_report_to_an_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    value = token_format.generate().value
    (tmp_path / "leak.txt").write_text(value + "\n")
    run = tokenledger(tmp_path, "scan", "--report", f"http://127.0.0.1:{free_port()}", "--format", "json")
    assert run.returncode == 2
    assert outcomes(json.loads(run.stdout)) == {lookup(value): "failed"}
    assert "could not be revoked" in run.stderr
    assert value not in run.stdout + run.stderr


# rotate-self ----------------------------------------------------------------------------------


def test_rotate_self_prints_a_new_value_and_the_old_one_stops_working(served: Served, tmp_path: Path) -> None:
    with served.alice() as alice:
        token = alice.create_token("Nightly rotation", ["repo:read", "job"], expires_in_days=30)
    assert token.value
    run = tokenledger(tmp_path, "rotate-self", "--url", served.url, TOKENLEDGER_TOKEN=token.value)
    assert run.returncode == 0, run.stderr
    new = run.stdout.strip()
    assert token_format.is_well_formed(new) and new != token.value
    assert token.value not in run.stdout + run.stderr
    assert str(token.id) in run.stderr

    assert (
        httpx.get(served.url + "/api/v1/user", headers={"Authorization": f"Bearer {token.value}"}).status_code
        == 401
    )
    me = httpx.get(served.url + "/api/v1/user", headers={"Authorization": f"Bearer {new}"})
    assert me.status_code == 200
    assert me.json()["token"]["id"] == str(token.id) and me.json()["token"]["name"] == "Nightly rotation"
    assert sorted(me.json()["token"]["scopes"]) == ["job", "repo:read"]


def test_rotate_self_from_stdin_to_a_private_file_can_run_again_and_again(
    served: Served, tmp_path: Path
) -> None:
    with served.alice() as alice:
        first = alice.create_token("Scheduled job", ["job"]).value
    assert first
    secret_file = tmp_path / "token"
    values = [first]
    for _ in range(2):
        run = tokenledger(
            tmp_path,
            "rotate-self",
            "--url",
            served.url,
            "--stdin",
            "--output",
            str(secret_file),
            stdin=values[-1] + "\n",
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == ""
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        values.append(secret_file.read_text())  # the value alone: a newline would fail the check below
        assert token_format.is_well_formed(values[-1])
    assert [status(served, v) for v in values] == [401, 401, 204]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tokenledger-")) == []


def test_rotate_self_with_a_revoked_value_fails_and_writes_nothing(served: Served, tmp_path: Path) -> None:
    with served.alice() as alice:
        token = alice.create_token("Revoked job", ["job"])
        alice.revoke(token.id)
    assert token.value
    out = tmp_path / "out"
    out.mkdir()
    run = tokenledger(
        tmp_path,
        "rotate-self",
        "--url",
        served.url,
        "--output",
        str(out / "token"),
        TOKENLEDGER_TOKEN=token.value,
    )
    assert run.returncode == 1
    assert "error:" in run.stderr and "revoked, expired or unknown" in run.stderr
    assert list(out.iterdir()) == []
    assert token.value not in run.stdout + run.stderr


def test_rotate_self_usage_errors_exit_two(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    missing = tokenledger(tmp_path, "rotate-self", "--url", url)
    assert missing.returncode == 2 and "TOKENLEDGER_TOKEN" in missing.stderr
    value = token_format.generate().value
    mistyped = value[:-1] + ("A" if value[-1] != "A" else "B")
    bad = tokenledger(tmp_path, "rotate-self", "--url", url, "--stdin", stdin=mistyped + "\n")
    assert bad.returncode == 2 and "checksum" in bad.stderr
    assert mistyped not in bad.stdout + bad.stderr
    pasted = tokenledger(tmp_path, "rotate-self", "--url", url, "--token-env", value)  # the value, not a name
    assert pasted.returncode == 2 and f"opat_{lookup(value)}…" in pasted.stderr
    assert value not in pasted.stdout + pasted.stderr
    extra = tokenledger(tmp_path, "rotate-self", "--url", url, value)  # the value as an argument
    assert extra.returncode == 2 and f"opat_{lookup(value)}…" in extra.stderr
    assert value not in extra.stdout + extra.stderr
    unreachable = tokenledger(tmp_path, "rotate-self", "--url", url, TOKENLEDGER_TOKEN=value)
    assert unreachable.returncode == 1 and "could not reach" in unreachable.stderr
    assert value not in unreachable.stdout + unreachable.stderr
