"""The container HEALTHCHECK (`python -m llm_config.server.probe`): alive or not, as `serve` is configured.

It reads the address as `serve` does (LLM_CONFIG_HOST/PORT/TLS_CERT), asks `/health/live` — on
loopback when the server listens on every address — and answers with its exit status.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from llm_config.server.probe import probe_url
from llm_config.settings import ServeOptions
from tests.e2e.conftest import LiveServer


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8080/health/live"),
    ("0.0.0.0", "http://127.0.0.1:8080/health/live"),  # noqa: S104 - a name, nothing binds
    ("::", "http://[::1]:8080/health/live"),
    ("10.1.2.3", "http://10.1.2.3:8080/health/live"),
    ("fd00::7", "http://[fd00::7]:8080/health/live"),
])
def test_the_probe_asks_liveness_where_the_server_listens(host: str, url: str) -> None:
    assert probe_url(ServeOptions(host=host)) == url


def test_the_probe_speaks_tls_when_the_server_does() -> None:
    assert probe_url(ServeOptions(port=8443, tls_cert="/tls/cert.pem")) == "https://127.0.0.1:8443/health/live"


def probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_config.server.probe"], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_probe_exits_0_for_a_live_server(live_server: LiveServer) -> None:
    port = live_server.url.rsplit(":", 1)[1]
    done = probe({"LLM_CONFIG_HOST": "0.0.0.0", "LLM_CONFIG_PORT": port})  # noqa: S104 - as in a container
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_probe_exits_1_with_one_line_when_nothing_answers() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = probe({"LLM_CONFIG_PORT": str(port)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: http://127.0.0.1:{port}/health/live")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
