"""The pure diff and promotion planning of `core/promote.py`."""

from __future__ import annotations

import pytest

from llm_config.core.promote import Side, compare, plan, same_plan
from llm_config.documents import Promotion
from llm_config.errors import NotFoundError
from llm_config.models import Environment

S, P = Environment.STAGING, Environment.PRODUCTION


def live(version: int, value: bytes | None = b'"v"', *, secret: bool = False) -> Side:
    return Side(version, True, secret, value)


def gone(version: int) -> Side:
    return Side(version, False, False, None)


def test_compare_sorts_every_live_key_into_exactly_one_list() -> None:
    source = {"a": live(1), "same": live(3, b"1"), "chg": live(1, b"1"), "hidden": live(1, None, secret=True),
              "dead": gone(2)}
    target = {"same": live(9, b"1"), "chg": live(1, b"2"), "b": live(1), "hidden": live(1, b"x", secret=True),
              "dead": live(1)}
    diff = compare(source, target)
    assert diff.to_json() == {"added": ["a"], "removed": ["b", "dead"], "changed": ["chg"], "unchanged": ["same"],
                              "not_compared": ["hidden"]}


def test_a_secret_and_a_plain_value_with_the_same_text_differ() -> None:
    assert compare({"k": live(1, b"1", secret=True)}, {"k": live(1, b"1")}).changed == ("k",)


def test_plan_creates_updates_and_with_prune_deletes_expecting_the_versions_seen() -> None:
    source = {"new": live(4), "chg": live(2, b"1"), "same": live(1)}
    target = {"chg": live(7, b"2"), "same": live(3), "extra": live(5), "tomb": gone(6)}
    made = plan("id1", "app", S, P, source, target, keys=None, prune=True)
    assert [(s.key, s.action, s.source_version, s.target_version) for s in made.steps] == [
        ("chg", "update", 2, 7), ("extra", "delete", None, 5), ("new", "create", 4, 0)]
    assert made.unchanged == ("same",) and not made.applied
    assert [s.key for s in plan("id2", "app", S, P, source, target, keys=None, prune=False).steps] == ["chg", "new"]


def test_plan_for_chosen_keys_refuses_a_key_the_source_lacks_unless_pruning_it() -> None:
    source = {"a": live(1)}
    target = {"b": live(2)}
    assert [s.key for s in plan("i", "app", S, P, source, target, keys=["a"], prune=False).steps] == ["a"]
    with pytest.raises(NotFoundError, match="prune deletes it"):
        plan("i", "app", S, P, source, target, keys=["b"], prune=False)
    assert plan("i", "app", S, P, source, target, keys=["b"], prune=True).steps[0].action == "delete"
    with pytest.raises(NotFoundError):
        plan("i", "app", S, P, source, target, keys=["nowhere"], prune=True)


def test_same_plan_names_the_keys_whose_step_moved() -> None:
    before = plan("i", "app", S, P, {"a": live(1), "b": live(1)}, {}, keys=None, prune=False)
    after = plan("i", "app", S, P, {"a": live(1), "b": live(1)}, {"b": live(1, b'"x"')}, keys=None, prune=False)
    assert same_plan(before, before) == [] and same_plan(before, after) == ["b"]


def test_a_plan_round_trips_through_json() -> None:
    made = plan("i", "ns/sub", S, P, {"a": live(1, secret=True)}, {"a": live(2)}, keys=None, prune=False)
    assert Promotion.from_json(made.to_json()) == made
