"""HTTP benchmark with a real load generator: wrk against real server processes, on loopback.

Measures, in one run, against a real `tokenledger serve` process (one worker on SQLite, two
workers on PostgreSQL) started with TOKENLEDGER_BENCH_ENDPOINTS=1:

1. hot path: warm `GET /api/v1/auth/check?scope=repo:read` with a random valid token per request
   (10,000 tokens; quick: 1,000), against `/bench/bare-fastapi` and `/bench/bare-starlette` of
   the same server: requests/s, p50/p99 latency, CPU per request, and the ratios;
2. invalid tokens (malformed, bad checksum, unknown lookup id, revoked, and a guessed secret past
   the failed-attempts limit): requests/s of the 401s, and the ratio to valid warm auth-checks
   (quick: SQLite only);
3. usage recording under a sustained load with TOKENLEDGER_USAGE_WINDOW_SECONDS of 1 and 5 on
   SQLite and 1 on PostgreSQL (quick: 1 on SQLite): `Used` events written per minute against
   the window's bound, and how stale the last-used time is just after the load stops;
4. a peer a user might pick instead: django-rest-knox (DRF token auth, SHA-512 hashed tokens)
   under gunicorn with one worker (sync, and gthread with 4 threads), same wrk load, same run.

The points of sections 1, 2 and 4 are interleaved: every repetition runs each of them once, in
an order that alternates between repetitions, and the median is reported, so that load from
other processes on the machine falls on all of them alike. The hot-path server writes its usage
every 60 s (the production default): a flush of 10,000 tokens' windows takes tens of seconds of
the server's CPU under load and costs the points it lands in up to a third of their throughput.
The per-repetition lines (CPU per request) show which points a flush fell on.

    .venv/bin/python -m bench.http [--quick] [--json PATH] [--backend sqlite|postgres|both]
                                   [--profile DIR]

Full mode: 10 s points x 3 repetitions, 45 s of usage load per window, about 15 minutes. Quick
mode: 3 s points x 1, 8 s of usage load, about 2 minutes; its figures are rough.

Needs wrk (`apt-get install wrk`, or `make bench-setup`). The peer is installed on first use
into its own virtual environment, bench/.venv-knox (pip install django djangorestframework
django-rest-knox gunicorn), never into the project's. PostgreSQL: a database `tl_bench_<random>` is created on
TOKENLEDGER_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres) and
dropped afterwards. Every wrk run is bounded (-d) and every server is stopped at the end.
Nothing here asserts a figure: it measures and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from application.hashing import Argon2Hasher, Argon2Parameters
from bench import inprocess
from bench.inprocess import Figure, code_fingerprint, ratio, write_results
from domain import token_format
from domain.account import Role
from domain.scopes import Scopes
from domain.token import RevokeReason, Token, TokenName, TokenNameClaim
from interface.settings import Settings
from interface.wiring import build
from projections import schema
from projections.database import Database

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TOKENLEDGER = Path(sys.executable).parent / "tokenledger"
PEER_DIR = BENCH / "peer_knox"
PEER_VENV = BENCH / ".venv-knox"
PEER_PACKAGES = ("django", "djangorestframework", "django-rest-knox", "gunicorn")
POSTGRES_URL_VARIABLE = "TOKENLEDGER_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres")
WORKERS = {"sqlite": 1, "postgres": 2}
# The warm path runs no argon2, so these cheap parameters do not change warm throughput; they
# only make creating the tokens and the first (cold) verification of each one fast.
CHEAP_ARGON2 = Argon2Parameters(memory_kib=64, time_cost=1, parallelism=1)
CHEAP_ENV = {
    "TOKENLEDGER_ARGON2_MEMORY_KIB": str(CHEAP_ARGON2.memory_kib),
    "TOKENLEDGER_ARGON2_TIME_COST": str(CHEAP_ARGON2.time_cost),
    "TOKENLEDGER_ARGON2_PARALLELISM": str(CHEAP_ARGON2.parallelism),
}
HOT_WINDOW_SECONDS = 60  # usage window of the hot-path server: the production default
AUTH_PATH = "/api/v1/auth/check?scope=repo:read"
OWNERS = 20
PEER_WARM_REQUESTS = 300
SAVE_CHUNK = 1000  # aggregates per ledger.save when preparing the tokens
FAILED_ATTEMPTS_LIMIT = 10  # the server's default; throttle bait is sent past it
SECTIONS = ("hot path", "invalid tokens", "usage", "peer", "noise")

perf = time.perf_counter
err = Console(stderr=True, highlight=False, soft_wrap=True)
STARTED = perf()


def say(message: str) -> None:
    err.print(f"[+{perf() - STARTED:6.1f}s] {message}", markup=False)


# Plan ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    tokens: int  # valid tokens, spread over OWNERS owners; every request picks one at random
    revoked: int
    bait: int  # tokens whose lookup ids get wrong-secret guesses (throttled after the limit)
    duration: int  # seconds of every wrk point
    reps: int  # repetitions of every point (interleaved, order alternating); median reported
    connections: int
    usage_runs: tuple[tuple[str, int], ...]  # (backend, usage window in seconds)
    usage_seconds: int  # sustained load per usage window
    invalid_backends: tuple[str, ...]
    warm_rounds_multi: int  # warm-up passes over all tokens when the server has several workers
    peer_tokens: int
    peer_bare: bool  # also measure the peer's bare Django endpoint


QUICK = Plan(
    "quick",
    tokens=1000,
    revoked=100,
    bait=50,
    duration=3,
    reps=1,
    connections=16,
    usage_runs=(("sqlite", 1),),
    usage_seconds=8,
    invalid_backends=("sqlite",),
    warm_rounds_multi=4,
    peer_tokens=1000,
    peer_bare=False,
)
FULL = Plan(
    "full",
    tokens=10_000,
    revoked=1000,
    bait=100,
    duration=10,
    reps=3,
    connections=16,
    usage_runs=(("sqlite", 1), ("sqlite", 5), ("postgres", 1)),
    usage_seconds=45,
    invalid_backends=("sqlite", "postgres"),
    warm_rounds_multi=4,
    peer_tokens=10_000,
    peer_bare=True,
)


# Results ---------------------------------------------------------------------------------


@dataclass
class Results(inprocess.Results):
    """The in-process results, with a title per server and the raw wrk points and usage runs."""

    title: str = ""
    points: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# Machine and process accounting ------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (workers), in seconds."""
    total = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def database_cpu_seconds(database: str | None) -> float:
    """CPU of the PostgreSQL server processes serving one database (their title names it)."""
    if database is None:
        return 0.0
    total = 0
    needle = f" {database} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and needle in title:
            fields = _stat_fields(int(entry.name))
            if fields:
                total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A server process on a free loopback port; its output goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        *,
        ready_path: str,
        ready_headers: dict[str, str] | None = None,
        cwd: Path | None = None,
        workers: int = 1,
    ) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = env
        self.cwd = cwd or workdir
        self.log = workdir / f"{name}-{self.port}.log"
        self.ready_path = ready_path
        self.ready_headers = ready_headers or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90.0) -> Proc:
        started = perf()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log.read_text()[-4000:]}")
            try:
                response = httpx.get(self.url + self.ready_path, headers=self.ready_headers, timeout=2)
                if response.status_code < 300 and self.all_workers_started():
                    say(f"{self.name} ready in {perf() - started:.1f}s")
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read_text()[-4000:]}")

    def all_workers_started(self) -> bool:
        """With several uvicorn workers, /readyz answers as soon as one of them serves: wait until
        every started worker process has finished its startup (uvicorn's log says so), so that
        the warm-up reaches all of them."""
        if self.workers == 1:
            return True
        text = self.log.read_text(errors="replace")
        started = text.count("Started server process")
        return started >= self.workers and text.count("Application startup complete") >= started

    def worker_restarts(self) -> int:
        """Workers uvicorn's supervisor replaced (a worker that missed its health-check ping)."""
        try:
            return self.log.read_text(errors="replace").count(" died")
        except OSError:
            return 0

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM (graceful: tokenledger flushes pending usage), then wait; returns the seconds taken."""
        if self.process is None:
            return 0.0
        start = perf()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop in {timeout:.0f}s: killing it")
                self.process.kill()
                self.process.wait()
        self.process = None
        return perf() - start


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any TOKENLEDGER_ setting the caller may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLEDGER_")}
    return env | extra


def tokenledger_server(url: str, workdir: Path, *, workers: int, window: int) -> Proc:
    env = clean_env(
        **CHEAP_ENV,
        TOKENLEDGER_DATABASE_URL=url,
        TOKENLEDGER_BENCH_ENDPOINTS="1",
        TOKENLEDGER_USAGE_WINDOW_SECONDS=str(window),
        TOKENLEDGER_FAILED_ATTEMPTS_LIMIT=str(FAILED_ATTEMPTS_LIMIT),
    )
    argv = [str(TOKENLEDGER), "serve", "--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers)]
    return Proc(
        f"tokenledger-w{workers}-u{window}", argv, env, workdir, ready_path="/readyz", workers=workers
    )


# wrk -------------------------------------------------------------------------------------

DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

LOAD_LUA = (
    r"""
-- bench.http load: every request carries a value picked at random from the file named by
-- the first argument, after the prefix given as the second ("Bearer ", "Token ").
local values = {}
local prefix = ""
function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then values[#values + 1] = line end
  end
  prefix = args[2] or ""
  math.randomseed(os.time())
end
function request()
  return wrk.format(nil, nil, { ["Authorization"] = prefix .. values[math.random(#values)] })
end
"""
    + DONE_LUA
)

WARM_LUA = (
    r"""
-- bench.http warm-up: the values of the file in order, round after round, until the number of
-- responses given as the third argument; then it says WARMDONE on stdout and bench.http stops
-- wrk with SIGINT (wrk then reports as at the end of its -d).
local values = {}
local prefix = ""
local limit = 0
local sent = 0
local received = 0
function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then values[#values + 1] = line end
  end
  prefix = args[2] or ""
  limit = tonumber(args[3])
end
function request()
  sent = sent + 1
  return wrk.format(nil, nil, { ["Authorization"] = prefix .. values[(sent - 1) % #values + 1] })
end
function response(status, headers, body)
  received = received + 1
  if received == limit then
    io.write("WARMDONE\n")
    io.stdout:flush()
  end
end
"""
    + DONE_LUA
)


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        err.print(
            "bench.http needs wrk, an HTTP load generator: install it with `apt-get install wrk` "
            "(Debian/Ubuntu) or `brew install wrk` (macOS).",
            markup=False,
        )
        sys.exit(2)
    return path


@dataclass(frozen=True, slots=True)
class Target:
    """One measured endpoint: a URL, a file of Authorization values and the status expected."""

    key: str
    label: str
    server: Proc
    path: str
    values: Path
    prefix: str
    expect: int  # 204 or 401
    database: str | None = None  # a PostgreSQL database whose server processes' CPU is counted too


class Wrk:
    def __init__(self, binary: str, workdir: Path, connections: int) -> None:
        self.binary = binary
        self.connections = connections
        self.load_script = workdir / "load.lua"
        self.warm_script = workdir / "warm.lua"
        self.load_script.write_text(LOAD_LUA)
        self.warm_script.write_text(WARM_LUA)
        self.version = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout.split("\n")[0]

    def _run(self, args: list[str], seconds: float) -> dict[str, Any]:
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
        match = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.MULTILINE)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        result: dict[str, Any] = json.loads(match.group(1))
        result["text"] = done.stdout
        return result

    def load(self, target: Target, seconds: int) -> dict[str, Any]:
        """One timed point: wrk -t1 -cN -dS --latency with a random value per request, and what
        the server, wrk and the rest of the machine spent on CPU meanwhile."""
        server_cpu = tree_cpu_seconds(target.server.pid)
        database_cpu = database_cpu_seconds(target.database)
        wrk_cpu = children_cpu_seconds()
        busy = machine_busy_seconds()
        load_before = os.getloadavg()[0]
        args = [
            self.binary,
            "-t1",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(self.load_script),
            target.server.url + target.path,
            "--",
            str(target.values),
            target.prefix,
        ]
        result = self._run(args, seconds)
        server_cpu = tree_cpu_seconds(target.server.pid) - server_cpu
        database_cpu = database_cpu_seconds(target.database) - database_cpu
        wrk_cpu = children_cpu_seconds() - wrk_cpu
        busy = machine_busy_seconds() - busy
        wall = result["duration_us"] / 1e6
        requests = result["requests"]
        socket_errors = result["connect"] + result["read"] + result["write"] + result["timeout"]
        bad = result["status"] if target.expect < 400 else requests - result["status"]
        if bad or requests == 0:
            raise RuntimeError(
                f"{target.key}: {bad} of {requests} responses did not have the expected status "
                f"{target.expect}:\n{result['text']}"
            )
        return {
            "key": target.key,
            "requests": requests,
            "seconds": wall,
            "rps": requests / wall,
            "p50_ms": result["p50_us"] / 1000,
            "p90_ms": result["p90_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
            "max_ms": result["max_us"] / 1000,
            "socket_errors": socket_errors,
            "server_cpu_s": server_cpu,
            "server_cpu_us_per_request": 1e6 * server_cpu / requests,
            "database_cpu_us_per_request": 1e6 * database_cpu / requests,
            "total_cpu_us_per_request": 1e6 * (server_cpu + database_cpu) / requests,
            "server_cores": server_cpu / wall,
            "database_cores": database_cpu / wall,
            "wrk_cores": wrk_cpu / wall,
            "other_cores": max(0.0, (busy - server_cpu - database_cpu - wrk_cpu) / wall),
            "load_1min": load_before,
        }

    def warm(
        self,
        server: Proc,
        path: str,
        values: Path,
        prefix: str,
        rounds: int,
        expect: int,
        *,
        limit: int | None = None,
        max_seconds: int = 180,
    ) -> int:
        """Send every value of the file `rounds` times, in order (or only the first `limit`
        responses); returns the responses counted. wrk runs with a long -d and is stopped with
        SIGINT as soon as the script has seen enough responses."""
        n = sum(1 for line in values.read_text().splitlines() if line)
        limit = limit or n * rounds
        started = perf()
        args = [
            self.binary,
            "-t1",
            f"-c{self.connections}",
            f"-d{max_seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(self.warm_script),
            server.url + path,
            "--",
            str(values),
            prefix,
            str(limit),
        ]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("WARMDONE"):
                process.send_signal(signal.SIGINT)
                break
        try:
            rest, errors = process.communicate(timeout=max_seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, errors = process.communicate()
        text = "".join(lines) + rest
        match = re.search(r"^WRKJSON (\{.*\})$", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"wrk warm-up failed ({process.returncode}):\n{text}\n{errors}")
        result = json.loads(match.group(1))
        # Requests still in flight at SIGINT may be counted as read errors: only statuses count.
        bad = result["status"] if expect < 400 else result["requests"] - result["status"]
        if bad:
            raise RuntimeError(
                f"warm-up of {values.name}: {bad} responses with another status than {expect}:\n{text}"
            )
        if result["requests"] < limit:
            raise RuntimeError(f"warm-up of {values.name}: {result['requests']} of {limit} responses")
        say(
            f"warmed {server.name} with {values.name}: {result['requests']:,} responses "
            f"in {perf() - started:.1f}s"
        )
        return int(result["requests"])


# Fixtures: tokens created through the real service before the server starts ---------------


@dataclass
class Fixtures:
    valid: Path
    malformed: Path
    bad_checksum: Path
    unknown: Path
    revoked: Path
    bait: Path
    seconds: float
    creates_per_s: float


def write_values(path: Path, values: list[str]) -> Path:
    path.write_text("\n".join(values) + "\n")
    path.chmod(0o600)
    return path


def prepare_tokens(url: str, plan: Plan, workdir: Path) -> Fixtures:
    """Accounts through the ledger, then tokens as real domain aggregates (Token.create with an
    argon2 hash as cheap as the server's, so its first verify needs no rehash, plus the name
    claim; revoked ones revoked with their claim released, as ledger.revoke_token does), saved
    through the ledger's event store in large batches and projected once. One ledger command
    per token would take minutes at 10,000 tokens; the server sees the same events either way."""
    start = perf()
    settings = Settings(database_url=url, usage_window_seconds=HOT_WINDOW_SECONDS, argon2=CHEAP_ARGON2)
    hasher = Argon2Hasher(CHEAP_ARGON2)
    with build(settings) as service:
        ledger = service.ledger
        ledger.register_account("bench-admin", Role.ADMIN, "bench-admin-password")
        owners = [f"owner{i:02d}" for i in range(OWNERS)]
        for owner in owners:
            ledger.register_account(owner, Role.MEMBER, f"{owner}-password")
        scopes = [Scopes.parse(s) for s in (["repo"], ["repo:read"], ["repo:read", "job"])]
        pending: list[Any] = []

        def flush(force: bool = False) -> None:
            if pending and (force or len(pending) >= SAVE_CHUNK):
                ledger.save(*pending)
                pending.clear()

        def create(prefix: str, i: int, *, revoke: bool = False) -> token_format.TokenValue:
            value = token_format.generate()
            owner = owners[i % OWNERS]
            name = TokenName.parse(f"{prefix} {i}")
            now = datetime.now(UTC)
            token = Token.create(
                owner=owner,
                name=name,
                scopes=scopes[i % len(scopes)],
                expires_at=None if i % 3 == 0 else now + timedelta(days=90),
                lookup_id=value.lookup_id,
                secret_hash=hasher.hash(value.secret),
                actor="bench-admin",
                now=now,
            )
            claim = TokenNameClaim.claim_new(owner, name, token.id, now)
            if revoke:
                token.revoke(reason=RevokeReason.ADMIN, actor="bench-admin", source="bench", now=now)
                claim.release(token.id, now)
            pending.extend((token, claim))
            flush()
            return value

        t0 = perf()
        valid = [create("bench", i).value for i in range(plan.tokens)]
        revoked = [create("revoked", i, revoke=True).value for i in range(plan.revoked)]
        # A real lookup id with a wrong secret (valid checksum): argon2 until the limit, then throttled.
        bait = [
            token_format.TokenValue(create("bait", i).lookup_id, token_format.generate().secret).value
            for i in range(plan.bait)
        ]
        flush(force=True)
        service.projections.catch_up()
        creates = perf() - t0
        # The read models answer for them, as for tokens made one command at a time.
        sample = token_format.parse(valid[-1])
        assert sample is not None
        credential = service.read_models.credentials.credential(sample.lookup_id)
        if credential is None or credential.revoked:
            raise RuntimeError("the read models lack the bench tokens after catch-up")
    total = plan.tokens + plan.revoked + plan.bait
    malformed = [
        *(f"ghp_{secrets.token_hex(18)}" for _ in range(300)),
        *(f"opat_{secrets.token_urlsafe(20)}" for _ in range(300)),
        *(secrets.token_urlsafe(48) for _ in range(400)),
    ]
    bad_checksum = [v[:-1] + ("0" if v[-1] != "0" else "1") for v in valid[:1000]]
    unknown = [token_format.generate().value for _ in range(1000)]
    return Fixtures(
        valid=write_values(workdir / "valid.txt", valid),
        malformed=write_values(workdir / "malformed.txt", malformed),
        bad_checksum=write_values(workdir / "bad_checksum.txt", bad_checksum),
        unknown=write_values(workdir / "unknown.txt", unknown),
        revoked=write_values(workdir / "revoked.txt", revoked),
        bait=write_values(workdir / "bait.txt", bait),
        seconds=perf() - start,
        creates_per_s=total / creates,
    )


@contextlib.contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'tokenledger.sqlite'}"
        return
    base = os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL
    parts = urlsplit(base)
    admin = parts._replace(scheme="postgresql").geturl()
    name = f"tl_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parts._replace(scheme="postgresql", path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Store:
    """Read-only queries on the read models, from the bench process, while the server runs."""

    def __init__(self, url: str) -> None:
        self.engine = Database.parse(url).engine(writer=False)

    def close(self) -> None:
        self.engine.dispose()

    def audit_position(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(schema.audit.c.position), 0))).scalar_one())

    def used_since(self, position: int) -> tuple[int, int]:
        """`Used` events after a position, and how many distinct flushes (event times) wrote them."""
        a = schema.audit
        query = select(func.count(), func.count(func.distinct(a.c.at))).where(
            a.c.event_type == "Used", a.c.position > position
        )
        with self.engine.connect() as conn:
            count, flushes = conn.execute(query).one()
        return int(count), int(flushes)

    def last_used(self) -> datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(schema.last_used.c.last_used_at))).scalar_one()
        if value is None:
            return None
        if isinstance(value, str):  # SQLite: naive UTC text (func.max skips the column type)
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# The peer: django-rest-knox under gunicorn ---------------------------------------------------


def ensure_peer_venv() -> Path | None:
    """bench/.venv-knox with the peer's packages; created on first use. None when impossible."""
    python = PEER_VENV / "bin" / "python"
    gunicorn = PEER_VENV / "bin" / "gunicorn"
    check = [str(python), "-c", "import django, rest_framework, knox, gunicorn"]
    if gunicorn.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    say(f"installing the peer into {PEER_VENV.relative_to(ROOT)}: pip install {' '.join(PEER_PACKAGES)}")
    try:
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PEER_PACKAGES],
            check=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as error:
        say(f"could not install the peer ({error}); its figures are left out")
        return None
    return python


@dataclass
class Peer:
    servers: dict[str, Proc]
    tokens: Path
    versions: dict[str, str]
    seconds: float


def start_peer(plan: Plan, workdir: Path) -> Peer | None:
    start = perf()
    python = ensure_peer_venv()
    if python is None:
        return None
    database = workdir / "knox.sqlite"
    env = clean_env(
        PEER_KNOX_DB=str(database), DJANGO_SETTINGS_MODULE="settings", PYTHONDONTWRITEBYTECODE="1"
    )
    tokens = workdir / "knox-tokens.txt"
    say(f"peer: {plan.peer_tokens:,} knox tokens (Django ORM, 2 per user)")
    subprocess.run(
        [str(python), str(PEER_DIR / "prepare.py"), str(tokens), str(plan.peer_tokens)],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    tokens.chmod(0o600)
    gunicorn = str(PEER_VENV / "bin" / "gunicorn")
    common = ["-b", "127.0.0.1:{port}", "-w", "1", "--log-level", "warning", "--chdir", str(PEER_DIR)]
    variants = {
        "sync": [*common, "-k", "sync"],
        "gthread": [*common, "-k", "gthread", "--threads", "4"],
    }
    servers = {}
    for name, args in variants.items():
        servers[name] = Proc(
            f"knox-{name}", [gunicorn, *args, "wsgi:application"], env, workdir, ready_path="/bare"
        ).start()
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "from importlib.metadata import version as v; import json; print(json.dumps({n: v(n) for n in "
            + repr(PEER_PACKAGES)
            + "}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Peer(servers, tokens, json.loads(versions), perf() - start)


# One backend ---------------------------------------------------------------------------------


def check_statuses(targets: list[Target]) -> None:
    """One request per target before any load: the status, and the 401/204 headers, are right."""
    for t in targets:
        value = t.values.read_text().split("\n", 1)[0]
        response = httpx.get(t.server.url + t.path, headers={"Authorization": t.prefix + value}, timeout=10)
        if response.status_code != t.expect:
            raise RuntimeError(f"{t.key}: expected {t.expect}, got {response.status_code}: {response.text}")
        if t.key == "auth" and "x-token-owner" not in response.headers:
            raise RuntimeError("auth-check answered 204 without X-Token-Owner")
        challenge = response.headers.get("www-authenticate", "")
        if t.expect == 401 and t.server.name.startswith("tokenledger") and "invalid_token" not in challenge:
            raise RuntimeError(f"{t.key}: 401 without WWW-Authenticate invalid_token")


def run_points(wrk: Wrk, targets: list[Target], plan: Plan, label: str) -> dict[str, list[dict[str, Any]]]:
    points: dict[str, list[dict[str, Any]]] = {t.key: [] for t in targets}
    for rep in range(plan.reps):
        order = targets if rep % 2 == 0 else list(reversed(targets))
        for target in order:
            point = wrk.load(target, plan.duration)
            point["rep"] = rep
            points[target.key].append(point)
            say(
                f"{label} rep {rep + 1}/{plan.reps} {target.label}: {point['rps']:,.0f} req/s, "
                f"p50 {point['p50_ms']:.2f} ms, p99 {point['p99_ms']:.2f} ms, "
                f"{point['total_cpu_us_per_request']:,.0f} us CPU/req, "
                f"other processes {point['other_cores']:.2f} cores"
            )
    return points


def summarise(points: list[dict[str, Any]]) -> dict[str, float | None]:
    return {
        k: median([p[k] for p in points])
        for k in (
            "rps",
            "p50_ms",
            "p99_ms",
            "server_cpu_us_per_request",
            "database_cpu_us_per_request",
            "total_cpu_us_per_request",
            "other_cores",
        )
    }


INVALID = (
    ("malformed", "malformed (not token-shaped)", "malformed"),
    ("bad_checksum", "bad checksum", "bad_checksum"),
    ("unknown", "unknown lookup id", "unknown"),
    ("revoked", "revoked", "revoked"),
    ("throttled", "wrong secret, throttled (past the limit)", "bait"),
)


def run_backend(
    backend: str, plan: Plan, wrk: Wrk, workdir: Path, peer_wanted: bool, profile: Path | None
) -> tuple[Results, Peer | None]:
    t0 = perf()
    workers = WORKERS[backend]
    results = Results(backend, title=f"{backend} ({workers} worker{'s' if workers > 1 else ''})")
    results.info["load_average_1min_before"] = round(os.getloadavg()[0], 2)
    peer: Peer | None = None
    with fresh_database(backend, workdir) as url:
        results.info["database"] = "SQLite file (WAL)" if backend == "sqlite" else url.rsplit("/", 1)[-1]
        total = plan.tokens + plan.revoked + plan.bait
        say(f"{backend}: creating {total:,} tokens (domain aggregates through the ledger, cheap argon2)")
        fixtures = prepare_tokens(url, plan, workdir)
        say(f"{backend}: tokens ready in {fixtures.seconds:.1f}s ({fixtures.creates_per_s:,.0f} creates/s)")
        results.info["tokens"] = {
            "valid": plan.tokens,
            "revoked": plan.revoked,
            "bait": plan.bait,
            "creates_per_s": round(fixtures.creates_per_s, 1),
        }
        store = Store(url)
        server = tokenledger_server(url, workdir, workers=workers, window=HOT_WINDOW_SECONDS).start()
        try:
            if peer_wanted:
                peer = start_peer(plan, workdir)
            database = None if backend == "sqlite" else url.rsplit("/", 1)[-1]

            def ours(key: str, label: str, path: str, values: Path, expect: int) -> Target:
                return Target(key, label, server, path, values, "Bearer ", expect, database)

            valid = ours("auth", "auth-check (valid, warm)", AUTH_PATH, fixtures.valid, 204)
            targets = [
                valid,
                ours("bare_fastapi", "bare FastAPI", "/bench/bare-fastapi", fixtures.valid, 204),
                ours("bare_starlette", "bare Starlette", "/bench/bare-starlette", fixtures.valid, 204),
            ]
            if backend in plan.invalid_backends:
                targets += [
                    ours(key, label, AUTH_PATH, getattr(fixtures, source), 401)
                    for key, label, source in INVALID
                ]
            if peer is not None:
                for name, proc in peer.servers.items():
                    targets.append(
                        Target(f"knox_{name}", f"knox ({name})", proc, "/check", peer.tokens, "Token ", 204)
                    )
                for name, proc in peer.servers.items() if plan.peer_bare else ():
                    targets.append(
                        Target(
                            f"django_bare_{name}",
                            f"bare Django ({name})",
                            proc,
                            "/bare",
                            peer.tokens,
                            "Token ",
                            204,
                        )
                    )
            check_statuses(targets)
            rounds = 1 if workers == 1 else plan.warm_rounds_multi
            say(f"{backend}: warming {plan.tokens:,} tokens, {rounds} pass(es) (each worker caches its own)")
            wrk.warm(server, AUTH_PATH, fixtures.valid, "Bearer ", rounds, 204)
            if any(t.key == "throttled" for t in targets):
                wrk.warm(
                    server, AUTH_PATH, fixtures.bait, "Bearer ", (FAILED_ATTEMPTS_LIMIT + 2) * rounds, 401
                )
            if peer is not None:
                for proc in peer.servers.values():
                    # No cache to fill: a second of load opens its database connection and pages.
                    wrk.warm(proc, "/check", peer.tokens, "Token ", 1, 204, limit=PEER_WARM_REQUESTS)
            points = run_points(wrk, targets, plan, backend)
            if profile is not None:
                profile_server(server, wrk, [valid, targets[1]], plan, profile, backend, results)
        finally:
            results.info["hot_server_worker_restarts"] = server.worker_restarts()
            results.info["hot_server_stop_s"] = round(server.stop(), 2)
            if peer is not None:
                for proc in peer.servers.values():
                    proc.stop()
        for target in targets:
            results.points += [{"label": target.label, **p} for p in points[target.key]]
        hot_path_figures(results, targets, points, peer)
        results.add(
            "worker_restarts",
            "noise",
            "server workers uvicorn replaced (missed health-check ping)",
            "",
            results.info["hot_server_worker_restarts"],
        )
        for usage_backend, window in plan.usage_runs:
            if usage_backend == backend:
                usage_run(results, url, store, wrk, fixtures, plan, workdir, workers, window)
        store.close()
    results.seconds = perf() - t0
    results.info["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    return results, peer


def hot_path_figures(
    r: Results, targets: list[Target], points: dict[str, list[dict[str, Any]]], peer: Peer | None
) -> None:
    s = {t.key: summarise(points[t.key]) for t in targets}
    auth = s["auth"]
    section = "hot path"
    for key, label in (
        ("auth", "auth-check, valid warm token"),
        ("bare_fastapi", "bare FastAPI endpoint"),
        ("bare_starlette", "bare Starlette endpoint"),
    ):
        r.add(f"{key}_rps", section, label, "req/s", s[key]["rps"])
        r.add(f"{key}_p50_ms", section, f"{label}: p50", "ms", s[key]["p50_ms"])
        r.add(f"{key}_p99_ms", section, f"{label}: p99", "ms", s[key]["p99_ms"])
        r.add(
            f"{key}_cpu_us",
            section,
            f"{label}: CPU per request",
            "us",
            s[key]["total_cpu_us_per_request"],
        )
        if s[key]["database_cpu_us_per_request"]:
            r.add(
                f"{key}_db_cpu_us",
                section,
                f"{label}: of which PostgreSQL server",
                "us",
                s[key]["database_cpu_us_per_request"],
            )
    for key, label in (("bare_fastapi", "bare FastAPI"), ("bare_starlette", "bare Starlette")):
        r.add(
            f"auth_over_{key}",
            section,
            f"auth-check / {label} (req/s)",
            "x",
            ratio(auth["rps"], s[key]["rps"]),
        )
        r.add(
            f"auth_over_{key}_cpu",
            section,
            f"auth-check / {label} (by CPU per request)",
            "x",
            ratio(s[key]["total_cpu_us_per_request"], auth["total_cpu_us_per_request"]),
        )
    section = "invalid tokens"
    for key, label, _source in INVALID:
        if key not in s:
            continue
        r.add(f"{key}_rps", section, f"401 {label}", "req/s", s[key]["rps"])
        r.add(f"{key}_over_valid", section, f"401 {label} / valid", "x", ratio(s[key]["rps"], auth["rps"]))
        r.add(
            f"{key}_cpu_us",
            section,
            f"401 {label}: CPU per request",
            "us",
            s[key]["total_cpu_us_per_request"],
        )
        r.add(
            f"{key}_over_valid_cpu",
            section,
            f"401 {label} / valid (by CPU per request)",
            "x",
            ratio(auth["total_cpu_us_per_request"], s[key]["total_cpu_us_per_request"]),
        )
    if peer is not None:
        section = "peer"
        for name in peer.servers:
            r.add(
                f"knox_{name}_rps",
                section,
                f"knox, gunicorn {name}, 1 worker",
                "req/s",
                s[f"knox_{name}"]["rps"],
            )
            r.add(
                f"knox_{name}_p50_ms",
                section,
                f"knox, gunicorn {name}: p50",
                "ms",
                s[f"knox_{name}"]["p50_ms"],
            )
            r.add(
                f"knox_{name}_p99_ms",
                section,
                f"knox, gunicorn {name}: p99",
                "ms",
                s[f"knox_{name}"]["p99_ms"],
            )
            r.add(
                f"knox_{name}_cpu_us",
                section,
                f"knox, gunicorn {name}: CPU per request",
                "us",
                s[f"knox_{name}"]["total_cpu_us_per_request"],
            )
            if f"django_bare_{name}" in s:
                r.add(
                    f"django_bare_{name}_rps",
                    section,
                    f"bare Django view, gunicorn {name}",
                    "req/s",
                    s[f"django_bare_{name}"]["rps"],
                )
        best = max((s[f"knox_{n}"]["rps"] or 0.0) for n in peer.servers)
        r.add("knox_best_rps", section, "knox, best of the two", "req/s", best)
        r.add(
            "auth_over_knox", section, "tokenledger auth-check / knox (best)", "x", ratio(auth["rps"], best)
        )
        cheapest = min((s[f"knox_{n}"]["total_cpu_us_per_request"] or math.inf) for n in peer.servers)
        r.add(
            "auth_over_knox_cpu",
            section,
            "tokenledger auth-check / knox (by CPU per request, cheapest variant)",
            "x",
            ratio(cheapest, auth["total_cpu_us_per_request"]),
        )
    others = [p["other_cores"] for ps in points.values() for p in ps]
    r.add(
        "other_cores_median", "noise", "other processes' CPU during points, median", "cores", median(others)
    )
    r.add(
        "other_cores_max",
        "noise",
        "other processes' CPU during points, max",
        "cores",
        max(others, default=None),
    )
    loads = [p["load_1min"] for ps in points.values() for p in ps]
    r.add("load_max", "noise", "load average (1 min) during points, max", "", max(loads, default=None))


def usage_run(
    r: Results,
    url: str,
    store: Store,
    wrk: Wrk,
    fixtures: Fixtures,
    plan: Plan,
    workdir: Path,
    workers: int,
    window: int,
) -> None:
    """A server with TOKENLEDGER_USAGE_WINDOW_SECONDS=window under a sustained auth-check load."""
    label = f"usage window {window}s"
    server = tokenledger_server(url, workdir, workers=workers, window=window).start()
    try:
        rounds = 1 if workers == 1 else plan.warm_rounds_multi
        wrk.warm(server, AUTH_PATH, fixtures.valid, "Bearer ", rounds, 204)
        time.sleep(window + 1.0)  # the warm-up's uses are flushed before the count starts
        # A flush of the warm-up window may still be running: wait until the count is still.
        position = store.audit_position()
        for _ in range(60):
            time.sleep(0.5)
            now_position = store.audit_position()
            if now_position == position:
                break
            position = now_position
        say(f"{r.backend}: {label}: sustained load for {plan.usage_seconds}s")
        database = None if store.engine.dialect.name == "sqlite" else url.rsplit("/", 1)[-1]
        target = Target("usage", label, server, AUTH_PATH, fixtures.valid, "Bearer ", 204, database)
        point = wrk.load(target, plan.usage_seconds)
        stopped = datetime.now(UTC)
        last = store.last_used()
        written, flushes = store.used_since(position)
        staleness = (stopped - last).total_seconds() if last else None
    finally:
        shutdown = server.stop()
    total, _ = store.used_since(position)
    n = plan.tokens
    per_worker_rate = point["rps"] / workers
    distinct_per_window = n * (1 - math.exp(-per_worker_rate * window / n))
    bound_per_min = workers * (60 / window) * distinct_per_window
    per_min = written / point["seconds"] * 60
    key = f"usage_w{window}"
    s = "usage"
    r.add(f"{key}_rps", s, f"window {window}s: auth-check under load", "req/s", point["rps"])
    r.add(
        f"{key}_over_hot",
        s,
        f"window {window}s: req/s / hot-path auth-check",
        "x",
        ratio(point["rps"], r.value("auth_rps")),
    )
    r.add(
        f"{key}_cpu_us",
        s,
        f"window {window}s: CPU per request",
        "us",
        point["total_cpu_us_per_request"],
    )
    r.add(
        f"{key}_events_per_min", s, f"window {window}s: Used events written per minute", "events/min", per_min
    )
    # What writing them cost the server: CPU beyond the hot path's per-request cost, per event.
    hot_cpu = r.value("auth_cpu_us")
    extra = None
    if hot_cpu is not None and written:
        extra = (point["total_cpu_us_per_request"] - hot_cpu) * point["requests"] / written / 1000
    r.add(f"{key}_cpu_ms_per_event", s, f"window {window}s: CPU per Used event written", "ms", extra)
    r.add(
        f"{key}_bound_per_min",
        s,
        f"window {window}s: at most (one per token used, per window, per worker)",
        "events/min",
        bound_per_min,
    )
    r.add(f"{key}_of_bound", s, f"window {window}s: written / at most", "%", 100 * per_min / bound_per_min)
    r.add(
        f"{key}_flush_interval_s",
        s,
        f"window {window}s: seconds between flushes (per worker)",
        "s",
        point["seconds"] * workers / flushes if flushes else None,
    )
    r.add(f"{key}_staleness_s", s, f"window {window}s: last-used staleness at load stop", "s", staleness)
    r.add(
        f"{key}_shutdown_events",
        s,
        f"window {window}s: Used events flushed by shutdown",
        "events",
        total - written,
    )
    r.add(f"{key}_shutdown_s", s, f"window {window}s: graceful shutdown", "s", shutdown)
    r.usage.append(
        {
            "window_s": window,
            "workers": workers,
            "load": point,
            "used_events_during_load": written,
            "flushes_during_load": flushes,
            "used_events_after_shutdown": total,
            "last_used_max": last.isoformat() if last else None,
            "stopped_at": stopped.isoformat(),
            "bound_per_min": bound_per_min,
        }
    )
    say(
        f"{r.backend}: {label}: {point['rps']:,.0f} req/s, {written:,} Used events in {flushes} flushes "
        f"({per_min:,.0f}/min, at most {bound_per_min:,.0f}/min), staleness {fmt(staleness, 's')}s, "
        f"shutdown {shutdown:.1f}s wrote {total - written:,}"
    )


# Profiling (optional: --profile DIR, needs py-spy) -------------------------------------------


def profile_server(
    server: Proc, wrk: Wrk, targets: list[Target], plan: Plan, directory: Path, backend: str, results: Results
) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        say("--profile: py-spy not found (`.venv/bin/pip install py-spy`); skipped")
        return
    directory.mkdir(parents=True, exist_ok=True)
    seconds = max(plan.duration, 8)
    for target in targets:
        raw = directory / f"{backend}-{target.key}.txt"
        say(f"profiling {target.label} with py-spy for {seconds}s -> {raw}")
        spy_process = subprocess.Popen(
            [
                *(spy, "record", "--pid", str(server.pid), "--subprocesses", "--nonblocking"),
                *("--rate", "500", "--duration", str(seconds + 2), "--format", "raw", "--output", str(raw)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        wrk.load(target, seconds)
        try:
            spy_process.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            spy_process.kill()
            spy_process.wait()
        if raw.exists():
            results.info.setdefault("profiles", {})[target.key] = summarise_profile(raw)


def _area(frame: str) -> str:
    match = re.search(r"\((.*):\d+\)$", frame)
    path = match.group(1) if match else frame
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for package in ("application", "domain", "projections", "interface"):
        if f"/{package}/" in path or path.startswith(f"{package}/"):
            return "tokenledger " + path[path.index(package) :]
    if "/lib/python3" in path:
        return "stdlib " + path.rsplit("/", 1)[-1]
    return path


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self time by area (package, or our file) and inclusive time of the busiest functions."""
    self_by_area: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_by_area[_area(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "self_by_area_pct": {k: round(100 * v / total, 1) for k, v in self_by_area.most_common(top)},
        "inclusive_pct": {k: round(100 * v / total, 1) for k, v in inclusive.most_common(top * 2)},
        "raw": str(raw),
    }


# Reporting -----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"
    if unit == "%":
        return f"{value:.0f}%"
    if unit in ("ms", "s", "cores"):
        return f"{value:,.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def print_table(results: list[Results], plan: Plan, console: Console) -> None:
    table = Table(
        title=f"tokenledger HTTP benchmark ({plan.mode}: wrk -t1 -c{plan.connections} -d{plan.duration}s "
        f"x {plan.reps}, median)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("section")
    table.add_column("figure")
    table.add_column("unit")
    for r in results:
        table.add_column(r.title, justify="right")
    keys: list[Figure] = []
    seen = set()
    for r in results:
        for f in r.figures:
            if f.key not in seen:
                seen.add(f.key)
                keys.append(f)
    order = {name: i for i, name in enumerate(SECTIONS)}
    previous = None
    for figure in sorted(keys, key=lambda f: order.get(f.section, len(order))):
        section = figure.section if figure.section != previous else ""
        if section and previous is not None:
            table.add_section()
        previous = figure.section
        cells = [fmt(r.value(figure.key), figure.unit) for r in results]
        table.add_row(section, figure.label, figure.unit, *cells)
    table.add_section()
    table.add_row("run", "wall time of this backend", "s", *[f"{r.seconds:,.0f}" for r in results])
    console.print(table)


def targets_summary(results: list[Results]) -> list[str]:
    """The issue's targets, reported (never asserted): by req/s, and by CPU per request."""
    lines = []

    def line(r: Results, what: str, rps: float | None, cpu: float | None, target: float) -> None:
        if rps is None:
            return
        marks = [f"{rps:.2f}x by req/s ({'met' if rps >= target else 'MISSED'})"]
        if cpu is not None:
            marks.append(f"{cpu:.2f}x by CPU per request ({'met' if cpu >= target else 'MISSED'})")
        lines.append(f"{r.title}: {what} >= {target:g}x: " + ", ".join(marks))

    for r in results:
        line(
            r,
            "warm auth-check / bare FastAPI",
            r.value("auth_over_bare_fastapi"),
            r.value("auth_over_bare_fastapi_cpu"),
            1.0,
        )
        for key, label, _source in INVALID:
            line(
                r, f"401 {label} / valid", r.value(f"{key}_over_valid"), r.value(f"{key}_over_valid_cpu"), 1.0
            )
        line(r, "auth-check / knox", r.value("auth_over_knox"), r.value("auth_over_knox_cpu"), 10.0)
    return lines


def print_notes(results: list[Results], peer: Peer | None, plan: Plan, console: Console) -> None:
    console.print(
        "Notes: argon2 of the servers is cheap (64 KiB, t=1): the warm path runs no argon2, so this does not "
        "change warm throughput; it only makes creating the tokens and the first verification of each fast. "
        f"Hot-path servers run the default usage window ({HOT_WINDOW_SECONDS}s); a window's flush lands in "
        "whichever point runs then. 'CPU per request' is the CPU time of the server's process tree (plus, on "
        "PostgreSQL, of the database server processes serving the bench database) / requests: less sensitive "
        "to other processes than req/s. 'other processes' = the machine's busy CPU minus the server's, the "
        "database's and wrk's during the points (2 CPUs in all).",
        markup=False,
    )
    if peer is not None:
        versions = ", ".join(f"{k} {v}" for k, v in peer.versions.items())
        console.print(
            f"Peer: {versions}; SQLite; DEBUG off, no middleware, persistent DB connections; 1 gunicorn "
            "worker (as tokenledger's 1 worker): sync (gunicorn's default; closes the connection after every "
            "response, so wrk reconnects) and gthread with 4 threads (keeps connections alive). knox header: "
            "`Authorization: Token <value>`.",
            markup=False,
        )
    for line in targets_summary(results):
        console.print("Target (reported, not asserted): " + line, markup=False)
    for r in results:
        for name, prof in r.info.get("profiles", {}).items():
            console.print(
                f"Profile {r.backend} {name} ({prof['samples']} samples), self time by area:", markup=False
            )
            for area, pct in list(prof["self_by_area_pct"].items())[:12]:
                console.print(f"    {pct:5.1f}%  {area}", markup=False)


def metadata(plan: Plan, wrk: Wrk, results: list[Results], peer: Peer | None, total: float) -> dict[str, Any]:
    from importlib import metadata as importlib_metadata

    def version(name: str) -> str:
        try:
            return importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            return "?"

    return {
        "mode": plan.mode,
        "plan": asdict(plan),
        "wrk": {"version": wrk.version, "threads": 1, "connections": plan.connections},
        "argon2_servers": asdict(CHEAP_ARGON2),
        "hot_path_usage_window_s": HOT_WINDOW_SECONDS,
        "workers": WORKERS,
        "python": platform.python_version(),
        "packages": {
            n: version(n) for n in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "eventsourcing")
        },
        "peer": None
        if peer is None
        else {"packages": peer.versions, "setup_seconds": round(peer.seconds, 1)},
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_fingerprint(),
        "total_seconds": round(total, 1),
        "backends": {
            r.backend: {"title": r.title, "seconds": round(r.seconds, 1), **r.info} for r in results
        },
        "targets_reported_not_asserted": targets_summary(results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="1,000 tokens, 5 s points: under 3 minutes")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    parser.add_argument("--no-peer", action="store_true", help="leave out django-rest-knox")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also record the server with py-spy (auth-check, bare FastAPI)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    binary = require_wrk()
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    results: list[Results] = []
    peer: Peer | None = None
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tl_bench_http_") as tmp:
        for i, backend in enumerate(backends):
            workdir = Path(tmp) / backend
            workdir.mkdir()
            wrk = Wrk(binary, workdir, plan.connections)
            try:
                r, p = run_backend(backend, plan, wrk, workdir, i == 0 and not args.no_peer, args.profile)
            except psycopg.OperationalError as error:
                skipped[backend] = f"cannot reach PostgreSQL: {error}".strip()
                say(f"{backend}: skipped ({skipped[backend]})")
                continue
            results.append(r)
            peer = peer or p
    total = perf() - STARTED
    if not results:
        err.print("nothing was measured", markup=False)
        return 1
    console = Console(width=max(130, Console().width), highlight=False)
    print_table(results, plan, console)
    print_notes(results, peer, plan, console)
    for backend, reason in skipped.items():
        console.print(f"{backend}: skipped ({reason})", markup=False)
    console.print(f"total wall time {total:,.1f}s ({plan.mode} mode, {os.cpu_count()} CPUs)")
    if args.json:
        meta = metadata(plan, wrk, results, peer, total)
        meta["skipped"] = skipped
        points = {r.backend: r.points for r in results}
        usage = {r.backend: r.usage for r in results}
        write_results(args.json, meta, results, console, points=points, usage=usage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
