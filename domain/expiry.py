"""Token lifetimes: 30, 60 or 90 days, or none."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.errors import InvalidExpiry

ALLOWED_DAYS = (30, 60, 90)


def validate_days(days: int | None) -> int | None:
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or days not in ALLOWED_DAYS:
        raise InvalidExpiry("expires_in_days", f"expiry must be one of 30, 60, 90 days or none, not {days!r}")
    return days


def expires_at(now: datetime, days: int | None) -> datetime | None:
    days = validate_days(days)
    return None if days is None else now + timedelta(days=days)


def parse_cli_expiry(text: str) -> int | None:
    """`30`, `60`, `90` or `never`/`none`, as typed on the command line."""
    if text.strip().lower() in ("never", "none"):
        return None
    try:
        return validate_days(int(text))
    except ValueError:
        raise InvalidExpiry("expires", f"expiry must be 30, 60, 90 or never, not {text!r}") from None
