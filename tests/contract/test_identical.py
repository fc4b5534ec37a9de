"""The same operations give the same answers on SQLite, PostgreSQL and MariaDB (issue: "every command,
route, audit event and error identical"): one scenario run through the library on each backend, its
observable results compared, plus the properties that differ by default between databases — case,
collation order, NUL and astral characters, 64-bit integers, float round-trips, 1 MiB values, version
numbering after delete, purge.
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_config.core.manager import ConfigManager
from llm_config.errors import LLMConfigError
from llm_config.values import MAX_VALUE_BYTES
from tests.contract.conftest import Backend

NS = "same/answers"
ODD_VALUES: dict[str, Any] = {
    "nul": "a\x00b\x00",
    "astral": "emoji 😀, clef 𝄞, CJK 漢字, combining é",
    "nul-key": {"k\x00": "v", "😀": ["\x00"]},
    "int-max": 2**63 - 1,
    "int-min": -(2**63),
    "beyond-double": 2**53 + 1,
    "floats": [0.1, 1e308, 5e-324, -0.0, 1.7976931348623157e308, 123456789.123456789],
    "quotes": "'; DROP TABLE entries; -- \" \\ %s ? $1",
    "big": "x" * (MAX_VALUE_BYTES - 2),  # the largest string value: 1 MiB serialized with its quotes
}
# ASCII names in code-point order differ from most locales' collation order ("B" < "a" here).
KEYS = ["a", "A", "b", "B", "a.b", "a_b", "a-b", "0", "Z9", "aa", "a0"]


def _scenario(manager: ConfigManager) -> list[Any]:
    """Everything a user can observe, minus ids and times."""
    out: list[Any] = []

    def attempt(label: str, call: Any) -> None:
        try:
            result = call()
        except LLMConfigError as exc:
            out.append((label, "error", type(exc).__name__, exc.message))
        else:
            out.append((label, "ok", result))

    for key, value in ODD_VALUES.items():
        manager.set(NS, key, value)
        entry = manager.get(NS, key)
        out.append((key, entry.value == value, entry.version, type(entry.value).__name__))
    for key in KEYS:
        manager.set(NS, key, key, env="production")
    out.append(("list order", [e.key for e in manager.list(NS, env="production")]))
    out.append(("namespaces", manager.namespaces()))
    # case: Key and key are two entries
    manager.set(NS, "Case", 1)
    manager.set(NS, "case", 2)
    out.append(("case", manager.get(NS, "Case").value, manager.get(NS, "case").value))
    # version numbering after delete, rollback, purge
    manager.set(NS, "life", "v1", secret=True)
    manager.set(NS, "life", "v2", secret=True)
    manager.delete(NS, "life")
    attempt("get deleted", lambda: manager.get(NS, "life").value)
    manager.set(NS, "life", "v4", secret=True)
    manager.purge(NS, "life", 1)
    attempt("rollback purged", lambda: manager.rollback(NS, "life", 1).version)
    attempt("rollback tombstone", lambda: manager.rollback(NS, "life", 3).version)
    attempt("rollback 2", lambda: manager.rollback(NS, "life", 2).version)
    attempt("purge current", lambda: manager.purge(NS, "life", 5))
    out.append(("history", [(h.version, h.deleted, h.value, h.change_description)
                                    for h in manager.history(NS, "life")]))
    attempt("reveal", lambda: manager.get(NS, "life", reveal=True).value)
    attempt("cas conflict", lambda: manager.set(NS, "life", "x", secret=True, expected_version=2))
    attempt("plain over secret", lambda: manager.set(NS, "life", "plain"))
    attempt("unicode name", lambda: manager.set(NS, "clé", 1))
    attempt("missing", lambda: manager.get(NS, "nope"))
    out.append(("resolve", sorted(manager.resolve(NS, env="production"))))
    events = manager.audit_events()
    out.append(("audit", [(e.type, e.namespace, e.key, e.environment, e.old_version, e.new_version, e.outcome)
                          for e in events]))
    out.append(("verify", manager.audit_verify().ok))
    return out


@pytest.fixture(scope="module")
def sqlite_answers(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    from llm_config.crypto.keys import generate_key

    store = tmp_path_factory.mktemp("sqlite-answers") / "store"
    with ConfigManager.open(str(store), encryption_key=generate_key(), actor="tester") as manager:
        return _scenario(manager)


def test_every_backend_answers_like_sqlite(backend: Backend, key: str, sqlite_answers: list[Any]) -> None:
    with ConfigManager.open(backend.target, encryption_key=key, actor="tester") as manager:
        answers = _scenario(manager)
    assert answers == sqlite_answers
    # and the answers are the right ones, not merely the same
    assert all(row[1] is True for row in answers[:len(ODD_VALUES)])
    assert dict((row[0], row[1]) for row in answers if row[0] == "list order")["list order"] == sorted(KEYS)
    by_label = {row[0]: row for row in answers}
    assert by_label["case"] == ("case", 1, 2)
    assert [(v, deleted) for v, deleted, _, _ in by_label["history"][1]] == [
        (5, False), (4, False), (3, True), (2, False), (1, False)]
    assert by_label["rollback 2"] == ("rollback 2", "ok", 5)
    assert by_label["purge current"][1:3] == ("error", "ValidationError")
    assert by_label["rollback purged"][1:3] == ("error", "NotFoundError")
    assert by_label["cas conflict"][1:3] == ("error", "ConflictError")
    assert by_label["plain over secret"][1:3] == ("error", "SecretOverwriteError")
    assert by_label["reveal"] == ("reveal", "ok", "v2")
    assert by_label["verify"] == ("verify", True)
