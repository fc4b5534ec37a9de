"""`Client` is a `ConfigAPI` and `AsyncClient` an `AsyncConfigAPI` (SPEC §4b), for mypy --strict and at run
time: each shared method has exactly the manager's parameter names, kinds and defaults, and nothing more."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

from llm_config import AsyncClient, Client
from llm_config.core.manager import ConfigManager
from llm_config.types import AsyncConfigAPI, ConfigAPI
from tests.typing.test_protocols import _mypy

METHODS = ("get", "set", "delete", "list", "history", "rollback", "resolve", "namespaces", "render", "diff", "promote")

GOOD = '''
from __future__ import annotations

import asyncio

from llm_config import AsyncClient, Client, ConfigManager, Entry
from llm_config.types import AsyncConfigAPI, ConfigAPI, ConfigReader, ConfigWriter


def use(api: ConfigAPI) -> str:
    api.set("acme", "k", 1, env="production", expected_version=0)
    plan = api.promote("acme", from_env="staging", to_env="production", keys=["k"], dry_run=True)
    api.promote("acme", from_env="staging", to_env="production", plan=plan)
    added: tuple[str, ...] = api.diff("acme", from_env="staging", to_env="production").added
    return str(api.get("acme", "k", env="production").value) + api.render("acme", "t", {"x": 1}) + str(added)


async def ause(api: AsyncConfigAPI) -> Entry:
    await api.set("acme", "k", 1, env="production", tags=["a"])
    text: str = await api.render("acme", "t", {"x": 1}, env="production", allow_extra=True)
    plan = await api.promote("acme", from_env="staging", to_env="production", dry_run=True)
    print(text, plan.steps, (await api.diff("acme", from_env="dev", to_env="prod")).changed)
    return await api.get("acme", "k", env="production", with_overrides=True)


def main() -> None:
    api: ConfigAPI = Client("http://127.0.0.1:8080", api_key="llmc_x")
    aapi: AsyncConfigAPI = AsyncClient("http://127.0.0.1:8080", api_key="llmc_x")
    reader: ConfigReader = Client("http://127.0.0.1:8080", api_key="llmc_x")
    writer: ConfigWriter = Client("http://127.0.0.1:8080", api_key="llmc_x")
    either: list[ConfigAPI] = [ConfigManager.open(".llm-config"), api]
    print(use(api), asyncio.run(ause(aapi)), reader, writer, either)
'''

BAD = '''
from __future__ import annotations

from llm_config import AsyncClient, Client
from llm_config.types import AsyncConfigAPI, ConfigAPI


def main() -> None:
    sync_as_async: AsyncConfigAPI = Client("http://h", api_key="k")  # E
    async_as_sync: ConfigAPI = AsyncClient("http://h", api_key="k")  # E
    Client("http://h", api_key="k").get("ns", "k", environment="prod")  # E
    print(sync_as_async, async_as_sync)
'''


def test_mypy_accepts_the_clients_as_the_protocols(tmp_path: Path) -> None:
    out, status = _mypy(GOOD, tmp_path)
    assert status == 0 and not out.strip(), out


def test_mypy_refuses_the_wrong_twin(tmp_path: Path) -> None:
    out, status = _mypy(BAD, tmp_path)
    assert status == 1, out
    expected = {i for i, line in enumerate(textwrap.dedent(BAD).splitlines(), 1) if line.endswith("# E")}
    lines = {int(row.split(":")[1]) for row in out.splitlines() if ": error:" in row}
    assert lines == expected, out


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", METHODS)
def test_each_method_has_the_managers_parameters(name: str) -> None:
    protocol = _params(getattr(ConfigAPI, name))
    manager = dict((n, (n, k, d)) for n, k, d in _params(getattr(ConfigManager, name)))
    assert [manager[n] for n, _, _ in protocol] == protocol  # the protocol is the manager's, name by name
    assert _params(getattr(Client, name)) == protocol  # …and the client has exactly that, nothing more
    assert _params(getattr(AsyncClient, name)) == protocol
    assert _params(getattr(AsyncConfigAPI, name)) == protocol
    assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
    assert not inspect.iscoroutinefunction(getattr(Client, name))


def test_runtime_checkable_protocols_see_the_clients() -> None:
    client = Client("http://127.0.0.1:1", api_key="llmc_x")
    aclient = AsyncClient("http://127.0.0.1:1", api_key="llmc_x")
    try:
        assert isinstance(client, ConfigAPI)
        assert isinstance(aclient, AsyncConfigAPI)
    finally:
        client.close()
        import asyncio

        asyncio.run(aclient.aclose())
