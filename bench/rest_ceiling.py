"""The ceiling of the REST benchmark: a bare Starlette app answering with a copy of a real response.

`bench.rest` serves it with `python -m uvicorn bench.rest_ceiling:app` or
`granian --interface asgi bench.rest_ceiling:app`, on the same ASGI server and worker count as the
API it is compared with. `BENCH_REST_RESPONSE` names a JSON file `{"body": <base64>, "headers":
[[name, value], ...]}` that `bench.rest` copied from a real `GET /api/v1/configs/bench/k0` response,
so both send the same bytes; the only work left is the server, Starlette's default middleware and
its router.
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

__all__ = ["app"]

_SAVED = json.loads(Path(os.environ["BENCH_REST_RESPONSE"]).read_text(encoding="utf-8"))
BODY: bytes = base64.b64decode(_SAVED["body"])
HEADERS: dict[str, str] = {name: value for name, value in _SAVED["headers"]}
HEALTH = b'{"status":"healthy"}'


async def config(request: Request) -> Response:
    return Response(BODY, headers=HEADERS)


async def health(request: Request) -> Response:
    return Response(HEALTH, media_type="application/json")


app = Starlette(routes=[
    Route("/api/v1/configs/{ns}/{key}", config, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
])
