"""Audit queries at scale: one token's history, filtered log pages, as-of, exposure, the report.

Builds a log of Created, Used, Regenerated and Revoked events over many tokens (about 100 events
a token in full mode, spread over some 80 days of a controllable clock) on a fresh SQLite file
and/or a fresh PostgreSQL database, catches the projections up, then times the audit API of the
real service (`interface.wiring.build`) and prints, for every figure, its median and p99, the
target from the issue, and two ratios measured in the same run on the same database:

- against the target (p50 / target: under 1 means within it);
- against a plain SQL baseline on the same table, run through the driver with no row mapping:
  an indexed select of one token's rows (for the history), a primary-key page of 100 rows (for
  log pages), `SELECT count(*) FROM rm_audit` (one pass over the log inside the database, for
  as-of and exposure), and reading rm_tokens, rm_token_clients and rm_token_scopes whole (the
  report's inputs, for the report).

Then, for each query, where the time goes: the share spent inside the AuditQueries port (SQL and
row mapping) against the Audit service's own Python assembly (timed without a profiler), and one
cProfile run split into database driver, SQLAlchemy, JSON, datetime parsing, the query layer,
the application and the domain.

    .venv/bin/python -m bench.audit [--backend sqlite|postgres|both] [--quick] [--json PATH]

Full: 10,000 tokens and about 1,000,000 events. Quick: 1,000 tokens and about 20,000 events
(both backends within about 90 seconds: catching the projections up dominates). PostgreSQL:
TOKENLEDGER_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) is used to
create a database `tl_bench_<random>`, dropped afterwards. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, event

from application.ledger import Actor
from bench.inprocess import (
    Results,
    code_fingerprint,
    fresh_database,
    metadata,
    percentile,
    ratio,
    say,
    server_version,
    write_results,
    write_token_log,
)
from domain.account import Role
from interface.settings import Settings
from interface.wiring import Service, build
from tests.support import CHEAP_ARGON2, FakeClock, cheap_hasher

BACKENDS = ("sqlite", "postgres")
BASE = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)  # the first event of the log
SPAN = timedelta(days=80)  # usage windows spread over this (token expiries are 90 days)
PAGE = 100

perf = time.perf_counter


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    tokens: int
    events_per_token: int  # Created, its name claim, then one event per usage window
    load_chunk: int  # events per ledger.save while building the log
    catch_up_batch: int  # notifications per catch-up transaction while building
    fast_reps: int  # history and pages: samples per figure (a different token or owner each)
    slow_reps: int  # as-of, exposure, report

    @property
    def log_events(self) -> int:
        return self.tokens * self.events_per_token


QUICK = Plan(
    "quick", tokens=1000, events_per_token=20, load_chunk=5000, catch_up_batch=5000, fast_reps=20, slow_reps=3
)
FULL = Plan(
    "full",
    tokens=10_000,
    events_per_token=100,
    load_chunk=10_000,
    catch_up_batch=5000,
    fast_reps=50,
    slow_reps=5,
)


@dataclass
class Row:
    """One timed figure, for the table (the JSON has the same numbers as flat figures)."""

    key: str
    label: str
    samples: list[float]
    rows: int
    target: float | None  # seconds
    baseline: str | None  # key of a baseline row
    profile: dict[str, float] = field(default_factory=dict)  # category -> share of profiled time
    port_share: float | None = None  # share of wall time inside the AuditQueries port
    cpu: list[float] = field(default_factory=list)  # this process's CPU time per sample

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


# Where the time goes -------------------------------------------------------------------------


class TimedPort:
    """Wraps the AuditQueries port (or the ledger's read models) and sums the time spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = perf()
            try:
                return attribute(*args, **kwargs)
            finally:
                self.seconds += perf() - start

        return timed


CATEGORIES = (
    ("DB+driver", ("sqlite3", "psycopg", "psycopg_c", "psycopg_binary", "selectors", "socket")),
    ("SQLAlchemy", ("sqlalchemy",)),
    ("JSON", ("json", "_json")),
    ("datetime", ("_strptime", "fromisoformat", "strftime")),
    ("projections/", ("projections",)),
    ("application/", ("application",)),
    ("domain/", ("domain",)),
)
OTHER = "other"  # builtins, sorting, dataclass construction


def category(filename: str, function: str) -> str:
    for name, needles in CATEGORIES:
        if filename == "~":  # a built-in: its name says whose it is
            if any(n in function for n in needles):
                return name
        elif any(f"/{n}/" in filename or filename.endswith(f"/{n}.py") for n in needles):
            return name
    return OTHER


def categorise(stats: pstats.Stats) -> dict[str, float]:
    """Own time (tottime) per category, as shares of the total."""
    totals: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        name = category(filename, function)
        totals[name] = totals.get(name, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    return {k: v / whole for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def statements(engine: Engine, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The SELECT statements `call` sends through `engine`, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return seen


def explain(engine: Engine, statement: str, parameters: Any) -> str:
    """SQLite: EXPLAIN QUERY PLAN. PostgreSQL: EXPLAIN ANALYZE (it runs the statement once more)."""
    sqlite = engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
    lines = [f"{'  ' * (r[1] != 0)}{r[3]}" for r in rows] if sqlite else [r[0] for r in rows]
    return "\n".join(lines)


def profile(call: Callable[[], Any]) -> dict[str, float]:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        call()
    finally:
        profiler.disable()
    return categorise(pstats.Stats(profiler))


# The benchmark -------------------------------------------------------------------------------


class AuditBench:
    def __init__(
        self, backend: str, plan: Plan, service: Service, clock: FakeClock, started: float, analyze: bool
    ) -> None:
        self.backend = backend
        self.analyze = analyze
        self.plan = plan
        self.service = service
        self.clock = clock
        self.started = started
        self.results = Results(backend)
        self.rows: list[Row] = []
        self.actor = Actor(username="auditor", role=Role.ADMIN)
        self.engine = service.read_models.engine
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.random = random.Random(20260105)
        self.port = TimedPort(service.audit.queries)
        service.audit.queries = self.port  # type: ignore[assignment]
        self.read = TimedPort(service.ledger.read)
        service.ledger.read = self.read  # type: ignore[assignment]

    def log(self, message: str) -> None:
        say(self.backend, message, self.started)

    def run(self) -> Results:
        self.build()
        self.baselines()
        self.queries()
        return self.results

    # The log -----------------------------------------------------------------------------

    def build(self) -> None:
        plan, r = self.plan, self.results
        used = plan.events_per_token - 2
        self.step = SPAN / used
        self.log(f"writing ~{plan.log_events:,} events over {plan.tokens:,} tokens (ledger.save in batches)")
        start = perf()
        written = write_token_log(
            self.service.ledger.save, plan.log_events, used, plan.load_chunk, base=BASE, step=self.step
        )
        load = perf() - start
        self.log(f"wrote {written:,} events in {load:.1f}s; catching the projections up")
        runner = self.service.projections
        runner.batch_size = plan.catch_up_batch
        start = perf()
        runner.catch_up()
        catch_up = perf() - start
        if runner.lag():
            raise RuntimeError("projections not caught up")
        self.log(f"caught up in {catch_up:.1f}s")
        if self.analyze:
            start = perf()
            with runner.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
            r.add("analyze_s", "log", "ANALYZE (--analyze)", "s", perf() - start)
        r.info["statistics_before"] = self.statistics()
        self.end = BASE + SPAN
        self.clock.current = self.end + timedelta(days=1)  # "now" for the compliance report
        with self.engine.connect() as conn:
            self.audit_rows = conn.exec_driver_sql("SELECT count(*) FROM rm_audit").scalar_one()
            self.head = conn.exec_driver_sql("SELECT max(position) FROM rm_audit").scalar_one()
        section = "log"
        r.add("events", section, "events in the log", "events", written)
        r.add("audit_rows", section, "rows in rm_audit", "rows", self.audit_rows)
        r.add("tokens", section, "tokens", "tokens", plan.tokens)
        r.add("write_s", section, "write the log (ledger.save)", "s", load)
        r.add("catch_up_s", section, f"catch the projections up (batch {plan.catch_up_batch})", "s", catch_up)
        self.tokens = list(self.service.read_models.tokens(None))
        self.owners = sorted({t.owner for t in self.tokens})

    def statistics(self) -> str:
        """Whether the planner has table statistics for rm_audit (the app never runs ANALYZE)."""
        with self.engine.connect() as conn:
            if self.sqlite:
                found = conn.exec_driver_sql(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
                ).scalar_one()
                return "sqlite_stat1 present (ANALYZE ran)" if found else "no sqlite_stat1 (never analyzed)"
            row = conn.exec_driver_sql(
                "SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables WHERE relname = 'rm_audit'"
            ).first()
            return (
                f"rm_audit last_analyze={row[0] if row else None}, last_autoanalyze={row[1] if row else None}"
            )

    # Baselines: plain SQL through the driver, same table, same database --------------------

    def _raw(self, sql: str, params: Sequence[Any] = ()) -> tuple[float, int]:
        """Like the port: a pooled connection per query, but the driver's rows as they come."""
        marker = "?" if self.sqlite else "%s"
        start = perf()
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(sql.replace("?", marker), tuple(params)).fetchall()
        return perf() - start, len(rows)

    def baselines(self) -> None:
        self.log("baselines: plain SQL through the driver")
        fast, slow = self.plan.fast_reps, self.plan.slow_reps
        ids = [t.id for t in self.random.sample(self.tokens, min(fast, len(self.tokens)))]

        def subject(i: int) -> tuple[float, int]:
            token_id = ids[i % len(ids)]
            return self._raw(
                "SELECT * FROM rm_audit WHERE subject_id = ? ORDER BY position",
                (token_id.hex if self.sqlite else token_id,),
            )

        def pk_page(i: int) -> tuple[float, int]:
            after = self.random.randrange(0, max(1, self.head - PAGE))
            return self._raw(
                "SELECT * FROM rm_audit WHERE position > ? ORDER BY position LIMIT 100", (after,)
            )

        def count(_: int) -> tuple[float, int]:
            return self._raw("SELECT count(*) FROM rm_audit")

        def scan(_: int) -> tuple[float, int]:
            return self._raw("SELECT sum(use_count) FROM rm_audit")

        def report_inputs(_: int) -> tuple[float, int]:
            spent, rows = 0.0, 0
            for table in ("rm_tokens", "rm_last_used", "rm_token_clients", "rm_token_scopes"):
                t, n = self._raw(f"SELECT * FROM {table}")
                spent, rows = spent + t, rows + n
            return spent, rows

        for key, label, reps, run in (
            ("base_subject", "B1 indexed select of one token's rows", fast, subject),
            ("base_pk_page", "B2 primary-key page of 100 rows", fast, pk_page),
            ("base_count", "B3 SELECT count(*) FROM rm_audit", slow, count),
            ("base_scan", "B4 SELECT sum(use_count) FROM rm_audit", slow, scan),
            ("base_report_inputs", "B5 SELECT * of the report's 4 tables", slow, report_inputs),
        ):
            run(0)  # warm
            samples, rows = [], 0
            for i in range(reps):
                t, rows = run(i)
                samples.append(t)
            self._add(Row(key, label, samples, rows, None, None), section="baselines")

    # The audit API -----------------------------------------------------------------------

    def queries(self) -> None:
        audit, ledger, actor = self.service.audit, self.service.ledger, self.actor
        fast, slow = self.plan.fast_reps, self.plan.slow_reps
        mid = BASE + SPAN / 2
        tokens = self.random.sample(self.tokens, min(fast, len(self.tokens)))
        owners = [self.random.choice(self.owners) for _ in range(fast)]
        cursors = [self.random.randrange(self.head // 4, 3 * self.head // 4) for _ in range(fast)]
        days = [mid + timedelta(days=self.random.uniform(-30, 30)) for _ in range(fast)]
        day = max(timedelta(days=1), self.step * 1.2)  # quick mode's usage rounds are days apart

        def page(**filters: Any) -> Callable[[int], int]:
            def run(i: int) -> int:
                values = {k: v(i) if callable(v) else v for k, v in filters.items()}
                return len(audit.log(actor, limit=PAGE, **values).entries)

            return run

        ms20, s1, s3 = 0.020, 1.0, 3.0
        cases: list[tuple[str, str, int, float, str, Callable[[int], int], str]] = [
            (
                "history",
                "token history (ledger.history)",
                fast,
                ms20,
                "base_subject",
                lambda i: len(ledger.history(actor, tokens[i % len(tokens)].id)),
                "read",
            ),
            (
                "page_token",
                "page: one token",
                fast,
                ms20,
                "base_subject",
                page(token_id=lambda i: tokens[i % len(tokens)].id),
                "port",
            ),
            (
                "page_owner",
                "page: one owner",
                fast,
                ms20,
                "base_pk_page",
                page(owner=lambda i: owners[i]),
                "port",
            ),
            (
                "page_owner_cursor",
                "page: one owner, cursor mid-log",
                fast,
                ms20,
                "base_pk_page",
                page(owner=lambda i: owners[i], cursor=lambda i: cursors[i]),
                "port",
            ),
            (
                "page_type_rare",
                "page: type Revoked, newest first",
                fast,
                ms20,
                "base_pk_page",
                page(event_types=("Revoked",), newest_first=True),
                "port",
            ),
            (
                "page_day",
                "page: one day, newest first",
                fast,
                ms20,
                "base_pk_page",
                page(since=lambda i: days[i], until=lambda i: days[i] + day, newest_first=True),
                "port",
            ),
            (
                "page_combined",
                "page: owner+Used+week, newest first",
                fast,
                ms20,
                "base_pk_page",
                page(
                    owner=lambda i: owners[i],
                    event_types=("Used",),
                    since=lambda i: days[i],
                    until=lambda i: days[i] + timedelta(days=7),
                    newest_first=True,
                ),
                "port",
            ),
            (
                "as_of",
                "as-of mid-log (all tokens)",
                slow,
                s1,
                "base_scan",
                lambda i: len(audit.as_of(actor, mid + timedelta(hours=i))),
                "port",
            ),
            (
                "exposure",
                "exposure repo:read, one week",
                slow,
                s1,
                "base_scan",
                lambda i: len(audit.exposure(actor, "repo:read", mid, mid + timedelta(days=7, hours=i))),
                "port",
            ),
            (
                "compliance",
                "compliance report",
                slow,
                s3,
                "base_report_inputs",
                lambda i: len(audit.compliance(actor).findings),
                "port",
            ),
        ]
        for key, label, reps, target, baseline, run, port_name in cases:
            self.log(f"{label}: {reps} runs")
            port = self.port if port_name == "port" else self.read
            rows = run(0)  # warm: plans, caches, first connection
            samples, cpu, in_port = [], [], 0.0
            for i in range(reps):
                port.seconds = 0.0
                start, cpu0 = perf(), time.process_time()
                rows = run(i)
                samples.append(perf() - start)
                cpu.append(time.process_time() - cpu0)
                in_port += port.seconds
            row = Row(key, label, samples, rows, target, baseline, port_share=in_port / sum(samples), cpu=cpu)
            row.profile = profile(lambda run=run: run(0))
            self._add(row, section="audit")
            plans = self.results.info.setdefault("plans", {})
            plans[key] = [
                {"sql": sql, "plan": explain(self.engine, sql, params)}
                for sql, params in statements(self.engine, lambda run=run: run(0))
            ]
        self.results.info["statistics_after"] = self.statistics()

    # Figures -----------------------------------------------------------------------------

    def _add(self, row: Row, section: str) -> None:
        r = self.results
        self.rows.append(row)
        r.add(f"{row.key}_p50_ms", section, f"{row.label}: p50", "ms", 1000 * row.p50)
        r.add(f"{row.key}_p99_ms", section, f"{row.label}: p99 of {len(row.samples)}", "ms", 1000 * row.p99)
        r.add(f"{row.key}_rows", section, f"{row.label}: rows returned", "rows", row.rows)
        if row.cpu:
            cpu = 1000 * percentile(row.cpu, 50)
            r.add(f"{row.key}_cpu_p50_ms", section, f"{row.label}: this process's CPU time p50", "ms", cpu)
        if row.target is not None:
            r.add(f"{row.key}_target_ms", section, f"{row.label}: target", "ms", 1000 * row.target)
            r.add(f"{row.key}_over_target", section, f"{row.label}: p50 / target", "x", row.p50 / row.target)
        if row.baseline is not None:
            base = next(b for b in self.rows if b.key == row.baseline)
            r.add(
                f"{row.key}_over_baseline",
                section,
                f"{row.label}: p50 / {base.label} p50",
                "x",
                ratio(row.p50, base.p50),
            )
        if row.port_share is not None:
            r.add(
                f"{row.key}_port_share",
                "where the time goes",
                f"{row.label}: share inside the queries port",
                "%",
                100 * row.port_share,
            )
        for category, share in row.profile.items():
            r.add(
                f"{row.key}_profile_{slug(category)}",
                "where the time goes",
                f"{row.label}: {category} (cProfile)",
                "%",
                100 * share,
            )


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.split(" (")[0].lower()).strip("_")


# Running and reporting -----------------------------------------------------------------------


@contextlib.contextmanager
def kept(directory: Path) -> Iterator[str]:
    """A SQLite file that outlives the run, to look at its plans afterwards (--keep-sqlite)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenledger.sqlite"
    if path.exists():
        raise SystemExit(f"{path} exists: remove it or choose another directory")
    yield f"sqlite:///{path}"


def run_backend(
    backend: str, plan: Plan, started: float, analyze: bool, keep: Path | None
) -> tuple[Results, list[Row]]:
    t0 = perf()
    cpu0 = time.process_time()
    load_before = os.getloadavg()[0]
    say(backend, "fresh database", started)
    clock = FakeClock(BASE)
    place = fresh_database(backend) if keep is None or backend != "sqlite" else kept(keep)
    with place as url:
        settings = Settings(database_url=url, argon2=CHEAP_ARGON2)
        with build(settings, clock=clock, hasher=cheap_hasher()) as service:
            bench = AuditBench(backend, plan, service, clock, started, analyze)
            results = bench.run()
            results.info["database"] = (
                "sqlite file in a temp dir" if backend == "sqlite" else url.rsplit("/", 1)[-1]
            )
            results.info["server_version"] = server_version(service)
            if backend == "postgres":  # "python" (pure) or "c"/"binary": row parsing cost differs a lot
                results.info["psycopg_impl"] = psycopg.pq.__impl__
    results.seconds = perf() - t0
    results.info["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    results.info["bench_cpu_over_wall"] = round((time.process_time() - cpu0) / results.seconds, 3)
    say(backend, f"done in {results.seconds:.1f}s", started)
    return results, bench.rows


def ms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    value = 1000 * seconds
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def times(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"


def print_tables(backend: str, plan: Plan, results: Results, rows: list[Row], console: Console) -> None:
    info = results.info
    table = Table(
        title=(
            f"audit queries, {backend} ({plan.mode}): {results.value('events'):,.0f} events, "
            f"{plan.tokens:,} tokens, {results.value('audit_rows'):,.0f} rows in rm_audit"
        ),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for name, justify in (
        ("figure", "left"),
        ("rows", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("CPU ms", "right"),
        ("target ms", "right"),
        ("p50/target", "right"),
        ("baseline", "left"),
        ("p50/baseline", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    by_key = {row.key: row for row in rows}
    for row in rows:
        if row.key.startswith("base_"):
            continue
        base = by_key[row.baseline] if row.baseline else None
        over = row.p50 / row.target if row.target else None
        style = "red" if over is not None and over > 1 else None
        table.add_row(
            row.label,
            f"{row.rows:,}",
            ms(row.p50),
            ms(row.p99),
            ms(percentile(row.cpu, 50)),
            ms(row.target),
            times(over),
            base.label.split()[0] if base else "-",
            times(ratio(row.p50, base.p50 if base else None)),
            style=style,
        )
    table.add_section()
    for row in rows:
        if row.key.startswith("base_"):
            table.add_row(row.label, f"{row.rows:,}", ms(row.p50), ms(row.p99), "", "", "", "", "")
    table.add_section()
    write, catch_up = results.value("write_s") or 0.0, results.value("catch_up_s") or 0.0
    table.add_row("build: write the log, s", "", f"{write:,.1f}", "", "", "", "", "", "")
    table.add_row("build: catch the projections up, s", "", f"{catch_up:,.1f}", "", "", "", "", "", "")
    table.add_row("run: wall time of this backend, s", "", f"{results.seconds:,.1f}", "", "", "", "", "", "")
    load = " / ".join(f"{x:.1f}" for x in info["load_average_1min"])
    table.add_row("run: load average before / after", "", load, "", "", "", "", "", "")
    table.add_row(
        "run: CPU time / wall time", "", f"{info['bench_cpu_over_wall']:.2f}", "", "", "", "", "", ""
    )
    console.print(table)

    where = Table(
        title=f"where the time goes, {backend}: wall share in the queries port, then one cProfile run",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    where.add_column("figure")
    where.add_column("in port (SQL+rows)", justify="right")
    where.add_column("outside (assembly)", justify="right")
    where.add_column("cProfile own time, largest shares")
    for row in rows:
        if row.port_share is None:
            continue
        top = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(row.profile.items())[:4] if v >= 0.02)
        where.add_row(row.label, f"{100 * row.port_share:.0f}%", f"{100 * (1 - row.port_share):.0f}%", top)
    console.print(where)
    console.print(
        f"planner statistics: {info['statistics_before']} (after the run: {info['statistics_after']})"
    )
    if "psycopg_impl" in info:
        console.print(
            f"psycopg implementation: {info['psycopg_impl']} (pure Python parses every row in Python)"
        )
    for row in rows:
        if row.target is None or row.p50 <= row.target:
            continue
        console.print(f"[bold]over target: {row.label}[/bold] - its SQL and plan on {backend}:")
        for item in info.get("plans", {}).get(row.key, []):
            console.print("  " + clip(" ".join(item["sql"].split())), markup=False)
            lines = item["plan"].splitlines()
            for line in lines[:PLAN_LINES]:
                console.print("    " + clip(line), markup=False)
            if len(lines) > PLAN_LINES:
                console.print(f"    ... {len(lines) - PLAN_LINES} more lines in the JSON", markup=False)


PLAN_LINES = 16


def clip(text: str, width: int = 150) -> str:
    """Plans and statements quote their parameters (long lists of ids): keep lines short."""
    return text if len(text) <= width else text[: width - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="1,000 tokens, ~20,000 events")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    parser.add_argument(
        "--analyze", action="store_true", help="run ANALYZE after the catch-up (the app does not)"
    )
    parser.add_argument("--keep-sqlite", type=Path, metavar="DIR", help="build the SQLite file in DIR, kept")
    parser.add_argument("--tokens", type=int, help="override the number of tokens")
    parser.add_argument("--events-per-token", type=int, help="override events per token (at least 3)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.tokens:
        plan = replace(plan, tokens=args.tokens)
    if args.events_per_token:
        plan = replace(plan, events_per_token=max(3, args.events_per_token))
    if args.tokens or args.events_per_token:
        plan = replace(plan, mode=f"{plan.mode}, custom counts")
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    started = perf()
    started_at = datetime.now(UTC)
    code = code_fingerprint()
    measured = [run_backend(backend, plan, started, args.analyze, args.keep_sqlite) for backend in backends]
    total = perf() - started
    console = Console(width=max(160, Console().width), highlight=False)
    for backend, (results, rows) in zip(backends, measured, strict=True):
        print_tables(backend, plan, results, rows, console)
    console.print(
        f"total wall time {total:,.1f}s ({plan.mode} mode, {os.cpu_count()} CPUs). Ratios: p50 / target "
        "(under 1: within it) and p50 / a plain SQL baseline on the same table and database, "
        "run through the driver without row mapping. CPU ms: this process only (SQLite's work included, "
        "PostgreSQL's server not): when it is far below p50 the machine was busy. "
        "cProfile inflates Python time."
    )
    if args.json:
        all_results = [results for results, _ in measured]
        meta = metadata(plan, all_results, total, started_at, code)  # type: ignore[arg-type]
        meta.pop("argon2_production", None)  # no production hashing here
        meta["plan"]["log_events"] = plan.log_events
        meta["baselines"] = {
            "history, token page": "plain indexed select of one token's rows (subject_id index)",
            "other log pages": "plain primary-key page of 100 rows",
            "as-of, exposure": "SELECT count(*) FROM rm_audit",
            "compliance": "SELECT * of rm_tokens, rm_last_used, rm_token_clients, rm_token_scopes",
        }
        write_results(args.json, meta, all_results, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
