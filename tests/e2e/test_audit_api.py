"""Audit, compliance and tamper evidence through a real server process, real HTTP and the real
`tokenledger` command, on SQLite and PostgreSQL.

The scenarios use only account-authenticated management calls unless a test is about tokens:
a token use is written in the background, so it would make the log move under the test.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from interface.client import Client
from interface.reports import ENTRY_COLUMNS, FINDING_COLUMNS
from tests.e2e.server import Server, run_cli

EVENTS = "/api/v1/audit/events"
COMPLIANCE = "/api/v1/reports/compliance"


@dataclass
class Tokens:
    ids: dict[str, str]
    values: dict[str, str]


def as_admin(server: Server) -> tuple[str, str]:
    assert server.admin_password, "the server did not print the first admin's password"
    return ("admin", server.admin_password)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def get(server: Server, path: str, *, auth: Any = None, headers: Any = None, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, auth=auth, headers=headers, timeout=30)


def populate(server: Server, alice_password: str, bob_password: str) -> Tokens:
    """alice: CI [repo] (regenerated) and Deploy [repo:read service] without expiry;
    bob: Laptop [repo:read], revoked; admin: Auditor [admin:org]. Nothing is used."""
    ids: dict[str, str] = {}
    values: dict[str, str] = {}
    with Client(server.url, username="alice", password=alice_password) as alice:
        ci = alice.create_token("CI", ["repo"], expires_in_days=30)
        deploy = alice.create_token("Deploy", ["repo:read", "service"], expires_in_days=None)
        ci = alice.regenerate(ci.id)
        ids |= {"CI": str(ci.id), "Deploy": str(deploy.id)}
        values |= {"CI": ci.value or "", "Deploy": deploy.value or ""}
    with Client(server.url, username="bob", password=bob_password) as bob:
        laptop = bob.create_token("Laptop", ["repo:read"], expires_in_days=30)
        bob.revoke(laptop.id)
        ids["Laptop"] = str(laptop.id)
    admin_user, admin_password = as_admin(server)
    with Client(server.url, username=admin_user, password=admin_password) as admin:
        auditor = admin.create_token("Auditor", ["admin:org"], expires_in_days=30)
        ids["Auditor"], values["Auditor"] = str(auditor.id), auditor.value or ""
    return Tokens(ids, values)


def walk(
    server: Server, *, auth: Any = None, headers: Any = None, **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of the log, following next_cursor; checks the X-Next-Cursor header on the way."""
    found: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        response = get(
            server, EVENTS, auth=auth, headers=headers, **params, **({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200, response.text
        body = response.json()
        found.append(body["events"])
        if body["next_cursor"] is None:
            assert "x-next-cursor" not in response.headers
            return found
        assert response.headers["x-next-cursor"] == str(body["next_cursor"])
        assert body["next_cursor"] == body["events"][-1]["position"]
        assert len(found) < 100, "paging does not end"
        cursor = body["next_cursor"]


def test_event_log_pages_follow_next_cursor_and_header(
    server: Server, alice_password: str, bob_password: str
) -> None:
    tokens = populate(server, alice_password, bob_password)
    (everything,) = walk(server, auth=as_admin(server), limit=1000)
    assert [(e["event"], e["token_name"]) for e in everything if e["owner"] == "alice"] == [
        ("Registered", None),
        ("Created", "CI"),
        ("Created", "Deploy"),
        ("Regenerated", "CI"),
    ]
    assert [e["event"] for e in everything if e["token_id"] == tokens.ids["Laptop"]] == ["Created", "Revoked"]
    revoked = next(e for e in everything if e["event"] == "Revoked")
    assert (revoked["owner"], revoked["actor"], revoked["details"]["reason"]) == ("bob", "bob", "user")

    oldest = walk(server, auth=as_admin(server), limit=2)
    assert all(len(page) == 2 for page in oldest[:-1]) and 1 <= len(oldest[-1]) <= 2
    assert [e for page in oldest for e in page] == everything

    newest = walk(server, auth=as_admin(server), limit=2, order="desc")
    assert [e for page in newest for e in page] == everything[::-1]


def test_event_log_as_csv_and_json_lines(server: Server, alice_password: str, bob_password: str) -> None:
    populate(server, alice_password, bob_password)
    (everything,) = walk(server, auth=as_admin(server), limit=1000)

    response = get(server, EVENTS, auth=as_admin(server), limit=1000, format="csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text))
    assert tuple(reader.fieldnames or ()) == ENTRY_COLUMNS
    rows = list(reader)
    assert [(int(r["position"]), r["event"], r["owner"]) for r in rows] == [
        (e["position"], e["event"], e["owner"]) for e in everything
    ]
    assert [r["token_id"] for r in rows] == [e["token_id"] or "" for e in everything]

    response = get(server, EVENTS, auth=as_admin(server), limit=1000, format="jsonl")
    assert response.status_code == 200
    assert [json.loads(line) for line in response.text.splitlines()] == everything

    paged = get(server, EVENTS, auth=as_admin(server), limit=2, format="csv")
    assert len(list(csv.DictReader(io.StringIO(paged.text)))) == 2
    assert paged.headers["x-next-cursor"] == str(everything[1]["position"])
    following = get(
        server, EVENTS, auth=as_admin(server), limit=2, format="jsonl", cursor=everything[1]["position"]
    )
    assert [json.loads(line)["position"] for line in following.text.splitlines()] == [
        e["position"] for e in everything[2:4]
    ]


def test_a_member_reads_only_their_own_history(
    server: Server, alice_password: str, bob_password: str
) -> None:
    populate(server, alice_password, bob_password)
    alice = ("alice", alice_password)
    (own,) = walk(server, auth=alice, limit=1000)
    assert own and {e["owner"] for e in own} == {"alice"}
    (as_seen_by_admin,) = walk(server, auth=as_admin(server), limit=1000, owner="alice")
    assert own == as_seen_by_admin
    paged = walk(server, auth=alice, limit=1)
    assert [e for page in paged for e in page] == own

    for path, params in [
        (EVENTS, {"owner": "bob"}),
        (COMPLIANCE, {}),
        ("/api/v1/audit/verify", {}),
        ("/api/v1/audit/tokens", {"as_of": "2026-01-01T00:00:00Z"}),
        (
            "/api/v1/audit/exposure",
            {"scope": "repo", "since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"},
        ),
    ]:
        response = get(server, path, auth=alice, **params)
        assert response.status_code == 403, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_a_token_with_admin_org_reads_the_organisations_audit(
    server: Server, alice_password: str, bob_password: str
) -> None:
    tokens = populate(server, alice_password, bob_password)
    (by_admin,) = walk(server, auth=as_admin(server), limit=1000, owner="alice")
    auditor = bearer(tokens.values["Auditor"])
    (by_token,) = walk(server, headers=auditor, limit=1000, owner="alice")
    assert by_token == by_admin
    report = get(server, COMPLIANCE, headers=auditor)
    assert report.status_code == 200 and "findings" in report.json()

    ci = bearer(tokens.values["CI"])  # alice's token, without admin:org
    assert get(server, COMPLIANCE, headers=ci).status_code == 403
    assert get(server, EVENTS, headers=ci, owner="bob").status_code == 403
    (own,) = walk(server, headers=ci, limit=1000)
    assert own and {e["owner"] for e in own} == {"alice"}


def test_a_members_admin_org_token_does_not_open_the_organisations_audit(
    server: Server, alice_password: str, bob_password: str
) -> None:
    # A member's token with admin:org gives no more than the member has.
    populate(server, alice_password, bob_password)
    with Client(server.url, username="alice", password=alice_password) as alice:
        escalate = alice.create_token("Escalate", ["admin:org"], expires_in_days=30)
    assert escalate.value
    headers = bearer(escalate.value)
    assert get(server, EVENTS, headers=headers, owner="bob").status_code == 403
    assert get(server, COMPLIANCE, headers=headers).status_code == 403


class _Tables(HTMLParser):
    """Every table of a page as rows of cell texts (a cell's text chunks joined by '|')."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("|".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_compliance_report_formats_carry_the_same_findings(
    server: Server, alice_password: str, bob_password: str
) -> None:
    tokens = populate(server, alice_password, bob_password)
    ids = tokens.ids
    expected = {
        (ids["CI"], "never_used", "low"),
        (ids["Deploy"], "never_used", "low"),
        (ids["Deploy"], "no_expiry", "medium"),
        (ids["Auditor"], "never_used", "low"),
        (ids["Auditor"], "admin_scope", "high"),
    }  # bob's Laptop is revoked: not in the report

    as_json = get(server, COMPLIANCE, auth=as_admin(server))
    assert as_json.status_code == 200
    report = as_json.json()
    assert {(f["token_id"], f["rule"], f["severity"]) for f in report["findings"]} == expected
    assert report["summary"]["active_tokens"] == 3
    assert report["summary"]["by_severity"] == {"high": 1, "medium": 1, "low": 3, "info": 0}
    assert {o["owner"]: o["active_tokens"] for o in report["owners"]} == {"admin": 1, "alice": 2}

    as_csv = get(server, COMPLIANCE, auth=as_admin(server), format="csv")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(as_csv.text))
    assert tuple(reader.fieldnames or ()) == FINDING_COLUMNS
    rows = list(reader)
    assert len(rows) == len(expected)
    assert {(r["token_id"], r["rule"], r["severity"]) for r in rows} == expected

    as_html = get(server, COMPLIANCE, auth=as_admin(server), format="html")
    assert as_html.status_code == 200 and as_html.headers["content-type"].startswith("text/html")
    parser = _Tables()
    parser.feed(as_html.text)
    (findings,) = [t for t in parser.tables if t and t[0][:2] == ["severity", "rule"]]
    assert len(findings) - 1 == len(expected)
    assert {(row[3].split("|")[1], row[1], row[0]) for row in findings[1:]} == expected
    assert "<script" not in as_html.text.lower() and "https://" not in as_html.text


def test_verify_endpoint_accepts_the_intact_log(
    server: Server, alice_password: str, bob_password: str
) -> None:
    populate(server, alice_password, bob_password)
    response = get(server, "/api/v1/audit/verify", auth=as_admin(server))
    assert response.status_code == 200
    check = response.json()
    assert check["ok"] is True and check["first_bad_position"] is None and check["problem"] is None
    (everything,) = walk(server, auth=as_admin(server), limit=1000)
    assert check["checked"] >= len(everything)  # the chain also covers events the audit log leaves out
    digest = get(server, "/api/v1/audit/digest", auth=as_admin(server)).json()
    assert check["head"] == digest
    assert digest["position"] >= everything[-1]["position"] and len(digest["digest"]) == 64


def cli(server: Server, *args: str) -> Any:
    return run_cli(server.database_url, *args)


def test_cli_export_verifies_and_a_tampered_export_fails_naming_the_position(
    server: Server, alice_password: str, bob_password: str, tmp_path: Path
) -> None:
    populate(server, alice_password, bob_password)
    export = tmp_path / "audit.jsonl"
    exported = cli(server, "audit", "export", str(export))
    assert exported.returncode == 0, exported.stderr
    lines = export.read_text().splitlines()
    trailer = json.loads(lines[-1])
    head = trailer["head"]
    assert f"exported {trailer['events']} events" in exported.stdout
    assert head["digest"] in exported.stdout.replace("\n", "")

    digest = cli(server, "audit", "digest")
    assert digest.returncode == 0 and digest.stdout.split() == [str(head["position"]), head["digest"]]

    verified = cli(server, "audit", "verify", "--export", str(export))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ok:")
    live = cli(server, "audit", "verify", "--expect", f"{head['position']}:{head['digest']}")
    assert live.returncode == 0, live.stderr

    # Change what one stored event says (bob's revocation becomes an admin's).
    index, entry = next(
        (i, json.loads(line)) for i, line in enumerate(lines) if b'"reason"' in _state(json.loads(line))
    )
    entry["state"] = base64.b64encode(_state(entry).replace(b'"user"', b'"admin"')).decode()
    lines[index] = json.dumps(entry)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    failed = cli(server, "audit", "verify", "--export", str(tampered))
    assert failed.returncode == 1
    error_lines = failed.stderr.strip().splitlines()
    assert len(error_lines) == 1, failed.stderr
    assert f"position {entry['position']}" in error_lines[0]
    assert "Traceback" not in failed.stderr


def _state(entry: dict[str, Any]) -> bytes:
    return base64.b64decode(entry["state"]) if "state" in entry else b""


def test_cli_audit_log_csv_and_json_lines_parse(
    server: Server, alice_password: str, bob_password: str
) -> None:
    tokens = populate(server, alice_password, bob_password)
    (everything,) = walk(server, auth=as_admin(server), limit=1000)

    as_csv = cli(server, "audit", "log", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    reader = csv.DictReader(io.StringIO(as_csv.stdout))
    assert tuple(reader.fieldnames or ()) == ENTRY_COLUMNS
    assert [(int(r["position"]), r["event"], r["owner"]) for r in reader] == [
        (e["position"], e["event"], e["owner"]) for e in everything
    ]

    as_jsonl = cli(server, "audit", "log", "--format", "jsonl")
    assert as_jsonl.returncode == 0, as_jsonl.stderr
    assert [json.loads(line) for line in as_jsonl.stdout.splitlines()] == everything

    filtered = cli(server, "audit", "log", "--format", "jsonl", "--owner", "alice", "--type", "Created")
    assert filtered.returncode == 0, filtered.stderr
    assert [json.loads(line)["token_id"] for line in filtered.stdout.splitlines()] == [
        tokens.ids["CI"],
        tokens.ids["Deploy"],
    ]

    newest = cli(server, "audit", "log", "--format", "csv", "--newest-first", "--limit", "3")
    assert newest.returncode == 0, newest.stderr
    assert [int(r["position"]) for r in csv.DictReader(io.StringIO(newest.stdout))] == [
        e["position"] for e in everything[::-1][:3]
    ]

    # --after pages like the API's cursor: the rest, after the last position already printed.
    first, rest = everything[:4], everything[4:]
    page = cli(server, "audit", "log", "--format", "jsonl", "--after", str(first[-1]["position"]))
    assert page.returncode == 0, page.stderr
    assert [json.loads(line) for line in page.stdout.splitlines()] == rest
    older = cli(
        server, "audit", "log", "--format", "jsonl", "--newest-first", "--after", str(rest[0]["position"])
    )
    assert [json.loads(line) for line in older.stdout.splitlines()] == first[::-1]


def test_as_of_exposure_and_report_answer_alike_over_http_and_the_cli(
    server: Server, alice_password: str, bob_password: str
) -> None:
    tokens = populate(server, alice_password, bob_password)
    admin = as_admin(server)
    check = get(server, "/api/v1/auth/check", headers=bearer(tokens.values["CI"]), scope="repo")
    assert check.status_code == 204
    # The use is written in the background (a usage window of 0: right after the answer).
    deadline = time.monotonic() + 30
    while not (used := [e for e in walk(server, auth=admin, limit=1000)[0] if e["event"] == "Used"]):
        assert time.monotonic() < deadline, "the use never reached the log"
        time.sleep(0.2)
    (everything,) = walk(server, auth=admin, limit=1000)
    revoked = next(e for e in everything if e["event"] == "Revoked" and e["token_name"] == "Laptop")
    now = datetime.now(UTC).isoformat()

    # As of just before bob revoked Laptop, it was active; now it is revoked.
    before = (datetime.fromisoformat(revoked["at"]) - timedelta(microseconds=1)).isoformat()
    then = get(server, "/api/v1/audit/tokens", auth=admin, as_of=before).json()
    assert {t["name"]: t["state"] for t in then}["Laptop"] == "active"
    current = get(server, "/api/v1/audit/tokens", auth=admin, as_of=now).json()
    assert {t["name"]: t["state"] for t in current} == {
        "CI": "active",
        "Deploy": "active",
        "Laptop": "revoked",
        "Auditor": "active",
    }
    assert {t["name"]: t["use_count"] for t in current}["CI"] == 1
    as_of = cli(server, "audit", "as-of", now, "--json")
    assert as_of.returncode == 0, as_of.stderr
    assert json.loads(as_of.stdout) == current

    # Only CI grants repo, and its one use falls in the window.
    since = (datetime.fromisoformat(used[0]["at"]) - timedelta(minutes=1)).isoformat()
    exposure = get(server, "/api/v1/audit/exposure", auth=admin, scope="repo", since=since, until=now).json()
    assert [(x["name"], x["exercised"]) for x in exposure] == [("CI", True)]
    (use,) = exposure[0]["uses"]
    assert (use["count"], use["scopes"], use["addresses"]) == (1, ["repo"], ["127.0.0.1"])
    exposed = cli(server, "audit", "exposure", "--scope", "repo", "--since", since, "--until", now, "--json")
    assert exposed.returncode == 0, exposed.stderr
    assert json.loads(exposed.stdout) == exposure

    over_http = get(server, COMPLIANCE, auth=admin).json()
    report = cli(server, "report", "compliance", "--format", "json")
    assert report.returncode == 0, report.stderr
    from_cli = json.loads(report.stdout)
    assert {k: v for k, v in from_cli.items() if k != "generated_at"} == {
        k: v for k, v in over_http.items() if k != "generated_at"
    }
    assert {f["token_name"] for f in from_cli["findings"] if f["rule"] == "no_expiry"} == {"Deploy"}


@pytest.fixture(autouse=True)
def _server_logs_no_traceback(server: Server) -> Iterator[None]:
    """Every request above ends in an answer, never in an unhandled error."""
    yield
    assert "Traceback" not in server.logs(), server.logs()
