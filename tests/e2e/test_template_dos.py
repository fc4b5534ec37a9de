"""A template write that is refused (a compare-and-set conflict, or a text over the 1 MiB value cap) retains
no memory for its text. Measured in a child process, so the figure is its own and the memory goes with it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from llm_config.crypto.keys import generate_key
from tests.sql_access import REPO, child_env

MAX_RETAINED_MIB = 40

_SCRIPT = textwrap.dedent("""
    import gc, os, sys
    from llm_config.core.manager import ConfigManager
    from llm_config.errors import ConflictError, ValidationError
    from tests.sql_access import as_role

    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    manager = ConfigManager.open(sys.argv[1], encryption_key=sys.argv[2], actor="admin")
    editor = as_role(manager, "editor")
    editor.set_template("acme", "warm-up", "{{ a }}")
    gc.collect()
    before = rss_mib()
    refused = 0
    for i, (size, expected) in enumerate([(1_000_000, 7), (1_000_000, 7), (1_500_000, None)]):
        content = "{{ a }}" * (size // 7) + f" {i}"
        try:  # a version that is not there (409), or a text over the 1 MiB value cap (400): nothing stored
            editor.set_template("acme", f"bomb-{i}", content, expected_version=expected)
        except (ConflictError, ValidationError):
            refused += 1
    del content
    gc.collect()
    assert refused == 3, refused
    assert manager.list_templates("acme") and len(manager.list_templates("acme")) == 1
    print(round(rss_mib() - before))
""")


def test_refused_template_writes_do_not_retain_memory(tmp_path: Path) -> None:
    env = child_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "store"), generate_key()],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    retained = int(proc.stdout.strip())
    assert retained < MAX_RETAINED_MIB, (
        f"three refused template writes (3.5 MB of text, nothing stored) left {retained} MiB in the process")
