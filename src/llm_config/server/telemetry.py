"""Counting requests and operations into `llm_config.metrics` with bounded, input-free labels.

Label children are cached per label tuple, so counting a request costs two dict lookups and the
increments. Methods outside the standard set count as `other`, environments are canonical names
(or `none` / `invalid`), routes are templates (`/api/v1/configs/{ns}/{key}`), never raw paths.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from starlette.routing import BaseRoute

from llm_config import metrics
from llm_config.core.manager import ConfigManager
from llm_config.errors import ConflictError, NotFoundError, PermissionDeniedError, StorageError, ValidationError
from llm_config.models import Environment

__all__ = [
    "UNMATCHED",
    "CacheSource",
    "RouteTable",
    "cache_source",
    "env_label",
    "observe_operation",
    "record_http",
    "record_rbac",
]

T = TypeVar("T")

UNMATCHED: Final = "unmatched"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_ENV_LABELS: Final = {
    "base": "base", "development": "development", "dev": "development", "staging": "staging",
    "stage": "staging", "production": "production", "prod": "production", "edge": "edge",
}

_http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_op_counters: dict[tuple[str, str, str], Any] = {}
_op_histograms: dict[tuple[str, str], Any] = {}


def env_label(env: object) -> str:
    """A canonical environment name for a label (never the raw input)."""
    if env is None:
        return "none"
    if isinstance(env, Environment):
        return env.value
    if isinstance(env, str):
        return _ENV_LABELS.get(env.strip().lower(), "invalid")
    return "invalid"


def record_http(method: str, route: str, status: int, seconds: float) -> None:
    if method not in _METHODS:
        method = "other"
    key = (method, route, status)
    children = _http_children.get(key)
    if children is None:
        labels = (method, route, str(status))
        children = _http_children[key] = (metrics.HTTP_REQUESTS.labels(*labels), metrics.HTTP_DURATION.labels(*labels))
    children[0].inc()
    children[1].observe(seconds)


def record_operation(operation: str, environment: str, outcome: str, seconds: float) -> None:
    key = (operation, environment, outcome)
    counter = _op_counters.get(key)
    if counter is None:
        counter = _op_counters[key] = metrics.OPERATIONS.labels(operation, environment, outcome)
    counter.inc()
    hkey = (operation, environment)
    histogram = _op_histograms.get(hkey)
    if histogram is None:
        histogram = _op_histograms[hkey] = metrics.OPERATION_DURATION.labels(operation, environment)
    histogram.observe(seconds)


_RBAC_ALLOWED: Final = metrics.RBAC_CHECKS.labels("allowed")
_RBAC_DENIED: Final = metrics.RBAC_CHECKS.labels("denied")


def record_rbac(allowed: bool, operation: str = "") -> None:
    if allowed:
        _RBAC_ALLOWED.inc()
    else:
        _RBAC_DENIED.inc()
        metrics.RBAC_DENIALS.labels(operation or "unknown").inc()


async def observe_operation(operation: str, env: object, call: Callable[[], Awaitable[T]], *,
                            authenticated: bool = True) -> T:
    """Await `call`, counting it as `operation` in `env`: outcome, latency, RBAC decision, storage errors."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await call()
        outcome = "ok"
        return result
    except PermissionDeniedError:
        outcome = "denied"
        raise
    except StorageError:
        outcome = "unavailable"
        metrics.STORAGE_ERRORS.labels(operation).inc()
        raise
    except (NotFoundError, ConflictError):  # decided after the permission check passed
        outcome = "not_found" if isinstance(sys.exc_info()[1], NotFoundError) else "conflict"
        raise
    except ValidationError:
        outcome = "invalid"
        raise
    finally:
        if authenticated and outcome in ("ok", "denied", "not_found", "conflict"):
            record_rbac(outcome != "denied", operation)
        record_operation(operation, env_label(env), outcome, time.perf_counter() - started)


class RouteTable:
    """Route templates by path regex, to name requests refused before they reach the router."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._routes: list[tuple[re.Pattern[str], frozenset[str], str]] = []
        for route in routes:
            regex, path = getattr(route, "path_regex", None), getattr(route, "path", None)
            if isinstance(regex, re.Pattern) and isinstance(path, str):
                methods = frozenset(getattr(route, "methods", None) or ())
                self._routes.append((regex, methods, path.replace(":path", "")))

    def methods(self, path: str) -> frozenset[str]:
        """Every method some route takes at `path` (for a 405's `Allow`)."""
        return frozenset().union(*(methods for regex, methods, _ in self._routes if regex.match(path)))

    def template(self, method: str, path: str) -> str:
        partial: str | None = None
        for regex, methods, template in self._routes:
            if regex.match(path):
                if not methods or method in methods:
                    return template
                partial = partial or template
        return partial or UNMATCHED


CacheSource = Callable[[], Mapping[str, metrics.CacheSnapshot]]


def cache_source(manager: ConfigManager) -> CacheSource:
    """The manager's cache statistics by tier: L1, and L2 when Redis is configured."""

    def snapshot() -> dict[str, metrics.CacheSnapshot]:
        l1 = manager.cache.l1
        out = {"l1": metrics.CacheSnapshot(hits=l1.stats.hits, misses=l1.stats.misses, evictions=l1.stats.evictions,
                                           entries=len(l1), bytes=l1.size_bytes)}
        l2 = manager.cache.l2
        if l2 is not None:
            s = l2.stats
            out["l2"] = metrics.CacheSnapshot(hits=s.hits, misses=s.misses, evictions=0, entries=0, bytes=0,
                                              errors=s.errors + s.skipped, rejected=s.rejected)
        return out

    return snapshot
