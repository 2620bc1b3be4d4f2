"""No token value, token secret or password is ever written anywhere but where it is handed out.

A full scenario runs in this process (accounts, create, use, regenerate, revoke, revoke by
value, bulk revoke, rebuilds, and the error paths: wrong passwords, forged and mistyped values,
duplicate names) and through the real `tokenledger` command (including its error paths). Then
every secret it handled is looked for in

- the database: the SQLite file and its -wal/-shm files, byte for byte (free pages included),
  or a text dump of every PostgreSQL table (bytea columns appear as hex, so the hex form is
  looked for too);
- every log record captured at DEBUG;
- the command's stderr, and its stdout except where `tokens create`/`regenerate` print the value.

Each check is shown able to fire: the public lookup ids, stored next to the secrets' hashes,
are found in the same dumps.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from application.ledger import Actor
from application.verification import Outcome
from domain import token_format
from domain.account import Role
from domain.errors import AuthenticationFailed, NameTaken
from interface.settings import Settings
from interface.wiring import Service, build
from projections.database import Database
from tests.support import CHEAP_ARGON2, FakeClock, cheap_hasher

TOKENLEDGER = Path(sys.executable).with_name("tokenledger")
PASSWORDS = {
    "alice": "alice-Pa55-word-one",
    "root": "root-Pa55-word-two",
    "carol": "carol-Pa55-word-three",
}
WRONG_PASSWORD = "wrong-Pa55-word-nine"
NEW_PASSWORD = "alice-New-Pa55-word"
SHORT_PASSWORD = "Sh0rt!x"  # refused: too short


@dataclass
class Secrets:
    """Everything that must not be written down, and the public lookup ids as a control."""

    texts: dict[str, str] = field(default_factory=dict)
    lookup_ids: list[str] = field(default_factory=list)

    def value(self, label: str, value: str) -> None:
        parsed = token_format.parse(value)
        assert parsed is not None, f"{label} is not a token value"
        self.texts[f"{label} (value)"] = value
        self.texts[f"{label} (secret)"] = parsed.secret
        # A value retyped with one character changed still leaks most of its secret.
        self.texts[f"{label} (secret, first half)"] = parsed.secret[:16]
        self.texts[f"{label} (secret, second half)"] = parsed.secret[-16:]
        self.lookup_ids.append(parsed.lookup_id)

    def password(self, label: str, password: str) -> None:
        self.texts[f"{label} (password)"] = password

    def found_in_text(self, text: str) -> list[str]:
        hex_text = text.lower()
        return [
            label
            for label, secret in self.texts.items()
            if secret in text or secret.encode().hex() in hex_text
        ]

    def found_in_bytes(self, data: bytes) -> list[str]:
        return [label for label, secret in self.texts.items() if secret.encode() in data]


def forge(value: str) -> str:
    """Same lookup id, another secret, a valid checksum: passes the offline checks."""
    parsed = token_format.parse(value)
    assert parsed is not None
    return token_format.TokenValue(parsed.lookup_id, parsed.secret[::-1]).value


def mistype(value: str) -> str:
    """One character changed: the checksum no longer matches."""
    swapped = "A" if value[20] != "A" else "B"
    return value[:20] + swapped + value[21:]


# The database ------------------------------------------------------------------------------


def sqlite_files(url: str) -> list[Path]:
    path = Database.parse(url).sqlite_path
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def postgres_dump(url: str) -> str:
    conninfo = Database.parse(url).psycopg_conninfo()
    parts: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert tables, "no tables to dump"
        for schema_name, table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{schema_name}"."{table}" t').fetchall()
            parts.extend(f"{schema_name}.{table}: {row[0]}" for row in rows)
    return "\n".join(parts)


def assert_database_holds_no_secret(url: str, secrets: Secrets) -> None:
    if Database.parse(url).is_sqlite:
        files = sqlite_files(url)
        assert files, "no database file"
        for path in files:
            data = path.read_bytes()
            assert secrets.found_in_bytes(data) == [], f"secrets in {path.name}"
        everything = b"".join(p.read_bytes() for p in files)
        # Control: the public halves of the values are stored, and found by the same search.
        assert all(lookup_id.encode() in everything for lookup_id in secrets.lookup_ids)
    else:
        dump = postgres_dump(url)
        assert secrets.found_in_text(dump) == [], "secrets in the PostgreSQL tables"
        assert all(lookup_id in dump for lookup_id in secrets.lookup_ids)


# The command line --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
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
            "COLUMNS": "250",
        }
        self.runs: list[Run] = []

    def __call__(self, *args: str, stdin: str | None = None, code: int | None = 0) -> Run:
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
        run = Run(args, done.returncode, done.stdout, done.stderr)
        self.runs.append(run)
        if code is not None:
            assert run.code == code, f"tokenledger {' '.join(args)} exited {run.code}: {run.stderr}"
        else:
            assert run.code != 0, f"tokenledger {' '.join(args)} should have failed"
            assert "Traceback" not in run.stderr
        return run

    def issue(self, *args: str) -> str:
        """Run a command that prints a value (create, regenerate): the value is all of stdout."""
        run = self(*args)
        value = run.stdout.strip()
        assert token_format.is_well_formed(value), run.stdout
        return value


# The scenario ------------------------------------------------------------------------------


def run_in_process(service: Service, clock: FakeClock, secrets: Secrets) -> None:
    ledger = service.ledger
    for username, password in PASSWORDS.items():
        secrets.password(username, password)
    for label, password in (("wrong", WRONG_PASSWORD), ("new", NEW_PASSWORD), ("short", SHORT_PASSWORD)):
        secrets.password(label, password)

    ledger.register_account("alice", Role.MEMBER, PASSWORDS["alice"])
    ledger.register_account("root", Role.ADMIN, PASSWORDS["root"])
    alice = ledger.authenticate("alice", PASSWORDS["alice"])
    root = ledger.authenticate("root", PASSWORDS["root"])
    with pytest.raises(AuthenticationFailed):
        ledger.authenticate("alice", WRONG_PASSWORD)
    with pytest.raises(AuthenticationFailed):
        ledger.authenticate("nobody", WRONG_PASSWORD)

    ci = ledger.create_token(alice, name="CI", scopes=["repo", "job"], expires_in_days=30)
    laptop = ledger.create_token(alice, name="Laptop", scopes=["repo:read"], expires_in_days=None)
    secrets.value("CI", ci.value)
    secrets.value("Laptop", laptop.value)
    with pytest.raises(NameTaken):
        ledger.create_token(alice, name="ci", scopes=["repo"], expires_in_days=30)

    verified = ledger.verify(ci.value)
    assert verified.ok
    ledger.record_use(verified, scope="repo", address="203.0.113.9", user_agent="git/2.45")
    ledger.verify(ci.value)  # warm
    forged, mistyped = forge(ci.value), mistype(laptop.value)
    secrets.value("forged", forged)
    secrets.texts["mistyped (value)"] = mistyped
    assert ledger.verify(forged).outcome is Outcome.WRONG_SECRET
    assert ledger.verify(mistyped).outcome is Outcome.BAD_CHECKSUM
    ledger.usage.flush()
    clock.advance(minutes=5)

    regenerated = ledger.regenerate_token(alice, ci.record.id)
    secrets.value("CI regenerated", regenerated.value)
    assert ledger.verify(ci.value).outcome is Outcome.UNKNOWN
    assert ledger.revoke_token(alice, laptop.record.id)
    assert ledger.verify(laptop.value).outcome is Outcome.REVOKED
    assert ledger.revoke_by_value(regenerated.value, reporter="secret-scanner")
    assert not ledger.revoke_by_value(ci.value, reporter="secret-scanner")

    deploy = ledger.create_token(alice, name="Deploy", scopes=["service"], expires_in_days=90)
    secrets.value("Deploy", deploy.value)
    ledger.change_password("alice", NEW_PASSWORD, alice)
    with pytest.raises(AuthenticationFailed):
        ledger.authenticate("alice", PASSWORDS["alice"])
    assert ledger.revoke_all(root, all_owners=True) == 1
    for projector in service.projections.projectors:
        service.projections.rebuild(projector.name)
    ledger.usage.flush()


def run_command_line(cli: Cli, secrets: Secrets) -> None:
    cli("users", "add", "carol", "--password-stdin", stdin=PASSWORDS["carol"] + "\n")
    cli("users", "add", "carol", "--password-stdin", stdin=PASSWORDS["carol"] + "\n", code=None)
    cli("users", "add", "dave", "--password-stdin", stdin=SHORT_PASSWORD + "\n", code=None)

    value = cli.issue("tokens", "create", "--owner", "carol", "--name", "Jenkins", "--scope", "repo")
    secrets.value("CLI token", value)
    cli("tokens", "create", "--owner", "carol", "--name", "JENKINS", "--scope", "repo", code=None)
    cli("tokens", "create", "--owner", "carol", "--name", "x", "--scope", "everything", code=None)
    cli("tokens", "verify", "--scope", "repo", stdin=value + "\n")
    cli("tokens", "verify", stdin=mistype(value) + "\n", code=1)
    forged = forge(value)
    secrets.value("CLI forged", forged)
    cli("tokens", "verify", stdin=forged + "\n", code=1)

    listed = cli("tokens", "list", "--json", "--owner", "carol")
    token_id = next(r["id"] for r in _json(listed.stdout) if r["name"] == "Jenkins")
    new_value = cli.issue("tokens", "regenerate", token_id)
    secrets.value("CLI token regenerated", new_value)
    cli("tokens", "verify", stdin=value + "\n", code=1)
    cli("tokens", "list", "--state", "all")
    cli("audit", "history", token_id)
    cli("audit", "log")
    cli("tokens", "revoke", token_id)
    cli("tokens", "verify", stdin=new_value + "\n", code=1)
    cli("tokens", "revoke", str(uuid.uuid4()), code=None)
    cli("tokens", "revoke-all", "--owner", "carol")
    cli("projections", "rebuild")
    cli("projections", "status")


def _json(text: str) -> list[dict[str, str]]:
    data = json.loads(text)
    assert isinstance(data, list)
    return data


def test_no_value_secret_or_password_reaches_the_database_logs_or_stderr(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its own loggers at WARNING unless told otherwise; at DEBUG they log every
    # statement the read models run, with its parameters.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    secrets = Secrets()
    clock = FakeClock()
    settings = Settings(database_url=database_url, usage_window_seconds=0, argon2=CHEAP_ARGON2)
    with build(settings, clock=clock, hasher=cheap_hasher()) as service:
        run_in_process(service, clock, secrets)
        # While the service is open, SQLite still has recent pages in its write-ahead log.
        assert_database_holds_no_secret(database_url, secrets)

    cli = Cli(database_url, tmp_path)
    run_command_line(cli, secrets)
    assert_database_holds_no_secret(database_url, secrets)

    formatter = logging.Formatter()
    logged = []
    for record in caplog.records:
        text = " ".join(
            [
                record.getMessage(),
                repr(record.args),
                formatter.formatException(record.exc_info) if record.exc_info else "",
                record.stack_info or "",
                repr({k: v for k, v in vars(record).items() if k not in ("args", "exc_info", "msg")}),
            ]
        )
        assert secrets.found_in_text(text) == [], f"a secret in a log record of {record.name}"
        logged.append(text)
    # Control: the logs are detailed enough to carry what was stored next to the secrets' hashes.
    assert any(lookup_id in text for text in logged for lookup_id in secrets.lookup_ids)

    issued = {("tokens", "create"), ("tokens", "regenerate")}
    for run in cli.runs:
        command = " ".join(run.args[:2])
        assert secrets.found_in_text(run.stderr) == [], f"a secret on the stderr of tokenledger {command}"
        found_on_stdout = secrets.found_in_text(run.stdout)
        if run.args[:2] in issued and run.code == 0:
            assert found_on_stdout and all(label.startswith("CLI token") for label in found_on_stdout)
        else:
            assert found_on_stdout == [], f"a secret on the stdout of tokenledger {command}"


def test_a_value_pasted_where_a_token_id_belongs_is_not_echoed_back(
    database_url: str, tmp_path: Path
) -> None:
    """Pasting the value instead of the id is an easy mistake; the error must not repeat it
    (on a shared terminal, in CI logs).
    """
    settings = Settings(database_url=database_url, usage_window_seconds=0, argon2=CHEAP_ARGON2)
    with build(settings, clock=FakeClock(), hasher=cheap_hasher()) as service:
        service.ledger.register_account("alice", Role.MEMBER, PASSWORDS["alice"])
        actor = Actor(username="alice", role=Role.MEMBER)
        value = service.ledger.create_token(actor, name="CI", scopes=["repo"], expires_in_days=30).value
    secrets = Secrets()
    secrets.value("pasted", value)
    cli = Cli(database_url, tmp_path)
    for args in (
        ("tokens", "revoke", value),
        ("tokens", "regenerate", value),
        ("audit", "history", value),
        ("audit", "log", "--token", value),
    ):
        run = cli(*args, code=None)
        leaked = secrets.found_in_text(run.stderr + run.stdout)
        assert leaked == [], f"tokenledger {' '.join(args[:2])} echoed the value: {run.stderr.strip()}"
