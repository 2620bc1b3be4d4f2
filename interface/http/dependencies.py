"""Who is calling: the dependencies every route uses, as Annotated aliases."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from application.ledger import Actor, Ledger
from application.verification import Limiter, Verification
from domain.account import Role
from domain.errors import AuthenticationFailed, DomainError
from interface.http.credentials import (
    PasswordCredential,
    TokenCredential,
    client_address,
    parse_authorization,
)
from interface.http.metrics import Metrics
from interface.http.pages.session import SESSION_COOKIE, SessionSigner, password_fingerprint
from interface.http.problems import Problem, unauthorized_headers
from interface.wiring import Service


@dataclass
class HttpContext:
    """What the routes share, built once per app by the composition root."""

    service: Service
    metrics: Metrics
    trusted_proxies: frozenset[str]
    login_limiter: Limiter
    revoke_limiter: Limiter
    signer: SessionSigner


def context(request: Request) -> HttpContext:
    return request.app.state.context


def ledger(request: Request) -> Ledger:
    return request.app.state.context.service.ledger


Context = Annotated[HttpContext, Depends(context)]
LedgerDep = Annotated[Ledger, Depends(ledger)]


class Unauthorized(Problem):
    def __init__(self, detail: str, error: str | None = None) -> None:
        super().__init__(
            401, "Authentication required", detail, slug="unauthorized", headers=unauthorized_headers(error)
        )


def current_account(request: Request, ctx: Context) -> Actor:
    """An account, by HTTP Basic username:password (or the web session, see the pages)."""
    credential = parse_authorization(request.headers.get("authorization"))
    if credential is None and request.method == "GET":
        # The web pages' session works for reading the API (report downloads); changes through
        # the API need real credentials, so a session cookie can never be used for a forged POST.
        actor = session_actor(request, ctx)
        if actor is not None:
            return actor
    if not isinstance(credential, PasswordCredential):
        raise Unauthorized("sign in with HTTP Basic as an account (username and password)")
    key = f"{credential.username.lower()}|{client_address(request, ctx.trusted_proxies)}"
    now = time.time()  # wall clock: the limiter counts across processes
    if ctx.login_limiter.is_blocked(key, now):
        raise Problem(
            429,
            "Too many attempts",
            "too many failed sign-ins; wait a minute and try again",
            headers={"Retry-After": "60"},
        )
    try:
        return ctx.service.ledger.authenticate(credential.username, credential.password)
    except AuthenticationFailed:
        ctx.login_limiter.record(key, now)
        raise Unauthorized("wrong username or password") from None


def session_actor(request: Request, ctx: HttpContext) -> Actor | None:
    session = ctx.signer.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    try:
        account = ctx.service.ledger.session_account(session.username)
    except DomainError:
        return None
    if password_fingerprint(account.password_hash) != session.password_fingerprint:
        return None
    return Actor(username=account.username, role=account.role)


def current_token(request: Request, ctx: Context) -> Verification:
    """A valid token, by Bearer, `token`, or HTTP Basic with the value as password. Counts as a use."""
    credential = parse_authorization(request.headers.get("authorization"))
    if not isinstance(credential, TokenCredential):
        raise Unauthorized("send a token as `Authorization: Bearer <token>`")
    ledger = ctx.service.ledger
    result = ledger.verify(credential.value)
    ctx.metrics.verifications.labels(result.outcome.value).inc()
    if not result.ok:
        raise Unauthorized("the token is malformed, unknown, expired or revoked", error="invalid_token")
    ledger.record_use(
        result,
        address=client_address(request, ctx.trusted_proxies),
        user_agent=request.headers.get("user-agent"),
    )
    return result


def service_caller(actor: Annotated[Actor, Depends(current_account)]) -> Actor:
    if actor.role not in (Role.SERVICE, Role.ADMIN):
        raise Problem(403, "Permission denied", "introspection is for service and admin accounts")
    return actor


def auditor_or_account(request: Request, ctx: Context) -> Actor:
    """An account (Basic or session), or a token; a token acts for its owner, and counts as an
    admin only when it grants admin:org."""
    credential = parse_authorization(request.headers.get("authorization"))
    if isinstance(credential, TokenCredential):
        verified = current_token(request, ctx)
        token = verified.token
        assert token is not None
        owner = ctx.service.ledger.account(token.owner)
        return Actor(
            username=token.owner, role=Role(owner.role), via_token=token.token_id, scopes=token.scopes
        )
    return current_account(request, ctx)


CurrentAccount = Annotated[Actor, Depends(current_account)]
AuditActor = Annotated[Actor, Depends(auditor_or_account)]
CurrentToken = Annotated[Verification, Depends(current_token)]
ServiceCaller = Annotated[Actor, Depends(service_caller)]
