"""`tokenledger`: run the service and manage accounts, tokens, audit and projections.

The command line talks to the store directly, as an operator: what it does is recorded with
the actor `cli:<operating-system user>`.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from domain.account import Role
from domain.expiry import parse_cli_expiry
from domain.scopes import DESCRIPTIONS, Scope
from interface.cli.audit import audit, report
from interface.cli.common import Instant, clean_errors, fail, open_service, operator, parse_id
from interface.cli.output import err, out, print_json, record_json, token_table, when
from interface.cli.rotate import rotate_self
from interface.cli.scan import scan
from interface.settings import Settings, SettingsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="TOKENLEDGER_DATABASE_URL",
    help="sqlite:///path or postgresql://user@host/db (default: sqlite:///var/tokenledger.sqlite)",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Personal access tokens with a full, auditable history."""
    env = dict(os.environ)
    if database_url:
        env["TOKENLEDGER_DATABASE_URL"] = database_url
    try:
        ctx.obj = Settings.from_env(env)
    except SettingsError as error:
        fail(str(error), code=2)


# Serve -------------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"])
)
@click.pass_context
@clean_errors
def serve(ctx: click.Context, host: str, port: int, workers: int, log_level: str) -> None:
    """Run the API, the projections and the usage writer."""
    from interface.http.serve import run

    run(ctx.obj, host=host, port=port, workers=workers, log_level=log_level)


# Accounts ----------------------------------------------------------------------------------


@cli.group()
def users() -> None:
    """Accounts that manage tokens (member, admin) or ask about them (service)."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), default=Role.MEMBER.value, show_default=True
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
@clean_errors
def users_add(ctx: click.Context, name: str, role: str, password_stdin: bool) -> None:
    """Register an account; the password is prompted for (or read from stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with open_service(ctx) as service:
        account = service.ledger.register_account(name, role, password)
    out.print(f"registered {account.username} ({account.role})")


@users.command("list")
@click.pass_context
@clean_errors
def users_list(ctx: click.Context) -> None:
    """Every account and its role."""
    from rich.table import Table

    with open_service(ctx) as service:
        accounts = service.ledger.accounts()
    table = Table()
    for column in ("username", "role", "registered"):
        table.add_column(column)
    for a in accounts:
        table.add_row(a.username, a.role, when(a.created_at))
    out.print(table)


# Tokens ------------------------------------------------------------------------------------


@cli.group()
def tokens() -> None:
    """Create, list, regenerate, revoke and verify tokens."""


SCOPE_HELP = "; ".join(f"{s.value}: {DESCRIPTIONS[s]}" for s in Scope)


@tokens.command("create")
@click.option("--owner", required=True, help="The account the token belongs to.")
@click.option("--name", required=True, help='What the token is for, e.g. "GitHub Actions".')
@click.option("--scope", "scopes", multiple=True, required=True, help=SCOPE_HELP)
@click.option("--expires", default="30", show_default=True, help="30, 60, 90 (days) or never.")
@click.pass_context
@clean_errors
def tokens_create(ctx: click.Context, owner: str, name: str, scopes: tuple[str, ...], expires: str) -> None:
    """Create a token and print its value once."""
    days = parse_cli_expiry(expires)
    with open_service(ctx) as service:
        issued = service.ledger.create_token(
            operator(), owner=owner, name=name, scopes=list(scopes), expires_in_days=days
        )
    _print_issued(issued.value, issued.record.id, issued.record.expires_at)


def _print_issued(value: str, token_id: uuid.UUID, expires_at: Any) -> None:
    err.print(f"token {token_id}, expires {when(expires_at)}")
    err.print(Text("Copy the value now: it is not stored and will not be shown again.", style="yellow"))
    click.echo(value)


@tokens.command("list")
@click.option("--owner", help="Only this owner's tokens (default: every owner).")
@click.option(
    "--state",
    type=click.Choice(["active", "expired", "revoked", "all"]),
    default="active",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
@clean_errors
def tokens_list(ctx: click.Context, owner: str | None, state: str, as_json: bool) -> None:
    """Tokens with name, scopes, creation, expiry and last use."""
    with open_service(ctx) as service:
        records = service.ledger.tokens(operator(), owner=owner or "*", state=state)
        now = service.ledger.clock.now()
    if as_json:
        print_json([record_json(r, now) for r in records])
    elif records:
        out.print(token_table(records, now))
    else:
        out.print(f"no {state} tokens")


@tokens.command("regenerate")
@click.argument("token_id")
@click.option("--expires", help="30, 60, 90 or never (default: the token's current lifetime).")
@click.pass_context
@clean_errors
def tokens_regenerate(ctx: click.Context, token_id: str, expires: str | None) -> None:
    """A new value, same name and scopes; the old value stops working at once."""
    kwargs = {} if expires is None else {"expires_in_days": parse_cli_expiry(expires)}
    with open_service(ctx) as service:
        issued = service.ledger.regenerate_token(operator(), parse_id(token_id), **kwargs)
    _print_issued(issued.value, issued.record.id, issued.record.expires_at)


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
@clean_errors
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token: it stops working at once."""
    with open_service(ctx) as service:
        changed = service.ledger.revoke_token(operator(), parse_id(token_id), source="cli")
    out.print(f"revoked {token_id}" if changed else f"{token_id} was already revoked")


@tokens.command("revoke-all")
@click.option("--owner", help="Revoke this owner's tokens.")
@click.option("--all-owners", is_flag=True, help="Revoke the tokens of every owner.")
@click.option(
    "--issued-before",
    type=Instant(),
    help="Only values issued (created or regenerated) before this instant (UTC unless a zone is given).",
)
@click.pass_context
@clean_errors
def tokens_revoke_all(ctx: click.Context, owner: str | None, all_owners: bool, issued_before: Any) -> None:
    """Bulk revoke, e.g. after a compromise."""
    if bool(owner) == all_owners:
        raise click.UsageError("give exactly one of --owner NAME or --all-owners")
    with open_service(ctx) as service:
        count = service.ledger.revoke_all(
            operator(), owner=owner, all_owners=all_owners, issued_before=issued_before, source="cli"
        )
    out.print(f"revoked {count} token{'s' if count != 1 else ''}")


@tokens.command("verify")
@click.option("--scope", help="Also require this scope.")
@click.pass_context
@clean_errors
def tokens_verify(ctx: click.Context, scope: str | None) -> None:
    """Read a value from stdin; exit 0 if it is valid (and has the scope), 1 if not."""
    from domain.scopes import parse_scope

    value = sys.stdin.readline().strip()
    wanted = parse_scope(scope) if scope else None
    with open_service(ctx) as service:
        result = service.ledger.verify(value)
    if result.ok and result.allows(wanted):
        token = result.token
        assert token is not None
        out.print(f"valid: token {token.token_id} ({token.name}) of {token.owner}, scopes {token.scopes}")
        return
    reason = "insufficient_scope" if result.ok else result.outcome.value
    err.print(f"invalid: {reason}")
    sys.exit(1)


# Projections -------------------------------------------------------------------------------


@cli.group()
def projections() -> None:
    """The read models: how far each has read the event log, and rebuilding them."""


@projections.command("status")
@click.pass_context
@clean_errors
def projections_status(ctx: click.Context) -> None:
    """Each projection's position in the event log, the log's head, and the lag between them."""
    from rich.table import Table

    with open_service(ctx) as service:
        status = service.projections.status()
    table = Table()
    for column in ("projection", "position", "head", "lag"):
        table.add_column(column)
    for s in status:
        table.add_row(s.name, str(s.position), str(s.head), str(s.lag))
    out.print(table)


@projections.command("rebuild")
@click.argument("names", nargs=-1)
@click.pass_context
@clean_errors
def projections_rebuild(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Drop and rebuild projections from the event log (all of them when none is named)."""
    with open_service(ctx) as service:
        runner = service.projections
        head = runner.recorder.max_notification_id() or 0
        known = [p.name for p in runner.projectors]
        unknown = [n for n in names if n not in known]
        if unknown:
            fail(f"no projection named {unknown[0]!r}; known: {', '.join(known)}")
        chosen = names or tuple(known)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as bar:
            task = bar.add_task(f"rebuilding {', '.join(chosen)}", total=head)
            runner.rebuild(*chosen, progress=lambda _read, last: bar.update(task, completed=last))
            bar.update(task, completed=head)
    out.print(f"rebuilt {', '.join(chosen)} up to position {head}")


cli.add_command(audit)
cli.add_command(report)
cli.add_command(scan)
cli.add_command(rotate_self)


def main() -> None:
    cli(prog_name="tokenledger")


if __name__ == "__main__":
    main()
