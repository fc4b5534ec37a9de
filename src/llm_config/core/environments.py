"""Diff and promotion between two environments of a namespace, as a caller (SPEC §4, §8).

Loads each side's own entries, decrypts secrets inside the process to compare or copy them (never shown,
never in a message; a secret is re-sealed for its new place, whose AAD differs), plans with `promote.py`
and applies the plan as one transaction of compare-and-set writes: every target key carries the version
the plan saw, so a change made in between aborts the whole promotion instead of being overwritten. A plan
made earlier (a dry run shown for confirmation) is re-planned and must still be the same.

Permissions: diff needs `config:read` on both sides (secrets it may not read on both sides are
`not_compared`); promotion needs read on the source, `config:create` on the target, `config:delete` for
`prune`, and `secret:read` / `secret:create` when a secret is copied (refused whole, never skipped).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import orjson

from llm_config import audit, rbac
from llm_config.core.context import CallContext
from llm_config.core.custody import place
from llm_config.core.promote import Side, compare, plan, same_plan
from llm_config.documents import EnvDiff, Promotion
from llm_config.errors import ConflictError, ValidationError
from llm_config.models import Environment, StoredEntry, ValueType, WriteKind, WriteRequest
from llm_config.names import parse_environment, validate_key, validate_namespace

if TYPE_CHECKING:
    from llm_config.core.manager import ConfigManager

__all__ = ["Environments"]


_PROMOTION_ID: Final = re.compile(r"[0-9a-f]{24}")
"""A promotion's id: 8 hex digits of nonce and 16 of an HMAC binding it to its namespace, environments and
steps (keyed from the instance secret), so a client can neither invent one nor put an issued one on other
writes."""
_ID_PURPOSE: Final = b"llm-config promotion id\x00"


def _canonical(text: str | bytes) -> bytes:
    """Equal JSON values compare equal (key order aside); `1`, `1.0` and `true` stay different."""
    return orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS)


class Environments:
    """Diff and promotion over one store's manager."""

    def __init__(self, manager: ConfigManager) -> None:
        self._m = manager

    def _envs(self, namespace: str, source: str | Environment, target: str | Environment
              ) -> tuple[Environment, Environment]:
        validate_namespace(namespace)
        src, dst = parse_environment(source), parse_environment(target)
        if src is dst:
            raise ValidationError(f"--from and --to are both {src.value}: name two different environments")
        return src, dst

    def _may(self, ctx: CallContext, permission: str, namespace: str, env: Environment) -> bool:
        return ctx.principal is None or rbac.allowed(ctx.principal, permission, namespace, env)

    def _sides(self, namespace: str, env: Environment, rows: Sequence[StoredEntry], reveal: bool) -> dict[str, Side]:
        keyring = self._m._keys.keyring if reveal and self._m._keys is not None else None
        sides: dict[str, Side] = {}
        for row in rows:
            secret = row.value_type is ValueType.SECRET
            value: bytes | None = None
            if row.stored_value is not None:
                if not secret:
                    value = _canonical(row.stored_value)
                elif keyring is not None:
                    value = _canonical(keyring.open(row.stored_value, place(namespace, row.key, env)))
            sides[row.key] = Side(row.version, not row.deleted, secret, value)
        return sides

    # ------------------------------------------------------------------ diff

    def diff(self, ctx: CallContext, namespace: str, *, source: str | Environment,
             target: str | Environment) -> EnvDiff:
        src, dst = self._envs(namespace, source, target)
        for env in (src, dst):
            self._m._access.authorize(ctx, "config:read", namespace, env)
        reveal = all(self._may(ctx, "secret:read", namespace, env) for env in (src, dst))
        return compare(self._sides(namespace, src, self._m.storage.list_current(namespace, src), reveal),
                       self._sides(namespace, dst, self._m.storage.list_current(namespace, dst), reveal))

    # ------------------------------------------------------------------ promotion

    def promote(
        self, ctx: CallContext, namespace: str, *, source: str | Environment, target: str | Environment,
        keys: Sequence[str] | None, prune: bool, dry_run: bool, expected: Promotion | None,
        secret: bool | None = None,
    ) -> Promotion:
        src, dst = self._envs(namespace, source, target)
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise ValidationError("Invalid keys: a list of key names")
        for key in keys or ():
            validate_key(key)
        if not isinstance(prune, bool) or not isinstance(dry_run, bool):
            raise ValidationError("Invalid prune or dry_run flag: must be true or false")
        if secret not in (None, False):
            raise ValidationError("Invalid secret flag: promotion keeps each key's secrecy; only false "
                                  "(--no-secret: a plain value may replace a secret) or omitted")
        access = self._m._access
        access.authorize(ctx, "config:read", namespace, src)
        access.authorize(ctx, "config:create", namespace, dst)
        if prune:
            access.authorize(ctx, "config:delete", namespace, dst)
        source_rows = self._m.storage.list_current(namespace, src)
        target_rows = self._m.storage.list_current(namespace, dst)
        picked = set(keys) if keys is not None else None
        if any(r.value_type is ValueType.SECRET and (picked is None or r.key in picked)
               for r in (*source_rows, *target_rows)):
            access.authorize(ctx, "secret:read", namespace, src)  # a secret is copied or compared: refused whole
            access.authorize(ctx, "secret:read", namespace, dst)
            access.authorize(ctx, "secret:create", namespace, dst)
            self._m._need("Promoting secrets")
        src_sides = self._sides(namespace, src, source_rows, True)
        made = plan("", namespace, src, dst, src_sides, self._sides(namespace, dst, target_rows, True), keys=keys,
                    prune=prune)
        if expected is not None:
            if (expected.namespace, expected.source, expected.target) != (namespace, src, dst):
                raise ValidationError("The plan is for another namespace or other environments")
            # the id goes into every history line and audit event: only one this store issued for these steps
            if _PROMOTION_ID.fullmatch(expected.id) is None or not hmac.compare_digest(
                    expected.id, self._plan_id(expected.id[:8], expected)):
                raise ValidationError("Invalid plan: not a plan this store issued (pass back a dry run's answer "
                                      "unchanged)")
            moved = same_plan(expected, made)
            if moved:
                shown = ", ".join(moved[:10]) + (f" (and {len(moved) - 10} more)" if len(moved) > 10 else "")
                raise ConflictError(f"Promotion aborted: {namespace} changed since the plan was made ({shown}); "
                                    "nothing was written — plan again", namespace=namespace)
        made = replace(made, id=expected.id if expected is not None else self._plan_id(secrets.token_hex(4), made))
        check = self._m._schemas.checker(namespace)  # the target's schemas: a dry run says what apply would
        for step in made.steps:
            value = src_sides[step.key].value if step.action != "delete" else None
            if value is not None:
                check(step.key, dst, orjson.loads(value))
        if dry_run or not made.steps:
            return made
        by_key = {r.key: r for r in source_rows}
        requests = [self._request(ctx, made, step.key, step.target_version,
                                  by_key.get(step.key) if step.action != "delete" else None,
                                  plain_over_secret=secret is False)
                    for step in made.steps]
        self._m._apply(requests)
        return Promotion(made.id, namespace, src, dst, made.steps, made.unchanged, applied=True)

    def _plan_id(self, nonce: str, made: Promotion) -> str:
        """`nonce` and an HMAC over it and what the plan does (namespace, environments, steps)."""
        keys = self._m._need("Promoting")
        body = orjson.dumps([made.namespace, made.source.value, made.target.value,
                             [s.to_json() for s in made.steps]], option=orjson.OPT_SORT_KEYS)
        tag = hmac.new(keys.audit, _ID_PURPOSE + nonce.encode() + b"\x00" + body, hashlib.sha256).hexdigest()
        return nonce + tag[:16]

    def _request(self, ctx: CallContext, made: Promotion, key: str, expected: int, row: StoredEntry | None, *,
                 plain_over_secret: bool) -> WriteRequest:
        src, dst, namespace = made.source, made.target, made.namespace
        note = f"Promoted from {src.value} ({made.id})"
        details = {"promotion_id": made.id, "from": src.value}
        if row is None:
            return self._m._request(WriteKind.DELETE, namespace, key, dst, ctx=ctx, change_description=note,
                                    expected_version=expected, audit_details=details)
        assert row.stored_value is not None
        secret = row.value_type is ValueType.SECRET
        text: str | bytes = row.stored_value  # the source's own text (the sides hold a canonical form)
        if secret:
            keys = self._m._need("Promoting secrets")
            text = keys.keyring.open(row.stored_value, place(namespace, key, src))
        value = orjson.loads(text)
        value_type, stored, fingerprint = self._m._seal_value(namespace, key, dst, value, secret)
        return self._m._request(
            WriteKind.SET, namespace, key, dst, ctx=ctx, change_description=note, value_type=value_type,
            stored_value=stored, fingerprint=fingerprint, expected_version=expected,
            audit_details={**details, "fingerprint": fingerprint, "fingerprint_scheme": audit.FINGERPRINT_SCHEME},
            refuse_plain_over_secret=not secret and not plain_over_secret,
        )
