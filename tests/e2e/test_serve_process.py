"""`llm-config serve` as a real process: both ASGI servers, one and two workers, key from a file.

Proves what the in-thread fixtures cannot: the console script, the worker factory and the key
hand-over to worker processes.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import stat
import subprocess
import sys
import tempfile
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
def _serve(
    tmp_path: Path, key_file: Path, *args: str, store: str | None = None, env_extra: dict[str, str] | None = None,
    stderr: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    env["LLM_CONFIG_KEY"] = generate_key()  # a wrong key in the environment: the flag must win
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "llm_config.cli.main", "-s", store or str(tmp_path / "store"), "--key-file",
           str(key_file), "serve", "--port", str(port), *args]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=stderr if stderr is not None else subprocess.STDOUT,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield url, proc, log
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _initial_key(path: Path) -> str:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert key.startswith("llmc_")
    return key


@pytest.mark.parametrize("impl", ["uvicorn", "granian"])
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_process_round_trip(tmp_path: Path, key_file: Path, impl: str, workers: int) -> None:
    with _serve(tmp_path, key_file, "--server-impl", impl, "--workers", str(workers)) as (url, proc, log):
        key_path = tmp_path / "store" / "initial-admin-key"
        admin_key = _initial_key(key_path)
        with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {admin_key}"}) as client:
            put = client.put("/api/v1/configs/acme/-/openai.api_key", json={"value": "sk-x", "env": "prod",
                                                                             "secret": True})
            assert put.status_code == 200, put.text
            assert put.json()["metadata"]["created_by"].startswith("key:initial-admin#key_")
            for _ in range(2 * workers):  # every worker opens the secret with the key file's key
                got = client.get("/api/v1/configs/acme/openai.api_key", params={"env": "prod", "reveal": "true"})
                assert got.status_code == 200 and got.json()["value"] == "sk-x"
                assert httpx.get(f"{url}/api/v1/configs/acme/openai.api_key", timeout=10).status_code == 401
            assert client.get("/api/v1/audit/verify").json()["ok"] is True
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        stderr = log.read_text()
        assert "listening on" in stderr
        assert str(key_path) in stderr and admin_key not in stderr  # the file's path, never the key
        assert "sk-x" not in stderr and key_file.read_text().strip() not in stderr
        assert "Traceback" not in stderr
    # a second start neither makes nor shows another key
    key_path.unlink()
    with _serve(tmp_path, key_file, "--server-impl", impl) as (url, proc, log):
        assert not key_path.exists()
        assert httpx.get(f"{url}/api/v1/keys", headers={"X-API-Key": admin_key}, timeout=10).status_code == 200


def _session_processes(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: the session id
            pids.append(int(entry.name))
    return pids


def _metrics_dir(sid: int) -> Path:
    """The multiprocess directory whose files belong to this server's workers."""
    pids = {str(pid) for pid in _session_processes(sid)}
    for directory in Path(tempfile.gettempdir()).glob("llm-config-metrics-*"):
        if any(p.stem.rsplit("_", 1)[-1] in pids for p in directory.glob("*.db")):
            return directory
    raise AssertionError("no worker runs in multiprocess mode")


def _count(text: str, route: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("llm_config_http_requests_total{") and f'route="{route}"' in line and 'method="GET"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("impl", ["uvicorn", "granian"])
def test_metrics_add_up_over_two_workers(tmp_path: Path, key_file: Path, impl: str) -> None:
    with _serve(tmp_path, key_file, "--server-impl", impl, "--workers", "2", "--rate-limit-ip", "0") \
            as (url, proc, _):
        admin_key = _initial_key(tmp_path / "store" / "initial-admin-key")
        headers = {"X-API-Key": admin_key, "Connection": "close"}  # a new connection each: both workers answer
        assert httpx.put(f"{url}/api/v1/configs/app/k", json={"value": 1}, headers=headers).status_code == 200
        directory = _metrics_dir(proc.pid)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        sent = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for _ in range(20):
                assert httpx.get(f"{url}/api/v1/configs/app/k", headers=headers, timeout=10).status_code == 200
                sent += 1
            writers = {p.name.rsplit("_", 1)[1] for p in directory.glob("counter_*.db")}
            if len(writers) >= 2:
                break
        assert len(writers) >= 2, "only one worker answered"
        route = "/api/v1/configs/{ns}/{key}"
        scrapes = [httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text for _ in range(6)]
        assert {_count(text, route) for text in scrapes} == {float(sent)}  # every scrape sees both workers
        assert "llm_config_cache_hits_total" in scrapes[-1] and "llm_config_audit_events_total" in scrapes[-1]
    assert not directory.exists()  # the private directory goes with the server


def test_first_key_on_a_terminal_and_in_its_file(tmp_path: Path, key_file: Path) -> None:
    leader, follower = pty.openpty()
    try:
        with _serve(tmp_path, key_file, stderr=follower):
            os.set_blocking(leader, False)
            shown = b""
            deadline = time.monotonic() + 10
            while b"llmc_" not in shown and time.monotonic() < deadline:
                try:
                    shown += os.read(leader, 65536)
                except BlockingIOError:
                    time.sleep(0.05)
            assert b"First start" in shown and b"llmc_" in shown
            written = (tmp_path / "store" / "initial-admin-key").read_text().strip()
            assert written.encode() in shown  # the same key, on the terminal and in the 0600 file
    finally:
        os.close(leader)
        os.close(follower)


def test_first_key_of_a_url_store_goes_to_the_config_directory(tmp_path: Path, key_file: Path) -> None:
    xdg = tmp_path / "xdg"
    with _serve(tmp_path, key_file, store=f"sqlite:///{tmp_path / 'db' / 'config.db'}",
                env_extra={"XDG_CONFIG_HOME": str(xdg)}) as (url, _, log):
        path = xdg / "llm-config" / "initial-admin-key"
        key = _initial_key(path)
        assert httpx.get(f"{url}/api/v1/keys", headers={"X-API-Key": key}, timeout=10).status_code == 200
        assert f"written to {path}" in log.read_text() and key not in log.read_text()


def test_serve_binds_any_address_and_warns_without_tls(tmp_path: Path, key_file: Path) -> None:
    with _serve(tmp_path, key_file, "--host", "0.0.0.0") as (url, _, log):  # noqa: S104 - the point of the test
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        text = log.read_text()
    assert "plain_http_on_network" in text and "Refusing" not in text


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_server_database_gets_its_first_key_only_from_the_bootstrap_flag(
    tmp_path: Path, key_file: Path, backend: str
) -> None:
    from tests.databases import private_database

    with private_database(backend) as database:
        with _serve(tmp_path, key_file, store=database.url) as (url, _, log):
            assert "no_admin_key" in log.read_text()  # replicas starting together must not each make one
            assert not (tmp_path / "xdg").exists()
        assert database.execute("SELECT COUNT(*) FROM api_keys")[0][0] == 0
        path = tmp_path / "bootstrap" / "admin.key"
        with _serve(tmp_path, key_file, "--bootstrap-admin-key-file", str(path), store=database.url) as (url, _, log):
            key = _initial_key(path)
            assert httpx.get(f"{url}/api/v1/keys", headers={"X-API-Key": key}, timeout=10).status_code == 200
            assert key not in log.read_text()
        path.unlink()
        with _serve(tmp_path, key_file, "--bootstrap-admin-key-file", str(path), store=database.url):
            assert not path.exists()  # the store has a key now: none is made again
        assert database.execute("SELECT COUNT(*) FROM api_keys")[0][0] == 1
