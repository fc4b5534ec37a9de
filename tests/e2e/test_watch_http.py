"""The watch route over HTTP: odd headers are a 400, never a 500."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from llm_config.server.routes.watch import WatchSettings
from tests.e2e.conftest import LiveServer


@pytest.fixture
def server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    srv = make_live_server()
    srv.app.state.watch = WatchSettings(keepalive=15, auth_check=0.2, poll=0.05, max_seconds=2)
    yield srv
    hub = getattr(srv.app.state, "watch_hub", None)
    if hub is not None:
        hub.close()


def _raw_get(server: LiveServer, path: str, headers: dict[bytes, bytes]) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server.admin_key.encode()
        for name, value in headers.items():
            head += b"\r\n" + name + b": " + value
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    break
        except TimeoutError:
            pass
        return data


@pytest.mark.parametrize("value", [b"\xb2", b"1\xb9", b"\xb3"])
def test_a_superscript_digit_in_last_event_id_is_400_not_500(server: LiveServer, value: bytes) -> None:
    """str.isdigit() accepts '²' (latin-1 0xB2, as Starlette decodes headers) but int('²') raises ValueError."""
    status_line = _raw_get(server, "/api/v1/watch/app", {b"Last-Event-ID": value}).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), status_line
