"""`tokenledger audit ...` and `tokenledger report compliance`."""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from application.audit import EVENT_TYPES
from domain.compliance import Policy
from interface import reports
from interface.cli.common import Instant, clean_errors, fail, open_service, operator, parse_id
from interface.cli.output import err, history_table, out, print_json

FORMATS = click.Choice(["table", "jsonl", "csv"])


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )


@click.group()
def audit() -> None:
    """The history of every token: the log, points in time, exposure, integrity."""


@audit.command("history")
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@clean_errors
def audit_history(ctx: click.Context, token_id: str, as_json: bool) -> None:
    """Every event of one token, in order."""
    with open_service(ctx) as service:
        entries = service.ledger.history(operator(), parse_id(token_id))
    if as_json:
        print_json(
            [
                {
                    "position": e.position,
                    "at": e.at.isoformat(),
                    "event": e.event_type,
                    "actor": e.actor,
                    **e.details,
                }
                for e in entries
            ]
        )
    else:
        out.print(history_table(entries))


@audit.command("log")
@click.option("--owner")
@click.option("--token", "token_id", help="A token id.")
@click.option("--type", "event_types", multiple=True, type=click.Choice(EVENT_TYPES))
@click.option("--since", type=Instant())
@click.option("--until", type=Instant())
@click.option("--newest-first", is_flag=True)
@click.option("--limit", type=click.IntRange(1), help="At most this many entries (default: all).")
@click.option(
    "--after",
    type=click.IntRange(0),
    metavar="POSITION",
    help="Start after this position (the last one a previous run printed), in the chosen order.",
)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
@clean_errors
def audit_log(
    ctx: click.Context,
    owner: str | None,
    token_id: str | None,
    event_types: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    newest_first: bool,
    limit: int | None,
    after: int | None,
    fmt: str,
) -> None:
    """The event log, filtered; JSON lines and CSV stream every matching entry."""
    with open_service(ctx) as service:
        entries = service.audit.iterate(
            operator(),
            cursor=after,
            owner=owner,
            token_id=parse_id(token_id) if token_id else None,
            event_types=event_types,
            since=since,
            until=until,
            newest_first=newest_first,
        )
        shown = 0
        collected = []
        for entry in entries:
            if limit is not None and shown >= limit:
                break
            shown += 1
            if fmt == "jsonl":
                sys.stdout.write(json.dumps(reports.entry_json(entry)) + "\n")
            elif fmt == "csv":
                sys.stdout.write(reports.entries_csv([entry], header=shown == 1))
            else:
                collected.append(entry)
        if fmt == "csv" and shown == 0:
            sys.stdout.write(reports.entries_csv([]))
    if fmt == "table":
        out.print(reports.entries_table(collected) if collected else "no events")


@audit.command("as-of")
@click.argument("instant", type=Instant())
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@clean_errors
def audit_as_of(ctx: click.Context, instant: datetime, as_json: bool) -> None:
    """Every token as it stood at INSTANT (ISO 8601, UTC unless a zone is given)."""
    from rich.table import Table

    with open_service(ctx) as service:
        tokens = service.audit.as_of(operator(), instant)
    if as_json:
        print_json([reports.as_of_json(t) for t in tokens])
        return
    table = Table(title=f"tokens as of {instant.isoformat()}")
    for column in ("owner", "name", "scopes", "state", "created", "expires", "last used"):
        table.add_column(column, overflow="fold")
    for t in tokens:
        table.add_row(
            t.owner,
            t.name,
            " ".join(t.scopes),
            t.state,
            t.created_at.strftime("%Y-%m-%d %H:%M"),
            t.expires_at.strftime("%Y-%m-%d %H:%M") if t.expires_at else "never",
            t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never",
        )
    out.print(table)


@audit.command("exposure")
@click.option("--scope", required=True)
@click.option("--since", type=Instant(), required=True)
@click.option("--until", type=Instant(), required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@clean_errors
def audit_exposure(ctx: click.Context, scope: str, since: datetime, until: datetime, as_json: bool) -> None:
    """Who could use SCOPE between SINCE and UNTIL, and who did."""
    from rich.table import Table

    with open_service(ctx) as service:
        exposed = service.audit.exposure(operator(), scope, since, until)
    if as_json:
        print_json([reports.exposure_json(x) for x in exposed])
        return
    table = Table(title=f"{scope} between {since.isoformat()} and {until.isoformat()}")
    for column in ("owner", "token", "scopes", "usable", "uses in window"):
        table.add_column(column, overflow="fold")
    for x in exposed:
        usable = (
            f"{x.active_from:%Y-%m-%d %H:%M} - {x.active_until:%Y-%m-%d %H:%M}"
            if x.active_until
            else (f"{x.active_from:%Y-%m-%d %H:%M} -")
        )
        uses = "; ".join(
            f"{u.last_used_at:%Y-%m-%d %H:%M} x{u.count} {' '.join(u.scopes)} from {' '.join(u.addresses)}"
            for u in x.uses
        )
        table.add_row(x.owner, x.name, " ".join(x.scopes), usable, uses or "none")
    out.print(table)


@audit.command("digest")
@click.pass_context
@clean_errors
def audit_digest(ctx: click.Context) -> None:
    """The head of the hash chain: record it elsewhere to prove later that nothing before it changed."""
    with open_service(ctx) as service:
        position, digest = service.audit.digest()
    click.echo(f"{position} {digest}")


@audit.command("verify")
@click.option("--export", "export_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--expect", help="POSITION:DIGEST recorded earlier with `audit digest`.")
@click.pass_context
@clean_errors
def audit_verify(ctx: click.Context, export_file: Path | None, expect: str | None) -> None:
    """Recompute the hash chain over the stored events (or over an export) and compare."""
    expected = None
    if expect:
        position, _, digest = expect.replace(" ", ":").partition(":")
        if not position.isdigit() or len(digest) != 64:
            raise click.BadParameter(
                "expected POSITION:DIGEST as printed by `audit digest`", param_hint="--expect"
            )
        expected = (int(position), digest)
    with open_service(ctx) as service:
        if export_file is not None:
            with export_file.open() as lines:
                check = service.audit.verify_export(lines)
        else:
            head = service.projections.recorder.max_notification_id() or 0
            with _progress() as bar:
                task = bar.add_task("verifying", total=head)
                check = service.audit.verify(
                    expect=expected, progress=lambda _n, last: bar.update(task, completed=last)
                )
    if not check.ok:
        fail(f"tampering detected at position {check.first_bad_position}: {check.problem}")
    out.print(f"ok: {check.checked} events verified, head {check.head_position} {check.head_digest}")
    if check.unchained:
        out.print(f"{check.unchained} newer events are not yet in the chain (projection lag)")


@audit.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@clean_errors
def audit_export(ctx: click.Context, file: Path) -> None:
    """Write the whole log to FILE as JSON lines, with each event's digest and the head.

    The export holds the stored events as they are, argon2 hashes included: keep it as safe as
    the database."""
    with open_service(ctx) as service:
        head = service.projections.recorder.max_notification_id() or 0
        with file.open("w") as target, _progress() as bar:
            task = bar.add_task("exporting", total=head)
            position, digest, count = service.audit.export(
                target, progress=lambda _n, last: bar.update(task, completed=last)
            )
    out.print(f"exported {count} events to {file}; head {position} {digest}")


def _plain_text(renderable: object) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@click.group()
def report() -> None:
    """Compliance reports."""


@report.command("compliance")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "html"]), default="table")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@click.option("--stale-days", type=click.IntRange(1), default=90, show_default=True)
@click.option("--rotation-days", type=click.IntRange(1), default=90, show_default=True)
@click.option("--max-clients", type=click.IntRange(1), default=3, show_default=True)
@click.pass_context
@clean_errors
def report_compliance(
    ctx: click.Context, fmt: str, output: Path | None, stale_days: int, rotation_days: int, max_clients: int
) -> None:
    """Findings per token with severity and recommendation, and a summary per owner."""
    policy = Policy(
        stale_days=stale_days,
        unused_scope_days=stale_days,
        rotation_days=rotation_days,
        max_clients=max_clients,
    )
    with open_service(ctx) as service:
        result = service.audit.compliance(operator(), policy)
    if fmt == "table" and output is None:
        out.print(reports.report_table(result))
        return
    text = {
        "json": lambda: json.dumps(reports.report_json(result), indent=2) + "\n",
        "csv": lambda: reports.report_csv(result),
        "html": lambda: reports.report_html(result),
        "table": lambda: _plain_text(reports.report_table(result)),
    }[fmt]()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        out.print(f"wrote {fmt} report to {output}")
