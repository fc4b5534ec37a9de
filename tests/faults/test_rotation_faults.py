"""Key rotation under faults (issue 9 part 5): `llm-config rotate-key` killed with SIGKILL midway, then run again,
finishes and leaves every secret revealing under the new key alone; a replica that lacks the new key during a
rotation serves every secret either right or not at all — 503 naming the key id, never a 500, never a wrong
value — says degraded, and recovers once it is given the key.

The processes killed here are our own clients and servers; the databases are the shared ones (each test on a
private schema/database), which are never disturbed."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from llm_config.core.health import ciphertexts_by_key_id
from llm_config.core.manager import ConfigManager
from llm_config.crypto.aead import key_id
from llm_config.crypto.keys import generate_key
from llm_config.storage import open_storage
from tests.e2e.test_serve_process import _free_port, _stop, _wait_healthy

pytestmark = pytest.mark.faults

NS = "fault/rot"
N = 3000


def _kid(key: str) -> str:
    return key_id(base64.b64decode(key))


def _env(keys: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    env["LLM_CONFIG_KEY"] = keys
    return env


def _fill(target: str, key: str) -> dict[str, str]:
    """N secrets, a third of them with a second version (history); returns every current value."""
    first = {f"k{i:04d}": f"sk-first-{i}" for i in range(N)}
    second = {f"k{i:04d}": f"sk-second-{i}" for i in range(0, N, 3)}
    with ConfigManager.open(target, encryption_key=key, actor="filler") as manager:
        manager.import_(NS, {"secrets": first})
        manager.import_(NS, {"secrets": second})
    return {**first, **second}


def _counts(target: str) -> Counter[str]:
    storage = open_storage(target, create=False)
    try:
        return Counter(ciphertexts_by_key_id(storage))
    finally:
        storage.close()


def _all_reveal(target: str, keys: str, expected: dict[str, str]) -> None:
    with ConfigManager.open(target, encryption_key=keys, actor="checker") as manager:
        assert manager.resolve(NS, reveal=True) == expected
        assert manager.get(NS, "k0003", version=1, reveal=True).value == "sk-first-3"  # history too
        assert manager.audit_verify().ok


def test_rotate_key_killed_midway_then_rerun_finishes(store_target: str, tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    expected = _fill(store_target, old)
    total = N + N // 3 + 1  # versions and the instance secret
    assert _counts(store_target) == {_kid(old): total}
    key_file = tmp_path / "new.key"
    key_file.write_text(new)
    key_file.chmod(0o600)
    command = [sys.executable, "-m", "llm_config.cli.main", "-s", store_target, "rotate-key", "--new-key-file",
               str(key_file), "--batch-size", "20"]
    log = tmp_path / "rotate.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, env=_env(old), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while _counts(store_target)[_kid(new)] < 200:  # ten batches committed: well under way
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the rotation made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    halfway = _counts(store_target)
    assert 200 <= halfway[_kid(new)] < total - 1 and halfway[_kid(old)] > 0, halfway  # killed midway
    assert sum(halfway.values()) == total  # no row lost, none doubled: whole batches only
    _all_reveal(store_target, f"{old},{new}", expected)  # consistent and readable with both keys meanwhile

    rerun = subprocess.run(command, env=_env(old), capture_output=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert b"instance secret re-sealed" in rerun.stdout
    assert _counts(store_target) == {_kid(new): total}
    _all_reveal(store_target, new, expected)  # the new key alone opens everything


@contextmanager
def _replica(target: str, keys: str, log: Path) -> Iterator[str]:
    """`llm-config serve` on `target` with keyring `keys`; yields its URL."""
    port = _free_port()
    command = [sys.executable, "-m", "llm_config.cli.main", "-s", target, "serve", "--port", str(port),
               "--rate-limit-key", "0", "--rate-limit-ip", "0"]
    with log.open("ab") as sink:
        proc = subprocess.Popen(command, env=_env(keys), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield url
    finally:
        _stop(proc)


def test_a_replica_lacking_the_new_key_fails_closed_during_rotation_and_recovers(
    store_target: str, tmp_path: Path,
) -> None:
    old, new = generate_key(), generate_key()
    expected = _fill(store_target, old)
    with ConfigManager.open(store_target, encryption_key=old) as manager:
        token = manager.create_api_key("ops", "admin")[1]
    headers = {"Authorization": f"Bearer {token}"}
    log = tmp_path / "replica.log"
    seen: Counter[int] = Counter()
    wrong: list[str] = []
    stop = threading.Event()

    with _replica(store_target, old, log) as url:  # only the old key, all along

        def reader() -> None:
            rng = random.Random(7)
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                while not stop.is_set():
                    name = f"k{rng.randrange(N):04d}"
                    answer = client.get(f"/api/v1/configs/{NS}/-/{name}", params={"reveal": "true"})
                    seen[answer.status_code] += 1
                    if answer.status_code == 200:
                        if answer.json()["value"] != expected[name]:
                            wrong.append(name)  # a wrong value: never
                    elif answer.status_code != 503 or _kid(new) not in answer.json()["message"]:
                        wrong.append(answer.text)  # a 500, or a 503 that does not name the missing key

        readers = [threading.Thread(target=reader) for _ in range(2)]
        for thread in readers:
            thread.start()
        try:
            rotation = subprocess.run(
                [sys.executable, "-m", "llm_config.cli.main", "-s", store_target, "rotate-key", "--new-key", new,
                 "--batch-size", "50"], env=_env(old), capture_output=True, timeout=300, check=False)
        finally:
            stop.set()
            for thread in readers:
                thread.join(60)
        assert rotation.returncode == 0, rotation.stderr
        assert not wrong, wrong[:5]  # never a wrong value, never a 500
        assert seen[200] > 0 and seen[503] > 0, seen  # it served during the rotation, then failed closed
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            refused = client.get(f"/api/v1/configs/{NS}/-/k0001", params={"reveal": "true"})
            assert refused.status_code == 503 and _kid(new) in refused.json()["message"]
            time.sleep(2.1)  # past /health's own cache
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["checks"]["key"]["status"] == "degraded"
            assert _kid(new) in health.json()["checks"]["key"]["message"]
    assert "Traceback" not in log.read_text()

    with _replica(store_target, f"{new},{old}", log) as url, \
            httpx.Client(base_url=url, headers=headers, timeout=30) as client:  # given the key: restarted with it
        for name in ("k0001", "k0003", f"k{N - 1:04d}"):
            got = client.get(f"/api/v1/configs/{NS}/-/{name}", params={"reveal": "true"})
            assert got.status_code == 200 and got.json()["value"] == expected[name]
        assert client.get("/health").json()["status"] == "healthy"
    assert _counts(store_target) == {_kid(new): N + N // 3 + 1}
