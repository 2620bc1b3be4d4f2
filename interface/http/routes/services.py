"""For other services: RFC 7662 introspection and RFC 7009 revocation by value."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from interface.http.credentials import client_address
from interface.http.dependencies import Context, ServiceCaller
from interface.http.problems import Problem
from interface.http.schemas import Introspection

router = APIRouter(prefix="/api/v1", tags=["services"])

TokenField = Annotated[
    str,
    Form(
        max_length=4096,
        description="The token value.",
        examples=["opat_..."],
    ),
]
HintField = Annotated[str | None, Form(max_length=64)]


def _form_example(example: dict[str, str]) -> dict[str, object]:
    """An example for a form body in the OpenAPI document (FastAPI documents only fields)."""
    return {"requestBody": {"content": {"application/x-www-form-urlencoded": {"example": example}}}}


@router.post(
    "/introspect",
    response_model=Introspection,
    response_model_exclude_none=True,
    summary="RFC 7662",
    openapi_extra=_form_example({"token": "opat_...", "token_type_hint": "access_token"}),
)
def introspect(
    request: Request,
    caller: ServiceCaller,
    ctx: Context,
    token: TokenField,
    token_type_hint: HintField = None,
) -> Introspection:
    """Whether a value is active and what it may do. Callers are `service` or `admin` accounts."""
    ledger = ctx.service.ledger
    result = ledger.verify(token)
    ctx.metrics.verifications.labels(result.outcome.value).inc()
    if not result.ok or result.token is None:
        return Introspection(active=False)
    verified = result.token
    ledger.record_use(result, user_agent=f"introspection by {caller.username}")
    record = ledger.read.token(verified.token_id)
    issued_at = record.issued_at if record else None
    return Introspection(
        active=True,
        scope=str(verified.scopes),
        username=verified.owner,
        sub=verified.owner,
        exp=int(verified.expires_at.timestamp()) if verified.expires_at else None,
        iat=int(issued_at.timestamp()) if issued_at else None,
        token_type="Bearer",  # noqa: S106 - the RFC 7662 token type, not a secret
        client_id=str(verified.token_id),
    )


@router.post(
    "/revoke",
    summary="RFC 7009: revoke a leaked value",
    openapi_extra=_form_example({"token": "opat_..."}),
    response_class=Response,
    responses={200: {"description": "Revoked, or nothing to revoke (RFC 7009 says the same either way)"}},
)
def revoke(request: Request, ctx: Context, token: TokenField, token_type_hint: HintField = None) -> Response:
    """Anyone holding a value may revoke it. Always 200, whether the value was active or not."""
    address = client_address(request, ctx.trusted_proxies) or "unknown"
    now = time.time()  # wall clock: the limiter counts across processes
    if ctx.revoke_limiter.is_blocked(address, now):
        raise Problem(
            429, "Too many requests", "too many revocation reports; slow down", headers={"Retry-After": "60"}
        )
    ctx.revoke_limiter.record(address, now)
    ctx.service.ledger.revoke_by_value(token, reporter=f"reporter {address}", source="rfc7009")
    return Response(status_code=200)
