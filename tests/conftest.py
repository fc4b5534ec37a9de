"""Shared fixtures: a clean environment per test, fresh keys and stores, service availability."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key

REQUIRE_SERVICES = os.environ.get("LLM_CONFIG_REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Strip LLM_CONFIG_* and point XDG_CONFIG_HOME at a private folder, so no test sees a real key."""
    for name in list(os.environ):
        if name.startswith("LLM_CONFIG_") and name != "LLM_CONFIG_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture
def key() -> str:
    """A fresh base64 master key."""
    return generate_key()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A store directory that does not exist yet."""
    return tmp_path / "store"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def store_target(request: pytest.FixtureRequest, store_dir: Path) -> Iterator[str]:
    """A store on each backend in turn: the SQLite directory of `store_dir`, or the URL of a private
    PostgreSQL schema / MariaDB database (tests/databases.py), dropped afterwards."""
    if request.param == "sqlite":
        yield str(store_dir)
        return
    from tests.databases import private_database

    with private_database(request.param) as database:
        yield database.url


@pytest.fixture
def make_manager(store_dir: Path, key: str) -> Iterator[Callable[..., ConfigManager]]:
    """Factory for managers on the test's store (same key unless overridden); all closed at the end."""
    opened: list[ConfigManager] = []

    def make(**kw: object) -> ConfigManager:
        kw.setdefault("encryption_key", key)
        kw.setdefault("actor", "tester")
        mgr = ConfigManager.open(str(kw.pop("storage", store_dir)), **kw)  # type: ignore[arg-type]
        opened.append(mgr)
        return mgr

    yield make
    for mgr in opened:
        mgr.close()


@pytest.fixture
def manager(make_manager: Callable[..., ConfigManager]) -> ConfigManager:
    """A manager on a fresh embedded store."""
    return make_manager()


def service_available(host: str, port: int) -> bool:
    """True if something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, in CI with LLM_CONFIG_REQUIRE_SERVICES=1, fail) when a service is unreachable."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip(message)
