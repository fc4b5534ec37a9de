"""Settings as a platform engineer writes them: bad tracing settings refused before `serve` announces
anything (every server mode, no traceback), the probe's word on an allow-list without loopback, and a
storage URL read from a file that ends in a newline.

They run real `llm-config serve` processes on temporary stores (no container runtime needed).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LLM = str(BIN / "llm-config")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _key() -> str:
    return subprocess.run([LLM, "keygen"], capture_output=True, text=True, check=True).stdout.strip()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_CONFIG_", "OTEL_"))}
    env["LLM_CONFIG_KEY"] = _key()
    env["LLM_CONFIG_STORAGE"] = str(tmp_path / "store")
    env.update(extra)
    subprocess.run([LLM, "init"], env=env, capture_output=True, check=True)
    return env


def _wait_live(port: int, proc: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve never answered /health/live")


def _serve_bad_otel(tmp_path: Path, impl: str, workers: int, **otel: str) -> tuple[int | None, str]:
    """Start `serve --tracing` with a bad OTEL_* setting; (exit code or None if still running after 20 s, stderr)."""
    env = _env(tmp_path, **otel)
    port = _free_port()
    err = tmp_path / "err"
    with err.open("wb") as sink:
        proc = subprocess.Popen([LLM, "serve", "--tracing", "--port", str(port), "--server-impl", impl,
                                 "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=sink,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(20)
        except subprocess.TimeoutExpired:
            code = None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, err.read_text(errors="replace")


# ------------------------------------------------------------------------------------------- tracing


def test_unsupported_otel_exporter_with_uvicorn_workers_exits_with_one_line_error(tmp_path: Path) -> None:
    """`serve --tracing --workers 2` with OTEL_TRACES_EXPORTER=jaeger fails at start (exit 1, one `error:`
    line), not in each worker, where uvicorn's supervisor would respawn them forever without an exit code
    for Compose or Kubernetes to act on."""
    code, err = _serve_bad_otel(tmp_path, "uvicorn", 2, OTEL_TRACES_EXPORTER="jaeger")
    assert code == 1, f"still running after 20 s (exit {code}); {err.count('Traceback')} tracebacks on stderr"
    assert "Traceback" not in err
    assert "OTEL_TRACES_EXPORTER 'jaeger' is not supported" in err


def test_unsupported_otlp_protocol_with_granian_exits_without_traceback(tmp_path: Path) -> None:
    """`serve --tracing --server-impl granian` with OTEL_EXPORTER_OTLP_PROTOCOL=grpc (what many collectors
    default to) exits 1 with one line naming the setting and what to use; no worker prints a traceback."""
    code, err = _serve_bad_otel(tmp_path, "granian", 1, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    assert code == 1
    assert "OTEL_EXPORTER_OTLP_PROTOCOL 'grpc' is not supported" in err
    assert "Traceback" not in err, err[-2000:]


def test_bad_tracing_settings_are_refused_before_the_server_announces_it_listens(tmp_path: Path) -> None:
    """A tracing setting error is reported before `serve` logs "listening" (and before it creates the first
    admin key), as every other option is."""
    code, err = _serve_bad_otel(tmp_path, "uvicorn", 1, OTEL_TRACES_EXPORTER="jaeger")
    assert code == 1
    assert '"event":"listening"' not in err, "announced listening, then died on the tracing settings"


# --------------------------------------------------------------------------------------------- probe


def _probe_with_allow_list(tmp_path: Path, allow: str) -> subprocess.CompletedProcess[str]:
    port = _free_port()
    env = _env(tmp_path, LLM_CONFIG_PORT=str(port), LLM_CONFIG_ALLOW_CIDR=allow)
    proc = subprocess.Popen([LLM, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        return subprocess.run([sys.executable, "-m", "llm_config.server.probe"], env=env, capture_output=True,
                              text=True, timeout=30, check=False)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_the_probe_passes_with_loopback_in_the_allow_list(tmp_path: Path) -> None:
    """The HEALTHCHECK calls from loopback: an allow-list that names it (as docs/deploying.md says) keeps
    the container healthy."""
    probe = _probe_with_allow_list(tmp_path, "10.0.0.0/8,127.0.0.1/32")
    assert probe.returncode == 0, probe.stderr


def test_the_probe_says_what_to_add_when_the_allow_list_refuses_it(tmp_path: Path) -> None:
    """An allow-list without loopback answers the probe 403: unhealthy, with the fix in its one line."""
    probe = _probe_with_allow_list(tmp_path, "10.0.0.0/8")
    assert probe.returncode == 1
    assert "403" in probe.stderr and "127.0.0.1/32" in probe.stderr and "--allow-cidr" in probe.stderr
    assert probe.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------- the docs


def test_database_url_secret_written_with_echo_still_opens_the_store(tmp_path: Path) -> None:
    """A database URL Secret made from a file written with `echo` or an editor ends in a newline, which the
    Secret keeps and LLM_CONFIG_STORAGE receives: the newline is not part of the URL, and the store opens."""
    psycopg = pytest.importorskip("psycopg")
    name = "llm_config_test_url_newline"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL on 127.0.0.1:5432 not reachable")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    env["LLM_CONFIG_KEY"] = _key()
    env["LLM_CONFIG_STORAGE"] = f"postgresql://postgres@127.0.0.1:5432/{name}\n"  # `echo URL > database.url`
    try:
        done = subprocess.run([LLM, "upgrade"], env=env, capture_output=True, text=True, timeout=60, check=False)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert done.returncode == 0, done.stderr
