"""Request and response bodies, named by role (TokenCreate, TokenPublic, TokenCreated)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.views import HistoryEntry, TokenRecord
from interface.http import examples

Days = Literal[30, 60, 90]


class TokenCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "GitHub Actions", "scopes": ["repo:read"], "expires_in_days": 30}]
        },
    )
    name: str = Field(min_length=1, max_length=100, description='What the token is for, e.g. "Jenkins CI".')
    scopes: list[str] = Field(min_length=1, max_length=7, description="One or more of the seven scopes.")
    expires_in_days: Days | None = Field(30, description="30, 60 or 90 days, or null for no expiry.")


class TokenRegenerate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"expires_in_days": 60}]})
    expires_in_days: Days | None = Field(
        None, description="A new lifetime; leave out to keep the token's current lifetime."
    )


class RevokeAll(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"issued_before": "2026-11-30T00:00:00Z"}, {"owner": "alice"}]},
    )
    issued_before: datetime | None = Field(None, description="Only values issued before this instant.")
    owner: str | None = Field(None, max_length=64, description="Admins: another owner's tokens.")
    all_owners: bool = Field(False, description="Admins: the tokens of every owner.")


class RevokedCount(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"revoked": 3}]})
    revoked: int


class TokenPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.TOKEN]})
    id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    regenerated_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: TokenRecord, now: datetime) -> TokenPublic:
        return cls(
            id=record.id,
            owner=record.owner,
            name=record.name,
            scopes=record.scopes,
            state=record.state(now).value,
            created_at=record.created_at,
            expires_at=record.expires_at,
            last_used_at=record.last_used_at,
            last_used_ip=record.last_used_ip,
            regenerated_at=record.regenerated_at,
            revoked_at=record.revoked_at,
        )


class TokenCreated(TokenPublic):
    """The record plus the value. Returned once, by create and regenerate only."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.TOKEN_CREATED]})
    token: str = Field(description="The token value. It is not stored: copy it now.")


class TokenEvent(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.TOKEN_EVENT]})
    position: int
    at: datetime
    type: str
    actor: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: HistoryEntry) -> TokenEvent:
        return cls(
            position=entry.position,
            at=entry.at,
            type=entry.event_type,
            actor=entry.actor,
            details=entry.details,
        )


class TokenSelf(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.USER["token"]]})
    id: uuid.UUID
    name: str
    scopes: list[str]
    expires_at: datetime | None


class UserInfo(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.USER]})
    username: str
    token: TokenSelf


class Introspection(BaseModel):
    """RFC 7662: inactive tokens answer only {"active": false}."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"active": False}]})
    active: bool
    scope: str | None = None
    username: str | None = None
    sub: str | None = None
    exp: int | None = None
    iat: int | None = None
    token_type: str | None = None
    client_id: str | None = None
