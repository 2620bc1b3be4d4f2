"""Builds the ASGI application around a Service. Nothing here runs at import time."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from interface.http import problems
from interface.http.dependencies import HttpContext
from interface.http.hotpath import make_auth_check
from interface.http.metrics import Metrics
from interface.http.middleware import AccessLog, BodySizeLimit, SecurityHeaders
from interface.http.pages import routes as pages
from interface.http.pages.session import SessionSigner
from interface.http.routes import audit, operations, services, token_auth, tokens
from interface.settings import Settings
from interface.wiring import Service, build
from projections.throttle import SqlLimiter

STATIC = Path(__file__).parent / "pages" / "static"

DESCRIPTION = """
Personal access tokens for the Outpost platform: create them with a name, scopes and an expiry,
use them as `Authorization: Bearer <token>` or as the password of HTTP Basic (Git over HTTPS),
list them with their last use, regenerate and revoke them. Errors are RFC 9457 problem documents.
"""

AUTH_CHECK_OPENAPI: dict[str, Any] = {
    "get": {
        "tags": ["services"],
        "summary": "Forward-auth for nginx auth_request and Traefik ForwardAuth",
        "description": "Send the caller's `Authorization` header. 204 with X-Token-Owner, X-Token-Id and "
        "X-Token-Scopes when the token is valid and grants `scope`; 401 with `WWW-Authenticate: Bearer "
        'error="invalid_token"` and `Basic realm="Outpost"` when it is not; 403 with '
        '`error="insufficient_scope"` '
        "when it lacks the scope.",
        "operationId": "auth_check",
        "parameters": [
            {
                "name": "scope",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "string",
                    "enum": ["repo", "repo:read", "machine", "service", "job", "admin:org", "admin:ssh_key"],
                },
                "example": "repo:read",
            },
            {
                "name": "Authorization",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "example": "Bearer opat_...",
            },
        ],
        "responses": {
            "204": {"description": "Valid, and the scope is granted"},
            "400": {"description": "Unknown scope", "content": {"application/problem+json": {}}},
            "401": {"description": "Missing or invalid token", "content": {"application/problem+json": {}}},
            "403": {"description": "Insufficient scope", "content": {"application/problem+json": {}}},
        },
    }
}


def create_app(service: Service, *, owns_service: bool = False) -> FastAPI:
    settings = service.settings
    metrics = Metrics()
    context = HttpContext(
        service=service,
        metrics=metrics,
        trusted_proxies=settings.trusted_proxies,
        # In the database, so the limits hold across `serve --workers N`.
        login_limiter=SqlLimiter(
            service.read_models.engine, service.projections.engine, "sign-in", limit=10, window_seconds=300
        ),
        revoke_limiter=SqlLimiter(
            service.read_models.engine, service.projections.engine, "leak-report", limit=30, window_seconds=60
        ),
        signer=SessionSigner(settings.session_key or secrets.token_bytes(32)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.projections.start(
            settings.projection_interval_seconds,
            on_leading=lambda leading: metrics.projection_leader.set(1 if leading else 0),
        )
        service.ledger.usage.start()
        try:
            yield
        finally:
            # Graceful shutdown (SIGTERM, SIGINT): write the pending usage windows first.
            service.ledger.usage.stop()
            service.projections.stop()
            if owns_service:
                service.close()

    app = FastAPI(
        title="tokenledger",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.context = context
    problems.install(app, html_page=pages.error_page)
    app.add_route(
        "/api/v1/auth/check", make_auth_check(service.ledger, metrics, settings.trusted_proxies), ["GET"]
    )
    app.include_router(token_auth.router)
    app.include_router(tokens.router)
    app.include_router(services.router)
    app.include_router(audit.router)
    app.include_router(pages.router)
    pages.install(app)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(operations.router)
    _document_hot_path(app)
    if settings.bench_endpoints:
        _add_bench_endpoints(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app


def _add_bench_endpoints(app: FastAPI) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    @app.get("/bench/bare-fastapi", status_code=204, response_class=Response, include_in_schema=False)
    async def bare_fastapi() -> None:
        return None

    async def bare_starlette(request: Request) -> Response:
        return Response(status_code=204)

    app.add_route("/bench/bare-starlette", bare_starlette, ["GET"])


def _document_hot_path(app: FastAPI) -> None:
    """The hot path is a plain Starlette route; add it to the OpenAPI document by hand."""
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_schema()
            schema["paths"]["/api/v1/auth/check"] = AUTH_CHECK_OPENAPI
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_environment() -> FastAPI:
    """The uvicorn factory used by `tokenledger serve`: each worker process builds its own service."""
    return create_app(build(Settings.from_env()), owns_service=True)
