"""Example answers for the OpenAPI document, made by the same code that makes real answers, so
an example cannot drift from what the endpoint returns. Plain data: nothing runs at request time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from domain.compliance import Policy, assess, summarise
from domain.views import AuditEntry, Exposure, ExposureUse, TokenAsOf, TokenRecord
from interface import reports

TOKEN_ID = uuid.UUID("3f2b8c1e-5d4a-4e8b-9c7d-2a1b0c9d8e7f")
CREATED = datetime(2026, 11, 4, 9, 12, tzinfo=UTC)
EXPIRES = datetime(2026, 12, 4, 9, 12, tzinfo=UTC)
USED = datetime(2026, 11, 20, 14, 3, 27, tzinfo=UTC)

TOKEN = {
    "id": str(TOKEN_ID),
    "owner": "alice",
    "name": "GitHub Actions",
    "scopes": ["repo:read"],
    "state": "active",
    "created_at": CREATED.isoformat(),
    "expires_at": EXPIRES.isoformat(),
    "last_used_at": USED.isoformat(),
    "last_used_ip": "203.0.113.7",
    "regenerated_at": None,
    "revoked_at": None,
}
TOKEN_CREATED = TOKEN | {"last_used_at": None, "last_used_ip": None, "token": "opat_... (shown once)"}
TOKEN_EVENT = {
    "position": 5,
    "at": USED.isoformat(),
    "type": "Used",
    "actor": None,
    "details": {
        "first_used_at": "2026-11-20T14:02:31+00:00",
        "last_used_at": USED.isoformat(),
        "count": 3,
        "scopes": ["repo:read"],
        "addresses": ["203.0.113.7"],
        "user_agents": ["git/2.43.0"],
        "rehashed": False,
    },
}
USER = {
    "username": "alice",
    "token": {
        "id": str(TOKEN_ID),
        "name": "GitHub Actions",
        "scopes": ["repo:read"],
        "expires_at": EXPIRES.isoformat(),
    },
}

AS_OF = [
    reports.as_of_json(
        TokenAsOf(
            id=TOKEN_ID,
            owner="alice",
            name="GitHub Actions",
            scopes=["repo:read"],
            state="active",
            created_at=CREATED,
            expires_at=EXPIRES,
            regenerated_at=None,
            revoked_at=None,
            revoke_reason=None,
            last_used_at=USED,
            use_count=42,
        )
    )
]
EXPOSURE = [
    reports.exposure_json(
        Exposure(
            id=TOKEN_ID,
            owner="alice",
            name="GitHub Actions",
            scopes=["repo:read"],
            active_from=datetime(2026, 11, 18, tzinfo=UTC),
            active_until=datetime(2026, 11, 25, tzinfo=UTC),
            uses=[
                ExposureUse(
                    first_used_at=datetime(2026, 11, 20, 14, 2, 31, tzinfo=UTC),
                    last_used_at=USED,
                    count=3,
                    scopes=["repo:read"],
                    addresses=["203.0.113.7"],
                    user_agents=["git/2.43.0"],
                )
            ],
        )
    )
]
VERIFY = {
    "ok": True,
    "checked": 1042,
    "head": {"position": 1042, "digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    "first_bad_position": None,
    "problem": None,
    "unchained": 0,
}
DIGEST = {"position": 1042, "digest": VERIFY["head"]["digest"]}  # type: ignore[index]

LOG_PAGE = {
    "events": [
        reports.entry_json(
            AuditEntry(
                position=5,
                at=USED,
                event_type="Used",
                aggregate="token",
                subject_id=TOKEN_ID,
                token_name="GitHub Actions",  # noqa: S106 - a token name, not a secret
                owner="alice",
                actor=None,
                details=TOKEN_EVENT["details"],  # type: ignore[arg-type]
            )
        )
    ],
    "next_cursor": 5,
}

_REPORT_AT = datetime(2026, 12, 1, tzinfo=UTC)
_NEVER_EXPIRES = TokenRecord(
    id=TOKEN_ID,
    owner="alice",
    name="Jenkins CI",
    scopes=["repo"],
    created_at=datetime(2026, 6, 1, tzinfo=UTC),
    expires_at=None,
    regenerated_at=None,
    revoked_at=None,
    revoke_reason=None,
)
REPORT = reports.report_json(
    summarise([_NEVER_EXPIRES], assess(_NEVER_EXPIRES, [], [], _REPORT_AT, Policy()), _REPORT_AT, Policy())
)


def json_answer(description: str, example: Any) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that answers plain JSON (no response model) with an example."""
    return {200: {"description": description, "content": {"application/json": {"example": example}}}}
