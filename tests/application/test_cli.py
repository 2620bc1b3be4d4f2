"""The real `tokenledger` command, run as a subprocess against the test database.

Each test runs the command it is about; the state it starts from is set up through the same
store opened in this process (as a server would open it), which keeps subprocesses few.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from application.ledger import Actor
from application.verification import Outcome
from domain import token_format
from domain.account import Role
from domain.views import TokenRecord
from interface.settings import Settings
from interface.wiring import Service, build
from tests.support import CHEAP_ARGON2

TOKENLEDGER = Path(sys.executable).with_name("tokenledger")
OPERATOR = f"cli:{getpass.getuser()}"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


class Cli:
    def __init__(self, database_url: str, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLEDGER_")}
        self.env |= {
            "TOKENLEDGER_DATABASE_URL": database_url,
            "TOKENLEDGER_ARGON2_MEMORY_KIB": "64",
            "TOKENLEDGER_ARGON2_TIME_COST": "1",
            "COLUMNS": "250",  # wide enough that rich does not fold table cells
        }

    def __call__(self, *args: str, stdin: str | None = None) -> Run:
        done = subprocess.run(
            [str(TOKENLEDGER), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.workdir,
            timeout=120,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> Run:
        run = self(*args, stdin=stdin)
        assert run.code == 0, f"tokenledger {' '.join(args)} failed ({run.code}): {run.stderr}"
        return run

    def listing(self, *args: str) -> list[dict[str, object]]:
        return json.loads(self.ok("tokens", "list", "--json", *args).stdout)

    def verify(self, value: str, *args: str) -> Run:
        return self("tokens", "verify", *args, stdin=value + "\n")


class Store:
    """The test database opened in this process, with the real clock like the command."""

    def __init__(self, service: Service) -> None:
        self.ledger = service.ledger
        self.operator = Actor(username="cli:tests", role=Role.ADMIN)

    def add_user(self, name: str, role: str = "member") -> None:
        self.ledger.register_account(name, role, f"{name}-password")

    def create(self, owner: str, name: str, *scopes: str, days: int | None = 30) -> str:
        issued = self.ledger.create_token(
            self.operator, owner=owner, name=name, scopes=list(scopes or ("repo",)), expires_in_days=days
        )
        return issued.value

    def tokens(self) -> list[TokenRecord]:
        return self.ledger.tokens(self.operator, owner="*", state="all")

    def token_id(self, name: str) -> str:
        [record] = [r for r in self.tokens() if r.name == name]
        return str(record.id)

    def outcome(self, value: str) -> Outcome:
        return self.ledger.verify(value).outcome


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    return Cli(database_url, tmp_path)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    settings = Settings(database_url=database_url, usage_window_seconds=0, argon2=CHEAP_ARGON2)
    with build(settings) as service:
        yield Store(service)


@pytest.fixture
def alice(store: Store) -> str:
    store.add_user("alice")
    return "alice"


def _cells(line: str, bar: str) -> list[str]:
    return [cell.strip() for cell in line.split(bar)[1:-1]]


def _merge(lines: list[list[str]], key: int) -> list[list[str]]:
    """Join the lines of rows whose cells rich wrapped: a row starts where its key cell is filled."""
    rows: list[list[str]] = []
    for cells in lines:
        if rows and not cells[key]:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def parse_table(output: str, key: int = 0) -> tuple[list[str], list[list[str]]]:
    """The header and the body rows of a rich table printed by the command."""
    lines = output.splitlines()
    header = _merge([_cells(line, "┃") for line in lines if line.startswith("┃")], key)
    body = _merge([_cells(line, "│") for line in lines if line.startswith("│")], key)
    return (header[0] if header else []), body


def squash(text: str) -> str:
    """Text without whitespace: a cell folded over two lines compares equal to its value."""
    return "".join(text.split())


def assert_one_error_line(run: Run) -> None:
    assert run.code != 0
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    if lines and lines[0].startswith("Usage:"):  # click's own usage error
        assert run.code == 2
        assert lines[-1].startswith("Error:")
    else:
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith("error: ")
    assert run.stdout == ""


# Accounts ----------------------------------------------------------------------------------


def test_users_add_reads_the_password_from_stdin(cli: Cli, store: Store) -> None:
    run = cli.ok("users", "add", "Alice", "--password-stdin", stdin="correct horse battery\n")
    assert run.stdout.strip() == "registered alice (member)"
    assert store.ledger.authenticate("alice", "correct horse battery").username == "alice"


def test_users_add_with_a_role_shows_in_users_list(cli: Cli, store: Store) -> None:
    run = cli.ok("users", "add", "root", "--role", "admin", "--password-stdin", stdin="root-password\n")
    assert run.stdout.strip() == "registered root (admin)"
    store.add_user("ci-bot", role="service")
    header, rows = parse_table(cli.ok("users", "list").stdout)
    assert header[:2] == ["username", "role"]
    assert [row[:2] for row in rows] == [["ci-bot", "service"], ["root", "admin"]]
    assert store.ledger.authenticate("root", "root-password").role is Role.ADMIN


# Tokens ------------------------------------------------------------------------------------


def test_tokens_create_prints_the_value_on_stdout_and_the_warning_on_stderr(
    cli: Cli, store: Store, alice: str
) -> None:
    run = cli.ok("tokens", "create", "--owner", "alice", "--name", "GitHub Actions", "--scope", "repo")
    value = run.stdout.removesuffix("\n")
    assert token_format.is_well_formed(value)
    assert run.stdout == value + "\n"
    assert "not stored" in run.stderr
    assert value not in run.stderr
    assert store.outcome(value) is Outcome.VALID
    [record] = store.tokens()
    assert (record.owner, record.name, record.scopes) == ("alice", "GitHub Actions", ["repo"])
    assert record.expires_at == record.created_at + timedelta(days=30)  # the documented default


def test_tokens_create_with_several_scopes_and_no_expiry(cli: Cli, store: Store, alice: str) -> None:
    args = ["--owner", "alice", "--name", "Jenkins CI", "--scope", "job", "--scope", "repo:read"]
    value = cli.ok("tokens", "create", *args, "--expires", "never").stdout.strip()
    [record] = store.tokens()
    assert (record.scopes, record.expires_at) == (["repo:read", "job"], None)
    assert store.outcome(value) is Outcome.VALID


def test_tokens_list_shows_name_scopes_created_expires_and_last_used(
    cli: Cli, store: Store, alice: str
) -> None:
    value = store.create("alice", "GitHub Actions", "repo", "job", days=60)
    store.create("alice", "Forever", days=None)
    ledger = store.ledger
    ledger.record_use(ledger.verify(value), scope="repo", address="192.0.2.7", user_agent="git/2.43")
    ledger.usage.flush()
    today = datetime.now(UTC)
    header, body = parse_table(cli.ok("tokens", "list").stdout, key=1)
    assert header == ["id", "owner", "name", "scopes", "state", "created", "expires", "last used"]
    rows = {squash(row[2]): [squash(cell) for cell in row] for row in body}
    assert set(rows) == {"GitHubActions", "Forever"}
    used = rows["GitHubActions"]
    assert used[1:5] == ["alice", "GitHubActions", "repojob", "active"]
    assert used[5].startswith(today.strftime("%Y-%m-%d"))
    assert used[6].startswith((today + timedelta(days=60)).strftime("%Y-%m-%d"))
    assert used[7].startswith(today.strftime("%Y-%m-%d"))
    assert used[7].endswith("from192.0.2.7")
    assert rows["Forever"][6:8] == ["never", "never"]


def test_tokens_list_json_has_the_record_fields(cli: Cli, store: Store, alice: str) -> None:
    store.create("alice", "Jenkins CI", "repo:read", days=90)
    [token] = cli.listing()
    assert set(token) >= {
        "id",
        "name",
        "scopes",
        "state",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "regenerated_at",
        "revoked_at",
    }
    assert (token["name"], token["scopes"], token["state"], token["owner"]) == (
        "Jenkins CI",
        ["repo:read"],
        "active",
        "alice",
    )
    created = datetime.fromisoformat(str(token["created_at"]))
    assert datetime.fromisoformat(str(token["expires_at"])) == created + timedelta(days=90)
    assert token["last_used_at"] is None


def test_tokens_list_filters_by_state_and_owner(cli: Cli, store: Store, alice: str) -> None:
    store.add_user("bob")
    store.create("alice", "Kept")
    store.create("alice", "Dropped")
    store.create("bob", "Bobs")
    store.ledger.revoke_token(store.operator, uuid.UUID(store.token_id("Dropped")))

    def names(*args: str) -> set[object]:
        return {t["name"] for t in cli.listing(*args)}

    assert names() == {"Kept", "Bobs"}
    assert names("--owner", "alice") == {"Kept"}
    assert names("--state", "revoked") == {"Dropped"}
    assert names("--state", "all", "--owner", "alice") == {"Kept", "Dropped"}
    assert cli.ok("tokens", "list", "--state", "expired").stdout.strip() == "no expired tokens"


def test_tokens_verify_exits_0_for_a_valid_token_and_1_otherwise(cli: Cli, store: Store, alice: str) -> None:
    value = store.create("alice", "CI", "repo")
    valid = cli.verify(value)
    assert valid.code == 0
    assert "alice" in valid.stdout and "CI" in valid.stdout
    assert cli.verify(value, "--scope", "repo:read").code == 0

    insufficient = cli.verify(value, "--scope", "admin:org")
    assert (insufficient.code, insufficient.stderr.strip()) == (1, "invalid: insufficient_scope")

    malformed = cli.verify("hunter2")
    assert (malformed.code, malformed.stderr.strip()) == (1, "invalid: malformed")

    unknown = cli.verify(token_format.generate().value)
    assert (unknown.code, unknown.stderr.strip()) == (1, "invalid: unknown")


def test_tokens_verify_rejects_a_revoked_token(cli: Cli, store: Store, alice: str) -> None:
    value = store.create("alice", "CI")
    store.ledger.revoke_by_value(value, reporter="tests")
    run = cli.verify(value)
    assert (run.code, run.stderr.strip()) == (1, "invalid: revoked")


def test_tokens_regenerate_prints_a_new_value_and_the_old_one_stops_working(
    cli: Cli, store: Store, alice: str
) -> None:
    old = store.create("alice", "CI", "repo", "job")
    token_id = store.token_id("CI")
    run = cli.ok("tokens", "regenerate", token_id)
    new = run.stdout.strip()
    assert token_format.is_well_formed(new) and new != old
    assert "not stored" in run.stderr
    assert store.outcome(old) is not Outcome.VALID
    assert store.outcome(new) is Outcome.VALID
    [record] = store.tokens()
    assert (str(record.id), record.name, record.scopes) == (token_id, "CI", ["repo", "job"])
    assert record.regenerated_at is not None


def test_tokens_regenerate_with_a_new_expiry(cli: Cli, store: Store, alice: str) -> None:
    store.create("alice", "CI", days=30)
    cli.ok("tokens", "regenerate", store.token_id("CI"), "--expires", "never")
    [record] = store.tokens()
    assert record.expires_at is None


def test_tokens_revoke_stops_the_token_at_once(cli: Cli, store: Store, alice: str) -> None:
    value = store.create("alice", "CI")
    token_id = store.token_id("CI")
    assert store.outcome(value) is Outcome.VALID
    assert cli.ok("tokens", "revoke", token_id).stdout.strip() == f"revoked {token_id}"
    assert store.outcome(value) is Outcome.REVOKED
    again = cli.ok("tokens", "revoke", token_id)
    assert again.stdout.strip() == f"{token_id} was already revoked"
    assert [e.event_type for e in store.ledger.history(store.operator, uuid.UUID(token_id))] == [
        "Created",
        "Revoked",
    ]


def test_tokens_revoke_all_revokes_one_owners_tokens_or_everybodys(
    cli: Cli, store: Store, alice: str
) -> None:
    store.add_user("bob")
    alices = [store.create("alice", "One"), store.create("alice", "Two")]
    bobs = store.create("bob", "One")
    assert cli.ok("tokens", "revoke-all", "--owner", "alice").stdout.strip() == "revoked 2 tokens"
    assert [store.outcome(v) for v in alices] == [Outcome.REVOKED, Outcome.REVOKED]
    assert store.outcome(bobs) is Outcome.VALID
    assert cli.ok("tokens", "revoke-all", "--all-owners").stdout.strip() == "revoked 1 token"
    assert store.outcome(bobs) is Outcome.REVOKED


def test_tokens_revoke_all_issued_before_spares_newer_values(cli: Cli, store: Store, alice: str) -> None:
    value = store.create("alice", "CI")
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    run = cli.ok("tokens", "revoke-all", "--owner", "alice", "--issued-before", past)
    assert run.stdout.strip() == "revoked 0 tokens"
    assert store.outcome(value) is Outcome.VALID
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    cli.ok("tokens", "revoke-all", "--owner", "alice", "--issued-before", future)
    assert store.outcome(value) is Outcome.REVOKED


def test_tokens_revoke_all_needs_exactly_one_of_owner_or_all_owners(
    cli: Cli, store: Store, alice: str
) -> None:
    value = store.create("alice", "CI")
    assert_one_error_line(cli("tokens", "revoke-all"))
    assert_one_error_line(cli("tokens", "revoke-all", "--owner", "alice", "--all-owners"))
    assert store.outcome(value) is Outcome.VALID


# Audit and projections ---------------------------------------------------------------------


def test_audit_history_shows_every_event_of_a_token(cli: Cli, store: Store, alice: str) -> None:
    store.create("alice", "CI")
    token_id = store.token_id("CI")
    cli.ok("tokens", "regenerate", token_id)
    cli.ok("tokens", "revoke", token_id)
    header, rows = parse_table(cli.ok("audit", "history", token_id).stdout)
    assert header[2] == "event"
    assert [row[2] for row in rows] == ["Created", "Regenerated", "Revoked"]
    entries = json.loads(cli.ok("audit", "history", token_id, "--json").stdout)
    assert [e["event"] for e in entries] == ["Created", "Regenerated", "Revoked"]
    assert [e["actor"] for e in entries] == ["cli:tests", OPERATOR, OPERATOR]
    assert entries[0]["name"] == "CI"
    assert (entries[2]["reason"], entries[2]["source"]) == ("admin", "cli")


def test_projections_status_shows_every_projection_caught_up(cli: Cli, store: Store, alice: str) -> None:
    store.create("alice", "CI")
    header, body = parse_table(cli.ok("projections", "status").stdout)
    assert header[:4] == ["projection", "position", "head", "lag"]
    rows = {row[0]: [int(cell) for cell in row[1:4]] for row in body}
    assert set(rows) >= {"tokens", "last_used", "audit", "accounts"}
    heads = {head for _, head, _ in rows.values()}
    assert len(heads) == 1 and heads.pop() >= 2
    assert all(position == head and lag == 0 for position, head, lag in rows.values())


def test_projections_rebuild_leaves_the_list_unchanged(cli: Cli, store: Store, alice: str) -> None:
    used = store.create("alice", "Used")
    store.create("alice", "Dropped")
    store.create("alice", "Forever", days=None)
    store.ledger.revoke_token(store.operator, uuid.UUID(store.token_id("Dropped")))
    store.ledger.regenerate_token(store.operator, uuid.UUID(store.token_id("Forever")))
    store.ledger.record_use(store.ledger.verify(used), scope="repo", address="192.0.2.7")
    store.ledger.usage.flush()
    before = cli.ok("tokens", "list", "--state", "all", "--json").stdout
    assert "192.0.2.7" in before
    run = cli.ok("projections", "rebuild")
    assert re.fullmatch(r"rebuilt (\w+, )*tokens(, \w+)* up to position \d+", run.stdout.strip())
    assert cli.ok("tokens", "list", "--state", "all", "--json").stdout == before
    cli.ok("projections", "rebuild", "last_used")
    assert cli.ok("tokens", "list", "--state", "all", "--json").stdout == before
    assert store.outcome(used) is Outcome.VALID


# Errors ------------------------------------------------------------------------------------

CREATE = ["tokens", "create", "--owner", "alice", "--name", "CI"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([*CREATE, "--scope", "nope"], id="unknown-scope"),
        pytest.param([*CREATE, "--scope", "repo", "--expires", "45"], id="bad-expiry"),
        pytest.param([*CREATE, "--scope", "repo", "--expires", "soon"], id="bad-expiry-text"),
        pytest.param([*CREATE[:3], "nobody", *CREATE[4:], "--scope", "repo"], id="unknown-user"),
        pytest.param(
            ["tokens", "create", "--owner", "alice", "--name", " ", "--scope", "repo"], id="blank-name"
        ),
        pytest.param(["tokens", "revoke", "not-a-uuid"], id="bad-id"),
        pytest.param(["tokens", "regenerate", "12345"], id="bad-id-regenerate"),
        pytest.param(["audit", "history", "xyz"], id="bad-id-history"),
        pytest.param(["tokens", "revoke", "00000000-0000-4000-8000-000000000000"], id="unknown-id"),
        pytest.param(["tokens", "list", "--owner", "nobody"], id="list-unknown-user"),
    ],
)
def test_bad_input_prints_one_error_line_and_changes_nothing(
    cli: Cli, store: Store, alice: str, args: list[str]
) -> None:
    assert_one_error_line(cli(*args))
    assert store.tokens() == []


def test_a_duplicate_name_prints_one_error_line(cli: Cli, store: Store, alice: str) -> None:
    store.create("alice", "GitHub Actions")
    run = cli("tokens", "create", "--owner", "alice", "--name", "github actions", "--scope", "repo")
    assert_one_error_line(run)
    assert "already exists" in run.stderr
    assert len(store.tokens()) == 1


def test_a_duplicate_username_prints_one_error_line(cli: Cli, store: Store, alice: str) -> None:
    run = cli("users", "add", "alice", "--password-stdin", stdin="another-password\n")
    assert_one_error_line(run)
    assert "already" in run.stderr
    assert store.ledger.authenticate("alice", "alice-password").username == "alice"


def test_a_short_password_prints_one_error_line(cli: Cli, store: Store) -> None:
    assert_one_error_line(cli("users", "add", "carol", "--password-stdin", stdin="short\n"))
    assert store.ledger.accounts() == []


def test_a_bad_database_url_prints_one_error_line(cli: Cli) -> None:
    cli.env["TOKENLEDGER_DATABASE_URL"] = "mysql://nope"
    assert_one_error_line(cli("tokens", "list"))


def test_an_unknown_projection_prints_one_error_line(cli: Cli, store: Store) -> None:
    # Names are checked before any progress bar is drawn.
    run = cli("projections", "rebuild", "nothing")
    assert "no projection named 'nothing'" in run.stderr
    assert_one_error_line(run)


def test_an_error_message_with_brackets_prints_one_error_line(cli: Cli, store: Store, alice: str) -> None:
    # User text in an error is printed as typed, never interpreted as rich markup.
    store.create("alice", "Deploy [/prod]")
    duplicate = cli("tokens", "create", "--owner", "alice", "--name", "Deploy [/prod]", "--scope", "repo")
    assert_one_error_line(duplicate)
    assert "Deploy [/prod]" in duplicate.stderr
    unknown_scope = cli("tokens", "create", "--owner", "alice", "--name", "x", "--scope", "[/repo]")
    assert_one_error_line(unknown_scope)


def test_names_with_brackets_are_listed_as_typed(cli: Cli, store: Store, alice: str) -> None:
    # "[bold]CI" and "Deploy [/prod]" are legal names: listed as typed, never as markup.
    store.create("alice", "[bold]CI")
    store.create("alice", "Deploy [/prod]")
    listing = cli("tokens", "list")
    assert listing.code == 0, listing.stderr
    assert "[bold]CI" in listing.stdout
    assert "Deploy [/prod]" in listing.stdout
    history = cli("audit", "history", store.token_id("Deploy [/prod]"))
    assert history.code == 0, history.stderr
    assert "Deploy [/prod]" in history.stdout
