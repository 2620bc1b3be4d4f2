"""Helpers every command shares: the service, the operator identity, and clean errors."""

from __future__ import annotations

import getpass
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click
from rich.text import Text

from application.ledger import Actor
from domain.account import Role
from domain.errors import DomainError
from interface.cli.output import err
from interface.settings import Settings, SettingsError
from interface.wiring import Service, build
from projections.database import DatabaseUrlError

F = TypeVar("F", bound=Callable[..., Any])


def operator() -> Actor:
    return Actor(username=f"cli:{getpass.getuser()}", role=Role.ADMIN)


@contextmanager
def open_service(ctx: click.Context) -> Iterator[Service]:
    settings: Settings = ctx.obj
    service = build(settings)
    try:
        yield service
    finally:
        service.close()


def fail(message: str, code: int = 1) -> None:
    err.print(Text("error: ", style="bold red") + Text(message))
    sys.exit(code)


def clean_errors(func: F) -> F:
    """One clear line and a non-zero exit for every expected failure; never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DomainError as error:
            fail(str(error))
        except (DatabaseUrlError, SettingsError) as error:
            fail(str(error), code=2)
        except KeyError as error:
            fail(str(error.args[0]) if error.args else "not found")

    return wrapper  # type: ignore[return-value]


def parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        # Not echoed: what lands here is sometimes a token value pasted in the wrong place.
        raise click.BadParameter("not a token id (a UUID such as 0b6f9c1e-...; see `tokens list`)") from None


INSTANT_FORMATS = [
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
]


class Instant(click.ParamType):
    """An ISO 8601 instant; UTC unless it names a zone."""

    name = "instant"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant such as 2026-11-30T12:00:00Z", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
