"""JSON Schemas as a user meets them — performance of a one-shot write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llm_config.core.manager import ConfigManager
from llm_config.core.schemas import BUILTIN_NAMES, builtin_schema

_PROBE = """
import json, sys, time
from llm_config.core.manager import ConfigManager
m = ConfigManager.open(sys.argv[1], encryption_key=sys.argv[2], actor="probe")
m.set("plain", "warm", 0)                   # start-up costs paid once, in a namespace without schemas
t = time.perf_counter(); m.set("plain", "warm", 1); plain = time.perf_counter() - t
t = time.perf_counter(); m.set("app", "unrelated.key", 1); app = time.perf_counter() - t
print(json.dumps({"plain": plain, "app": app}))
"""


def test_a_write_no_schema_matches_does_not_compile_every_schema(make_manager, store_dir: Path, key: str) -> None:  # type: ignore[no-untyped-def]
    """A schema whose pattern does not match the key costs nothing: with 50 schemas (`k0.*` … `k49.*`), a
    fresh process's `set` of a key none matches takes under 0.25 s more than one in a namespace without."""
    manager: ConfigManager = make_manager()
    for i in range(50):
        document = builtin_schema(BUILTIN_NAMES[i % len(BUILTIN_NAMES)])
        document["$comment"] = f"copy {i}"  # a distinct document each (the compile cache is by text)
        manager.set_schema("app", f"k{i}.*", document)
    manager.close()
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(store_dir), key], capture_output=True, text=True,
                          timeout=120, check=True)
    timings = json.loads(proc.stdout)
    overhead = timings["app"] - timings["plain"]
    assert overhead < 0.25, f"a write matching no schema cost {overhead:.2f}s more than one in a namespace without"
