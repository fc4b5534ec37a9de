"""Prometheus metrics of llm-config: every name starts with `llm_config_` (SPEC §8, issue 3).

Infrastructure layer: imports prometheus-client and the standard library only (never core, server
or cli), so whoever serves `/metrics` hands in what it wants exported as plain callables.

Two modes, chosen by prometheus-client itself when this module is first imported:

- **one process** (`serve` with one uvicorn worker, tests): values live in `REGISTRY`; the cache
  statistics and the audit-chain length are read at scrape time by custom collectors.
- **several workers** (`PROMETHEUS_MULTIPROC_DIR` set by the runner to a fresh private directory
  before any worker starts): every worker writes its values to memory-mapped files in that
  directory and `render()` merges the files of all workers, so a scrape answered by any worker
  counts the requests of all of them. Per-process numbers that live in our own objects (the L1
  cache statistics) are copied into counters by `CacheStatsSync` (every second and at each scrape).

Labels are closed sets or route *templates* — never a raw path, a name, a key or a secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "AUDIT_EVENTS",
    "AUTH_FAILURES",
    "AuditHeadCollector",
    "BANS",
    "CACHE_TIERS",
    "CLIENT_DISCONNECTS",
    "CONNECTIONS_REFUSED",
    "CONTENT_TYPE",
    "CacheSnapshot",
    "CacheStatsCollector",
    "CacheStatsSync",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "IP_REFUSED",
    "OPERATIONS",
    "OPERATION_DURATION",
    "RATE_LIMITED",
    "RBAC_CHECKS",
    "RBAC_DENIALS",
    "REGISTRY",
    "SLOW_CLIENTS",
    "STORAGE_ERRORS",
    "WATCH_EVENTS",
    "WATCH_STREAMS",
    "mark_process_dead",
    "multiprocess_dir",
    "render",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"  # the classic text format generate_latest writes
_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

# fast answers matter here: a cached read takes tens of microseconds
_LATENCY_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


def multiprocess_dir() -> str | None:
    """The multiprocess directory if this process runs in multiprocess mode."""
    return os.environ.get(_MULTIPROC_ENV) or None


# `_created` series double the output and say nothing rate() needs
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY: Final = CollectorRegistry()
"""The registry of this process's own values (exported as is in one-process mode)."""

HTTP_REQUESTS: Final = Counter(
    "llm_config_http_requests", "HTTP requests by method, route template and status",
    ["method", "route", "status"], registry=REGISTRY,
)
HTTP_DURATION: Final = Histogram(
    "llm_config_http_request_duration_seconds", "HTTP request latency by method, route template and status",
    ["method", "route", "status"], registry=REGISTRY, buckets=_LATENCY_BUCKETS,
)
OPERATIONS: Final = Counter(
    "llm_config_operations", "Manager operations by operation, environment and outcome",
    ["operation", "environment", "outcome"], registry=REGISTRY,
)
OPERATION_DURATION: Final = Histogram(
    "llm_config_operation_duration_seconds", "Manager operation latency by operation and environment",
    ["operation", "environment"], registry=REGISTRY, buckets=_LATENCY_BUCKETS,
)
RBAC_CHECKS: Final = Counter(
    "llm_config_rbac_checks", "Permission decisions taken for API requests", ["outcome"], registry=REGISTRY,
)
RBAC_DENIALS: Final = Counter(
    "llm_config_rbac_denials", "Requests refused by RBAC (403), by operation", ["operation"], registry=REGISTRY,
)
AUTH_FAILURES: Final = Counter(
    "llm_config_auth_failures", "Failed authentications by reason", ["reason"], registry=REGISTRY,
)
RATE_LIMITED: Final = Counter(
    "llm_config_rate_limited", "Requests refused with 429, by bucket scope (key or ip)", ["scope"],
    registry=REGISTRY,
)
IP_REFUSED: Final = Counter(
    "llm_config_ip_refused", "Requests refused by client address (cidr list or ban)", ["reason"],
    registry=REGISTRY,
)
BANS: Final = Counter("llm_config_bans", "Client addresses banned after failed authentications", registry=REGISTRY)
CLIENT_DISCONNECTS: Final = Counter(
    "llm_config_client_disconnects", "Requests whose client went away before the answer (not server errors)",
    registry=REGISTRY,
)
SLOW_CLIENTS: Final = Counter(
    "llm_config_slow_clients", "Connections closed or requests refused for reading too slowly (headers or body)",
    ["phase"], registry=REGISTRY,
)
CONNECTIONS_REFUSED: Final = Counter(
    "llm_config_connections_refused", "Connections closed because one address held too many", registry=REGISTRY,
)
STORAGE_ERRORS: Final = Counter(
    "llm_config_storage_errors", "Operations that failed because storage or the audit trail was unavailable",
    ["operation"], registry=REGISTRY,
)
WATCH_STREAMS: Final = Gauge(
    "llm_config_watch_streams", "Open watch streams (GET /api/v1/watch)", registry=REGISTRY,
    multiprocess_mode="livesum",
)
WATCH_EVENTS: Final = Counter(
    "llm_config_watch_events", "Events sent on watch streams by type (change, resync, error)", ["event"],
    registry=REGISTRY,
)
AUDIT_EVENTS: Final = "llm_config_audit_events"
CACHE_TIERS: Final = ("l1", "l2")


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """The counters of one cache tier at one moment."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    errors: int = 0  # calls to the tier that failed, timed out or were skipped (circuit open)
    rejected: int = 0  # records refused on promotion (tag, row MAC or place check failed)


CacheSource = Callable[[], Mapping[str, CacheSnapshot]]


class CacheStatsCollector(Collector):
    """One-process mode: cache hits, misses, evictions, entries and bytes by tier, read at scrape time."""

    def __init__(self, source: CacheSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshots = self._source()
        families = {
            "hits": CounterMetricFamily("llm_config_cache_hits", "Cache hits by tier", labels=["tier"]),
            "misses": CounterMetricFamily("llm_config_cache_misses", "Cache misses by tier", labels=["tier"]),
            "evictions": CounterMetricFamily("llm_config_cache_evictions", "Cache evictions by tier",
                                             labels=["tier"]),
            "errors": CounterMetricFamily("llm_config_cache_errors", "Cache tier calls failed or skipped (Redis down)",
                                          labels=["tier"]),
            "rejected": CounterMetricFamily("llm_config_cache_rejected", "Shared-cache records refused on promotion",
                                            labels=["tier"]),
        }
        entries = GaugeMetricFamily("llm_config_cache_entries", "Entries held by tier", labels=["tier"])
        size = GaugeMetricFamily("llm_config_cache_bytes", "Bytes held by tier", labels=["tier"])
        for tier, snap in snapshots.items():
            families["hits"].add_metric([tier], snap.hits)
            families["misses"].add_metric([tier], snap.misses)
            families["evictions"].add_metric([tier], snap.evictions)
            families["errors"].add_metric([tier], snap.errors)
            families["rejected"].add_metric([tier], snap.rejected)
            entries.add_metric([tier], snap.entries)
            size.add_metric([tier], snap.bytes)
        yield from families.values()
        yield entries
        yield size


class CacheStatsSync:
    """Multiprocess mode: copy this worker's cache statistics into shared counters and gauges.

    Counters grow by the difference since the previous sync, so the merged value is the sum over
    workers; gauges use `livesum`, so only live workers count.
    """

    def __init__(self, source: CacheSource) -> None:
        self._source = source
        self._seen: dict[str, CacheSnapshot] = {}
        self._hits = Counter("llm_config_cache_hits", "Cache hits by tier", ["tier"], registry=None)
        self._misses = Counter("llm_config_cache_misses", "Cache misses by tier", ["tier"], registry=None)
        self._evictions = Counter("llm_config_cache_evictions", "Cache evictions by tier", ["tier"], registry=None)
        self._errors = Counter("llm_config_cache_errors", "Cache tier calls failed or skipped (Redis down)", ["tier"],
                               registry=None)
        self._rejected = Counter("llm_config_cache_rejected", "Shared-cache records refused on promotion", ["tier"],
                                 registry=None)
        self._entries = Gauge("llm_config_cache_entries", "Entries held by tier", ["tier"], registry=None,
                              multiprocess_mode="livesum")
        self._bytes = Gauge("llm_config_cache_bytes", "Bytes held by tier", ["tier"], registry=None,
                            multiprocess_mode="livesum")

    def sync(self) -> None:
        for tier, snap in self._source().items():
            old = self._seen.get(tier, CacheSnapshot(0, 0, 0, 0, 0))
            # a cleared cache restarts its counters: count from zero again rather than going backwards
            for counter, new, before in ((self._hits, snap.hits, old.hits), (self._misses, snap.misses, old.misses),
                                         (self._evictions, snap.evictions, old.evictions),
                                         (self._errors, snap.errors, old.errors),
                                         (self._rejected, snap.rejected, old.rejected)):
                delta = new - before if new >= before else new
                if delta:
                    counter.labels(tier).inc(delta)
            self._entries.labels(tier).set(snap.entries)
            self._bytes.labels(tier).set(snap.bytes)
            self._seen[tier] = snap


class AuditHeadCollector(Collector):
    """Audit events in the chain (shared by every worker, so read from storage at scrape time)."""

    def __init__(self, head: Callable[[], int | None]) -> None:
        self._head = head

    def collect(self) -> Iterator[Metric]:
        try:
            seq = self._head()
        except Exception:  # storage down: /metrics still answers; storage errors show elsewhere
            return
        family = CounterMetricFamily(AUDIT_EVENTS, "Audit events written to the chain")
        family.add_metric([], seq or 0)
        yield family


def render(extra: Iterable[Collector] = ()) -> bytes:
    """The Prometheus text exposition of this process (or of every worker) plus `extra` collectors."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]
        out = generate_latest(merged)
    else:
        out = generate_latest(REGISTRY)
    extras = CollectorRegistry(auto_describe=False)
    for collector in extra:
        extras.register(collector)
    return out + generate_latest(extras)


def mark_process_dead(pid: int) -> None:
    """Forget a stopped worker's live gauges (multiprocess mode only)."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
