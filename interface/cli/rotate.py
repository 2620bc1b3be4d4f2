"""`tokenledger rotate-self`: a pipeline's token replaces itself, for scheduled rotation jobs."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import click
import httpx

from domain import token_format
from interface.cli.common import fail
from interface.cli.output import err, when
from interface.cli.scan import RedactedErrors, redact_text
from interface.client import ApiError, Client, Token


def current_value(token_env: str, from_stdin: bool) -> str:
    if from_stdin:
        value = sys.stdin.readline().strip()
        source = "standard input"
    else:
        value = os.environ.get(token_env, "").strip()
        source = f"${redact_text(token_env)}"
        if not value:
            raise click.UsageError(
                f"set {redact_text(token_env)} to the current token value, or pass --stdin"
            )
    if not token_format.is_well_formed(value):
        raise click.UsageError(f"{source} does not hold a tokenledger token (wrong shape or checksum)")
    return value


class PrivateFile:
    """A file only its owner may read (0600), replaced atomically.

    It is created before the token is rotated: a directory we cannot write to must fail while
    the old value still works, not after the server has replaced it with a value we then lose.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        self.fd, self.temporary = tempfile.mkstemp(prefix=".tokenledger-", dir=directory)  # mode 0600

    def commit(self, text: str) -> None:
        with os.fdopen(self.fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.temporary)


def rotate(url: str, value: str) -> tuple[Token, str]:
    try:
        with Client(url, token=value) as client:
            rotated = client.rotate_self()
    except ApiError as error:
        if error.status == 401:
            fail("the server did not accept the current value: it is revoked, expired or unknown")
        fail(redact_text(f"the server refused the rotation: {error}"))
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        fail(redact_text(f"could not reach {url}: {error}; nothing was changed"))
    except httpx.HTTPError as error:
        # Sent, but no answer: the server may have rotated, and then the new value is lost.
        fail(
            redact_text(
                f"no answer from {url} ({error!r}): the token may or may not have been rotated; if the "
                "current value no longer works, regenerate the token"
            )
        )
    if not rotated.value:
        fail("the server's answer carries no new value")
    return rotated, rotated.value


@click.command("rotate-self", cls=RedactedErrors)
@click.option(
    "--url", required=True, envvar="TOKENLEDGER_URL", help="The tokenledger server (or TOKENLEDGER_URL)."
)
@click.option(
    "--token-env",
    default="TOKENLEDGER_TOKEN",
    show_default=True,
    metavar="NAME",
    help="Environment variable holding the current value.",
)
@click.option(
    "--stdin", "from_stdin", is_flag=True, help="Read the current value from standard input instead."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write the new value (alone, no newline) to this file (mode 0600) instead of standard output.",
)
def rotate_self(url: str, token_env: str, from_stdin: bool, output: str | None) -> None:
    """Replace the current token value with a new one: same token, name and scopes.

    The old value stops working at once. The new value goes to standard output, or to --output
    FILE (mode 0600), from where a pipeline step puts it into the platform's secret store.
    """
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("give the server's http:// or https:// address", param_hint="--url")
    value = current_value(token_env, from_stdin)
    target, shown = None, redact_text(output or "")
    if output is not None:
        try:
            target = PrivateFile(output)
        except OSError as error:
            raise click.BadParameter(
                f"cannot write next to {shown}: {error.strerror}", param_hint="--output"
            ) from None
    try:
        rotated, new_value = rotate(url, value)
    except BaseException:
        if target is not None:
            target.discard()
        raise
    expiry = f"expires {when(rotated.expires_at)}" if rotated.expires_at else "does not expire"
    err.print(
        f"rotated token {rotated.id} ({rotated.name}); the new value {expiry}", markup=False, emoji=False
    )
    if target is None:
        click.echo(new_value)
        return
    try:
        target.commit(new_value)  # no newline: secret stores take the file's bytes as the value
    except OSError as error:
        target.discard()
        # Not printed instead: a value in a job log is a leak; a lost one only needs regenerating.
        fail(f"the token was rotated but {shown} could not be written ({error.strerror}); regenerate it")
    err.print(f"wrote the new value to {shown} (mode 0600)", markup=False, emoji=False)
