"""Slow and greedy clients at the connection level (SPEC §9): header read timeout, per-address cap.

uvicorn has no header read timeout of its own, so a client that opens a connection and trickles a
request line or headers (slowloris) would hold it forever; and nothing stops one address from
holding thousands of connections. `GuardedProtocol` is uvicorn's httptools protocol with both: the
headers of each request must arrive within `header_timeout` seconds of its first byte (of the
connection, for the first request), and one address may hold at most `max_per_ip` connections
(trusted proxies, which carry many clients, are exempt). `configure` sets them per process (uvicorn
imports the class by name in every worker, where `app_from_env` configures it). granian enforces its
own header read timeout (`HTTP1Settings.header_read_timeout`, set by the runner) but has no hook for
a per-address cap. Body read timeouts are the edge's (`edge/body.py`), the same for both servers.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from llm_config import metrics
from llm_config.server.security import Network, normalize_ip, parse_networks
from llm_config.settings import ServeOptions

__all__ = ["PROTOCOL", "GuardedProtocol", "configure"]

PROTOCOL: Final = "llm_config.server.connections:GuardedProtocol"
"""What uvicorn's `http` option names, so that worker processes import it themselves."""


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header read timeout and a per-address connection cap."""

    header_timeout: ClassVar[float] = 10.0
    max_per_ip: ClassVar[int] = 100
    exempt: ClassVar[tuple[Network, ...]] = ()
    open_by_address: ClassVar[dict[str, int]] = {}  # this process's; touched only from its event loop

    _header_timer: asyncio.TimerHandle | None = None
    _counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ip = self.client[0] if self.client else None
        if self.max_per_ip > 0 and ip is not None and not _exempt(ip, self.exempt):
            held = self.open_by_address.get(ip, 0)
            if held >= self.max_per_ip:
                metrics.CONNECTIONS_REFUSED.inc()
                transport.close()
                return
            self.open_by_address[ip] = held + 1
            self._counted = ip
        self._arm()

    def _arm(self) -> None:
        if self.header_timeout > 0 and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            metrics.SLOW_CLIENTS.labels("headers").inc()
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        ip, self._counted = self._counted, None
        if ip is not None:
            left = self.open_by_address.get(ip, 1) - 1
            if left > 0:
                self.open_by_address[ip] = left
            else:
                self.open_by_address.pop(ip, None)
        super().connection_lost(exc)


def _exempt(ip: str, exempt: tuple[Network, ...]) -> bool:
    if not exempt:
        return False
    addr = normalize_ip(ip)
    return addr is not None and any(addr.version == n.version and addr in n for n in exempt)


def configure(options: ServeOptions) -> None:
    """Set this process's limits from the serve options."""
    GuardedProtocol.header_timeout = options.header_timeout
    GuardedProtocol.max_per_ip = options.max_connections_per_ip
    GuardedProtocol.exempt = parse_networks(options.trusted_proxy, "trusted-proxy")
