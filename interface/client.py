"""A small typed client for the tokenledger API, for scripts and CI pipelines (on httpx)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx


class ApiError(Exception):
    """A problem document from the server (RFC 9457)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body or {}
        self.headers = headers if headers is not None else httpx.Headers()  # e.g. Retry-After on a 429


@dataclass(frozen=True, slots=True)
class Token:
    id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    state: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    regenerated_at: datetime | None
    revoked_at: datetime | None
    value: str | None = None  # only from create, regenerate and rotate

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(data[key]) if data.get(key) else None

        return cls(
            id=uuid.UUID(data["id"]),
            owner=data["owner"],
            name=data["name"],
            scopes=list(data["scopes"]),
            state=data["state"],
            created_at=datetime.fromisoformat(data["created_at"]),
            expires_at=when("expires_at"),
            last_used_at=when("last_used_at"),
            last_used_ip=data.get("last_used_ip"),
            regenerated_at=when("regenerated_at"),
            revoked_at=when("revoked_at"),
            value=data.get("token"),
        )

    def __repr__(self) -> str:
        return f"Token(id={self.id}, name={self.name!r}, scopes={self.scopes}, state={self.state!r})"


@dataclass(frozen=True, slots=True)
class AuthCheck:
    status: int
    owner: str | None = None
    token_id: str | None = None
    scopes: list[str] | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 204


class Client:
    """`Client(url, username=..., password=...)` for management; `Client(url, token=...)` for token use."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        auth: Any = (username, password) if username is not None and password is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), auth=auth, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ApiError(
                response.status_code,
                body.get("title", response.reason_phrase),
                body.get("detail", response.text[:200]),
                body,
                response.headers,
            )
        return response

    # Management (as an account)

    def create_token(self, name: str, scopes: list[str], expires_in_days: int | None = 30) -> Token:
        body = {"name": name, "scopes": scopes, "expires_in_days": expires_in_days}
        return Token.from_json(self._call("POST", "/api/v1/tokens", json=body).json())

    def list_tokens(self, state: str = "active", owner: str | None = None) -> list[Token]:
        params = {"state": state} | ({"owner": owner} if owner else {})
        return [Token.from_json(t) for t in self._call("GET", "/api/v1/tokens", params=params).json()]

    def get_token(self, token_id: uuid.UUID | str) -> Token:
        return Token.from_json(self._call("GET", f"/api/v1/tokens/{token_id}").json())

    def regenerate(self, token_id: uuid.UUID | str, **changes: Any) -> Token:
        return Token.from_json(
            self._call("POST", f"/api/v1/tokens/{token_id}/regenerate", json=changes).json()
        )

    def revoke(self, token_id: uuid.UUID | str) -> None:
        self._call("DELETE", f"/api/v1/tokens/{token_id}")

    def revoke_all(
        self, *, issued_before: datetime | None = None, owner: str | None = None, all_owners: bool = False
    ) -> int:
        body: dict[str, Any] = {"all_owners": all_owners}
        if issued_before is not None:
            body["issued_before"] = issued_before.isoformat()
        if owner is not None:
            body["owner"] = owner
        return int(self._call("POST", "/api/v1/tokens/revoke-all", json=body).json()["revoked"])

    def events(self, token_id: uuid.UUID | str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/v1/tokens/{token_id}/events").json())

    # Token use (as a token)

    def whoami(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/v1/user").json())

    def rotate_self(self) -> Token:
        return Token.from_json(self._call("POST", "/api/v1/tokens/self/rotate").json())

    def revoke_self(self) -> None:
        self._call("DELETE", "/api/v1/tokens/self")

    def auth_check(self, scope: str | None = None) -> AuthCheck:
        response = self.http.get("/api/v1/auth/check", params={"scope": scope} if scope else None)
        if response.status_code == 204:
            return AuthCheck(
                204,
                owner=response.headers.get("x-token-owner"),
                token_id=response.headers.get("x-token-id"),
                scopes=response.headers.get("x-token-scopes", "").split(),
            )
        return AuthCheck(response.status_code)

    # Services

    def introspect(self, value: str) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v1/introspect", data={"token": value}).json())

    def report_leak(self, value: str) -> None:
        """RFC 7009 revocation by value; succeeds whether or not the value was active."""
        self._call("POST", "/api/v1/revoke", data={"token": value})
