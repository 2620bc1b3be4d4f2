"""Domain errors: one small hierarchy, mapped to HTTP problems and CLI messages in one place each."""

from __future__ import annotations

import uuid


class DomainError(Exception):
    """Base class of every error the domain and the application raise on purpose."""

    title = "Request not valid"


class ValidationError(DomainError):
    """Input that can never be accepted as given."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class InvalidName(ValidationError):
    title = "Invalid token name"


class InvalidScopes(ValidationError):
    title = "Invalid scopes"


class InvalidExpiry(ValidationError):
    title = "Invalid expiry"


class InvalidUsername(ValidationError):
    title = "Invalid username"


class InvalidRole(ValidationError):
    title = "Invalid role"


class InvalidPassword(ValidationError):
    title = "Invalid password"


class NotFound(DomainError):
    title = "Not found"


class TokenNotFound(NotFound):
    title = "Token not found"

    def __init__(self, token_id: object) -> None:
        # Only a well-formed id is echoed: anything else may be a value pasted in the wrong place.
        super().__init__(
            f"no token with id {token_id}" if isinstance(token_id, uuid.UUID) else "no such token"
        )
        self.token_id = token_id


class AccountNotFound(NotFound):
    title = "Account not found"

    def __init__(self, username: str) -> None:
        super().__init__(f"no account named {username!r}")
        self.username = username


class Conflict(DomainError):
    title = "Conflict"


class NameTaken(Conflict):
    title = "Token name already in use"

    def __init__(self, name: str) -> None:
        super().__init__(f"an active token named {name!r} already exists")
        self.name = name


class UsernameTaken(Conflict):
    title = "Username already registered"

    def __init__(self, username: str) -> None:
        super().__init__(f"an account named {username!r} already exists")
        self.username = username


class TokenRevoked(Conflict):
    title = "Token revoked"

    def __init__(self, token_id: object) -> None:
        super().__init__(f"token {token_id} is revoked")
        self.token_id = token_id


class PermissionDenied(DomainError):
    title = "Permission denied"


class AuthenticationFailed(DomainError):
    title = "Authentication failed"
