"""The HEALTHCHECK probe (`python -m llm_config.server.probe`) asks the server in *this* container, on
its own address, and nothing else: no HTTP proxy from the environment, no redirect to elsewhere."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from typing import ClassVar

import pytest

from llm_config.server import probe


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, dict[str, str]]]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        status, headers = type(self).answers.get("*", (200, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(status: int, headers: dict[str, str] | None = None) -> Iterator[tuple[int, list[str]]]:
    handler = type("H", (_Handler,), {"answers": {"*": (status, headers or {})}, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[tuple[int, list[str]]]:
    """Some other HTTP service that answers 200 to anything."""
    yield from _serve(200)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("LLM_CONFIG_CONFIG", "LLM_CONFIG_TLS_CERT", "LLM_CONFIG_HOST", "no_proxy", "NO_PROXY",
                 "http_proxy", "https_proxy", "all_proxy", "ALL_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLM_CONFIG_HOST", "0.0.0.0")  # noqa: S104 - as in a container; nothing binds
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen caches its opener (and proxies)
    return monkeypatch


def test_the_probe_asks_its_own_server_even_when_an_http_proxy_is_configured(
    clean_env: pytest.MonkeyPatch, elsewhere: tuple[int, list[str]],
) -> None:
    """Attack/misconfiguration: containers often carry HTTP_PROXY (corporate egress, a sidecar).
    urllib sends the loopback liveness request to that proxy, so the HEALTHCHECK asks a different
    host — the proxy's own 127.0.0.1 — and a dead server reports healthy (or the probe's request
    leaves the container). Expected: with no server on the configured port the probe says
    unhealthy (exit 1) and the proxy sees no request."""
    proxy_port, seen = elsewhere
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    clean_env.setenv("LLM_CONFIG_PORT", "9")  # discard: nothing answers HTTP here

    assert probe.main() == 1
    assert seen == []


def test_the_probe_does_not_follow_a_redirect_away_from_its_own_server(
    clean_env: pytest.MonkeyPatch, elsewhere: tuple[int, list[str]],
) -> None:
    """Attack: whatever answers on the server's port (a half-started or replaced process, a squatter
    on the port) replies `302 Location: http://elsewhere/…`; urllib follows it and the probe reports
    healthy from another service's 200 — and fetches a URL of that process's choosing. `/health/live`
    never redirects. Expected: a redirect is an unhealthy answer (exit 1), and the other service is
    never asked."""
    other_port, other_seen = elsewhere
    for port, _seen in _serve(302, {"Location": f"http://127.0.0.1:{other_port}/anything"}):
        clean_env.setenv("LLM_CONFIG_PORT", str(port))
        assert probe.main() == 1
        assert other_seen == []
