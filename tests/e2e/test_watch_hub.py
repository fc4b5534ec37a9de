"""server/streams.py WatchHub with a stand-in feed: the reader survives what it did not expect."""

from __future__ import annotations

import asyncio

from llm_config.core.watch import Signals
from llm_config.models import ChangeRow, Environment
from llm_config.server.streams import WatchHub


class Feed:
    def __init__(self) -> None:
        self.rows: list[ChangeRow] = []
        self.fail_once = False

    def epoch(self) -> str:
        return "e"

    def current(self) -> int:
        return self.rows[-1].revision if self.rows else 0

    def read(self, since: int, limit: int) -> tuple[list[ChangeRow], int]:
        if self.fail_once:
            self.fail_once = False
            raise ValueError("a bug, a driver error outside dialect.errors, a closed executor ...")
        return [r for r in self.rows if r.revision > since][:limit], self.current()

    def add(self) -> None:
        n = self.current() + 1
        self.rows.append(ChangeRow(n, "app", f"k{n}", Environment.PRODUCTION, 1, "set"))


async def _blocking(fn):
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def test_an_unexpected_error_in_the_reader_does_not_stall_the_streams() -> None:
    async def run() -> list[ChangeRow] | None:
        feed = Feed()
        hub = WatchHub(feed, Signals(), _blocking, poll=0.01)  # type: ignore[arg-type]
        sub = await hub.subscribe()
        await asyncio.sleep(0.05)
        feed.fail_once = True
        await asyncio.sleep(0.05)  # the reader met an error it did not expect, and must live on
        feed.add()
        await asyncio.sleep(0.2)
        got = hub.changes_after(0)
        hub.unsubscribe(sub)
        hub.close()
        return got

    got = asyncio.run(run())
    assert got, f"the open stream never gets the change written after the failure: {got!r}"
