"""Stateful model test: one ConfigManager against a pure-Python model of SPEC §3 versioning.

Hypothesis drives set / compare-and-set / delete / rollback / get / get --version / history over a
few keys in two environments on a fresh store per example, and checks every answer against a
model in which versions per (key, env) count up from 1 and are never reused, a delete is a
tombstone version, and a rollback to N writes max+1 holding N's value.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from llm_config.core.manager import ConfigManager
from llm_config.errors import ConflictError, NotFoundError, ValidationError
from llm_config.models import ENCRYPTED_PLACEHOLDER, Entry

NS = "model/ns"
KEYS = ("alpha", "beta.gamma", "k-3")
ENVS = ("development", "production")
ACTORS = ("alice", "bob")

values = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from(["", "x", "1", "null", "héllo wörld", "a'b;c&<script>"]),
    st.none(),
    st.lists(st.one_of(st.integers(0, 2), st.sampled_from(["p", "q"])), max_size=3),
)
slots = st.tuples(st.sampled_from(KEYS), st.sampled_from(ENVS))
cas_modes = st.sampled_from(["none", "right", "wrong", "zero"])


@dataclass
class Version:
    value: Any
    secret: bool
    deleted: bool
    actor: str
    change: str


@dataclass
class Slot:
    """Model of one (namespace, key, environment)."""

    versions: list[Version] = field(default_factory=list)
    id: str | None = None
    created_at: str | None = None
    created_by: str | None = None

    @property
    def max_version(self) -> int:
        return len(self.versions)

    @property
    def live(self) -> bool:
        return bool(self.versions) and not self.versions[-1].deleted

    @property
    def live_secret(self) -> bool:
        return self.live and self.versions[-1].secret

    def cas_ok(self, expected: int | None) -> bool:
        if expected is None:
            return True
        if expected == 0:
            return not self.live
        return expected == self.max_version


def _shown(value: Any, secret: bool) -> Any:
    return ENCRYPTED_PLACEHOLDER if secret else value


class ManagerModel(RuleBasedStateMachine):
    def __init__(self, new_store: Callable[[], Path | str], key: str) -> None:
        super().__init__()
        self.store = new_store()
        self.manager = ConfigManager.open(str(self.store), encryption_key=key, actor="tester")
        self.model: dict[tuple[str, str], Slot] = {(k, e): Slot() for k in KEYS for e in ENVS}

    # ---------------------------------------------------------------- helpers

    def _expected_from(self, slot: Slot, mode: str, bump: int) -> int | None:
        if mode == "none":
            return None
        if mode == "right":
            return slot.max_version
        if mode == "zero":
            return 0
        # "wrong": a version that is not the current one (and not 0)
        wrong = slot.max_version + bump
        if bump == 2 and slot.max_version > 1:
            wrong = slot.max_version - 1
        return wrong

    def _snapshot(self, key: str, env: str) -> tuple[Any, ...]:
        """What a user can see of one slot, to prove a refused operation changed nothing."""
        try:
            history = tuple(h.to_json().items() for h in self.manager.history(NS, key, env=env))
        except NotFoundError:
            history = ()
        try:
            current: Any = self.manager.get(NS, key, env=env).to_json()
        except NotFoundError:
            current = None
        return history, repr(current)

    def _check_written(self, entry: Entry, slot: Slot, key: str, env: str, version: Version) -> None:
        assert entry.namespace == NS
        assert entry.key == key
        assert entry.environment.value == env
        assert entry.version == slot.max_version + 1
        if slot.id is None:
            slot.id = entry.id
            slot.created_at = entry.metadata.created_at
            slot.created_by = entry.metadata.created_by
            assert slot.created_by == version.actor
            others = {s.id for s in self.model.values() if s is not slot and s.id is not None}
            assert entry.id not in others, "two (key, env) pairs share an entry id"
        assert entry.id == slot.id, "entry id changed"
        assert entry.metadata.created_at == slot.created_at, "created_at changed"
        assert entry.metadata.created_by == slot.created_by, "created_by changed"
        if not version.deleted:
            assert entry.secret is version.secret
            assert entry.value == _shown(version.value, version.secret)
            assert entry.metadata.updated_by == version.actor
        slot.versions.append(version)

    def _check_slot(self, key: str, env: str) -> None:
        slot = self.model[(key, env)]
        if not slot.versions:
            with pytest.raises(NotFoundError):
                self.manager.history(NS, key, env=env)
            return
        history = self.manager.history(NS, key, env=env)
        assert [h.version for h in history] == list(range(slot.max_version, 0, -1))
        for item in history:
            want = slot.versions[item.version - 1]
            assert item.deleted is want.deleted, item
            assert item.value == (None if want.deleted else _shown(want.value, want.secret)), item
            assert item.created_by == want.actor, item
            assert item.change_description == want.change, item

    # ---------------------------------------------------------------- rules: writes

    @rule(
        slot=slots, value=values, mode=cas_modes, bump=st.sampled_from([1, 2, 5]),
        explicit_plain=st.booleans(), actor=st.sampled_from(ACTORS),
    )
    def set_plain(
        self, slot: tuple[str, str], value: Any, mode: str, bump: int, explicit_plain: bool, actor: str
    ) -> None:
        key, env = slot
        model = self.model[slot]
        expected = self._expected_from(model, mode, bump)
        secret = False if explicit_plain else None
        if model.live_secret and secret is None:
            before = self._snapshot(key, env)
            with pytest.raises(ValidationError):
                self.manager.set(NS, key, value, env=env, secret=secret, expected_version=expected,
                                 actor=actor)
            assert self._snapshot(key, env) == before
            return
        self._set(key, env, value, expected, secret=secret, actor=actor)

    @rule(slot=slots, value=values, mode=cas_modes, actor=st.sampled_from(ACTORS))
    def set_secret(self, slot: tuple[str, str], value: Any, mode: str, actor: str) -> None:
        key, env = slot
        self._set(key, env, value, self._expected_from(self.model[slot], mode, 1), secret=True, actor=actor)

    def _set(
        self, key: str, env: str, value: Any, expected: int | None, *, secret: bool | None, actor: str
    ) -> None:
        model = self.model[(key, env)]
        if not model.cas_ok(expected):
            before = self._snapshot(key, env)
            with pytest.raises(ConflictError):
                self.manager.set(NS, key, value, env=env, secret=secret, expected_version=expected,
                                 actor=actor)
            assert self._snapshot(key, env) == before, "a refused compare-and-set changed something"
            return
        entry = self.manager.set(NS, key, value, env=env, secret=secret, expected_version=expected,
                                 actor=actor)
        change = "Updated" if model.live else "Created"
        self._check_written(entry, model, key, env, Version(value, bool(secret), False, actor, change))

    @rule(slot=slots, mode=cas_modes, actor=st.sampled_from(ACTORS))
    def delete(self, slot: tuple[str, str], mode: str, actor: str) -> None:
        key, env = slot
        model = self.model[slot]
        if not model.live:
            before = self._snapshot(key, env)
            with pytest.raises(NotFoundError):
                self.manager.delete(NS, key, env=env, actor=actor)
            assert self._snapshot(key, env) == before
            return
        expected = self._expected_from(model, mode, 1)
        if not model.cas_ok(expected):
            before = self._snapshot(key, env)
            with pytest.raises(ConflictError):
                self.manager.delete(NS, key, env=env, expected_version=expected, actor=actor)
            assert self._snapshot(key, env) == before
            return
        tombstone = self.manager.delete(NS, key, env=env, expected_version=expected, actor=actor)
        self._check_written(tombstone, model, key, env, Version(None, False, True, actor, "Deleted"))
        with pytest.raises(NotFoundError):
            self.manager.get(NS, key, env=env)

    @rule(slot=slots, data=st.data(), actor=st.sampled_from(ACTORS))
    def rollback(self, slot: tuple[str, str], data: st.DataObject, actor: str) -> None:
        key, env = slot
        model = self.model[slot]
        target = data.draw(st.integers(1, model.max_version + 2), label="target")
        if target > model.max_version or model.versions[target - 1].deleted:
            before = self._snapshot(key, env)
            # missing version: NotFoundError; a tombstone is not a version one can roll back to
            expected_error = NotFoundError if target > model.max_version else (NotFoundError, ValidationError)
            with pytest.raises(expected_error):
                self.manager.rollback(NS, key, target, env=env, actor=actor)
            assert self._snapshot(key, env) == before
            return
        source = model.versions[target - 1]
        explicit = data.draw(st.booleans(), label="no_secret")
        current = model.versions[-1]
        if model.live and current.secret and not source.secret and not explicit:
            # a secret becomes plain only when asked for explicitly, as with set (SPEC §5)
            before = self._snapshot(key, env)
            with pytest.raises(ValidationError, match="--no-secret"):
                self.manager.rollback(NS, key, target, env=env, actor=actor)
            assert self._snapshot(key, env) == before
            return
        entry = self.manager.rollback(NS, key, target, env=env, actor=actor, secret=False if explicit else None)
        self._check_written(
            entry, model, key, env,
            Version(source.value, source.secret, False, actor, f"Rollback to version {target}"),
        )

    # ---------------------------------------------------------------- rules: reads

    @rule(slot=slots, reveal=st.booleans())
    def get(self, slot: tuple[str, str], reveal: bool) -> None:
        key, env = slot
        model = self.model[slot]
        if not model.live:
            with pytest.raises(NotFoundError):
                self.manager.get(NS, key, env=env, reveal=reveal)
            return
        current = model.versions[-1]
        entry = self.manager.get(NS, key, env=env, reveal=reveal)
        assert entry.version == model.max_version
        assert entry.id == model.id
        assert entry.secret is current.secret
        assert entry.value == (current.value if reveal else _shown(current.value, current.secret))
        assert entry.metadata.created_at == model.created_at
        assert entry.metadata.created_by == model.created_by
        assert entry.metadata.updated_by == current.actor

    @rule(slot=slots, data=st.data(), reveal=st.booleans())
    def get_version(self, slot: tuple[str, str], data: st.DataObject, reveal: bool) -> None:
        key, env = slot
        model = self.model[slot]
        version = data.draw(st.integers(1, model.max_version + 2), label="version")
        if version > model.max_version or model.versions[version - 1].deleted:
            with pytest.raises(NotFoundError):
                self.manager.get(NS, key, env=env, version=version, reveal=reveal)
            return
        want = model.versions[version - 1]
        entry = self.manager.get(NS, key, env=env, version=version, reveal=reveal)
        assert entry.version == version
        assert entry.id == model.id
        assert entry.secret is want.secret
        assert entry.value == (want.value if reveal else _shown(want.value, want.secret))

    @rule(slot=slots)
    def history(self, slot: tuple[str, str]) -> None:
        self._check_slot(*slot)

    def teardown(self) -> None:
        try:
            for key, env in self.model:
                self._check_slot(key, env)
            report = self.manager.audit_verify()
            assert report.ok, report.problems
        finally:
            self.manager.close()
            if isinstance(self.store, Path):
                shutil.rmtree(self.store, ignore_errors=True)

    @initialize()
    def start_empty(self) -> None:
        for key, env in self.model:
            with pytest.raises(NotFoundError):
                self.manager.get(NS, key, env=env)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_manager_matches_model(tmp_path: Path, key: str, backend: str) -> None:
    counter = itertools.count()
    with contextlib.ExitStack() as databases:

        def new_store() -> Path | str:
            if backend == "sqlite":
                return tmp_path / f"store-{next(counter)}"
            from tests.databases import private_database

            return databases.enter_context(private_database(backend)).url

        run_state_machine_as_test(
            lambda: ManagerModel(new_store, key),
            settings=settings(max_examples=50 if backend == "sqlite" else 20, stateful_step_count=30, deadline=None,
                              database=None),
        )


def test_secret_round_trip(manager: ConfigManager) -> None:
    """The secret steps spelled out once: placeholder unless revealed, revealed value exact."""
    entry = manager.set("model/ns", "openai.api_key", {"k": ["sk-x", 1]}, secret=True)
    assert entry.secret is True
    assert entry.value == ENCRYPTED_PLACEHOLDER
    assert manager.get("model/ns", "openai.api_key").value == ENCRYPTED_PLACEHOLDER
    assert manager.get("model/ns", "openai.api_key", reveal=True).value == {"k": ["sk-x", 1]}
    # after a reveal the unrevealed read is still the placeholder (no plaintext left in L1)
    assert manager.get("model/ns", "openai.api_key").value == ENCRYPTED_PLACEHOLDER
    assert manager.history("model/ns", "openai.api_key")[0].value == ENCRYPTED_PLACEHOLDER
