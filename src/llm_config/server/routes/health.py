"""`/health` and `/health/ready` (public). `/health` runs `manager.doctor(public=True)` (no paths,
no key origins, no full chain verification), cached briefly so it cannot be used to load the server."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from llm_config.server.errors import log_unexpected
from llm_config.server.routes.common import json_response, manager_of, run_blocking
from llm_config.server.routes.schemas import HealthResponse, ReadyResponse

__all__ = ["SERVICE", "router", "service_version"]

router = APIRouter(tags=["health"])

SERVICE: Final = "llm-config-manager"
HEALTH_TTL: Final = 2.0


def service_version() -> str:
    try:
        return metadata.version(SERVICE)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _health_doc(doctor: dict[str, Any]) -> dict[str, Any]:
    checks = {
        name: {"status": str(check.get("status", "unhealthy")), "message": str(check.get("message", ""))}
        for name, check in doctor.get("checks", {}).items()
    }
    return {"status": doctor.get("status", "unhealthy"), "service": SERVICE, "version": service_version(),
            "checks": checks}


@router.get(
    "/health",
    summary="Health of storage, key, cache and audit chain (503 when unhealthy)",
    responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse, "description": "Unhealthy"}},
)
async def health(request: Request) -> Response:
    state = request.app.state
    cached: tuple[float, dict[str, Any]] | None = getattr(state, "health_cache", None)
    now = time.monotonic()
    if cached is None or cached[0] < now:
        manager = manager_of(request)
        try:
            doc = _health_doc(await run_blocking(request, lambda: manager.doctor(public=True)))
        except Exception as exc:  # doctor reports, never raises; if it does, say unhealthy
            log_unexpected(exc, "/health")
            doc = {"status": "unhealthy", "service": SERVICE, "version": service_version(),
                   "checks": {"doctor": {"status": "unhealthy", "message": type(exc).__name__}}}
        state.health_cache = (now + HEALTH_TTL, doc)
    else:
        doc = cached[1]
    return json_response(doc, status_code=503 if doc["status"] == "unhealthy" else 200)


@router.get(
    "/health/ready",
    summary="Ready to serve: storage reachable",
    responses={200: {"model": ReadyResponse}, 503: {"model": ReadyResponse, "description": "Not ready"}},
)
async def ready(request: Request) -> Response:
    manager = manager_of(request)
    try:
        await run_blocking(request, manager.audit_head)
    except Exception:
        return json_response({"status": "not_ready"}, status_code=503)
    return json_response({"status": "ready"})
