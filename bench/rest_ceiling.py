"""The ceiling of the REST benchmark: a bare Starlette app answering with a copy of a real response.

`bench.rest` serves it with `python -m uvicorn bench.rest_ceiling:app` or
`granian --interface asgi bench.rest_ceiling:app`, on the same ASGI server and worker count as the
API it is compared with. `BENCH_REST_RESPONSE` names a JSON file `{"body": <base64>, "headers":
[[name, value], ...]}` that `bench.rest` copied from a real `GET /api/v1/configs/bench/k0` response,
so both send the same bytes; the only work left is the server, Starlette's default middleware and
its router. `bench.edge` calls `build_app` directly (in-process, no server).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["app", "build_app"]

HEALTH = b'{"status":"healthy"}'


def build_app(body: bytes, headers: dict[str, str]) -> Starlette:
    """One `Route` answering every `GET /api/v1/configs/{ns}/{key}` with `body` and `headers`."""

    async def config(request: Request) -> Response:
        return Response(body, headers=headers)

    async def health(request: Request) -> Response:
        return Response(HEALTH, media_type="application/json")

    return Starlette(routes=[
        Route("/api/v1/configs/{ns}/{key}", config, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])


def _from_env() -> Starlette | None:
    saved_path = os.environ.get("BENCH_REST_RESPONSE")
    if not saved_path:
        return None
    saved = json.loads(Path(saved_path).read_text(encoding="utf-8"))
    return build_app(base64.b64decode(saved["body"]), {name: value for name, value in saved["headers"]})


app = _from_env()
