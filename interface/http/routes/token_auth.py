"""Endpoints authenticated by a token itself."""

from __future__ import annotations

from fastapi import APIRouter, Response

from interface.http.dependencies import CurrentToken, LedgerDep
from interface.http.schemas import TokenCreated, TokenPublic, TokenSelf, UserInfo

router = APIRouter(prefix="/api/v1", tags=["token use"])


@router.get("/user", response_model=UserInfo, summary="Who this token belongs to")
def whoami(verified: CurrentToken) -> UserInfo:
    token = verified.token
    assert token is not None
    return UserInfo(
        username=token.owner,
        token=TokenSelf(
            id=token.token_id, name=token.name, scopes=token.scopes.as_list(), expires_at=token.expires_at
        ),
    )


@router.post("/tokens/self/rotate", response_model=TokenCreated, summary="Rotate the calling token")
def rotate_self(verified: CurrentToken, ledger: LedgerDep, response: Response) -> TokenCreated:
    """For CI rotation jobs: the token regenerates itself and the response carries the new value."""
    issued = ledger.rotate_self(verified)
    response.headers["Cache-Control"] = "no-store"
    return TokenCreated(**TokenPublic.of(issued.record, ledger.clock.now()).model_dump(), token=issued.value)


@router.delete("/tokens/self", status_code=204, summary="Revoke the calling token")
def revoke_self(verified: CurrentToken, ledger: LedgerDep) -> Response:
    ledger.revoke_self(verified)
    return Response(status_code=204)
