"""The SDK raises and returns what the embedded manager does for the same calls (names, versions, conflicts)."""

from __future__ import annotations

import pytest

from llm_config import Client
from llm_config.errors import LLMConfigError
from tests.e2e.conftest import LiveServer

NS = "acme/bot"


@pytest.fixture
def server(make_live_server) -> LiveServer:
    return make_live_server()


def _outcome(fn):
    try:
        r = fn()
    except LLMConfigError as exc:
        return ("raise", type(exc).__name__)
    except (TypeError, ValueError) as exc:
        return ("raise", type(exc).__name__)
    return ("ok", getattr(r, "value", r) if not isinstance(r, list) else [getattr(e, "key", e) for e in r])


CALLS = {
    "secret set then plain get": lambda m: (m.set(NS, "s", "sk-1", secret=True), m.get(NS, "s"))[1].value,
    "get missing ns": lambda m: m.get("nope", "k"),
    "get bad key": lambda m: m.get(NS, "bad key"),
    "get env alias": lambda m: m.get(NS, "k", env="prod"),
    "get bad env": lambda m: m.get(NS, "k", env="qa"),
    "delete missing": lambda m: m.delete(NS, "missing"),
    "delete twice": lambda m: (m.delete(NS, "k2"), m.delete(NS, "k2")),
    "rollback bad version": lambda m: m.rollback(NS, "k", 0),
    "rollback missing version": lambda m: m.rollback(NS, "k", 99),
    "set plain over secret": lambda m: (m.set(NS, "s2", "x", secret=True), m.set(NS, "s2", "y")),
    "set expected 0 on existing": lambda m: m.set(NS, "k", 3, expected_version=0),
    "set expected_version bool": lambda m: m.set(NS, "k", 3, expected_version=True),
    "list bad prefix": lambda m: m.list(NS, prefix="a b"),
    "list prefix": lambda m: m.list(NS, prefix="k"),
    "history limit 0": lambda m: m.history(NS, "k", limit=0),
    "resolve nested clash": lambda m: (m.set(NS, "a", 1), m.set(NS, "a.b", 2), m.resolve(NS, nested=True)),
    "get deleted": lambda m: (m.delete(NS, "k3"), m.get(NS, "k3")),
    "get version of deleted": lambda m: (m.delete(NS, "k4"), m.get(NS, "k4", version=1))[1].value,
    "tags as str": lambda m: m.set(NS, "k", 1, tags="abc"),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_parity(server: LiveServer, make_manager, name) -> None:
    def prep(m):
        for k in ("k", "k2", "k3", "k4"):
            m.set(NS, k, 1)
    mgr = server.manager
    c = Client(server.url, api_key=server.admin_key)
    try:
        prep(mgr)
        remote_out = _outcome(lambda: CALLS[name](c))
    finally:
        c.close()
    import os
    import tempfile

    from llm_config.core.manager import ConfigManager  # local comparison on a fresh store
    from llm_config.crypto.keys import generate_key
    with tempfile.TemporaryDirectory() as d:
        m2 = ConfigManager.open(os.path.join(d, "s"), encryption_key=generate_key(), actor="t")
        try:
            prep(m2)
            local_out = _outcome(lambda: CALLS[name](m2))
        finally:
            m2.close()
    assert remote_out == local_out
