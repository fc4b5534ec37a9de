"""The hot path (ARCHITECTURE decision 1): a cached GET of one config answered on the event loop.

A plain `GET` of one entry (either path form of `paths.match_entry`; no query but `env=`) whose
record is in the manager's L1 cache and which `peek_record(..., principal=)` allows is answered
here with the record's pre-serialised body, ETag and revision — no thread hop, no router, nothing
encoded; `If-None-Match` → 304. Anything else (a miss, a refusal, a bad name) goes on to the route,
which answers it and audits a refusal.
"""

from __future__ import annotations

import time
from urllib.parse import unquote_plus

from llm_config.core.manager import ConfigManager
from llm_config.errors import ValidationError
from llm_config.server.edge.request import EdgeRequest
from llm_config.server.paths import CONFIGS_PREFIX, match_entry
from llm_config.server.routes.common import ROUTE_KEY, etag_matches
from llm_config.server.telemetry import env_label, record_operation, record_rbac

__all__ = ["CachedGet"]


class CachedGet:
    __slots__ = ("_manager",)

    def __init__(self, manager: ConfigManager) -> None:
        self._manager = manager

    async def answer(self, req: EdgeRequest) -> bool:
        """True after answering from the cache; False to take the slow path."""
        path = req.path
        if req.method != "GET" or req.principal is None or not path.startswith(CONFIGS_PREFIX):
            return False
        entry = match_entry(path)
        if entry is None:
            return False
        scope = req.scope
        query: bytes = scope.get("query_string", b"")
        if not query:
            env = "development"
        elif query.startswith(b"env=") and b"&" not in query:
            env = query[4:].decode("latin-1")
            if "%" in env or "+" in env:
                env = unquote_plus(env)
        else:
            return False
        started = time.perf_counter()
        namespace, key, template = entry
        try:
            record = self._manager.peek_record(namespace, key, env, principal=req.principal, source_ip=req.ip,
                                               request_id=req.id)
        except ValidationError:
            return False  # the route reports it
        if record is None:
            return False  # not cached, or not allowed: the route answers (and audits a refusal)
        scope[ROUTE_KEY] = template
        record_rbac(True)
        length_header, etag_header, revision_header = record.headers
        inm = req.if_none_match
        send = req.send
        if inm is not None and etag_matches(inm.decode("latin-1"), record.etag):
            await send({"type": "http.response.start", "status": 304, "headers": [etag_header, revision_header]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), length_header, etag_header, revision_header],
            })
            await send({"type": "http.response.body", "body": record.body})
        record_operation("get", env_label(env), "ok", time.perf_counter() - started)
        return True
