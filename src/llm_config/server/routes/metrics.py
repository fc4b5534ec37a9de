"""`GET /metrics`: Prometheus text (public, or with `--metrics-auth` a key holding `system:read`)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from llm_config import metrics
from llm_config.server.auth import require_unscoped
from llm_config.server.routes.common import (
    error_responses,
    manager_of,
    principal_of,
    request_id_of,
    run_blocking,
    source_ip_of,
)

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (llm_config_*); public unless the server runs with --metrics-auth",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format"},
               **error_responses(503)},
    response_class=Response,
)
async def get_metrics(request: Request) -> Response:
    state = request.app.state
    manager = manager_of(request)
    if state.options.metrics_auth:
        principal = principal_of(request)
        await run_blocking(request, require_unscoped, manager, principal, "system:read",
                           source_ip=source_ip_of(request), request_id=request_id_of(request))
    sync: metrics.CacheStatsSync | None = state.cache_sync
    if sync is not None:
        sync.sync()
    body = await run_blocking(request, metrics.render, state.metric_collectors)
    return Response(body, media_type=metrics.CONTENT_TYPE)
