"""In-process benchmark of the real service: commands, verification, read-your-writes, rebuild.

Builds the service through the composition root (`interface.wiring.build`) on a fresh SQLite
file and/or a fresh PostgreSQL database, and prints measured figures and ratios:

1. create / regenerate / revoke per second with the production argon2 parameters, and the share
   of each command's time spent in argon2 (the hasher is wrapped with a timer in the same run);
2. warm verifications (value verified before in this process) against cold ones (fresh
   process-local cache, so argon2 runs);
3. rejections (malformed, bad checksum, unknown lookup id, revoked, throttled) against warm
   verification;
4. read-your-writes: what `wait_for(position)` adds after each command's save, and revoke latency;
5. projection catch-up and rebuild over a large log, against the floor of inserting as many
   audit-like rows with one plain `executemany` in one transaction on the same database.

    .venv/bin/python -m bench.inprocess [--backend sqlite|postgres|both] [--quick] [--json PATH]

PostgreSQL: TOKENLEDGER_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) is
used to create a database `tl_bench_<random>`, dropped afterwards. Timings are medians of several
repetitions where a repetition is cheap; the log-building and rebuild section runs once.
Nothing here asserts a timing: it measures and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import Column, Index, MetaData
from sqlalchemy import Table as SqlTable

from application.hashing import Argon2Hasher, Argon2Parameters
from application.ledger import Actor
from application.verification import Outcome, VerifiedCache
from domain import token_format
from domain.account import Account, Role
from domain.scopes import Scopes
from domain.token import RevokeReason, Token, TokenName, TokenNameClaim
from domain.usage import UsageSummary
from interface.settings import Settings
from interface.wiring import Service, build
from projections import schema
from tests.support import CHEAP_ARGON2

POSTGRES_URL_VARIABLE = "TOKENLEDGER_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgres")
SECTIONS = ("commands", "verification", "rejection", "read your writes", "projections")

perf = time.perf_counter
err = Console(stderr=True, highlight=False, soft_wrap=True)


# Plan ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    reps: int  # repetitions of every cheap measurement; the median is reported
    commands_per_rep: int  # creates and regenerates (production argon2) per repetition
    revokes_per_rep: int
    cold_per_rep: int  # cold verifications (production argon2) per repetition
    calls_per_rep: int  # warm verifications and rejections per repetition
    log_events: int  # events in the log for the rebuild section
    used_per_token: int  # usage windows per token in that log (interleaved across tokens)
    load_chunk: int  # events per ledger.save while building that log
    catch_up: bool  # also time one catch-up of all projections over that log (before the rebuilds)


QUICK = Plan(
    "quick",
    reps=3,
    commands_per_rep=5,
    revokes_per_rep=50,
    cold_per_rep=5,
    calls_per_rep=1000,
    log_events=20_000,
    used_per_token=46,
    load_chunk=5000,
    catch_up=False,
)
FULL = Plan(
    "full",
    reps=5,
    commands_per_rep=20,
    revokes_per_rep=300,
    cold_per_rep=20,
    calls_per_rep=10_000,
    log_events=1_000_000,
    used_per_token=46,
    load_chunk=10_000,
    catch_up=True,
)


# Results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    section: str
    label: str
    unit: str
    value: float | None


@dataclass
class Results:
    backend: str
    figures: list[Figure] = field(default_factory=list)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, section: str, label: str, unit: str, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):  # NaN: nothing was measured
            value = None
        self.figures.append(Figure(key, section, label, unit, value))
        return value

    def value(self, key: str) -> float | None:
        return next((f.value for f in self.figures if f.key == key), None)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def write_results(
    path: Path, meta: dict[str, Any], results: list[Results], console: Console, **extra: Any
) -> None:
    """The JSON file of a full run: its metadata, every backend's figures, and `extra` sections."""
    payload = {
        "meta": meta,
        "figures": {
            r.backend: {f.key: {"value": f.value, "unit": f.unit, "label": f.label} for f in r.figures}
            for r in results
        },
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {path}")


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# Instruments -----------------------------------------------------------------------------


class TimingHasher:
    """Wraps the real hasher and sums the time spent in argon2 (hash and verify)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def hash(self, secret: str) -> str:
        start = perf()
        try:
            return self.inner.hash(secret)
        finally:
            self.seconds += perf() - start
            self.calls += 1

    def verify(self, secret_hash: str, secret: str) -> bool:
        start = perf()
        try:
            return self.inner.verify(secret_hash, secret)
        finally:
            self.seconds += perf() - start
            self.calls += 1

    def needs_rehash(self, secret_hash: str) -> bool:
        return self.inner.needs_rehash(secret_hash)


class Probe:
    """Times each command's `save` and the `wait_for` that follows it (read your writes)."""

    def __init__(self, service: Service) -> None:
        self.runner = service.projections
        self.ledger = service.ledger
        self.raw_save = service.ledger.save
        self.saves: list[float] = []
        self.waits: list[float] = []
        self.ledger.save = self._save  # type: ignore[method-assign]
        self.ledger.sync = self  # the ledger's ReadModelSync port

    def reset(self) -> None:
        self.saves = []
        self.waits = []

    def _save(self, *objs: Any, **kwargs: Any) -> Any:
        start = perf()
        try:
            return self.raw_save(*objs, **kwargs)
        finally:
            self.saves.append(perf() - start)

    def wait_for(self, position: int) -> None:
        start = perf()
        try:
            self.runner.wait_for(position)
        finally:
            self.waits.append(perf() - start)


# Databases -------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tl_bench_") as directory:
            yield f"sqlite:///{Path(directory) / 'tokenledger.sqlite'}"
        return
    base = os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL
    parts = urlsplit(base)
    admin = parts._replace(scheme="postgresql").geturl()
    name = f"tl_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def say(backend: str, message: str, started: float) -> None:
    err.print(f"[{backend} +{perf() - started:6.1f}s] {message}", markup=False)


# The benchmark ---------------------------------------------------------------------------


class Bench:
    def __init__(self, backend: str, plan: Plan, service: Service, started: float) -> None:
        self.backend = backend
        self.plan = plan
        self.service = service
        self.ledger = service.ledger
        self.started = started
        self.results = Results(backend)
        self.hasher = TimingHasher(self.ledger.hasher)
        self.ledger.hasher = self.hasher  # type: ignore[assignment]
        self.ledger.verifier.hasher = self.hasher  # type: ignore[assignment]
        self.probe = Probe(service)
        self.actor = Actor(username="bench", role=Role.MEMBER)
        self.values: list[str] = []  # live token values hashed with production parameters

    def log(self, message: str) -> None:
        say(self.backend, message, self.started)

    def run(self) -> Results:
        self.ledger.register_account("bench", Role.MEMBER, "bench-password-1")
        self.commands()
        self.verification()
        self.revocation()
        self.rebuild()
        return self.results

    # 1. Commands with production argon2 ------------------------------------------------

    def _timed_commands(
        self, action: Callable[[int, int], Any]
    ) -> tuple[float, float, list[float], list[float]]:
        """Run `action(rep, i)` reps x n times; median rate, median argon2 share, save and wait samples."""
        rates, shares, saves, waits = [], [], [], []
        n = self.plan.commands_per_rep
        for rep in range(self.plan.reps):
            self.hasher.reset()
            self.probe.reset()
            start = perf()
            for i in range(n):
                action(rep, i)
            elapsed = perf() - start
            rates.append(n / elapsed)
            shares.append(self.hasher.seconds / elapsed)
            saves += self.probe.saves
            waits += self.probe.waits
        return median(rates), median(shares), saves, waits

    def commands(self) -> None:
        r = self.results
        p = self.ledger.hasher.inner.parameters
        self.log(f"creates and regenerates, argon2 {p.memory_kib} KiB t={p.time_cost} p={p.parallelism}")
        issued: list[Any] = []

        def create(rep: int, i: int) -> None:
            issued.append(
                self.ledger.create_token(
                    self.actor, name=f"create {rep}-{i}", scopes=["repo", "machine"], expires_in_days=90
                )
            )

        rate, share, saves, waits = self._timed_commands(create)
        r.add("create_per_s", "commands", "create", "ops/s", rate)
        r.add("create_argon2_share", "commands", "create: argon2 share of time", "%", 100 * share)
        self._rw_figures("create", saves, waits)

        self.values = []

        def regenerate(rep: int, i: int) -> None:
            token = issued[rep * self.plan.commands_per_rep + i]
            self.values.append(self.ledger.regenerate_token(self.actor, token.record.id).value)

        rate, share, saves, waits = self._timed_commands(regenerate)
        r.add("regenerate_per_s", "commands", "regenerate", "ops/s", rate)
        r.add("regenerate_argon2_share", "commands", "regenerate: argon2 share of time", "%", 100 * share)
        self._rw_figures("regenerate", saves, waits)

    def _rw_figures(self, command: str, saves: list[float], waits: list[float]) -> None:
        r = self.results
        section = "read your writes"
        r.add(f"{command}_save_p50_ms", section, f"{command}: save p50", "ms", 1000 * percentile(saves, 50))
        r.add(
            f"{command}_wait_p50_ms", section, f"{command}: wait_for p50", "ms", 1000 * percentile(waits, 50)
        )
        r.add(
            f"{command}_wait_p99_ms", section, f"{command}: wait_for p99", "ms", 1000 * percentile(waits, 99)
        )
        r.add(
            f"{command}_wait_over_save",
            section,
            f"{command}: wait_for p50 / save p50",
            "x",
            ratio(percentile(waits, 50), percentile(saves, 50)),
        )

    # 2 and 3. Verification and rejections -----------------------------------------------

    def _calls_per_second(
        self, values: list[str], expected: Outcome, before_rep: Callable[[], None] | None = None
    ) -> float:
        verify = self.ledger.verify
        n = self.plan.calls_per_rep
        rates = []
        for _ in range(self.plan.reps):
            if before_rep is not None:
                before_rep()
            wrong = 0
            start = perf()
            for i in range(n):
                if verify(values[i % len(values)]).outcome is not expected:
                    wrong += 1
            elapsed = perf() - start
            if wrong:
                raise RuntimeError(f"{wrong} of {n} verifications did not give {expected}")
            rates.append(n / elapsed)
        return median(rates)

    def verification(self) -> None:
        r = self.results
        ledger = self.ledger
        values = self.values
        for value in values:  # warm the process-local cache
            assert ledger.verify(value).ok
        self.log(f"warm verification, {self.plan.reps} x {self.plan.calls_per_rep}")
        self.hasher.reset()
        warm = self._calls_per_second(values, Outcome.VALID)
        if self.hasher.calls:
            raise RuntimeError("warm verification ran argon2")
        r.add("verify_warm_per_s", "verification", "warm verify", "ops/s", warm)

        rates = []
        for _ in range(self.plan.reps):
            self.probe.reset()
            verified = []
            start = perf()
            for i in range(self.plan.calls_per_rep // 3):
                v = ledger.verify(values[i % len(values)])
                ledger.record_use(v, scope="repo", address="10.1.2.3", user_agent="git/2.43.0")
                verified.append(v)
            rates.append(len(verified) / (perf() - start))
            if self.probe.saves:
                raise RuntimeError("record_use wrote on the hot path")
        ledger.usage.flush()  # the recorder thread is not running here: write the windows now
        r.add("verify_warm_use_per_s", "verification", "warm verify + record_use", "ops/s", median(rates))

        self.log(f"cold verification, {self.plan.reps} x {self.plan.cold_per_rep}")
        rates, shares = [], []
        for _ in range(self.plan.reps):
            self.hasher.reset()
            spent = 0.0
            for i in range(self.plan.cold_per_rep):
                ledger.verifier.cache = VerifiedCache()  # a fresh process: nothing verified yet
                start = perf()
                outcome = ledger.verify(values[i % len(values)]).outcome
                spent += perf() - start
                if outcome is not Outcome.VALID:
                    raise RuntimeError(f"cold verification gave {outcome}")
            rates.append(self.plan.cold_per_rep / spent)
            shares.append(self.hasher.seconds / spent)
        cold = median(rates)
        r.add("verify_cold_per_s", "verification", "cold verify (fresh cache, argon2)", "ops/s", cold)
        r.add(
            "verify_cold_argon2_share", "verification", "cold verify: argon2 share", "%", 100 * median(shares)
        )
        r.add("verify_warm_over_cold", "verification", "warm / cold", "x", ratio(warm, cold))
        for value in values:
            assert ledger.verify(value).ok

        self.log("rejections")
        good = values[0]
        bad_check = good[:-1] + ("A" if good[-1] != "A" else "B")
        unknown = [token_format.generate().value for _ in range(64)]
        cases = [
            ("malformed", ["not-a-token", "opat_short", "Bearer xyz", good[:-3]], Outcome.MALFORMED),
            ("bad_checksum", [bad_check], Outcome.BAD_CHECKSUM),
            ("unknown", unknown, Outcome.UNKNOWN),
        ]
        self.hasher.reset()
        for name, samples, outcome in cases:
            rate = self._calls_per_second(samples, outcome)
            r.add(f"reject_{name}_per_s", "rejection", f"reject {name.replace('_', ' ')}", "ops/s", rate)
            r.add(
                f"reject_{name}_over_warm",
                "rejection",
                f"reject {name.replace('_', ' ')} / warm",
                "x",
                ratio(rate, warm),
            )
        if self.hasher.calls:
            raise RuntimeError("a cheap rejection ran argon2")

        # Guessing secrets for a real lookup id: argon2 until the limit, then throttled.
        parsed = token_format.parse(good)
        assert parsed is not None
        guesses = [
            token_format.TokenValue(parsed.lookup_id, token_format.generate().secret).value for _ in range(16)
        ]
        self.hasher.reset()
        for guess in guesses[: ledger.verifier.limiter.limit]:
            assert ledger.verify(guess).outcome is Outcome.WRONG_SECRET
        wrong_secret_rate = (
            ledger.verifier.limiter.limit / self.hasher.seconds if self.hasher.seconds else None
        )

        def keep_throttled() -> None:
            # Failures leave the limiter's window after a while: fail again (untimed) until blocked.
            for guess in guesses:
                if ledger.verify(guess).outcome is Outcome.THROTTLED:
                    return

        rate = self._calls_per_second(guesses, Outcome.THROTTLED, keep_throttled)
        r.add(
            "reject_wrong_secret_per_s",
            "rejection",
            "reject wrong secret (argon2 only, before limit)",
            "ops/s",
            wrong_secret_rate,
        )
        r.add("reject_throttled_per_s", "rejection", "reject throttled guess (after limit)", "ops/s", rate)
        r.add("reject_throttled_over_warm", "rejection", "reject throttled / warm", "x", ratio(rate, warm))

    # 1 and 4. Revoke: throughput and end-to-end latency ---------------------------------

    def revocation(self) -> None:
        r = self.results
        n = self.plan.revokes_per_rep
        total = n * self.plan.reps
        self.log(f"preparing {total} tokens to revoke (cheap argon2: revoke runs none)")
        production = self.hasher.inner
        self.hasher.inner = Argon2Hasher(CHEAP_ARGON2)
        targets = [
            self.ledger.create_token(self.actor, name=f"revoke {i}", scopes=["job"], expires_in_days=None)
            for i in range(total)
        ]
        self.hasher.inner = production
        self.log(f"revokes, {self.plan.reps} x {n}")
        rates, latencies, shares, saves, waits = [], [], [], [], []
        for rep in range(self.plan.reps):
            self.hasher.reset()
            self.probe.reset()
            start = perf()
            for token in targets[rep * n : (rep + 1) * n]:
                t0 = perf()
                if not self.ledger.revoke_token(self.actor, token.record.id, reason=RevokeReason.USER):
                    raise RuntimeError("revoke did not revoke")
                latencies.append(perf() - t0)
            elapsed = perf() - start
            rates.append(n / elapsed)
            shares.append(self.hasher.seconds / elapsed)
            saves += self.probe.saves
            waits += self.probe.waits
        r.add("revoke_per_s", "commands", "revoke", "ops/s", median(rates))
        r.add("revoke_argon2_share", "commands", "revoke: argon2 share of time", "%", 100 * median(shares))
        self._rw_figures("revoke", saves, waits)
        r.add(
            "revoke_e2e_p50_ms",
            "read your writes",
            "revoke end to end p50",
            "ms",
            1000 * percentile(latencies, 50),
        )
        r.add(
            "revoke_e2e_p99_ms",
            "read your writes",
            "revoke end to end p99",
            "ms",
            1000 * percentile(latencies, 99),
        )

        revoked = [t.value for t in targets[:64]]
        rate = self._calls_per_second(revoked, Outcome.REVOKED)
        r.add("reject_revoked_per_s", "rejection", "reject revoked", "ops/s", rate)
        r.add(
            "reject_revoked_over_warm",
            "rejection",
            "reject revoked / warm",
            "x",
            ratio(rate, r.value("verify_warm_per_s")),
        )

    # 5. Projection catch-up and rebuild -----------------------------------------------

    def build_log(self) -> int:
        """Write about `log_events` events straight through ledger.save (see `write_token_log`)."""
        plan = self.plan
        return write_token_log(self.probe.raw_save, plan.log_events, plan.used_per_token, plan.load_chunk)

    def rebuild(self) -> None:
        r = self.results
        runner = self.service.projections
        section = "projections"
        self.log(f"building a log of ~{self.plan.log_events:,} events (cheap argon2, ledger.save in batches)")
        start = perf()
        written = self.build_log()
        load = perf() - start
        r.add("log_events", section, "events written for the rebuild", "events", written)
        r.add(
            "log_write_per_s",
            section,
            "event store write (ledger.save, large batches)",
            "events/s",
            written / load,
        )
        self.log(f"wrote {written:,} events in {load:.1f}s")

        if self.plan.catch_up:
            start = perf()
            read = runner.catch_up()
            elapsed = perf() - start
            label = "catch-up, all projections in one pass"
            r.add("catch_up_per_s", section, label, "events/s", read / elapsed)
            r.add("catch_up_s", section, label, "s", elapsed)
        else:
            self.log("(quick: no separate catch-up timing; each rebuild brings its projection up to date)")

        total_time = 0.0
        for projector in runner.projectors:
            self.log(f"rebuild {projector.name}")
            start = perf()
            read = runner.rebuild(projector.name)
            elapsed = perf() - start
            total_time += elapsed
            r.add(
                f"rebuild_{projector.name}_per_s",
                section,
                f"rebuild {projector.name}",
                "events/s",
                read / elapsed,
            )
            r.add(f"rebuild_{projector.name}_s", section, f"rebuild {projector.name}", "s", elapsed)
        events = read
        r.add(
            "rebuild_all_per_s",
            section,
            "rebuild all, one after another",
            "events/s",
            events / total_time,
        )
        r.add("rebuild_all_s", section, "rebuild all, one after another", "s", total_time)
        self.log("rebuild all projections in one pass (tokenledger projections rebuild)")
        start = perf()
        read = runner.rebuild()
        one_pass = perf() - start
        label = "rebuild all, one pass over the log (as the CLI)"
        r.add("rebuild_one_pass_per_s", section, label, "events/s", read / one_pass)
        r.add("rebuild_one_pass_s", section, label, "s", one_pass)
        if runner.lag():
            raise RuntimeError("projections not caught up after rebuild")

        self.log(f"floor: {events:,} audit-like rows with one executemany")
        floors = [self.floor(events) for _ in range(1 if self.plan.mode == "full" else 2)]
        floor = min(floors)
        r.add(
            "floor_rows_per_s",
            section,
            "floor: plain executemany of audit-like rows",
            "rows/s",
            events / floor,
        )
        r.add("floor_s", section, "floor: plain executemany of audit-like rows", "s", floor)
        r.add(
            "rebuild_audit_over_floor",
            section,
            "rebuild audit time / floor time",
            "x",
            ratio(r.value("rebuild_audit_s"), floor),
        )
        r.add(
            "rebuild_all_over_floor", section, "rebuild all time / floor time", "x", ratio(total_time, floor)
        )
        r.add(
            "rebuild_one_pass_over_floor",
            section,
            "rebuild all in one pass / floor time",
            "x",
            ratio(one_pass, floor),
        )
        if self.plan.catch_up:
            r.add(
                "catch_up_over_floor",
                section,
                "catch-up time / floor time",
                "x",
                ratio(r.value("catch_up_s"), floor),
            )

    def floor(self, n: int) -> float:
        """Insert n rows shaped like rm_audit (a copy of its current columns, types and indexes)
        with the driver's own executemany in one transaction. Rows are built and converted to
        driver values beforehand; only the insert and the commit are timed."""
        engine = self.service.projections.engine
        table = audit_copy(f"bench_floor_{uuid.uuid4().hex[:8]}")
        dialect = engine.dialect
        columns = list(table.columns)
        processors = [c.type.bind_processor(dialect) for c in columns]
        rows = [
            tuple(
                driver_value(process(values.get(c.name)) if process else values.get(c.name))
                for c, process in zip(columns, processors, strict=True)
            )
            for values in audit_like_rows(n)
        ]
        marker = "?" if dialect.name == "sqlite" else "%s"
        names = ", ".join(c.name for c in columns)
        statement = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join([marker] * len(columns))})"
        with engine.begin() as conn:
            table.create(conn)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if dialect.name == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")  # the engine runs sqlite3 in autocommit mode
            start = perf()
            cursor.executemany(statement, rows)
            raw.commit()
            elapsed = perf() - start
            cursor.close()
        finally:
            raw.close()
        with engine.begin() as conn:
            table.drop(conn)
        return elapsed


def driver_value(value: Any) -> Any:
    """JSON documents as text: SQLAlchemy leaves them to psycopg's adapter on PostgreSQL."""
    return json.dumps(value) if isinstance(value, dict | list) else value


def write_token_log(
    save: Callable[..., Any],
    log_events: int,
    used_per_token: int,
    load_chunk: int,
    *,
    base: datetime | None = None,
    step: timedelta = timedelta(minutes=1),
) -> int:
    """Write about `log_events` events straight through ledger.save, in large batches:
    accounts, tokens with their name claims, then rounds of `Used` events interleaved across
    tokens (as the usage recorder writes them), some regenerations and revocations."""
    cheap = Argon2Hasher(CHEAP_ARGON2)
    hashes = [cheap.hash(f"bench secret {i}") for i in range(16)]
    per_token = used_per_token + 2
    n_tokens = max(1, log_events // per_token)
    n_owners = max(1, min(200, n_tokens // 20))
    if base is None:
        base = datetime.now(UTC) - timedelta(days=30)
    owners = [f"owner{i:03d}" for i in range(n_owners)]
    written = 0
    pending: list[Any] = []

    def flush(force: bool = False) -> None:
        nonlocal pending, written
        if pending and (force or len(pending) >= load_chunk):
            save(*pending)
            written += len(pending)
            pending = []

    for owner in owners:
        pending.append(Account.register(username=owner, role=Role.MEMBER, password_hash=hashes[0], now=base))
    flush(force=True)
    scopes = [Scopes.parse(s) for s in (["repo"], ["repo:read"], ["job", "machine"], ["service"])]
    tokens: list[Token] = []
    for i in range(n_tokens):
        owner = owners[i % n_owners]
        name = TokenName(f"load {i}")
        now = base + timedelta(milliseconds=i)
        token = Token.create(
            owner=owner,
            name=name,
            scopes=scopes[i % len(scopes)],
            expires_at=None if i % 3 == 0 else now + timedelta(days=90),
            lookup_id=token_format.generate().lookup_id,
            secret_hash=hashes[i % len(hashes)],
            actor=owner,
            now=now,
        )
        tokens.append(token)
        pending += [token, TokenNameClaim.claim_new(owner, name, token.id, now)]
        flush()
    flush(force=True)
    remaining = log_events - written
    for window in range(1, used_per_token + 1):
        if remaining <= 0:
            break
        now = base + window * step
        last_round = window == used_per_token or remaining <= n_tokens
        for i, token in enumerate(tokens[:remaining]):
            if last_round and i % 20 == 0:
                token.regenerate(
                    lookup_id=token_format.generate().lookup_id,
                    secret_hash=hashes[(i + 1) % len(hashes)],
                    expires_at=now + timedelta(days=30),
                    actor=token.owner,
                    now=now,
                )
            elif last_round and i % 20 == 1:
                token.revoke(reason=RevokeReason.BULK, actor="bench", source="bench", now=now)
            else:
                summary = UsageSummary(
                    first_used_at=now - timedelta(seconds=50),
                    last_used_at=now - timedelta(seconds=i % 50),
                    count=1 + i % 7,
                    scopes=frozenset(token.scopes[:1]),
                    addresses=(client_address(i, window),),
                    user_agents=("git/2.43.0",),
                )
                token.record_use(summary, now=now)
            pending.append(token)
            if len(pending) >= load_chunk:
                flush()
        flush(force=True)
        remaining = log_events - written
    return written


def client_address(token: int, window: int) -> str:
    """Most tokens are used from one or two addresses; one in a hundred from a new one each window."""
    if token % 100 == 0:
        return f"172.16.{window % 256}.{token % 250 + 1}"
    return f"10.{token % 256}.{token // 256 % 256}.{1 + (window % 5 == 0)}"


def audit_copy(name: str) -> SqlTable:
    """A new table with rm_audit's current columns and indexes (under other index names)."""
    copy = SqlTable(
        name,
        MetaData(),
        *[
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, autoincrement=False)
            for c in schema.audit.columns
        ],
    )
    for i, index in enumerate(schema.audit.indexes):
        Index(f"{name}_ix{i}", *[copy.c[c.name] for c in index.columns])
    return copy


def audit_like_rows(n: int) -> Iterator[dict[str, Any]]:
    """Rows like those of `Used` events (most of a real log); unknown columns stay NULL."""
    base = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    subjects = [uuid.uuid4() for _ in range(max(1, n // 48))]
    for i in range(n):
        at = base + timedelta(milliseconds=i)
        yield {
            "position": i + 1,
            "at": at,
            "event_type": "Used",
            "aggregate": "token",
            "subject_id": subjects[i % len(subjects)],
            "token_name": f"load {i % len(subjects)}",
            "owner": f"owner{i % 200:03d}",
            "actor": None,
            "details": {
                "first_used_at": (at - timedelta(seconds=50)).isoformat(),
                "last_used_at": at.isoformat(),
                "count": 3,
                "scopes": ["repo"],
                "addresses": ["10.1.2.3"],
                "user_agents": ["git/2.43.0"],
                "rehashed": False,
            },
            "scopes": "repo",
            "used_first": at - timedelta(seconds=50),
            "used_last": at,
        }


# Running and reporting -------------------------------------------------------------------


def run_backend(backend: str, plan: Plan, started: float) -> Results:
    t0 = perf()
    cpu0 = time.process_time()
    load_before = os.getloadavg()[0]
    say(backend, "fresh database", started)
    with fresh_database(backend) as url:
        settings = Settings(database_url=url, usage_window_seconds=60, argon2=Argon2Parameters())
        with build(settings) as service:
            bench = Bench(backend, plan, service, started)
            results = bench.run()
            results.info["database"] = (
                "sqlite file in a temp dir" if backend == "sqlite" else url.rsplit("/", 1)[-1]
            )
            results.info["server_version"] = server_version(service)
    results.seconds = perf() - t0
    # Other processes on the machine skew every figure: say how busy it was.
    results.info["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    results.info["bench_cpu_over_wall"] = round((time.process_time() - cpu0) / results.seconds, 3)
    say(backend, f"done in {results.seconds:.1f}s", started)
    return results


def server_version(service: Service) -> str:
    with service.projections.engine.connect() as conn:
        if service.projections.is_postgres:
            return str(conn.exec_driver_sql("SHOW server_version").scalar())
        return "SQLite " + str(conn.exec_driver_sql("SELECT sqlite_version()").scalar())


def fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if unit == "x":
        return f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "ms":
        return f"{value:,.2f}"
    if unit == "s":
        return f"{value:,.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def print_table(results: list[Results], plan: Plan, console: Console) -> None:
    table = Table(
        title=f"tokenledger in-process benchmark ({plan.mode})",
        box=box.SIMPLE_HEAD,
        show_lines=False,
        title_justify="left",
    )
    table.add_column("section")
    table.add_column("figure")
    table.add_column("unit")
    for r in results:
        table.add_column(r.backend, justify="right")
    order = {name: i for i, name in enumerate(SECTIONS)}
    previous = None
    for figure in sorted(results[0].figures, key=lambda f: order.get(f.section, len(order))):
        section = figure.section if figure.section != previous else ""
        if section and previous is not None:
            table.add_section()
        previous = figure.section
        cells = [
            fmt(next((f.value for f in r.figures if f.key == figure.key), None), figure.unit) for r in results
        ]
        table.add_row(section, figure.label, figure.unit, *cells)
    table.add_section()
    table.add_row("run", "wall time of this backend", "s", *[f"{r.seconds:,.1f}" for r in results])
    table.add_row(
        "",
        "load average (1 min) before, after",
        "",
        *[" / ".join(f"{x:.1f}" for x in r.info["load_average_1min"]) for r in results],
    )
    table.add_row(
        "",
        "this process: CPU time / wall time",
        "x",
        *[f"{r.info['bench_cpu_over_wall']:.2f}" for r in results],
    )
    console.print(table)


def metadata(
    plan: Plan, results: list[Results], total: float, started_at: datetime, code: dict[str, Any]
) -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            return "?"

    return {
        "mode": plan.mode,
        "plan": {k: getattr(plan, k) for k in plan.__slots__},
        "argon2_production": {
            "memory_kib": Argon2Parameters().memory_kib,
            "time_cost": Argon2Parameters().time_cost,
            "parallelism": Argon2Parameters().parallelism,
        },
        "argon2_log_building": {
            "memory_kib": CHEAP_ARGON2.memory_kib,
            "time_cost": CHEAP_ARGON2.time_cost,
            "parallelism": CHEAP_ARGON2.parallelism,
        },
        "python": platform.python_version(),
        "sqlite_library": sqlite3.sqlite_version,
        "packages": {n: version(n) for n in ("eventsourcing", "sqlalchemy", "psycopg", "argon2-cffi")},
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "started_at": started_at.isoformat(timespec="seconds"),
        # The modules are imported once, at the start: that is the code measured. Others may
        # commit while a long run goes on; the end state is recorded to show whether they did.
        "code": code,
        "code_changed_during_run": code_fingerprint() != code,
        "total_seconds": total,
        "backends": {r.backend: {"seconds": r.seconds, **r.info} for r in results},
    }


def code_fingerprint() -> dict[str, Any]:
    """Which code was measured: the commit, files changed since, and a digest of the sources."""
    root = Path(__file__).resolve().parent.parent
    packages = ("domain", "application", "projections", "interface")

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.rstrip() if done.returncode == 0 else ""  # keep status lines' leading blanks

    digest = hashlib.sha256()
    for path in sorted(p for package in packages for p in (root / package).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return {
        "commit": git("rev-parse", "HEAD"),
        "changed": git("status", "--porcelain", "--", *packages).splitlines(),
        "sources_sha256": digest.hexdigest(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="small counts: both backends in under 3 minutes")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    parser.add_argument(
        "--events",
        type=int,
        help=f"events in the rebuild section's log (default {FULL.log_events:,}; quick {QUICK.log_events:,})",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.events:
        plan = replace(plan, log_events=args.events)
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    started = perf()
    started_at = datetime.now(UTC)
    code = code_fingerprint()
    results = [run_backend(backend, plan, started) for backend in backends]
    total = perf() - started
    console = Console(width=max(120, Console().width), highlight=False)
    print_table(results, plan, console)
    console.print(f"total wall time {total:,.1f}s ({plan.mode} mode, {os.cpu_count()} CPUs)")
    if args.json:
        write_results(args.json, metadata(plan, results, total, started_at, code), results, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
