"""The stream loop in server/routes/watch.py, driven directly with stand-ins."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from llm_config.core.watch import WatchScope
from llm_config.errors import AuthenticationError
from llm_config.models import ChangeRow, Environment
from llm_config.server.routes.watch import WatchSettings, _events
from llm_config.server.streams import Subscription


class BusyHub:
    """A hub on a store that is written continuously: every look finds one new change."""

    epoch = "e"
    generation = 0
    gaps = 0

    def __init__(self) -> None:
        self.revision = 0

    async def subscribe(self) -> Subscription:
        return Subscription()

    def unsubscribe(self, sub: Subscription) -> None:
        pass

    def changes_after(self, since: int) -> list[ChangeRow]:
        self.revision = since + 1
        return [ChangeRow(since + 1, "app", "k", Environment.PRODUCTION, since + 1, "set")]


class RevokedManager:
    def cached_principal(self, token: str) -> None:
        return None

    def authenticate(self, token, **kw):
        raise AuthenticationError("API key invalid, expired or revoked")


def _request() -> SimpleNamespace:
    state = SimpleNamespace(watch=WatchSettings(keepalive=15, auth_check=0.05, poll=0.05),
                            executor=ThreadPoolExecutor(2))
    return SimpleNamespace(app=SimpleNamespace(state=state), scope={}, headers={}, client=None)


def test_a_revoked_key_gets_its_error_event_even_while_changes_keep_coming() -> None:
    """The key is rechecked before anything else is sent, so a busy store (or a slow reader, behind whom
    changes pile up) cannot keep a revoked key streaming."""

    async def run() -> list[bytes]:
        scope = WatchScope.of("app", None, recursive=False, principal=None)
        gen = _events(_request(), RevokedManager(), BusyHub(), scope, 0, "e", "llmc_x", [b"hello"])  # type: ignore[arg-type]
        frames = []
        ends = time.monotonic() + 1.0  # 20 auth_check periods
        async for frame in gen:
            frames.append(frame)
            if b"event: error" in frame or time.monotonic() > ends:
                break
            await asyncio.sleep(0.001)  # the client reads a little slowly
        await gen.aclose()
        return frames

    frames = asyncio.run(run())
    assert any(b"event: error" in f for f in frames), f"{len(frames)} frames, no error event after 1 s"
