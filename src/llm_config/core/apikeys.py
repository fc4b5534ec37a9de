"""API keys (SPEC §8, §9): creating, listing and revoking them, and authenticating requests by them.

Owns: the key tree (a key records the key that created it; a child never outlives its parent, and
revoking a key revokes every key it created, transitively — as Vault's token tree), names unique
among live keys, the principal cache (`AUTH_CACHE_SECONDS` bounds how long a revoked key keeps
working on another process), and coalescing repeated authentication failures from one address into
one `auth_failed` event per window, so a flood of bad keys cannot turn into a flood of fsyncs.

Never: stores, logs or returns a key after `create` hands it out once; only its peppered HMAC is kept.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from llm_config import rbac
from llm_config.core.access import Access
from llm_config.core.context import CallContext
from llm_config.core.custody import StoreKeys, need
from llm_config.crypto.apikeys import generate_api_key, hash_api_key, looks_like_api_key
from llm_config.errors import AuthenticationError, NotFoundError, ValidationError
from llm_config.models import ApiKey, Environment, PendingEvent, Principal, Role
from llm_config.names import parse_environment, validate_label, validate_namespace
from llm_config.times import rfc3339
from llm_config.types import Clock, Storage

__all__ = ["AUTH_CACHE_SECONDS", "FAILURE_WINDOW_SECONDS", "MAX_EXPIRY_DAYS", "ApiKeys"]

AUTH_CACHE_SECONDS: Final = 0.5  # revocation reaches every process within this (SPEC §9: 1 s)
FAILURE_WINDOW_SECONDS: Final = 60.0  # one `auth_failed` event per address per window
MAX_EXPIRY_DAYS: Final = 36500
_MAX_CACHED: Final = 10_000
_MAX_TRACKED_ADDRESSES: Final = 100_000


class _FailureWindows:
    """Per address: when its current window began and how many failures it has held back since."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._seen: dict[str | None, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, address: str | None, now: float) -> int | None:
        """The number of failures held back in the address's previous window if this one opens a
        new window (record an event), None if it falls in the current one (count it, record nothing)."""
        with self._lock:
            seen = self._seen.get(address)
            if seen is not None and now - seen[0] < self._window:
                self._seen[address] = (seen[0], seen[1] + 1)
                return None
            if len(self._seen) >= _MAX_TRACKED_ADDRESSES:
                self._seen.clear()
            self._seen[address] = (now, 0)
            return seen[1] if seen is not None else 0


class ApiKeys:
    """The API keys of one store."""

    def __init__(self, storage: Storage, keys: StoreKeys | None, access: Access, clock: Clock, owner: str,
                 key_warning: str | None = None) -> None:
        self._storage = storage
        self._keys = keys
        self._access = access
        self._clock = clock
        self._owner = owner
        self._key_warning = key_warning
        self._principals: dict[str, tuple[float, Principal]] = {}
        self._failures = _FailureWindows(FAILURE_WINDOW_SECONDS)

    def _now(self) -> str:
        return rfc3339(self._clock())

    def forget_principals(self) -> None:
        """Drop the principal cache (after a revocation, or when another process changed the store)."""
        self._principals.clear()

    # ------------------------------------------------------------------ creating

    def create(
        self, ctx: CallContext, name: str, role: str | Role, *, namespaces: Sequence[str] = (),
        environments: Sequence[str | Environment] = (), expires_days: float | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns its record and the key itself, which is shown once and never stored.

        A key can only create keys of equal or narrower role, scope and lifetime (SPEC §4, §8).
        """
        keys = need(self._keys, "Creating an API key", self._key_warning)
        self._access.authorize(ctx, "users:create", None, None)
        validate_label(name, "key name")
        try:
            parsed_role = Role(role.lower() if isinstance(role, str) else role)
        except ValueError:
            raise ValidationError(f"Unknown role: {str(role)[:32]} (use admin, editor, viewer or auditor)") from None
        scope_ns = tuple(dict.fromkeys(validate_namespace(n) for n in namespaces))
        scope_env = tuple(dict.fromkeys(parse_environment(e) for e in environments))
        principal = ctx.principal
        if principal is not None and not rbac.is_narrower(principal, parsed_role, scope_ns, scope_env):
            self._access.deny(ctx, "users:create", None, None, key=None,
                              message=f"Permission denied: {principal.actor} may only create keys of equal or "
                              "narrower role and scope")
        now = self._clock()
        expires_at = None
        if expires_days is not None:
            if isinstance(expires_days, bool) or not 0 < expires_days <= MAX_EXPIRY_DAYS:
                raise ValidationError(
                    f"Invalid expiry: a number of days greater than 0 and at most {MAX_EXPIRY_DAYS}"
                )
            expires_at = rfc3339(now + expires_days * 86400)
        parent = self._parent_of(principal)
        if parent is not None and parent.expires_at is not None and (
            expires_at is None or expires_at > parent.expires_at
        ):
            expires_at = parent.expires_at  # a child never outlives its parent
        secret_key = generate_api_key()
        actor = ctx.actor_or(self._owner)
        record = ApiKey(
            id="key_" + uuid.uuid4().hex[:16], name=name, role=parsed_role, namespaces=scope_ns,
            environments=scope_env, key_hash=hash_api_key(keys.pepper, secret_key), created_at=rfc3339(now),
            created_by=actor, expires_at=expires_at, revoked_at=None,
            parent_id=parent.id if parent is not None else None,
        )
        self._storage.create_api_key(record, PendingEvent(
            type="key_created", actor=actor, source_ip=ctx.source_ip, request_id=ctx.request_id,
            timestamp=record.created_at, details={
                "key_id": record.id, "name": name, "role": parsed_role.value, "namespaces": list(scope_ns),
                "environments": [e.value for e in scope_env], "expires_at": expires_at,
                "parent_id": record.parent_id,
            },
        ), keys.audit, now=record.created_at)
        return record, secret_key

    def _parent_of(self, principal: Principal | None) -> ApiKey | None:
        if principal is None or principal.key_id is None:
            return None  # the store's owner (CLI, library): the root of the tree
        parent = self._storage.get_api_key(principal.key_id)
        if parent is None:
            raise AuthenticationError("API key invalid, expired or revoked")
        return parent

    def ensure_initial_admin(self) -> str | None:
        """On a store that never had a key, create an unrestricted admin key and return it (once)."""
        if self._storage.list_api_keys():
            return None
        return self.create(CallContext(), "initial-admin", Role.ADMIN)[1]

    # ------------------------------------------------------------------ listing and revoking

    def list(self, ctx: CallContext) -> list[ApiKey]:
        """Every key (without secrets); a caller sees the keys it could have created itself."""
        self._access.authorize(ctx, "users:list", None, None)
        keys = self._storage.list_api_keys()
        principal = ctx.principal
        if principal is None:
            return keys
        return [k for k in keys if rbac.is_narrower(principal, k.role, k.namespaces, k.environments)]

    def revoke(self, ctx: CallContext, key_id: str) -> ApiKey:
        """Revoke a key and every key it created; effective on every process within `AUTH_CACHE_SECONDS`."""
        keys = need(self._keys, "Revoking an API key", self._key_warning)
        self._access.authorize(ctx, "users:delete", None, None)
        record = self._storage.get_api_key(key_id) if isinstance(key_id, str) and len(key_id) < 100 else None
        principal = ctx.principal
        if record is None or (
            principal is not None and not rbac.is_narrower(principal, record.role, record.namespaces,
                                                            record.environments)
        ):
            raise NotFoundError(f"API key not found: {str(key_id)[:40]}")
        if record.revoked_at is not None:
            return record
        actor = ctx.actor_or(self._owner)
        revoked_at = self._now()

        def event_for(key: ApiKey, cascaded: bool) -> PendingEvent:
            details: dict[str, object] = {"key_id": key.id, "name": key.name}
            if cascaded:
                details["revoked_with"] = record.id
            return PendingEvent(type="key_revoked", actor=actor, source_ip=ctx.source_ip,
                                request_id=ctx.request_id, timestamp=revoked_at, details=details)

        revoked = self._storage.revoke_api_keys(record.id, revoked_at, event_for, keys.audit)
        self.forget_principals()
        return revoked[0] if revoked else replace(record, revoked_at=revoked_at)

    # ------------------------------------------------------------------ authenticating

    def cached_principal(self, token: str) -> Principal | None:
        """The principal of `token` if authenticated within `AUTH_CACHE_SECONDS` (no I/O), else None."""
        cached = self._principals.get(token)
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    def authenticate(self, token: str | None, ctx: CallContext, *, audit_failure: bool = True) -> Principal:
        """The principal of an API key; AuthenticationError for a missing or bad one, audited (coalesced)
        unless `audit_failure` is False — for a front end that rate-limits before it records a failure."""
        keys = need(self._keys, "Authentication", self._key_warning)
        if token:
            now = time.monotonic()
            cached = self._principals.get(token)
            if cached is not None and cached[0] > now:
                return cached[1]
            if looks_like_api_key(token):
                record = self._storage.get_api_key_by_hash(hash_api_key(keys.pepper, token))
                if record is not None and record.revoked_at is None and (
                    record.expires_at is None or record.expires_at > self._now()
                ):
                    principal = Principal(actor=record.actor, role=record.role, namespaces=record.namespaces,
                                          environments=record.environments, key_id=record.id)
                    if len(self._principals) > _MAX_CACHED:
                        self._principals.clear()
                    self._principals[token] = (now + AUTH_CACHE_SECONDS, principal)
                    return principal
        reason = "missing" if not token else "invalid, expired or revoked"
        if audit_failure:
            self.record_failure(reason, ctx)
        raise AuthenticationError(f"API key {reason}")

    def record_failure(self, reason: str, ctx: CallContext) -> None:
        """Audit a failed authentication, at most once per address per `FAILURE_WINDOW_SECONDS`."""
        held_back = self._failures.admit(ctx.source_ip, time.monotonic())
        if held_back is None or self._keys is None:
            return
        details: dict[str, object] = {"reason": reason, "window_seconds": FAILURE_WINDOW_SECONDS}
        if held_back:
            details["coalesced_before"] = held_back
        self._storage.append_audit(PendingEvent(
            type="auth_failed", actor="anonymous", outcome="failure", source_ip=ctx.source_ip,
            request_id=ctx.request_id, details=details, timestamp=self._now(),
        ), self._keys.audit)
