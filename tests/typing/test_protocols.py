"""The shared read/write surface (`llm_config.types.ConfigAPI`, SPEC §4b) is the manager's, for mypy and at run time.

`mypy --strict` must accept the manager and its caller-bound view as a `ConfigAPI`, and must refuse an
object whose methods do not match (so a drifting Protocol or manager fails here, not in a user's build).
At run time every Protocol method has the manager's parameter names, kinds and defaults, and the
`Caller` view has the manager's methods less the server's context arguments.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

import mypy.api
import pytest

from llm_config.core.context import CallContext, Caller
from llm_config.core.manager import ConfigManager
from llm_config.types import AsyncConfigAPI, ConfigAPI, ConfigReader, ConfigWriter

REPO = Path(__file__).resolve().parents[2]

PROTOCOL_METHODS = ("get", "set", "delete", "list", "history", "rollback", "resolve", "namespaces", "render", "diff",
                    "promote")
CONTEXT_ARGUMENTS = frozenset({"principal", "source_ip", "request_id"})
# the edge's own calls: it authenticates, bans and answers cached GETs before a caller view exists
EDGE_METHODS = frozenset({"authorize", "cached_principal", "peek", "peek_record", "authenticate",
                          "record_auth_failure", "record_ban"})

GOOD = '''
from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from llm_config import ConfigManager, Entry, HistoryItem
from llm_config.core.context import CallContext
from llm_config.documents import EnvDiff, Promotion
from llm_config.types import AsyncConfigAPI, ConfigAPI, ConfigReader, ConfigWriter


class Remote:
    """A stand-in for `llm_config.AsyncClient`: the async twin, implemented."""

    async def get(self, namespace: str, key: str, *, env: str = "development", version: int | None = None,
                  with_overrides: bool = False, reveal: bool = False) -> Entry: raise NotImplementedError
    async def list(self, namespace: str, *, env: str = "development", prefix: str = "",
                   recursive: bool = False, limit: int | None = None) -> builtins.list[Entry]: raise NotImplementedError
    async def history(self, namespace: str, key: str, *, env: str = "development",
                      limit: int | None = None) -> builtins.list[HistoryItem]: raise NotImplementedError
    async def resolve(self, namespace: str, *, env: str = "development", nested: bool = False,
                      reveal: bool = False) -> dict[str, Any]: raise NotImplementedError
    async def namespaces(self, prefix: str = "") -> builtins.list[str]: raise NotImplementedError
    async def set(self, namespace: str, key: str, value: Any, *, env: str = "development",
                  secret: bool | None = None, description: str | None = None, tags: Sequence[str] | None = None,
                  message: str | None = None, expected_version: int | None = None) -> Entry:
        raise NotImplementedError
    async def delete(self, namespace: str, key: str, *, env: str = "development",
                     expected_version: int | None = None) -> Entry: raise NotImplementedError
    async def rollback(self, namespace: str, key: str, version: int, *,
                       env: str = "development") -> Entry: raise NotImplementedError
    async def render(self, namespace: str, name: str, variables: Mapping[str, Any] | None = None, *,
                     env: str = "development", allow_extra: bool = False) -> str: raise NotImplementedError
    async def diff(self, namespace: str, *, from_env: str, to_env: str) -> EnvDiff: raise NotImplementedError
    async def promote(self, namespace: str, *, from_env: str, to_env: str, keys: Sequence[str] | None = None,
                      prune: bool = False, dry_run: bool = False,
                      plan: Promotion | None = None,
                      secret: bool | None = None) -> Promotion: raise NotImplementedError


def use(api: ConfigAPI) -> str:
    api.set("acme", "k", 1, env="production", expected_version=0)
    return str(api.get("acme", "k", env="production").value)


def main() -> None:
    mgr = ConfigManager.open(".llm-config")
    api: ConfigAPI = ConfigManager.open(".llm-config")
    reader: ConfigReader = mgr
    writer: ConfigWriter = mgr
    view: ConfigAPI = mgr.as_caller(CallContext())
    remote: AsyncConfigAPI = Remote()
    print(use(api), use(view), use(mgr.as_caller(CallContext(actor="ci"))), reader, writer, remote)
'''

BAD = '''
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from llm_config import ConfigManager, Entry, HistoryItem
from llm_config.types import AsyncConfigAPI, ConfigAPI


class NoEnv:
    """`get` without `env`: not the shared surface."""

    def get(self, namespace: str, key: str, *, version: int | None = None, with_overrides: bool = False,
            reveal: bool = False) -> Entry: raise NotImplementedError
    def list(self, namespace: str, *, env: str = "development", prefix: str = "",
             recursive: bool = False) -> builtins.list[Entry]: raise NotImplementedError
    def history(self, namespace: str, key: str, *, env: str = "development",
                limit: int | None = None) -> builtins.list[HistoryItem]: raise NotImplementedError
    def resolve(self, namespace: str, *, env: str = "development", nested: bool = False,
                reveal: bool = False) -> dict[str, Any]: raise NotImplementedError
    def namespaces(self, prefix: str = "") -> builtins.list[str]: raise NotImplementedError
    def set(self, namespace: str, key: str, value: Any, *, env: str = "development",
            secret: bool | None = None, description: str | None = None, tags: Sequence[str] | None = None,
            message: str | None = None, expected_version: int | None = None) -> Entry: raise NotImplementedError
    def delete(self, namespace: str, key: str, *, env: str = "development",
               expected_version: int | None = None) -> Entry: raise NotImplementedError
    def rollback(self, namespace: str, key: str, version: int, *,
                 env: str = "development") -> Entry: raise NotImplementedError


def main() -> None:
    wrong: ConfigAPI = NoEnv()  # E
    not_async: AsyncConfigAPI = ConfigManager.open(".llm-config")  # E
    print(wrong, not_async)
'''


def _mypy(snippet: str, folder: Path) -> tuple[str, int]:
    """mypy --strict on one file, with the project's configuration and this interpreter's packages."""
    path = folder / "snippet.py"
    path.write_text(textwrap.dedent(snippet))
    stdout, stderr, status = mypy.api.run([
        str(path), "--strict", "--config-file", str(REPO / "pyproject.toml"), "--python-executable", sys.executable,
        "--cache-dir", str(folder / ".mypy_cache"), "--show-error-codes", "--no-error-summary",
    ])
    assert not stderr, stderr
    return stdout, status


def test_mypy_accepts_the_manager_and_its_caller_view(tmp_path: Path) -> None:
    out, status = _mypy(GOOD, tmp_path)
    assert status == 0 and not out.strip(), out


def test_mypy_refuses_a_wrong_signature(tmp_path: Path) -> None:
    out, status = _mypy(BAD, tmp_path)
    assert status == 1, out
    expected = {i for i, line in enumerate(textwrap.dedent(BAD).splitlines(), 1) if line.endswith("# E")}
    lines = {int(row.split(":")[1]) for row in out.splitlines() if ": error:" in row}
    assert lines == expected, out
    assert '"NoEnv"' in out and '"ConfigAPI"' in out and '"AsyncConfigAPI"' in out, out


def _params(fn: Any) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def _same(p: inspect.Parameter, q: inspect.Parameter) -> bool:
    return (p.name, p.kind, p.default) == (q.name, q.kind, q.default)


def _covers(implementation: Any, protocol: Any, *, extra: frozenset[str] | None = None) -> None:
    """`implementation` takes every parameter of `protocol` (same name, kind, default, order), plus only
    keyword-only parameters with defaults (`extra`: exactly those names)."""
    want, have = _params(protocol), _params(implementation)
    by_name = {p.name: p for p in have}
    where = f"{getattr(implementation, '__qualname__', implementation)}"
    for p in want:
        assert p.name in by_name, f"{where} lacks {p.name!r}"
        assert _same(by_name[p.name], p), f"{where}: {by_name[p.name]} is not {p}"
    named = {p.name for p in want}
    assert [p.name for p in have if p.name in named] == [p.name for p in want], f"{where}: order differs"
    more = [p for p in have if p.name not in named]
    for p in more:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty, \
            f"{where}: extra parameter {p} must be keyword-only with a default"
    if extra is not None:
        assert {p.name for p in more} == extra, f"{where}: extra parameters {[p.name for p in more]}"


def test_protocols_name_exactly_the_shared_surface() -> None:
    assert {n for n in dir(ConfigAPI) if n in PROTOCOL_METHODS} == set(PROTOCOL_METHODS)
    assert set(PROTOCOL_METHODS) == {n for n in vars(ConfigReader) | vars(ConfigWriter) if not n.startswith("_")}
    assert not {n for n in vars(ConfigAPI) if not n.startswith("_")}  # only the two it combines


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_the_manager_and_its_view_have_each_protocol_method(name: str) -> None:
    protocol = getattr(ConfigAPI, name)
    assert not CONTEXT_ARGUMENTS & {p.name for p in _params(protocol)} and "actor" not in str(
        inspect.signature(protocol))
    _covers(getattr(ConfigManager, name), protocol)
    _covers(getattr(Caller, name), protocol)
    twin = getattr(AsyncConfigAPI, name)
    assert inspect.iscoroutinefunction(twin)
    assert [(p.name, p.kind, p.default) for p in _params(twin)] == [(p.name, p.kind, p.default)
                                                                    for p in _params(protocol)]


def test_the_caller_view_mirrors_the_manager_less_actor() -> None:
    """Every method of the view is the manager's method of that name without `actor=`, so a route
    calls the view exactly as the library calls the manager."""
    methods = [n for n, v in vars(Caller).items() if not n.startswith("_") and inspect.isfunction(v)]
    assert len(methods) > 20
    for name in methods:
        manager_method = getattr(ConfigManager, name)
        _covers(manager_method, getattr(Caller, name))
        extra = {p.name for p in _params(manager_method)} - {p.name for p in _params(getattr(Caller, name))}
        assert extra <= {"actor"}, (name, extra)


def test_no_public_method_takes_the_servers_context_arguments() -> None:
    """principal, address and request id are bound once (`as_caller`), except on the edge's own calls."""
    for name, value in vars(ConfigManager).items():
        if name.startswith("_") or not inspect.isfunction(value) or name in EDGE_METHODS:
            continue
        assert not CONTEXT_ARGUMENTS & {p.name for p in _params(value)}, name


def test_runtime_checks_see_the_manager_and_the_view(manager: ConfigManager) -> None:
    view = manager.as_caller(CallContext())
    for api in (manager, view):
        assert isinstance(api, ConfigAPI) and isinstance(api, ConfigReader) and isinstance(api, ConfigWriter)
    assert view.context == CallContext() and view.manager is manager
