"""`tokenledger serve`: first-start set-up, then uvicorn with one or more worker processes."""

from __future__ import annotations

import logging.config
import os
import secrets
import shutil
import signal
import sys
import tempfile

import uvicorn

from domain.account import Role
from interface.settings import Settings
from interface.wiring import build

FIRST_ADMIN = "admin"


def log_config(level: str) -> dict:  # type: ignore[type-arg]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "tokenledger": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # uvicorn's own access log prints query strings; ours (tokenledger.access) does not.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def prepare(settings: Settings) -> None:
    """Create the tables, catch the read models up, and on an empty store register `admin`
    with a generated password, printed once."""
    with build(settings) as service:
        if service.ledger.has_accounts():
            return
        password = secrets.token_urlsafe(18)
        service.ledger.register_account(FIRST_ADMIN, Role.ADMIN, password)
    print(
        f"First start: created the account '{FIRST_ADMIN}' (role admin) with the password\n\n"
        f"    {password}\n\n"
        "It is shown only this once. Change it with the web pages or the API.",
        file=sys.stdout,
        flush=True,
    )


def run(settings: Settings, *, host: str, port: int, workers: int, log_level: str) -> None:
    logging.config.dictConfig(log_config(log_level))
    prepare(settings)
    os.environ["TOKENLEDGER_DATABASE_URL"] = settings.database_url
    # Workers must sign sessions with one key; without a configured one, make one for this run.
    os.environ.setdefault("TOKENLEDGER_SESSION_KEY", secrets.token_urlsafe(48))
    metrics_dir = None
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="tokenledger-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # uvicorn shuts down gracefully on SIGTERM (the lifespan flushes pending usage) and then
    # re-raises the signal to whatever handler was there before it; this one makes that a
    # clean exit with status 0, as service managers expect.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "interface.http.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            # uvicorn would rewrite the client address from X-Forwarded-For for its own list of
            # proxies (127.0.0.1 unless FORWARDED_ALLOW_IPS says otherwise); the app applies
            # TOKENLEDGER_TRUSTED_PROXIES itself, and two policies would disagree.
            proxy_headers=False,
            log_config=log_config(log_level),
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
