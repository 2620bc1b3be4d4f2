"""GET /api/v1/auth/check: forward-auth for nginx `auth_request` and Traefik ForwardAuth.

A plain Starlette route: FastAPI's dependency injection and response validation cost about a
third of a bare endpoint's throughput, and this is the endpoint every proxied request hits.
Verification runs on the event loop: on a warm value it is a dictionary look-up and one
indexed read, cheaper than handing the request to a thread.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from application.ledger import Ledger
from domain.scopes import Scope
from interface.http.credentials import TokenCredential, client_address, parse_authorization
from interface.http.metrics import Metrics
from interface.http.problems import problem_response, unauthorized_headers

_SCOPES = {s.value: s for s in Scope}


def make_auth_check(ledger: Ledger, metrics: Metrics, trusted_proxies: frozenset[str]):  # type: ignore[no-untyped-def]
    verify = ledger.verify
    record_use = ledger.record_use
    count = metrics.verifications
    latency = metrics.verification_seconds

    async def auth_check(request: Request) -> Response:
        wanted = request.query_params.get("scope")
        required = None
        if wanted:
            required = _SCOPES.get(wanted)
            if required is None:
                known = ", ".join(_SCOPES)
                return problem_response(
                    400, "Unknown scope", f"unknown scope {wanted!r}; known scopes: {known}"
                )
        credential = parse_authorization(request.headers.get("authorization"))
        if not isinstance(credential, TokenCredential):
            return problem_response(
                401,
                "Authentication required",
                "send a token as `Authorization: Bearer <token>` or as the password of HTTP Basic",
                slug="unauthorized",
                headers=unauthorized_headers(error=None if credential is None else "invalid_token"),
            )
        started = time.perf_counter()
        result = verify(credential.value)
        latency.observe(time.perf_counter() - started)
        count.labels(result.outcome.value).inc()
        if not result.ok:
            return problem_response(
                401,
                "Invalid token",
                "the token is malformed, unknown, expired or revoked",
                slug="invalid-token",
                headers=unauthorized_headers("invalid_token"),
            )
        token = result.token
        assert token is not None
        if required is not None and not token.scopes.allows(required):
            return problem_response(
                403,
                "Insufficient scope",
                f"the token does not grant {wanted!r}",
                slug="insufficient-scope",
                headers=[
                    (
                        "WWW-Authenticate",
                        f'Bearer realm="Outpost", error="insufficient_scope", scope="{wanted}"',
                    )
                ],
            )
        record_use(
            result,
            scope=wanted,
            address=client_address(request, trusted_proxies),
            user_agent=request.headers.get("user-agent"),
        )
        return Response(
            status_code=204,
            headers={
                "X-Token-Owner": token.owner,
                "X-Token-Id": str(token.token_id),
                "X-Token-Scopes": str(token.scopes),
            },
        )

    return auth_check
