"""`llm-config migrate --to URL` killed with SIGKILL at a random moment, then run again: the copy is
one transaction, so the target holds either nothing or everything — a re-run completes it (with
`--force` when the first run had already committed), and the result verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from tests.databases import private_database

pytestmark = pytest.mark.faults

SCRIPT = Path(sys.executable).with_name("llm-config")
N = 20_000


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_migrate_killed_and_run_again(tmp_path: Path, backend: str) -> None:
    key = generate_key()
    source = str(tmp_path / "source")
    with ConfigManager.open(source, encryption_key=key, actor="tester") as manager:
        for start in range(0, N, 10_000):
            manager.import_(f"big/ns{start}", {f"k{i}": {"i": i} for i in range(start, start + 10_000)})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}, "LLM_CONFIG_KEY": key}
    rng = random.Random()
    for trial in range(3):
        with private_database(backend) as database:
            proc = subprocess.Popen([str(SCRIPT), "-s", source, "migrate", "--to", database.url], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 2.5))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            def count() -> int:
                return int(database.execute("SELECT COUNT(*) FROM entries")[0][0]) if database.execute(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'entries'")[0][0] else 0

            rows = count()
            assert rows in (0, N), f"trial {trial}: a torn copy of {rows} entries"
            again = subprocess.run([str(SCRIPT), "-s", source, "migrate", "--to", database.url], env=env,
                                   capture_output=True, text=True, timeout=300, check=False)
            if again.returncode == 3:  # the killed run had committed: the target is whole but not empty
                # (a COMMIT the client sent just before SIGKILL may finish on the server after the count above)
                assert count() == N and "not empty" in again.stderr
                again = subprocess.run([str(SCRIPT), "-s", source, "migrate", "--to", database.url, "--force"],
                                       env=env, capture_output=True, text=True, timeout=300, check=False)
            assert again.returncode == 0, again.stderr
            assert "verified" in again.stdout
            with ConfigManager.open(database.url, encryption_key=key) as copy:
                assert copy.get("big/ns10000", "k12345").value == {"i": 12345}
                assert copy.audit_verify().ok
