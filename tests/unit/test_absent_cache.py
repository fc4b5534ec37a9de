"""A place storage said was empty is remembered (resolution falls through to base on every read), but
never past a write: not this process's, not another process's on the same store."""

from __future__ import annotations

import time
from collections.abc import Callable

from llm_config import ConfigManager

Make = Callable[..., ConfigManager]


def test_a_remembered_absence_ends_with_a_local_write(make_manager: Make) -> None:
    mgr = make_manager(cache_ttl=3600)
    mgr.set("app", "model", "base-model", env="base")
    for _ in range(3):
        assert mgr.get("app", "model", env="production", with_overrides=True).value == "base-model"
    mgr.set("app", "model", "prod-model", env="production")
    assert mgr.get("app", "model", env="production", with_overrides=True).value == "prod-model"
    mgr.delete("app", "model", env="production")
    assert mgr.get("app", "model", env="production", with_overrides=True).value == "base-model"


def test_a_remembered_absence_ends_with_another_process_write(make_manager: Make) -> None:
    reader, writer = make_manager(cache_ttl=3600), make_manager(cache_ttl=3600)
    writer.set("app", "model", "base-model", env="base")
    assert reader.get("app", "model", env="production", with_overrides=True).value == "base-model"
    assert reader.get("app", "model", env="production", with_overrides=True).value == "base-model"
    writer.set("app", "model", "prod-model", env="production")
    deadline = time.monotonic() + 2
    while reader.get("app", "model", env="production", with_overrides=True).value != "prod-model":
        assert time.monotonic() < deadline, "the other process's write was never seen"
        time.sleep(0.002)


def test_a_remembered_absence_expires_with_the_ttl(make_manager: Make) -> None:
    now = [1000.0]
    reader = make_manager(cache_ttl=5, clock=lambda: now[0], change_check_interval=1e9)  # never looks for commits
    writer = make_manager()
    writer.set("app", "model", "base-model", env="base")
    assert reader.get("app", "model", env="production", with_overrides=True).value == "base-model"
    writer.set("app", "model", "prod-model", env="production")
    now[0] += 4
    assert reader.get("app", "model", env="production", with_overrides=True).value == "base-model"  # remembered
    now[0] += 2
    assert reader.get("app", "model", env="production", with_overrides=True).value == "prod-model"
