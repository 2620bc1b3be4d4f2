"""Audit and compliance: an admin account, or a token with admin:org. Members may read the log
of their own tokens."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from application.audit import EVENT_TYPES, MAX_PAGE
from domain.compliance import Policy
from domain.errors import TokenNotFound
from interface import reports
from interface.http import examples
from interface.http.dependencies import AuditActor, Context

router = APIRouter(prefix="/api/v1", tags=["audit"])


def _token_id(text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise TokenNotFound(text) from None


def _formats(description: str, *media_types: str, example: Any) -> dict[int | str, dict[str, Any]]:
    """The 200 answer in each of the formats `format=` selects, for the OpenAPI document."""
    content = {
        m: {"schema": {"type": "object"} if m == "application/json" else {"type": "string"}}
        for m in media_types
    }
    content["application/json"]["example"] = example
    return {200: {"description": description, "content": content}}


@router.get(
    "/audit/events",
    summary="The event log, filtered and cursor-paged",
    responses=_formats(
        "A page of entries (JSON), or the entries alone as JSON lines or CSV",
        "application/json",
        "application/x-ndjson",
        "text/csv",
        example=examples.LOG_PAGE,
    ),
)
def audit_events(
    actor: AuditActor,
    ctx: Context,
    owner: str | None = Query(None, max_length=64),
    token: str | None = Query(None, description="A token id."),
    type: Annotated[list[Literal[EVENT_TYPES]] | None, Query()] = None,  # type: ignore[valid-type]
    since: datetime | None = None,
    until: datetime | None = None,
    order: Literal["asc", "desc"] = "asc",
    cursor: int | None = Query(None, ge=0, description="next_cursor of the previous page"),
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    format: Literal["json", "jsonl", "csv"] = "json",
) -> Response:
    """Oldest first by default; `order=desc` for newest first. Pass the page's `next_cursor` as
    `cursor` for the next page: positions never move, so pages stay stable while events arrive."""
    page = ctx.service.audit.log(
        actor,
        owner=owner,
        token_id=_token_id(token),
        event_types=tuple(type or ()),
        since=since,
        until=until,
        newest_first=order == "desc",
        cursor=cursor,
        limit=limit,
    )
    headers = {"X-Next-Cursor": str(page.next_cursor)} if page.next_cursor is not None else {}
    if format == "csv":
        return Response(reports.entries_csv(page.entries), media_type="text/csv", headers=headers)
    if format == "jsonl":
        body = "".join(json.dumps(reports.entry_json(e)) + "\n" for e in page.entries)
        return Response(body, media_type="application/x-ndjson", headers=headers)
    return JSONResponse(
        {"events": [reports.entry_json(e) for e in page.entries], "next_cursor": page.next_cursor},
        headers=headers,
    )


@router.get(
    "/audit/tokens",
    summary="Every token as it stood at an instant",
    responses=examples.json_answer("The tokens, each as it stood then", examples.AS_OF),
)
def audit_as_of(actor: AuditActor, ctx: Context, as_of: datetime) -> list[dict[str, Any]]:
    return [reports.as_of_json(t) for t in ctx.service.audit.as_of(actor, as_of)]


@router.get(
    "/audit/exposure",
    summary="Who could use a scope in a window, and who did",
    responses=examples.json_answer("Each token that could use the scope, with its uses", examples.EXPOSURE),
)
def audit_exposure(
    actor: AuditActor,
    ctx: Context,
    scope: Annotated[str, Query(max_length=32)],
    since: datetime,
    until: datetime,
) -> list[dict[str, Any]]:
    return [reports.exposure_json(x) for x in ctx.service.audit.exposure(actor, scope, since, until)]


@router.get(
    "/audit/verify",
    summary="Recompute the hash chain over the stored events",
    responses=examples.json_answer(
        "The outcome, and the first position that no longer matches", examples.VERIFY
    ),
)
def audit_verify(actor: AuditActor, ctx: Context) -> dict[str, Any]:
    ctx.service.audit.require_auditor(actor)
    check = ctx.service.audit.verify()
    return {
        "ok": check.ok,
        "checked": check.checked,
        "head": {"position": check.head_position, "digest": check.head_digest},
        "first_bad_position": check.first_bad_position,
        "problem": check.problem,
        "unchained": check.unchained,
    }


@router.get(
    "/audit/digest",
    summary="The head of the hash chain",
    responses=examples.json_answer("The head position and its digest", examples.DIGEST),
)
def audit_digest(actor: AuditActor, ctx: Context) -> dict[str, Any]:
    ctx.service.audit.require_auditor(actor)
    position, digest = ctx.service.audit.digest()
    return {"position": position, "digest": digest}


@router.get(
    "/reports/compliance",
    summary="Compliance report: findings per token, summary per owner",
    responses=_formats(
        "The report as JSON, CSV or a self-contained HTML page",
        "application/json",
        "text/csv",
        "text/html",
        example=examples.REPORT,
    ),
)
def compliance_report(
    actor: AuditActor,
    ctx: Context,
    format: Literal["json", "csv", "html"] = "json",
    stale_days: int = Query(90, ge=1, le=3650),
    rotation_days: int = Query(90, ge=1, le=3650),
    max_clients: int = Query(3, ge=1, le=1000),
) -> Response:
    policy = Policy(
        stale_days=stale_days,
        unused_scope_days=stale_days,
        rotation_days=rotation_days,
        max_clients=max_clients,
    )
    report = ctx.service.audit.compliance(actor, policy)
    if format == "csv":
        return Response(
            reports.report_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="compliance.csv"'},
        )
    if format == "html":
        return HTMLResponse(reports.report_html(report))
    return JSONResponse(reports.report_json(report))
