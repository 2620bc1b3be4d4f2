"""The web pages: sign in, the token list, create, regenerate, revoke, history, and for admins
every owner's tokens, bulk revoke and the compliance report."""

from __future__ import annotations

import hmac
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from application.ledger import Actor, IssuedToken
from domain.errors import DomainError, NotFound, PermissionDenied
from domain.expiry import parse_cli_expiry
from domain.scopes import DESCRIPTIONS, Scope
from domain.views import TokenRecord
from interface.http.credentials import client_address
from interface.http.dependencies import Context, HttpContext, session_actor
from interface.http.pages import session as sessions
from interface.http.pages.filters import install_filters

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
install_filters(templates.env)

NO_STORE = {"Cache-Control": "no-store"}


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class CsrfFailed(Exception):
    pass


class PageUser:
    """The signed-in account of a page request, with its session's CSRF token."""

    def __init__(self, actor: Actor, csrf: str, session: sessions.Session) -> None:
        self.actor = actor
        self.csrf = csrf
        self.session = session

    @property
    def username(self) -> str:
        return self.actor.username

    @property
    def is_admin(self) -> bool:
        return self.actor.is_admin


def session_user(request: Request, ctx: HttpContext) -> PageUser | None:
    """The account of a valid session cookie, or None. A changed password ends the session."""
    actor = session_actor(request, ctx)
    if actor is None:
        return None
    session = ctx.signer.read(request.cookies.get(sessions.SESSION_COOKIE))
    assert session is not None
    return PageUser(actor, ctx.signer.csrf_token(session.session_id), session)


def signed_in(request: Request, ctx: Context) -> PageUser:
    user = session_user(request, ctx)
    if user is None:
        raise SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return user


User = Annotated[PageUser, Depends(signed_in)]


def require_csrf(user: PageUser, token: str | None) -> None:
    if not token or not hmac.compare_digest(token, user.csrf):
        raise CsrfFailed


def require_admin(user: PageUser) -> None:
    if not user.is_admin:
        raise PermissionDenied("this page is for admins")


def render(
    request: Request, name: str, user: PageUser | None, status: int = 200, **values: Any
) -> HTMLResponse:
    values |= {"user": user.actor if user else None, "csrf": user.csrf if user else ""}
    return templates.TemplateResponse(request, name, values, status_code=status)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


# Sign in and out -------------------------------------------------------------------------


@router.get("/")
def home(request: Request, ctx: Context) -> Response:
    return RedirectResponse("/tokens" if session_user(request, ctx) else "/login", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/tokens") -> Response:
    return _login_form(request, next_path=next)


def _login_form(
    request: Request, *, next_path: str, error: str = "", username: str = "", status: int = 200
) -> Response:
    token = uuid.uuid4().hex
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "user": None,
            "login_csrf": token,
            "next": _safe_next(next_path),
            "error": error,
            "username": username,
        },
        status_code=status,
    )
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=3600,
    )
    return response


def _safe_next(path: str) -> str:
    """Only local paths: never redirect somewhere else after sign-in."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/tokens"


@router.post("/login")
def login(
    request: Request,
    ctx: Context,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=500)] = "/tokens",
) -> Response:
    expected = request.cookies.get(sessions.LOGIN_CSRF_COOKIE)
    if not expected or csrf_token != expected:
        return _login_form(
            request, next_path=next, error="The form expired; please sign in again.", status=403
        )
    key = f"{username.lower()}|{client_address(request, ctx.trusted_proxies)}"
    now = time.time()  # wall clock: the limiter counts across processes
    if ctx.login_limiter.is_blocked(key, now):
        return _login_form(
            request,
            next_path=next,
            username=username,
            status=429,
            error="Too many failed sign-ins. Wait a few minutes and try again.",
        )
    try:
        actor = ctx.service.ledger.authenticate(username, password)
    except DomainError:
        ctx.login_limiter.record(key, now)
        return _login_form(
            request, next_path=next, username=username, error="Incorrect username or password.", status=401
        )
    account = ctx.service.ledger.session_account(actor.username)
    cookie, _ = ctx.signer.issue(account.username, account.password_hash)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=sessions.SESSION_SECONDS,
    )
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(user: User, csrf_token: Annotated[str, Form(max_length=64)] = "") -> Response:
    require_csrf(user, csrf_token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE)
    return response


# Tokens ----------------------------------------------------------------------------------


def _state(state: str) -> str:
    return state if state in ("active", "expired", "revoked", "all") else "active"


@router.get("/tokens")
def tokens_page(
    request: Request, user: User, ctx: Context, state: str = "active", flash: str = ""
) -> Response:
    state = _state(state)
    records = ctx.service.ledger.tokens(user.actor, state=state)
    return render(
        request,
        "tokens.html",
        user,
        tokens=records,
        state=state,
        heading="Personal access tokens",
        show_owner=False,
        owner_param="",
        now=ctx.service.ledger.clock.now(),
        flash=flash[:200],
    )


@router.get("/admin/tokens")
def admin_tokens_page(
    request: Request, user: User, ctx: Context, state: str = "active", owner: str = "", flash: str = ""
) -> Response:
    require_admin(user)
    state = _state(state)
    records = ctx.service.ledger.tokens(user.actor, owner=owner or "*", state=state)
    return render(
        request,
        "tokens.html",
        user,
        tokens=records,
        state=state,
        heading="All tokens",
        show_owner=True,
        owner_param=owner,
        now=ctx.service.ledger.clock.now(),
        flash=flash[:200],
    )


def _scope_choices() -> list[tuple[str, str]]:
    return [(s.value, DESCRIPTIONS[s]) for s in Scope]


@router.get("/tokens/new")
def new_token_page(request: Request, user: User) -> Response:
    form = {"name": "", "expires": "30", "scopes": []}
    return render(request, "new.html", user, form=form, scopes=_scope_choices())


@router.post("/tokens/new")
def create_token(
    request: Request,
    user: User,
    ctx: Context,
    name: Annotated[str, Form(max_length=200)] = "",
    expires: Annotated[str, Form(max_length=10)] = "30",
    scopes: Annotated[list[str] | None, Form()] = None,
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    require_csrf(user, csrf_token)
    form = {"name": name, "expires": expires, "scopes": scopes or []}
    try:
        issued = ctx.service.ledger.create_token(
            user.actor, name=name, scopes=scopes or [], expires_in_days=parse_cli_expiry(expires)
        )
    except DomainError as error:
        return render(
            request, "new.html", user, status=422, form=form, scopes=_scope_choices(), error=str(error)
        )
    return _issued(request, user, issued, "Your new personal access token")


def _issued(request: Request, user: PageUser, issued: IssuedToken, heading: str) -> Response:
    response = render(
        request,
        "issued.html",
        user,
        heading=heading,
        value=issued.value,
        record=issued.record,
        base_url=str(request.base_url).rstrip("/"),
    )
    response.headers.update(NO_STORE)
    return response


def _record(ctx: HttpContext, user: PageUser, token_id: str) -> TokenRecord:
    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        raise NotFoundPage from None
    try:
        return ctx.service.ledger.token(user.actor, parsed)
    except NotFound:
        raise NotFoundPage from None


class NotFoundPage(Exception):
    pass


@router.get("/tokens/{token_id}")
def token_page(request: Request, token_id: str, user: User, ctx: Context) -> Response:
    record = _record(ctx, user, token_id)
    history = ctx.service.ledger.history(user.actor, record.id)
    state = record.state(ctx.service.ledger.clock.now()).value
    return render(request, "token.html", user, record=record, history=history, state=state)


@router.get("/tokens/{token_id}/regenerate")
def regenerate_page(request: Request, token_id: str, user: User, ctx: Context) -> Response:
    record = _record(ctx, user, token_id)
    return render(
        request,
        "confirm.html",
        user,
        record=record,
        title=f"Regenerate “{record.name}”?",
        warning="A new value will be issued. The current value stops working at once: update every "
        "pipeline and tool that uses it.",
        action=f"/tokens/{record.id}/regenerate",
        button="Regenerate token",
        button_class="primary",
    )


@router.post("/tokens/{token_id}/regenerate")
def regenerate(
    request: Request,
    token_id: str,
    user: User,
    ctx: Context,
    expires: Annotated[str, Form(max_length=10)] = "keep",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    require_csrf(user, csrf_token)
    record = _record(ctx, user, token_id)
    changes = {} if expires == "keep" else {"expires_in_days": parse_cli_expiry(expires)}
    issued = ctx.service.ledger.regenerate_token(user.actor, record.id, **changes)
    return _issued(request, user, issued, f"“{record.name}” regenerated")


@router.get("/tokens/{token_id}/revoke")
def revoke_page(request: Request, token_id: str, user: User, ctx: Context) -> Response:
    record = _record(ctx, user, token_id)
    return render(
        request,
        "confirm.html",
        user,
        record=record,
        title=f"Revoke “{record.name}”?",
        warning="Any pipeline or tool using this token will get 401 Unauthorized from now on. "
        "This cannot be undone.",
        action=f"/tokens/{record.id}/revoke",
        button="Revoke token",
        button_class="danger",
    )


@router.post("/tokens/{token_id}/revoke")
def revoke(
    token_id: str, user: User, ctx: Context, csrf_token: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    require_csrf(user, csrf_token)
    record = _record(ctx, user, token_id)
    ctx.service.ledger.revoke_token(user.actor, record.id, source="web")
    return RedirectResponse(f"/tokens?flash=Revoked+{_quote(record.name)}", status_code=303)


def _quote(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(f"“{text}”.")


# Admin -----------------------------------------------------------------------------------


@router.get("/admin/compliance")
def compliance_page(request: Request, user: User, ctx: Context) -> Response:
    require_admin(user)
    report = ctx.service.audit.compliance(user.actor)
    return render(request, "compliance.html", user, report=report)


@router.post("/admin/revoke-all")
def revoke_all(
    user: User,
    ctx: Context,
    owner: Annotated[str, Form(max_length=64)] = "",
    issued_before: Annotated[str, Form(max_length=40)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    require_csrf(user, csrf_token)
    require_admin(user)
    before = None
    if issued_before:
        try:
            before = datetime.fromisoformat(issued_before)
        except ValueError:
            return RedirectResponse("/admin/compliance", status_code=303)
        before = before if before.tzinfo else before.replace(tzinfo=UTC)
    count = ctx.service.ledger.revoke_all(
        user.actor, owner=owner or None, all_owners=not owner, issued_before=before, source="web"
    )
    return RedirectResponse(f"/admin/tokens?flash=Revoked+{count}+tokens", status_code=303)


# Errors ----------------------------------------------------------------------------------


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    ctx: HttpContext = request.app.state.context
    user = session_user(request, ctx)
    return render(request, "error.html", user, status=status, title=title, detail=detail)


def install(app: Any) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, error: SignInRequired) -> Response:
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(error.next_path)}", status_code=303)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, error: CsrfFailed) -> Response:
        return error_page(
            request,
            403,
            "Form expired",
            "The form was not sent from this site or has expired. Go back, reload the page and try again.",
        )

    @app.exception_handler(NotFoundPage)
    async def not_found(request: Request, error: NotFoundPage) -> Response:
        return error_page(request, 404, "Token not found", "There is no such token, or it is not yours.")
