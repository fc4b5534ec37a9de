"""Every write finishes in bounded time whatever schema its key has: schema regexes run on RE2 (linear;
a pattern RE2 cannot run is refused when the schema is set), and a document whose `$ref`s expand beyond
the budget is refused when it is set. Each case runs in a child process under a generous deadline."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm_config.crypto.keys import generate_key
from tests.sql_access import REPO, child_env

DEADLINE_S = 30.0  # a liveness guard (a backtracking regex or fan-out takes hours), not a speed claim

_SCRIPT = textwrap.dedent("""
    import json, sys
    from llm_config.core.manager import ConfigManager
    from llm_config.errors import SchemaViolationError, ValidationError
    from tests.sql_access import as_role

    store, key, schema, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    admin = ConfigManager.open(store, encryption_key=key, actor="admin")
    try:
        admin.set_schema("acme", "prompt.*", schema)       # the admin's one-off act: refused, or stored
    except ValidationError:
        print("refused")
        sys.exit(0)
    editor = as_role(admin, "editor")
    try:
        editor.set("acme", "prompt.system", value)          # any writer, any time after
    except SchemaViolationError:
        pass
    print("done")
""")

_FANOUT = 26  # each level references the next twice: 2**26 evaluations of one value, from a ~2 KB document
_DEFS = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(_FANOUT)}

CASES = {
    "pattern": ({"type": "string", "pattern": "^(a+)+$"}, "a" * 40 + "!"),
    "patternProperties": ({"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}},
                           "additionalProperties": False}, {"a" * 40 + "!": 1}),
    "ref-fanout": ({"$defs": {**_DEFS, f"d{_FANOUT}": {"type": "string"}}, "$ref": "#/$defs/d0"}, "x"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_schema_cannot_pin_a_writer(case: str, tmp_path: Path) -> None:
    import json

    schema, value = CASES[case]
    env = child_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "store"), generate_key(), json.dumps(schema), json.dumps(value)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        out, err = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        out, err = "", "timed out"
    if err == "timed out":
        pytest.fail(f"one editor write of a {len(json.dumps(value))}-byte value against a schema {case} "
                    f"was still running after {DEADLINE_S} s (unbounded evaluation: regex backtracking / $ref fan-out)")
    assert proc.returncode == 0 and out.strip() in ("done", "refused"), err
    if case == "ref-fanout":  # a document whose references explode is refused when it is set
        assert out.strip() == "refused"
