"""The remote SDK: `Client` (sync, httpx) and `AsyncClient` (asyncio) for an `llm-config serve` service.

Both offer the manager's read and write methods (`llm_config.types.ConfigAPI` / `AsyncConfigAPI`) and
raise the same exceptions, plus `on_change(ns, key_or_prefix, callback)`, `status()` and `close()`. Reads
are served from a local cache kept current by one watch stream (Server-Sent Events) per namespace read;
an optional encrypted snapshot serves reads when the service cannot be reached at start.

Needs the `client` extra (`pip install 'llm-config-manager[client]'`: httpx, httpx-sse).

    _base.py   requests, answers, errors, retries and the cache — no I/O
    sync.py    Client (httpx.Client; a thread per watch stream)
    async_.py  AsyncClient (httpx.AsyncClient; a task per watch stream)
    watch.py   the watch stream: SSE via httpx-sse, resume, resync, callbacks
    snapshot.py  the encrypted offline snapshot
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401
    import httpx_sse  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from llm_config.errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "httpx", "client") from None

from llm_config.client._base import ChangeCallback, ClientStatus, Subscription
from llm_config.client.async_ import AsyncChangeCallback, AsyncClient
from llm_config.client.snapshot import SnapshotWarning
from llm_config.client.sync import Client

__all__ = ["AsyncChangeCallback", "AsyncClient", "ChangeCallback", "Client", "ClientStatus", "SnapshotWarning",
           "Subscription"]
