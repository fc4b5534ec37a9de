"""CORS, when `--cors-origin` is set: preflights answered here, CORS headers added to every other answer.

Starlette's `CORSMiddleware` decides (exactly the configured origins, no credentials); this step only
places it in the pipeline — after the address guards, before authentication (a preflight carries no key).
"""

from __future__ import annotations

import functools
from typing import Final

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from llm_config.server.edge.request import EdgeRequest

__all__ = ["Cors"]

_METHODS: Final = ("GET", "POST", "PUT", "DELETE")
_HEADERS: Final = ("Authorization", "X-API-Key", "Content-Type", "If-Match", "If-None-Match", "X-Request-ID")
_EXPOSE: Final = ("ETag", "X-Config-Revision", "X-Next-Cursor", "X-Request-ID", "Retry-After", "X-RateLimit-Limit",
                  "X-RateLimit-Remaining", "X-RateLimit-Reset")


async def _unused(*_: object) -> None:  # pragma: no cover - CORSMiddleware's inner app: the pipeline goes on instead
    raise AssertionError("not called")


class Cors:
    __slots__ = ("_cors",)

    def __init__(self, origins: tuple[str, ...]) -> None:
        self._cors = CORSMiddleware(
            _unused, allow_origins=list(origins), allow_methods=list(_METHODS), allow_headers=list(_HEADERS),
            expose_headers=list(_EXPOSE), allow_credentials=False, max_age=600,
        )

    async def apply(self, req: EdgeRequest) -> bool:
        """True after answering a preflight; else CORS headers on whatever answers the request."""
        if req.origin is None:
            return False
        headers = Headers(scope=req.scope)
        if req.method == "OPTIONS" and "access-control-request-method" in headers:
            response = self._cors.preflight_response(request_headers=headers)
            await response(req.scope, req.receive, req.send)
            return True
        req.send = functools.partial(self._cors.send, send=req.send, request_headers=headers)
        return False
