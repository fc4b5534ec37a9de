"""`llm-config serve` as a real process: both ASGI servers, one and two workers, key from a file.

Proves what the in-thread fixtures cannot: the console script, the worker factory and the key
hand-over to worker processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from llm_config.crypto.keys import generate_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not become healthy in time")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    path.write_text(generate_key())
    path.chmod(0o600)
    return path


@contextmanager
def _serve(tmp_path: Path, key_file: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    env["LLM_CONFIG_KEY"] = generate_key()  # a wrong key in the environment: the flag must win
    cmd = [sys.executable, "-m", "llm_config.cli.main", "-s", str(tmp_path / "store"), "--key-file", str(key_file),
           "serve", "--port", str(port), *args]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.parametrize("impl", ["uvicorn", "granian"])
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_process_round_trip(tmp_path: Path, key_file: Path, impl: str, workers: int) -> None:
    with _serve(tmp_path, key_file, "--server-impl", impl, "--workers", str(workers)) as (url, proc, log):
        with httpx.Client(base_url=url, timeout=10) as client:
            put = client.put("/api/v1/configs/acme/-/openai.api_key", json={"value": "sk-x", "env": "prod",
                                                                             "secret": True})
            assert put.status_code == 200, put.text
            for _ in range(2 * workers):  # every worker opens the secret with the key file's key
                got = client.get("/api/v1/configs/acme/openai.api_key", params={"env": "prod", "reveal": "true"})
                assert got.status_code == 200 and got.json()["value"] == "sk-x"
            assert client.get("/api/v1/audit/verify").json()["ok"] is True
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        stderr = log.read_text()
        assert "listening on" in stderr
        assert "sk-x" not in stderr and key_file.read_text().strip() not in stderr
        assert "Traceback" not in stderr


def test_serve_refuses_a_public_address(tmp_path: Path, key_file: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llm_config.cli.main", "-s", str(tmp_path / "store"), "--key-file", str(key_file),
         "serve", "--host", "0.0.0.0"],  # noqa: S104 - the point of the test
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 1 and "Refusing to bind 0.0.0.0" in proc.stderr
    assert not (tmp_path / "store").exists() or "Traceback" not in proc.stderr
