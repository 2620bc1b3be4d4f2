"""Template filters: times as people read them ("3 minutes ago", "expires in 12 days")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment


def _now() -> datetime:
    return datetime.now(UTC)


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "Never used"
    seconds = int(((now or _now()) - value).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def expiry(record: Any, now: datetime | None = None) -> str:
    now = now or _now()
    if getattr(record, "revoked_at", None) is not None:
        return "revoked"
    expires = record.expires_at
    if expires is None:
        return "No expiration"
    if expires <= now:
        return f"expired on {expires:%b %d, %Y}"
    days = (expires - now).days
    if days == 0:
        return "expires today"
    return f"expires in {days} day{'s' if days != 1 else ''} ({expires:%b %d, %Y})"


def date(value: datetime | None) -> str:
    return f"{value:%b %d, %Y}" if value else ""


def iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def details(values: dict[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        if value in (None, [], "", False):
            continue
        text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"{key.replace('_', ' ')}: {text}")
    return "; ".join(parts)


def install_filters(env: Environment) -> None:
    env.filters.update(ago=ago, expiry=expiry, date=date, iso=iso, details=details)
