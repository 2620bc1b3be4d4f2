"""`tokenledger scan`: find committed token values in files and git history, never showing them.

A match must have the token shape and a valid checksum, so random look-alikes are not reported.
A finding carries the value only so that `--report` can send it to the leak intake; everything
printed (table, JSON, SARIF, errors) shows the public lookup id and a redacted form instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import click
import httpx
from rich.table import Table
from rich.text import Text

from domain import token_format
from interface.cli.common import fail
from interface.cli.output import err, out
from interface.client import ApiError, Client

DEFAULT_MAX_BYTES = 1024 * 1024
BINARY_SNIFF_BYTES = 8 * 1024
RULE_ID = "tokenledger/committed-token"
_TOKEN_BYTES_RE = re.compile(rb"\b" + token_format.TOKEN_PATTERN.encode("ascii") + rb"\b")
_TOKEN_SHAPE_RE = re.compile(token_format.TOKEN_PATTERN)
_VCS_DIRS = frozenset({".git", ".hg", ".svn"})
USER_AGENT = "tokenledger-scan (leak report)"
PROBE_SCOPE = "admin:ssh_key"  # the scope a leaked token is least likely to hold (see report_leak)
REPORT_ATTEMPTS = 5
DEFAULT_RETRY_AFTER = 60
MAX_RETRY_AFTER = 120


@dataclass(frozen=True, slots=True)
class Finding:
    path: str  # absolute, symlinks resolved: the key that merges working-tree and history findings
    line: int
    column: int  # 1-based, in Unicode code points
    lookup_id: str
    value: str = field(repr=False)
    in_working_tree: bool = True
    commits: tuple[str, ...] = ()

    @property
    def redacted(self) -> str:
        return redact(self.lookup_id)

    @property
    def shown_path(self) -> str:
        """Relative to the current directory when below it, absolute otherwise."""
        relative = os.path.relpath(self.path, os.path.realpath(os.curdir))
        return redact_text(self.path if relative.startswith(os.pardir) else relative)


@dataclass
class Tally:
    files: int = 0
    blobs: int = 0
    binary: int = 0
    large: int = 0
    unreadable: int = 0
    look_alikes: int = 0


@dataclass(frozen=True, slots=True)
class Hit:
    line: int
    column: int
    value: str = field(repr=False)
    lookup_id: str = ""


def redact(lookup_id: str) -> str:
    return f"{token_format.PREFIX}{lookup_id}…"


def redact_text(text: str) -> str:
    """`text` with anything of the token shape cut to `opat_<lookup id>…`: for echoing user input."""
    start = len(token_format.PREFIX)
    return _TOKEN_SHAPE_RE.sub(
        lambda m: redact(m.group()[start : start + token_format.LOOKUP_ID_LENGTH]), text
    )


class RedactedErrors(click.Command):
    """A command whose usage errors never echo a token value given in the wrong place.

    click quotes what it could not parse ("Got unexpected extra argument (...)", "'...' is not a
    valid integer"); a value pasted there must not end up in a terminal or a job log.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            error.message = redact_text(error.message)
            raise


# Scanning bytes ----------------------------------------------------------------------------


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_SNIFF_BYTES]


def find_tokens(data: bytes, tally: Tally) -> list[Hit]:
    """Checksummed token values in `data`, with line and column; look-alikes are only counted."""
    hits = []
    line, counted_to = 1, 0
    for match in _TOKEN_BYTES_RE.finditer(data):
        line += data.count(b"\n", counted_to, match.start())
        counted_to = match.start()
        line_start = data.rfind(b"\n", 0, match.start()) + 1
        value = match.group().decode("ascii")
        parsed = token_format.parse(value)
        if parsed is None:
            tally.look_alikes += 1
            continue
        column = len(data[line_start : match.start()].decode("utf-8", "replace")) + 1
        hits.append(Hit(line, column, value, parsed.lookup_id))
    return hits


def finding(path: str, hit: Hit, *, in_working_tree: bool = True, commits: tuple[str, ...] = ()) -> Finding:
    return Finding(path, hit.line, hit.column, hit.lookup_id, hit.value, in_working_tree, commits)


# Files -------------------------------------------------------------------------------------


def iter_files(paths: Iterable[str]) -> Iterator[str]:
    """Files named, and files below directories named; VCS metadata and symlinks are not followed."""
    for path in paths:
        if not os.path.isdir(path):
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _VCS_DIRS)
            for name in sorted(files):
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    yield full


def scan_files(paths: Iterable[str], max_bytes: int, tally: Tally) -> list[Finding]:
    findings: list[Finding] = []
    for path in iter_files(paths):
        if not os.path.isfile(path):  # a FIFO or a device would block or never end
            tally.unreadable += 1
            continue
        try:
            if os.path.getsize(path) > max_bytes:
                tally.large += 1
                continue
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            tally.unreadable += 1
            continue
        if is_binary(data):
            tally.binary += 1
            continue
        tally.files += 1
        findings += [finding(os.path.realpath(path), hit) for hit in find_tokens(data, tally)]
    return findings


# Git history -------------------------------------------------------------------------------


class GitError(Exception):
    pass


def _git(top: str, *args: str, stdin: bytes | None = None) -> bytes:
    # The user's own git from PATH, with fixed arguments: no shell, nothing from the scanned data.
    command = ["git", "-C", top, "-c", "log.showSignature=false", *args]
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, check=False)  # noqa: S603
    except FileNotFoundError:
        raise GitError("the git command is not installed") from None
    if done.returncode != 0:
        raise GitError(f"git {args[0]} failed in {top}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def repository_of(path: str) -> str | None:
    """The top directory of the git work tree holding `path`, or None."""
    directory = path if os.path.isdir(path) else os.path.dirname(path) or os.curdir
    try:
        return os.path.realpath(_git(directory, "rev-parse", "--show-toplevel").decode().strip())
    except GitError:
        return None


def reachable_blobs(top: str) -> list[tuple[str, int, str]]:
    """(object id, size, one path) of every blob reachable from any ref."""
    objects = _git(top, "rev-list", "--all", "--objects")
    sizes = _git(
        top, "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize) %(rest)", stdin=objects
    )
    blobs = []
    for line in sizes.splitlines():
        oid, kind, size, path = line.split(b" ", 3)
        if kind == b"blob":
            blobs.append((oid.decode(), int(size), os.fsdecode(path)))
    return blobs


def read_blobs(top: str, oids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """Contents through one `git cat-file --batch`; a thread feeds it so neither pipe can fill up."""
    command = ["git", "-C", top, "cat-file", "--batch"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603
    assert process.stdin is not None and process.stdout is not None

    def feed(stdin: Any = process.stdin) -> None:
        with stdin:
            stdin.write(b"".join(oid.encode() + b"\n" for oid in oids))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        for _ in oids:
            oid, _kind, size = process.stdout.readline().split()
            data = process.stdout.read(int(size))
            process.stdout.read(1)  # the newline after each object
            yield oid.decode(), data
    finally:
        feeder.join()
        process.stdout.close()
        process.wait()


def introducing_commits(top: str, oids: set[str]) -> dict[str, list[tuple[str, str]]]:
    """For each blob, the (commit, path) pairs where a commit wrote it, oldest first.

    Merges are shown as combined diffs (`-c`), so a blob written only by a merge's conflict
    resolution is attributed to that merge, and a clean merge is not listed.
    """
    raw = _git(
        top, "log", "--all", "--root", "--raw", "-c", "--no-renames", "--no-abbrev", "-z", "--format=%x01%H"
    )
    found: dict[str, list[tuple[str, str]]] = {}
    parts = raw.split(b"\0")
    commit, i = "", 0
    while i < len(parts):
        part = parts[i].lstrip(b"\n")
        if part.startswith(b"\x01"):
            commit = part[1:].decode()
        elif part.startswith(b":"):
            parents = len(part) - len(part.lstrip(b":"))
            new_oid = part.lstrip(b":").split()[2 * parents + 1].decode()
            if new_oid in oids:
                found.setdefault(new_oid, []).append((commit, os.fsdecode(parts[i + 1])))
            i += 1  # the path
        i += 1
    return {oid: pairs[::-1] for oid, pairs in found.items()}


def scan_history(top: str, max_bytes: int, tally: Tally, scope: Sequence[str] = ()) -> list[Finding]:
    """Findings in every reachable blob, each with the commits that wrote it at its path.

    `scope` limits the findings to these repository paths (files or directories); empty: all.
    """
    candidates: dict[str, str] = {}
    for oid, size, path in reachable_blobs(top):
        if size > max_bytes:
            tally.large += 1
        else:
            candidates[oid] = path
    hits: dict[str, list[Hit]] = {}
    for oid, data in read_blobs(top, list(candidates)):
        if is_binary(data):
            tally.binary += 1
            continue
        tally.blobs += 1
        found = find_tokens(data, tally)
        if found:
            hits[oid] = found
    writers = introducing_commits(top, set(hits)) if hits else {}
    findings = []
    for oid, found in hits.items():
        by_path: dict[str, list[str]] = {}
        for commit, path in writers.get(oid) or [("", candidates[oid])]:
            by_path.setdefault(path, []).extend([commit] if commit else [])
        for path, commits in by_path.items():
            if scope and not any(path == s or path.startswith(s + "/") for s in scope):
                continue
            where = os.path.join(top, path)
            findings += [
                finding(where, hit, in_working_tree=False, commits=tuple(dict.fromkeys(commits)))
                for hit in found
            ]
    return findings


def history_scopes(paths: Iterable[str]) -> dict[str, list[str]]:
    """Each repository holding one of `paths`, with the repository paths to report (empty: all)."""
    scopes: dict[str, list[str]] = {}
    for path in paths:
        top = repository_of(path)
        if top is None:
            raise click.UsageError(
                f"{redact_text(path)} is not in a git repository (needed by --git-history)"
            )
        below = os.path.relpath(os.path.realpath(path), top).replace(os.sep, "/")
        if below == os.curdir:
            scopes[top] = []  # the whole repository
        elif top not in scopes or scopes[top]:
            scopes.setdefault(top, []).append(below)
    return scopes


def merge(working_tree: Iterable[Finding], history: Iterable[Finding]) -> list[Finding]:
    """One finding per place; a place both in the work tree and in history keeps the commits."""
    merged: dict[tuple[str, int, int, str], Finding] = {}
    for f in [*working_tree, *history]:
        key = (f.path, f.line, f.column, f.value)
        if key in merged:
            earlier = merged[key]
            f = replace(
                earlier,
                in_working_tree=earlier.in_working_tree or f.in_working_tree,
                commits=tuple(dict.fromkeys(earlier.commits + f.commits)),
            )
        merged[key] = f
    return sorted(merged.values(), key=lambda f: (f.path, f.line, f.column))


# Reporting leaks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reported:
    lookup_id: str
    outcome: str  # "revoked", "already inactive", "failed" (rarely: "revoked or already inactive")
    detail: str = ""

    @property
    def redacted(self) -> str:
        return redact(self.lookup_id)


def report_leaks(url: str, findings: Iterable[Finding]) -> list[Reported]:
    """Send each value found to the RFC 7009 intake, once; tell revoked from already inactive."""
    distinct = {f.value: f.lookup_id for f in findings}
    with Client(url) as anyone:
        anyone.http.headers["User-Agent"] = USER_AGENT
        return [report_leak(url, anyone, value, lookup_id) for value, lookup_id in distinct.items()]


def report_leak(url: str, anyone: Client, value: str, lookup_id: str) -> Reported:
    # The intake answers 200 either way, and only a service account may introspect, so the value
    # itself asks /auth/check before the report (active?) and after it (inactive now?). It asks for
    # PROBE_SCOPE: a token without that scope gets 403, which says "active" without being recorded
    # as a use, so the exposure query read after the leak does not list the scanner as a user.
    try:
        with Client(url, token=value) as holder:
            holder.http.headers["User-Agent"] = USER_AGENT
            before = holder.auth_check(PROBE_SCOPE).status
            send_report(anyone, value)
            after = holder.auth_check(PROBE_SCOPE).status
    except ApiError as error:
        return Reported(lookup_id, "failed", redact_text(f"the server refused the report: {error}"))
    except httpx.HTTPError as error:
        return Reported(lookup_id, "failed", redact_text(f"could not reach {url}: {error}"))
    if after != 401:
        return Reported(lookup_id, "failed", f"still accepted after the report (HTTP {after})")
    if before in (204, 403):
        return Reported(lookup_id, "revoked")
    if before == 401:
        return Reported(lookup_id, "already inactive")
    return Reported(lookup_id, "revoked or already inactive", f"the state before is unknown (HTTP {before})")


def send_report(anyone: Client, value: str) -> None:
    """POST /api/v1/revoke, waiting out the intake's rate limit (30 reports a minute per address)."""
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        try:
            anyone.report_leak(value)
            return
        except ApiError as error:
            if error.status != 429 or attempt == REPORT_ATTEMPTS:
                raise
            wait = retry_after(error)
        err.print(f"the leak intake asks to slow down; waiting {wait} s", markup=False, emoji=False)
        time.sleep(wait)


def retry_after(error: ApiError) -> int:
    header = error.headers.get("retry-after", "")
    return min(int(header), MAX_RETRY_AFTER) if header.isdigit() else DEFAULT_RETRY_AFTER


# Formats -----------------------------------------------------------------------------------


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "path": f.shown_path,
        "line": f.line,
        "column": f.column,
        "lookup_id": f.lookup_id,
        "token": f.redacted,
        "working_tree": f.in_working_tree,
        "commits": list(f.commits),
    }


def tally_json(tally: Tally, max_bytes: int) -> dict[str, Any]:
    return {
        "scanned": {"files": tally.files, "blobs": tally.blobs},
        "skipped": {"binary": tally.binary, "large": tally.large, "unreadable": tally.unreadable},
        "max_bytes": max_bytes,
        "look_alikes": tally.look_alikes,
    }


def reported_json(r: Reported) -> dict[str, Any]:
    return {"lookup_id": r.lookup_id, "token": r.redacted, "outcome": r.outcome, "detail": r.detail}


def as_json(
    findings: Sequence[Finding], tally: Tally, max_bytes: int, reported: Sequence[Reported] | None
) -> str:
    document: dict[str, Any] = {
        "findings": [finding_json(f) for f in findings],
        **tally_json(tally, max_bytes),
    }
    if reported is not None:
        document["report"] = [reported_json(r) for r in reported]
    return json.dumps(document, indent=2, ensure_ascii=False)


def artifact_location(shown_path: str) -> dict[str, str]:
    if os.path.isabs(shown_path):
        return {"uri": "file://" + quote(shown_path.replace(os.sep, "/"))}
    return {"uri": quote(shown_path.replace(os.sep, "/")), "uriBaseId": "%SRCROOT%"}


def as_sarif(
    findings: Sequence[Finding], tally: Tally, max_bytes: int, reported: Sequence[Reported] | None
) -> str:
    """SARIF 2.1.0, as GitHub code scanning and other viewers read it."""
    outcomes = {r.lookup_id: r.outcome for r in reported or ()}
    rule = {
        "id": RULE_ID,
        "name": "CommittedPersonalAccessToken",
        "shortDescription": {"text": "A tokenledger personal access token is committed"},
        "fullDescription": {
            "text": "A value of the tokenledger token format with a valid checksum: a real token, usable "
            "by anyone who can read this file or its history."
        },
        "help": {
            "text": "Revoke the token (tokenledger scan --report URL, or POST /api/v1/revoke), create a new "
            "one, keep it in the platform's secret store, and remove the value from the file."
        },
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "secret"], "precision": "very-high", "security-severity": "9.0"},
    }
    results = []
    for f in findings:
        where = "in the working tree" if f.in_working_tree else "in git history only"
        properties: dict[str, Any] = {
            "lookupId": f.lookup_id,
            "workingTree": f.in_working_tree,
            "commits": list(f.commits),
        }
        if f.lookup_id in outcomes:
            properties["report"] = outcomes[f.lookup_id]
        results.append(
            {
                "ruleId": RULE_ID,
                "ruleIndex": 0,
                "level": "error",
                "message": {"text": f"tokenledger token {f.redacted} (lookup id {f.lookup_id}) {where}."},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": artifact_location(f.shown_path),
                            "region": {
                                "startLine": f.line,
                                "startColumn": f.column,
                                "endColumn": f.column + token_format.VALUE_LENGTH,
                            },
                        }
                    }
                ],
                "partialFingerprints": {"lookupIdAndPath/v1": f"{f.lookup_id}:{f.shown_path}"},
                "properties": properties,
            }
        )
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "tokenledger scan", "rules": [rule]}},
                "columnKind": "unicodeCodePoints",
                "invocations": [{"executionSuccessful": True}],
                "results": results,
                "properties": tally_json(tally, max_bytes),
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)


def findings_table(findings: Sequence[Finding], with_history: bool) -> Table:
    table = Table()
    columns = ["file", "line", "lookup id", "token"] + (["where", "commits"] if with_history else [])
    for column in columns:
        table.add_column(column, overflow="fold")
    for f in findings:
        row = [f.shown_path, str(f.line), f.lookup_id, f.redacted]
        if with_history:
            places = ["working tree"] * f.in_working_tree + ["history"] * (
                bool(f.commits) or not f.in_working_tree
            )
            row += [", ".join(places), " ".join(c[:12] for c in f.commits) or "-"]
        table.add_row(*map(Text, row))  # Text: a path is shown as it is, never read as markup
    return table


def reported_table(reported: Sequence[Reported]) -> Table:
    table = Table(title="reported to the leak intake")
    for column in ("lookup id", "token", "outcome", "detail"):
        table.add_column(column, overflow="fold")
    for r in reported:
        table.add_row(*map(Text, (r.lookup_id, r.redacted, r.outcome, r.detail)))
    return table


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def summary(findings: Sequence[Finding], tally: Tally, max_bytes: int) -> str:
    values, places = len({f.value for f in findings}), len({f.path for f in findings})
    head = "no tokens found"
    if findings:
        head = f"found {_count(len(findings), 'token')} ({values} distinct) in {_count(places, 'file')}"
    return (
        f"{head}; scanned {_count(tally.files, 'file')} and {_count(tally.blobs, 'git blob')}; "
        f"skipped {tally.binary} binary, {tally.large} larger than {max_bytes} bytes, "
        f"{tally.unreadable} unreadable; "
        f"ignored {_count(tally.look_alikes, 'look-alike')} with a bad checksum"
    )


# Command -----------------------------------------------------------------------------------


@click.command(cls=RedactedErrors)
@click.argument("paths", nargs=-1, type=click.Path())  # checked below, without echoing a pasted value
@click.option(
    "--git-history", is_flag=True, help="Also scan every blob reachable from any ref of the repository."
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "sarif"]),
    default="table",
    show_default=True,
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Skip files and blobs larger than this.",
)
@click.option(
    "--report", "report_url", metavar="URL", help="Revoke every value found at this tokenledger server."
)
def scan(
    paths: tuple[str, ...], git_history: bool, output_format: str, max_bytes: int, report_url: str | None
) -> None:
    """Find tokenledger tokens in PATHs (default: .); exit 1 when any is found, 0 when clean.

    Only values with a valid checksum count. The output shows the lookup id, never a value.
    """
    if report_url is not None and not re.match(r"https?://[^/\s]+", report_url):
        raise click.BadParameter("give the server's http:// or https:// address", param_hint="--report")
    paths = paths or (os.curdir,)
    for path in paths:
        if not os.path.lexists(path):
            raise click.UsageError(f"no such file or directory: {redact_text(path)}")
    tally = Tally()
    history: list[Finding] = []
    if git_history:
        try:
            for top, scope in history_scopes(paths).items():
                history += scan_history(top, max_bytes, tally, scope)
        except GitError as error:
            fail(f"could not read the git history: {redact_text(str(error))}", code=2)
    findings = merge(scan_files(paths, max_bytes, tally), history)
    reported = report_leaks(report_url, findings) if report_url else None
    if output_format == "json":
        click.echo(as_json(findings, tally, max_bytes, reported))
    elif output_format == "sarif":
        click.echo(as_sarif(findings, tally, max_bytes, reported))
    else:
        if findings:
            out.print(findings_table(findings, git_history))
        if reported:
            out.print(reported_table(reported))
    err.print(summary(findings, tally, max_bytes), markup=False, emoji=False)
    failed = [r for r in reported or () if r.outcome == "failed"]
    if failed:
        fail(f"{len(failed)} of {len(reported or ())} values could not be revoked (see the report)", code=2)
    if findings:
        sys.exit(1)
