"""Edges of the manager a user can hit: bad input is a ValidationError, doctor tells the truth."""

import base64
from collections.abc import Callable
from typing import Any

import pytest

from llm_config import ConfigManager, NotFoundError, ValidationError, generate_key
from llm_config.crypto.aead import key_id
from llm_config.values import MAX_DEPTH


@pytest.mark.parametrize(
    ("namespace", "name"), [("bad ns", "k"), ("ns", "bad key"), ("a/../b", "k"), ("ns", ""), (None, "k"), ("ns", 5)]
)
def test_bad_names_are_validation_errors_not_not_found(manager: ConfigManager, namespace: Any, name: Any) -> None:
    with pytest.raises(ValidationError):
        manager.get(namespace, name)
    with pytest.raises(ValidationError):
        manager.set(namespace, name, 1)


def test_missing_key_is_not_found(manager: ConfigManager) -> None:
    with pytest.raises(NotFoundError, match="Config not found: ns/k"):
        manager.get("ns", "k")


@pytest.mark.parametrize("field", ["description", "message"])
def test_lone_surrogates_in_text_fields_are_refused(manager: ConfigManager, field: str) -> None:
    with pytest.raises(ValidationError, match="not valid Unicode"):
        manager.set("ns", "k", 1, **{field: "bad \ud800"})
    with pytest.raises(NotFoundError):
        manager.get("ns", "k")


@pytest.mark.parametrize("version", [0, -1, 2**63, True, "1"])
def test_out_of_range_versions_are_refused(manager: ConfigManager, version: Any) -> None:
    manager.set("ns", "k", 1)
    with pytest.raises(ValidationError):
        manager.get("ns", "k", version=version)
    with pytest.raises(ValidationError):
        manager.rollback("ns", "k", version)


def test_import_accepts_values_as_deep_as_set_does(manager: ConfigManager) -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    manager.set("ns", "direct", deep)
    plan = manager.import_("ns", {"values": {"imported": deep}})
    assert plan.created == ["imported"]
    assert manager.get("ns", "imported").value == deep


def test_yaml_aliases_are_refused(manager: ConfigManager) -> None:
    bomb = "a: &a [1, 2]\nb: [*a, *a]\n"
    with pytest.raises(ValidationError, match="aliases"):
        manager.import_("ns", bomb, fmt="yaml")
    assert manager.list("ns") == []


def test_doctor_counts_ciphertexts_per_key_id(make_manager: Callable[..., ConfigManager], key: str) -> None:
    mgr = make_manager()
    mgr.set("ns", "s1", "one", secret=True)
    mgr.set("ns", "s1", "two", secret=True)
    mgr.close()
    new = generate_key()
    rotating = make_manager(encryption_key=f"{new},{key}")
    rotating.set("ns", "s2", "three", secret=True)
    report = rotating.doctor()
    counts = report["checks"]["key"]["ciphertexts_by_key_id"]
    old_id, new_id = key_id(base64.b64decode(key)), key_id(base64.b64decode(new))
    assert counts == {old_id: 3, new_id: 1}  # two versions + the instance secret under the old key
    assert report["status"] == "healthy" and "chain and rows verify" in report["checks"]["audit"]["message"]


def test_public_doctor_reveals_no_paths_or_key_origin(manager: ConfigManager, store_dir: Any) -> None:
    public = manager.doctor(public=True)
    text = str(public)
    assert str(store_dir) not in text and "encryption-key" not in text and "key_ids" not in text
    assert all(set(check) == {"status"} for check in public["checks"].values())  # statuses only
    detail = manager.doctor(public=True, detail=True)
    assert "events" in detail["checks"]["audit"]["message"] and "L1" in detail["checks"]["cache"]["message"]
    assert str(store_dir) not in str(detail)


def test_reads_work_without_key_but_writes_say_how_to_supply_it(
    make_manager: Callable[..., ConfigManager],
) -> None:
    make_manager().set("ns", "k", "plain")
    keyless = make_manager(encryption_key=None)
    assert keyless.get("ns", "k").value == "plain"
    with pytest.raises(Exception, match="LLM_CONFIG_KEY"):
        keyless.set("ns", "k", "x")


def test_a_store_directory_others_can_enter_is_tightened_by_writers_and_warned_about_by_readers(
    make_manager: Callable[..., Any], store_dir: Any, caplog: Any
) -> None:
    import logging
    import os
    import stat

    make_manager().close()
    os.chmod(store_dir, 0o755)  # noqa: S103 - the loose mode under test
    with caplog.at_level(logging.WARNING, logger="llm_config"):
        make_manager(create=False).close()  # a reading command
    assert f"chmod 700 {store_dir}" in caplog.text
    assert stat.S_IMODE(os.stat(store_dir).st_mode) == 0o755  # a reader changes nothing
    make_manager(create=True).close()  # a writing command
    assert stat.S_IMODE(os.stat(store_dir).st_mode) == 0o700
