"""`/health`, `/health/live` and `/health/ready` (public; SPEC §8).

- `/health`: the overall status and each check's status (`manager.doctor(public=True)`: no paths, no
  key origins, no full verification), 503 when unhealthy; a key with `system:read` (sent as on any
  route) also gets each check's message, counts and cache statistics. Cached briefly per level of
  detail, so it cannot be used to load the server.
- `/health/live`: 200 while the process answers at all — for liveness probes: a row failing its MAC
  makes `/health` unhealthy, and that must not get every replica restarted.
- `/health/ready`: storage reachable and its schema current — for readiness probes and load balancers.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from llm_config import rbac
from llm_config.models import Principal
from llm_config.server.errors import log_unexpected
from llm_config.server.routes.common import PRINCIPAL_KEY, json_response, manager_of, run_blocking
from llm_config.server.routes.schemas import HealthResponse, LiveResponse, ReadyResponse

__all__ = ["SERVICE", "router", "service_version"]

router = APIRouter(tags=["health"])

SERVICE: Final = "llm-config-manager"
HEALTH_TTL: Final = 2.0


def service_version() -> str:
    try:
        return metadata.version(SERVICE)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _detail_allowed(request: Request) -> bool:
    principal = request.scope.get(PRINCIPAL_KEY)
    return isinstance(principal, Principal) and rbac.allowed(principal, "system:read")


@router.get(
    "/health",
    summary="Health of storage, key, row integrity, cache and audit chain (503 when unhealthy)",
    description="Public: statuses only. With an API key that has system:read: messages and counts too.",
    responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse, "description": "Unhealthy"}},
)
async def health(request: Request) -> Response:
    state = request.app.state
    detail = _detail_allowed(request)
    cache: dict[bool, tuple[float, dict[str, Any]]] = getattr(state, "health_cache", None) or {}
    now = time.monotonic()
    cached = cache.get(detail)
    if cached is None or cached[0] < now:
        manager = manager_of(request)
        try:
            report = await run_blocking(request, lambda: manager.doctor(public=True, detail=detail))
        except Exception as exc:  # doctor reports, never raises; if it does, say unhealthy
            log_unexpected(exc, "/health")
            report = {"status": "unhealthy", "checks": {"doctor": {"status": "unhealthy"}}}
        doc = {"status": report["status"], "service": SERVICE, "version": service_version(),
               "checks": report["checks"]}
        cache[detail] = (now + HEALTH_TTL, doc)
        state.health_cache = cache
    else:
        doc = cached[1]
    return json_response(doc, status_code=503 if doc["status"] == "unhealthy" else 200)


@router.get(
    "/health/live",
    summary="Liveness: the process answers (data problems show in /health, not here)",
    responses={200: {"model": LiveResponse}},
)
async def live() -> Response:
    return json_response({"status": "alive"})


@router.get(
    "/health/ready",
    summary="Readiness: storage reachable and its schema current",
    responses={200: {"model": ReadyResponse}, 503: {"model": ReadyResponse, "description": "Not ready"}},
)
async def ready(request: Request) -> Response:
    manager = manager_of(request)
    try:
        pending = await run_blocking(request, manager.storage.pending_migrations)
    except Exception:
        return json_response({"status": "not_ready"}, status_code=503)
    if pending:
        return json_response({"status": "not_ready"}, status_code=503)
    return json_response({"status": "ready"})
