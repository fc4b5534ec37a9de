"""Diff and promotion plans between two environments of a namespace (SPEC §4). Pure: no I/O.

Both work on what the manager knows of each key on each side (`Side`): its current version, whether it
is live, whether it is a secret, and a comparable form of its value — canonical JSON for a plain value,
the plaintext for a secret the caller may read on both sides, None when it may not (then the key is
`not_compared`, and a promotion that would need it is refused by the manager before planning).
A plan is the list of compare-and-set writes a promotion makes; applying it is the manager's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llm_config.documents import EnvDiff, Promotion, PromotionStep
from llm_config.errors import NotFoundError
from llm_config.models import Environment

__all__ = ["Side", "compare", "plan", "same_plan"]


@dataclass(frozen=True, slots=True)
class Side:
    """One key on one side: `version` its current version (a tombstone's included, 0 if it never existed)."""

    version: int
    live: bool
    secret: bool
    value: bytes | None


def _equal(a: Side, b: Side) -> bool:
    return a.secret == b.secret and a.value == b.value


def compare(source: Mapping[str, Side], target: Mapping[str, Side]) -> EnvDiff:
    """Each environment's own live entries: added (only in source), removed (only in target), changed,
    unchanged, not_compared (a side whose value the caller may not read)."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    not_compared: list[str] = []
    for key in sorted({k for k, s in source.items() if s.live} | {k for k, t in target.items() if t.live}):
        s, t = source.get(key), target.get(key)
        s_live, t_live = s is not None and s.live, t is not None and t.live
        if (s_live and s is not None and s.value is None) or (t_live and t is not None and t.value is None):
            not_compared.append(key)
        elif not t_live:
            added.append(key)
        elif not s_live:
            removed.append(key)
        elif s is not None and t is not None and _equal(s, t):
            unchanged.append(key)
        else:
            changed.append(key)
    return EnvDiff(tuple(added), tuple(removed), tuple(changed), tuple(unchanged), tuple(not_compared))


def plan(
    promotion_id: str, namespace: str, source_env: Environment, target_env: Environment,
    source: Mapping[str, Side], target: Mapping[str, Side], *, keys: Sequence[str] | None, prune: bool,
) -> Promotion:
    """The writes that make the target's own entries equal the source's (for `keys`, or all of them):
    create or update where they differ, and with `prune` delete what the source lacks. Each step expects
    the target version seen now (0 for a create: nothing there, or only a deletion)."""
    if keys is not None:  # an empty list picks nothing (never "everything")
        wanted = sorted(set(keys))
        for key in wanted:
            s, t = source.get(key), target.get(key)
            if not (s is not None and s.live) and not (prune and t is not None and t.live):
                raise NotFoundError(f"Key {key!r} is not in {namespace} [{source_env.value}]"
                                    + ("" if prune or t is None or not t.live
                                       else " (prune deletes it from the target)"),
                                    namespace=namespace, key=key, environment=source_env.value)
    else:
        wanted = sorted({k for k, s in source.items() if s.live}
                        | ({k for k, t in target.items() if t.live} if prune else set()))
    steps: list[PromotionStep] = []
    unchanged: list[str] = []
    for key in wanted:
        s, t = source.get(key), target.get(key)
        t_live = t is not None and t.live
        if s is not None and s.live:
            if t is not None and t_live and _equal(s, t):
                unchanged.append(key)
                continue
            steps.append(PromotionStep(key, "update" if t_live else "create", s.version,
                                       t.version if t is not None and t_live else 0, s.secret))
        elif prune and t is not None and t_live:
            steps.append(PromotionStep(key, "delete", None, t.version, t.secret))
    return Promotion(promotion_id, namespace, source_env, target_env, tuple(steps), tuple(unchanged), applied=False)


def same_plan(planned: Promotion, now: Promotion) -> list[str]:
    """The keys whose step differs between a plan made earlier and one made now (empty: still valid)."""
    before = {s.key: s for s in planned.steps}
    after = {s.key: s for s in now.steps}
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
