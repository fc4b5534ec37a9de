"""`GET /api/v1/watch/{ns…}`: changes as Server-Sent Events (SPEC §8).

Standard SSE any client can read: a first `hello` (the store epoch, and the revision the stream continues
after), then one `change` per write, delete, rollback or purge the key may see, each with `id:` = its
revision (so `Last-Event-ID` resumes), `resync` when the stream cannot continue from the asked revision
(another epoch, or ahead of the store) — the client reloads and goes on from the revision it names —,
`: keepalive` comments, and a last `error` event when the key stops being valid (revoked, expired: checked
every `auth_check` second, before anything else is sent). A
stream ends after `max_seconds` (default 15 minutes); the client resumes from its last revision.

The stream is an async generator fed by the process's hub (`server/streams.py`): no thread per stream.
Authentication, address lists and rate limits happened at the edge when it opened; the key is checked
again every `auth_check` seconds and at once when this process learns of a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

import orjson
from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import StreamingResponse

from llm_config import metrics
from llm_config.core.manager import ConfigManager
from llm_config.core.watch import PAGE, WatchScope, to_wire
from llm_config.errors import AuthenticationError, ValidationError
from llm_config.models import ChangeRow
from llm_config.names import parse_environment
from llm_config.server.auth import extract_token
from llm_config.server.paths import WATCH_PATH
from llm_config.server.routes.common import (
    error_responses,
    manager_of,
    principal_of,
    request_id_of,
    run_blocking,
    source_ip_of,
)
from llm_config.server.routes.schemas import ENV_DOC, ENV_PATTERN, NAMESPACE_PATH_PATTERN
from llm_config.server.streams import WatchHub
from llm_config.wire import MAX_VERSION, ErrorBody, WatchResync

__all__ = ["WatchSettings", "hub_of", "router"]

router = APIRouter(tags=["watch"])
T = TypeVar("T")

_KEEPALIVE: Final = b": keepalive\n\n"
_EPOCH_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,128}$"
_EVENT_SCHEMA: Final = {  # one event of the stream; `data` is JSON text (see wire.py)
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["hello", "change", "resync", "error"]},
        "data": {"type": "string", "description": "hello {epoch, revision}; change {revision, namespace, key, "
                 "environment, version, kind}; resync {reason, epoch, revision}; error {error, message}"},
        "id": {"type": "string", "pattern": "^[0-9]{1,19}$", "description": "The revision"},
    },
}


@dataclass(slots=True)
class WatchSettings:
    """Timings of the watch streams (tests shorten them)."""

    keepalive: float = 15.0  # a comment line after this long without an event
    auth_check: float = 1.0  # re-check the stream's API key this often (and at once after a local revoke)
    poll: float = 0.1  # the hub's look for other processes' commits
    # a stream ends after this long (a client resumes where it was, with Last-Event-ID or since=), so
    # streams spread over replicas added since they opened
    max_seconds: float = 900.0


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


def hub_of(request: Request) -> WatchHub:
    """The app's hub, made on the first stream (it keeps the app's executor, never a request)."""
    state = request.app.state
    hub: WatchHub | None = getattr(state, "watch_hub", None)
    if hub is None:
        manager = manager_of(request)
        settings: WatchSettings = state.watch
        executor: ThreadPoolExecutor = state.executor

        async def blocking(fn: Callable[[], T]) -> T:
            # the hub outlives the request that made it: its reads belong to no request's trace
            return await asyncio.get_running_loop().run_in_executor(executor, fn)

        hub = WatchHub(manager.feed, manager.signals, blocking, poll=settings.poll)
        state.watch_hub = hub
    return hub


def frame(event: str, data: object, revision: int | None) -> bytes:
    """One SSE event; JSON never holds a raw newline, so `data` is one line."""
    head = b"id: %d\n" % revision if revision is not None else b""
    return head + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _last_event_id(request: Request) -> int | None:
    header = request.headers.get("last-event-id")
    if header is None or not header.strip():
        return None
    text = header.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_VERSION:
        raise ValidationError("Invalid Last-Event-ID: expected a revision (an integer >= 0)")
    return int(text)


@router.get(
    WATCH_PATH,
    summary="Stream changes of a namespace as Server-Sent Events (hello, change, resync, error)",
    responses={
        200: {"description": "An endless `text/event-stream`; `id:` lines carry the revision",
              "content": {"text/event-stream": {"schema": _EVENT_SCHEMA}}},
        **error_responses(400, 403, 503),
    },
)
async def watch(
    request: Request,
    ns: str = Path(description="Namespace: 1-8 '/'-joined segments", pattern=NAMESPACE_PATH_PATTERN),
    env: str | None = Query(None, pattern=ENV_PATTERN, description=ENV_DOC + " (also streams base); "
                            "omitted: every environment the key may read"),
    since: int | None = Query(None, ge=0, le=MAX_VERSION, description="Continue after this revision "
                              "(else Last-Event-ID, else from now)"),
    epoch: str | None = Query(None, pattern=_EPOCH_PATTERN, description="The store epoch the client last "
                              "saw (from `hello`): another one gets `resync`"),
    recursive: bool = Query(False, description="Include sub-namespaces"),
) -> StreamingResponse:
    principal = principal_of(request)
    if since is None:
        since = _last_event_id(request)
    scope = WatchScope.of(ns, env, recursive=recursive, principal=principal)
    manager = manager_of(request)
    # with an environment: that one (base comes with it); without: the namespace — each change is then
    # shown only in the environments the key may read
    await run_blocking(request, manager.authorize, principal, "config:read", ns,
                       parse_environment(env) if env is not None else None, before_body=env is None,
                       source_ip=source_ip_of(request), request_id=request_id_of(request))
    hub = hub_of(request)
    hello, resync, start = await run_blocking(request, manager.feed.begin, since, epoch)
    token, _ = extract_token(request.headers.get("authorization", "").encode("latin-1") or None,
                             request.headers.get("x-api-key", "").encode("latin-1") or None)
    events = _events(request, manager, hub, scope, start, hello.epoch, token,
                     [frame("hello", hello.to_json(), hello.revision)]
                     + ([frame("resync", resync.to_json(), resync.revision)] if resync is not None else []))
    return EventStream(events, headers={"X-Accel-Buffering": "no"})


async def _events(request: Request, manager: ConfigManager, hub: WatchHub, scope: WatchScope, since: int,
                  epoch: str, token: str | None, first: list[bytes]) -> AsyncIterator[bytes]:
    settings: WatchSettings = request.app.state.watch
    sub = await hub.subscribe()
    marks = (hub.generation, hub.gaps)
    metrics.WATCH_STREAMS.inc()
    try:
        yield b"".join(first)
        last_sent = time.monotonic()
        next_check = last_sent + settings.auth_check
        ends = last_sent + settings.max_seconds
        while not sub.closed and time.monotonic() < ends:
            sub.wake.clear()
            now = time.monotonic()
            if sub.recheck or now >= next_check:  # first, however busy the store: a revoked key gets nothing more
                sub.recheck = False
                next_check = now + settings.auth_check
                problem = await _key_problem(request, manager, token)
                if problem is not None:
                    metrics.WATCH_EVENTS.labels("error").inc()
                    yield frame("error", ErrorBody("Unauthorized", problem).to_json(), None)
                    return
            if (hub.generation, hub.gaps) != marks and hub.revision >= 0:  # a restore, or the feed lost rows
                reason = "epoch" if hub.epoch != epoch else "expired" if hub.gaps != marks[1] else None
                marks = (hub.generation, hub.gaps)
                if reason is not None:
                    epoch, since = hub.epoch, hub.revision
                    metrics.WATCH_EVENTS.labels("resync").inc()
                    yield frame("resync", WatchResync(reason, epoch, since).to_json(), since)
                    last_sent = time.monotonic()
                    continue
            changes, since = await _pending(request, manager, hub, scope, since)
            if changes:
                shown = [frame("change", to_wire(c).to_json(), c.revision) for c in changes if scope.sees(c)]
                if shown:
                    metrics.WATCH_EVENTS.labels("change").inc(len(shown))
                    yield b"".join(shown)
                    last_sent = time.monotonic()
                continue
            timeout = max(0.0, min(last_sent + settings.keepalive, next_check, ends) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wake.wait(), timeout)
            if time.monotonic() - last_sent >= settings.keepalive:
                yield _KEEPALIVE
                last_sent = time.monotonic()
    finally:
        hub.unsubscribe(sub)
        metrics.WATCH_STREAMS.dec()


async def _pending(request: Request, manager: ConfigManager, hub: WatchHub, scope: WatchScope,
                   since: int) -> tuple[list[ChangeRow], int]:
    """The changes after `since` (from the hub's ring, or — further behind than it — read from storage for this
    stream alone), and the revision the stream stands at after them."""
    ring = hub.changes_after(since)
    if ring is not None:
        changes = ring
    else:
        async with hub.catch_up:
            changes, current = await run_blocking(request, manager.feed.read, since, PAGE, scope)
        if len(changes) < PAGE:  # every change of its namespaces up to `current` was listed
            since = max(since, current)
    if changes:
        since = max(since, changes[-1].revision)
    return changes, since


async def _key_problem(request: Request, manager: ConfigManager, token: str | None) -> str | None:
    """Why the stream's key no longer holds (revoked, expired), or None; a store outage keeps the stream."""
    if token is None:
        return "API key missing"
    if manager.cached_principal(token) is not None:
        return None
    try:
        await run_blocking(request, manager.authenticate, token, source_ip=source_ip_of(request),
                           request_id=request_id_of(request), audit_failure=False)
    except AuthenticationError as exc:
        return exc.message
    except Exception:  # storage down: the key cannot be checked now; the next check tries again
        return None
    return None
