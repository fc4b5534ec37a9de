"""Request bodies: at most `--max-body` bytes, all of them within `--body-timeout` (SPEC §8, §9).

A declared `Content-Length` that is not a number is 400, one over the limit 413 (after reading and
dropping the body, so the client sees the answer); otherwise `receive` is wrapped so that a body
growing past the limit raises 413 and one arriving too slowly 408 wherever a route reads it. Once
the body is in, `receive` is passed through untouched: what a route then waits for is the client's
disconnect (a streamed response listens for it), which no body timeout bounds.

Routes with limits of their own (`paths.body_limits`: the restore's `--max-restore-body`) get them
instead; such a route authorizes before reading a byte and checks a declared length itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from starlette.types import Message, Receive

from llm_config import metrics
from llm_config.server.edge.request import EdgeRequest
from llm_config.server.edge.respond import drain, send_error
from llm_config.server.errors import HTTPError
from llm_config.server.paths import BodyLimit

__all__ = ["BodyLimits", "limited"]


class BodyLimits:
    __slots__ = ("_default", "_routes")

    def __init__(self, default: BodyLimit, routes: Mapping[str, BodyLimit]) -> None:
        self._default = default
        self._routes = dict(routes)

    async def check(self, req: EdgeRequest) -> bool:
        """True after answering 400/413; else `req.receive` reads the body under the route's limits."""
        if not req.has_body:
            return False
        limit = self._routes.get(req.path, self._default)
        declared = req.content_length
        if declared is not None and limit.declared_at_edge:
            if not declared.isdigit():
                await send_error(req.send, 400, "Invalid Content-Length")
                return True
            if int(declared) > limit.max_body:
                await drain(req.receive)
                await send_error(req.send, 413, limit.too_large)
                return True
        req.receive = limited(req.receive, limit)
        return False


def limited(receive: Receive, limit: BodyLimit) -> Receive:
    """`receive` with the body capped at `limit.max_body` bytes and due within `limit.timeout` in all."""
    seen = 0
    complete = False
    deadline = time.monotonic() + limit.timeout

    async def limited_receive() -> Message:
        nonlocal seen, complete
        if complete:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            metrics.SLOW_CLIENTS.labels("body").inc()
            raise HTTPError(408, limit.too_slow) from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit.max_body:  # an HTTPError, so FastAPI's handlers answer 413 if a route was reading
                raise HTTPError(413, limit.too_large)
            complete = not message.get("more_body", False)
        else:
            complete = True
        return message

    return limited_receive
