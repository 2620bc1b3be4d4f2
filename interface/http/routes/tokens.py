"""Token management, authenticated as an account."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from domain.errors import TokenNotFound
from interface.http.dependencies import CurrentAccount, LedgerDep
from interface.http.schemas import (
    RevokeAll,
    RevokedCount,
    TokenCreate,
    TokenCreated,
    TokenEvent,
    TokenPublic,
    TokenRegenerate,
)

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])

NO_STORE = {"Cache-Control": "no-store"}


def parse_token_id(text: str) -> uuid.UUID:
    """Anything that is not a token id is simply a token that does not exist."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise TokenNotFound(text) from None  # not echoed: see TokenNotFound


@router.post("", status_code=201, response_model=TokenCreated, summary="Create a token")
def create_token(
    body: TokenCreate, actor: CurrentAccount, ledger: LedgerDep, response: Response
) -> TokenCreated:
    """Create a token. The response is the only place its value is ever shown."""
    issued = ledger.create_token(
        actor, name=body.name, scopes=body.scopes, expires_in_days=body.expires_in_days
    )
    response.headers.update(NO_STORE)
    return TokenCreated(**TokenPublic.of(issued.record, ledger.clock.now()).model_dump(), token=issued.value)


@router.get("", response_model=list[TokenPublic], summary="List your tokens")
def list_tokens(
    actor: CurrentAccount,
    ledger: LedgerDep,
    state: str = Query("active", pattern="^(active|expired|revoked|all)$"),
    owner: str | None = Query(None, max_length=64, description="Admins: another owner's tokens."),
) -> list[TokenPublic]:
    now = ledger.clock.now()
    return [TokenPublic.of(r, now) for r in ledger.tokens(actor, owner=owner, state=state)]


@router.post("/revoke-all", response_model=RevokedCount, summary="Revoke many tokens at once")
def revoke_all(body: RevokeAll, actor: CurrentAccount, ledger: LedgerDep) -> RevokedCount:
    issued_before = body.issued_before
    if issued_before is not None and issued_before.tzinfo is None:
        from datetime import UTC

        issued_before = issued_before.replace(tzinfo=UTC)
    count = ledger.revoke_all(
        actor, owner=body.owner, issued_before=issued_before, all_owners=body.all_owners
    )
    return RevokedCount(revoked=count)


@router.get("/{token_id}", response_model=TokenPublic, summary="One token")
def get_token(token_id: str, actor: CurrentAccount, ledger: LedgerDep) -> TokenPublic:
    return TokenPublic.of(ledger.token(actor, parse_token_id(token_id)), ledger.clock.now())


@router.post("/{token_id}/regenerate", response_model=TokenCreated, summary="Regenerate a token's value")
def regenerate_token(
    token_id: str,
    actor: CurrentAccount,
    ledger: LedgerDep,
    response: Response,
    body: TokenRegenerate | None = None,
) -> TokenCreated:
    """A new value with the same name and scopes; the old value stops working at once."""
    kwargs = {}
    if body is not None and "expires_in_days" in body.model_fields_set:
        kwargs["expires_in_days"] = body.expires_in_days
    issued = ledger.regenerate_token(actor, parse_token_id(token_id), **kwargs)
    response.headers.update(NO_STORE)
    return TokenCreated(**TokenPublic.of(issued.record, ledger.clock.now()).model_dump(), token=issued.value)


@router.delete("/{token_id}", status_code=204, summary="Revoke a token")
def revoke_token(token_id: str, actor: CurrentAccount, ledger: LedgerDep) -> Response:
    ledger.revoke_token(actor, parse_token_id(token_id))
    return Response(status_code=204)


@router.get("/{token_id}/events", response_model=list[TokenEvent], summary="A token's full history")
def token_events(token_id: str, actor: CurrentAccount, ledger: LedgerDep) -> list[TokenEvent]:
    return [TokenEvent.of(e) for e in ledger.history(actor, parse_token_id(token_id))]
