"""RFC 9457 problem documents: the one place that maps errors to HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy.exc
from eventsourcing.persistence import ConnectionUnavailableError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from domain.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    NotFound,
    PermissionDenied,
    ValidationError,
)

log = logging.getLogger("tokenledger.http")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://outpost.dev/problems/"


class Problem(Exception):
    """An HTTP error raised by the interface itself (not by the domain)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    response = JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)
    if isinstance(headers, dict):
        headers = list(headers.items())
    for name, value in headers or []:
        response.headers.append(name, value)
    return response


BASIC_CHALLENGE = 'Basic realm="Outpost", charset="UTF-8"'


def unauthorized_headers(
    error: str | None = "invalid_token", scope: str | None = None
) -> list[tuple[str, str]]:
    """RFC 6750 / RFC 7617 challenges: Bearer (with an error when a credential was sent) and Basic."""
    bearer = 'Bearer realm="Outpost"'
    if error:
        bearer += f', error="{error}"'
    if scope:
        bearer += f', scope="{scope}"'
    return [("WWW-Authenticate", bearer), ("WWW-Authenticate", BASIC_CHALLENGE)]


def _status_for(error: DomainError) -> int:
    if isinstance(error, ValidationError):
        return 422
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, PermissionDenied):
        return 403
    if isinstance(error, AuthenticationFailed):
        return 401
    return 400


HtmlPage = Callable[[Request, int, str, str], Response]


def install(app: FastAPI, html_page: HtmlPage | None = None) -> None:
    """Problem documents for the API; `html_page` renders errors of the web pages."""

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, error: DomainError) -> Response:
        status = _status_for(error)
        if not request.url.path.startswith("/api/") and html_page is not None:
            return html_page(request, status, error.title, str(error))
        extra = None
        if isinstance(error, ValidationError):
            extra = {"errors": [{"field": error.field, "detail": error.detail}]}
        headers = unauthorized_headers(error=None) if status == 401 else None
        return problem_response(status, error.title, str(error), headers=headers, extra=extra)

    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(
            error.status, error.title, error.detail, slug=error.slug, headers=error.headers, extra=error.extra
        )

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = []
        for item in error.errors():
            if item.get("type") == "json_invalid":
                errors.append({"field": "body", "detail": "the body is not valid JSON"})
                continue
            location = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")]
            errors.append({"field": ".".join(location) or "body", "detail": item.get("msg", "invalid")})
        detail = "; ".join(f"{e['field']}: {e['detail']}" for e in errors) or "the request is not valid"
        return problem_response(422, "Request not valid", detail, slug="validation", extra={"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
        title = titles.get(error.status_code, "HTTP error")
        detail = error.detail if isinstance(error.detail, str) else title
        return problem_response(error.status_code, title, detail, headers=dict(error.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        if _is_busy(error):
            # The store stayed busy past its timeouts: a rolled-back write, or a read that gave
            # up. Not the client's fault and not a crash: say when to come back.
            log.warning("store busy on %s %s: %s", request.method, request.url.path, type(error).__name__)
            return problem_response(
                503,
                "Service busy",
                "the token store stayed busy; try again shortly",
                slug="busy",
                headers={"Retry-After": "1"},
            )
        # No details: an unexpected error's text could carry anything. The log has the traceback.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error", "the server failed to handle this request")


def _is_busy(error: BaseException) -> bool:
    """A store that is busy rather than broken: the connection pool timed out, or SQLite's
    write lock stayed held past the busy timeout."""
    if isinstance(error, ConnectionUnavailableError):
        return True
    if isinstance(error, sqlalchemy.exc.OperationalError):
        error = error.orig or error
    return type(error).__name__ == "OperationalError" and "database is locked" in str(error)
