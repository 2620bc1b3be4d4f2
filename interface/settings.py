"""Settings, read from the environment once, by the composition root (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from application.hashing import Argon2Parameters

DEFAULT_DATABASE_URL = "sqlite:///var/tokenledger.sqlite"


class SettingsError(ValueError):
    pass


def _number(env: Mapping[str, str], key: str, default: float, *, integer: bool = False) -> float:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, not {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{key} must not be negative")
    return value


def _session_key(text: str | None) -> bytes | None:
    if not text:
        return None
    key = text.encode()
    if len(key) < 32:
        raise SettingsError("TOKENLEDGER_SESSION_KEY must be at least 32 characters")
    return key


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    usage_window_seconds: float = 60.0
    argon2: Argon2Parameters = field(default_factory=Argon2Parameters)
    failure_limit: int = 10
    failure_window_seconds: float = 60.0
    projection_interval_seconds: float = 0.5
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    max_body_bytes: int = 64 * 1024
    # Two bare endpoints (FastAPI and Starlette, each answering 204) that the benchmarks
    # compare the hot path with, on the same server in the same run. Off in production.
    bench_endpoints: bool = False
    # Signs web session cookies and CSRF tokens. `serve` generates one per start when unset
    # (shared by its workers); set it to keep sessions across restarts and hosts.
    session_key: bytes | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = Argon2Parameters()
        return cls(
            database_url=env.get("TOKENLEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL,
            usage_window_seconds=_number(env, "TOKENLEDGER_USAGE_WINDOW_SECONDS", 60.0),
            argon2=Argon2Parameters(
                memory_kib=int(
                    _number(env, "TOKENLEDGER_ARGON2_MEMORY_KIB", defaults.memory_kib, integer=True)
                ),
                time_cost=int(_number(env, "TOKENLEDGER_ARGON2_TIME_COST", defaults.time_cost, integer=True)),
                parallelism=int(
                    _number(env, "TOKENLEDGER_ARGON2_PARALLELISM", defaults.parallelism, integer=True)
                ),
            ),
            failure_limit=int(_number(env, "TOKENLEDGER_FAILED_ATTEMPTS_LIMIT", 10, integer=True)),
            failure_window_seconds=_number(env, "TOKENLEDGER_FAILED_ATTEMPTS_WINDOW_SECONDS", 60.0),
            projection_interval_seconds=_number(env, "TOKENLEDGER_PROJECTION_INTERVAL_SECONDS", 0.5),
            bench_endpoints=env.get("TOKENLEDGER_BENCH_ENDPOINTS", "") == "1",
            session_key=_session_key(env.get("TOKENLEDGER_SESSION_KEY")),
            trusted_proxies=frozenset(
                p.strip()
                for p in env.get("TOKENLEDGER_TRUSTED_PROXIES", "127.0.0.1,::1").split(",")
                if p.strip()
            ),
        )
