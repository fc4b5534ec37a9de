"""The change feed behind `GET /api/v1/watch` (SPEC §8): changes in commit order, and who may see which.

Every write takes the next store revision inside its transaction (ARCHITECTURE decision 7), so reading
"versions with a revision above R" after seeing revision R can never skip a change that commits later:
it would have a higher revision. The feed reads; a front end (the server's stream hub) fans it out.

Owns: which changes a caller sees (namespace, its sub-namespaces if asked, environments — `env=E` also
means `base`, since E resolves through it — and the caller's read permission); where a stream starts
(its `hello`) and when it must start over (`resync`: another store epoch, or a revision ahead of the
store); the signals by which a process learns that it should look again (its own writes, revoked keys).
Never: carries a value — a watcher reads the new value through the ordinary, permission-checked read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from llm_config import rbac
from llm_config.core.custody import EPOCH
from llm_config.models import ChangeRow, Environment, Principal
from llm_config.names import RESERVED, SCHEMA_PREFIX, TEMPLATE_PREFIX, parse_environment, validate_namespace
from llm_config.storage.sql import WATCH_FLOOR
from llm_config.types import Storage
from llm_config.wire import WatchChange, WatchHello, WatchKind, WatchResync

__all__ = ["ChangeFeed", "Signals", "WatchScope", "to_wire"]

log = logging.getLogger("llm_config")

PAGE: Final = 1000
"""Changes read per query; a stream further behind reads several pages."""


@dataclass(frozen=True, slots=True)
class WatchScope:
    """What one stream shows: a namespace (and its sub-namespaces if `recursive`), some environments, to
    one caller (None: the local owner, who sees everything)."""

    namespace: str
    environments: frozenset[Environment] | None
    recursive: bool
    principal: Principal | None

    @classmethod
    def of(cls, namespace: str, env: str | None, *, recursive: bool, principal: Principal | None) -> WatchScope:
        validate_namespace(namespace)
        environments = None
        if env is not None:
            environment = parse_environment(env)
            environments = frozenset({environment, Environment.BASE})
        return cls(namespace, environments, recursive, principal)

    def sees(self, change: ChangeRow) -> bool:
        ns = change.namespace
        if ns != self.namespace and not (self.recursive and ns.startswith(self.namespace)
                                         and ns[len(self.namespace)] == "/"):
            return False
        if self.environments is not None and change.environment not in self.environments:
            return False
        if self.principal is None:
            return True
        permission = "system:read" if change.key.startswith(SCHEMA_PREFIX) else "config:read"  # schemas: admins
        return rbac.allowed(self.principal, permission, ns, change.environment)


def to_wire(change: ChangeRow) -> WatchChange:
    key = change.key
    if key.startswith(RESERVED):  # a template or a schema: named as users name it, kind says which
        kind: WatchKind = "template" if key.startswith(TEMPLATE_PREFIX) else "schema"
        name = key[len(TEMPLATE_PREFIX if kind == "template" else SCHEMA_PREFIX):]
        return WatchChange(change.revision, change.namespace, name, change.environment, change.version, kind)
    kind = change.kind  # type: ignore[assignment]  # storage only writes the four kinds
    return WatchChange(change.revision, change.namespace, key, change.environment, change.version, kind)


class ChangeFeed:
    """Reads changes in commit order; blocking (storage I/O): front ends call it from a worker thread."""

    def __init__(self, storage: Storage, seen: Callable[[list[ChangeRow]], None] | None = None) -> None:
        self._storage = storage
        self._seen = seen  # told of every change read: the process's cache drops what they replaced

    def epoch(self) -> str:
        """The store epoch: a new one after every restore (a store never restored has epoch "0")."""
        return self._storage.get_meta(EPOCH) or "0"

    def current(self) -> int:
        """The store's revision: the last write's."""
        return int(self._storage.get_meta("revision") or 0)

    def read(self, since: int, limit: int = PAGE, scope: WatchScope | None = None) -> tuple[list[ChangeRow], int]:
        """Changes after `since`, oldest first (at most `limit`; only `scope`'s namespaces if given), and the
        store's revision, read before them: with fewer than `limit` changes, every change up to that revision
        is in the list."""
        if scope is None:
            rows, current = self._storage.watch_since(since, limit)
        else:
            rows, current = self._storage.watch_since(since, limit, namespace=scope.namespace,
                                                      recursive=scope.recursive)
        if rows and self._seen is not None:
            self._seen(rows)  # before anyone hears of them: a watcher's refetch must find the new value
        return rows, current

    def floor(self) -> int:
        """The revision the feed starts after: changes before it are not kept (a restore starts it again)."""
        return int(self._storage.get_meta(WATCH_FLOOR) or 0)

    def begin(self, since: int | None, client_epoch: str | None) -> tuple[WatchHello, WatchResync | None, int]:
        """Where a stream starts: its hello, a resync if it cannot continue from `since`, and the revision it
        continues after. Resync when the client saw another epoch, or `since` is ahead of this store, or older
        than the feed's floor — a restore restarts the feed above every revision served before it, so a
        client resuming from before a restore learns of it even with a bare `Last-Event-ID`."""
        epoch = self.epoch()
        current = self.current()
        if since is None:
            return WatchHello(epoch, current), None, current
        reason = ("epoch" if client_epoch is not None and client_epoch != epoch
                  else "ahead" if since > current else "expired" if since < self.floor() else None)
        if reason is not None:
            return WatchHello(epoch, current), WatchResync(reason, epoch, current), current
        return WatchHello(epoch, since), None, since


class Signals:
    """Wake-ups for watchers in this process: after a local commit (`changed`) and after API keys changed
    (`principals`). Listeners run on the signalling thread and must only schedule work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[tuple[Callable[[], None], Callable[[], None]], ...] = ()

    def subscribe(self, on_change: Callable[[], None], on_principals: Callable[[], None]) -> Callable[[], None]:
        pair = (on_change, on_principals)
        with self._lock:
            self._listeners = (*self._listeners, pair)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(p for p in self._listeners if p is not pair)
        return unsubscribe

    def changed(self) -> None:
        for on_change, _ in self._listeners:
            _call(on_change)

    def principals(self) -> None:
        for _, on_principals in self._listeners:
            _call(on_principals)


def _call(listener: Callable[[], None]) -> None:
    try:
        listener()
    except Exception as exc:  # a watcher's problem must never fail a write
        log.warning("watch: a change listener failed (%s)", type(exc).__name__)
