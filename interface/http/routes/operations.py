"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from interface.http.dependencies import Context
from interface.http.problems import problem_response

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the read models have caught up with the event log",
    responses={200: {"content": {"application/json": {"example": {"status": "ready"}}}}},
)
def readyz(ctx: Context) -> Response:
    lag = ctx.service.projections.lag()
    ctx.metrics.projection_lag.set(lag)
    if lag:
        return problem_response(503, "Not ready", f"read models are {lag} events behind", slug="not-ready")
    return Response('{"status":"ready"}', media_type="application/json")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"example": 'tokenledger_verifications_total{outcome="valid"} 42.0'}}}
    },
)
def metrics(ctx: Context) -> Response:
    ctx.metrics.projection_lag.set(ctx.service.projections.lag())
    ctx.metrics.usage_queue.set(ctx.service.ledger.usage.queue_depth)
    body, content_type = ctx.metrics.render()
    return Response(body, media_type=content_type)
