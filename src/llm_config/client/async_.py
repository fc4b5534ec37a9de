"""`llm_config.AsyncClient`: the remote SDK over `httpx.AsyncClient` — `Client`'s twin, every method a coroutine.

    async with AsyncClient("https://config.internal", api_key=key) as cfg:
        entry = await cfg.get("acme/chatbot", "openai.model", env="production")

Watch streams are asyncio tasks of the loop the client is used on; `on_change` takes plain functions
and coroutine functions alike (awaited in the stream's task, one at a time, in revision order).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

import llm_config
from llm_config import wire
from llm_config.client._base import (
    DELETE_ATTEMPTS,
    LIST,
    RESOLVE,
    SAFE_METHODS,
    UNREACHABLE_STATUSES,
    Call,
    ClientCore,
    ClientStatus,
    Fetch,
    GetKey,
    RetryPolicy,
    Slot,
    Subscription,
    body_of,
    entries_of,
    entry_of,
    env_diff_of,
    history_of,
    is_loopback,
    object_of,
    parse_retry_after,
    promotion_of,
    query,
    render_text_of,
    revision_of,
    route,
    schema_builtins_of,
    schema_of,
    schemas_of,
    strings_of,
    template_of,
    templates_of,
    tombstone,
    write_failure,
)
from llm_config.client.snapshot import SnapshotStore
from llm_config.client.watch import AsyncWatcher
from llm_config.documents import EnvDiff, Promotion, Schema, Template
from llm_config.errors import ConflictError, LLMConfigError
from llm_config.models import Entry, Environment, HistoryItem
from llm_config.nesting import bind_model

__all__ = ["AsyncChangeCallback", "AsyncClient"]

_M = TypeVar("_M")

log = logging.getLogger("llm_config.client")

_DEV = Environment.DEVELOPMENT

AsyncChangeCallback = Callable[[wire.WatchChange, Entry | None], Awaitable[Any] | Any]
"""A plain function or a coroutine function of `(change, entry)`."""


class AsyncClient:
    """`Client` for asyncio: the same options, cache, watch streams and snapshot; see `Client`."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        timeout: float = 5.0,
        connect_timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.1,
        backoff_max: float = 2.0,
        retry_after_max: float = 10.0,
        ttl: float = 5.0,
        max_stale: float = 0.0,
        watch: bool = True,
        watch_idle_timeout: float = 60.0,
        max_entries: int = 10_000,
        max_watched: int = 32,
        page_size: int | None = None,
        offline_retry: float = 1.0,
        snapshot_path: str | os.PathLike[str] | None = None,
        snapshot_key: str | bytes | None = None,
        snapshot_interval: float = 1.0,
        verify: ssl.SSLContext | str | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: Mapping[str, builtins.list[Callable[..., Any]]] | None = None,
    ) -> None:
        self._core = core = ClientCore(
            url, api_key, ttl=ttl, max_stale=max_stale, watch=watch, max_entries=max_entries,
            max_watched=max_watched,
            policy=RetryPolicy(retries, backoff, backoff_max, retry_after_max), offline_retry=offline_retry,
            page_size=page_size,
        )
        self._hits: dict[Any, Slot] = core.hits
        self._clock = core.clock
        self._snapshot = SnapshotStore(snapshot_path, snapshot_key, core.url, api_key) \
            if snapshot_path is not None else None
        self._snapshot_interval = snapshot_interval
        self._snapshot_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        connect = timeout if connect_timeout is None else connect_timeout
        self._stream_timeout = httpx.Timeout(timeout, connect=connect, read=watch_idle_timeout)
        self._http = httpx.AsyncClient(
            base_url=core.url, timeout=httpx.Timeout(timeout, connect=connect), verify=verify, transport=transport,
            event_hooks=dict(event_hooks) if event_hooks else None, follow_redirects=False,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                     "User-Agent": f"llm-config-client/{llm_config.__version__}"},
        )
        # watch streams hold their connection for as long as they live: a pool of their own (unbounded — the
        # number of streams is bounded by `max_watched` and `on_change`), so they never starve the requests
        self._streams = httpx.AsyncClient(
            base_url=core.url, timeout=self._stream_timeout, verify=verify, transport=transport,
            event_hooks=dict(event_hooks) if event_hooks else None, follow_redirects=False, headers=self._http.headers,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
        if not core.url.startswith("https:") and not is_loopback(core.url):
            log.warning("llm-config client: %s is plain HTTP: the API key crosses the network unencrypted",
                        core.url)
        if self._snapshot is not None:
            self._snapshot.load_into(core)  # one small file read, once

    def __repr__(self) -> str:
        return f"AsyncClient({self._core.url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ reads

    async def get(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = _DEV,
        version: int | None = None,
        with_overrides: bool = False,
        reveal: bool = False,
    ) -> Entry:
        """One entry, as `ConfigManager.get`: from memory while it is fresh, else from the service."""
        try:
            slot = self._hits.get((namespace, key, env, version, with_overrides, reveal))
        except TypeError:  # an unhashable argument: the slow path refuses it as the manager does
            slot = None
        # (a version of another type — True, 1.0 — hashes like an int: the slow path refuses it as the manager)
        if slot is not None and slot.fresh_until > self._clock() and (version is None or type(version) is int):
            entry: Entry = slot.item
            return entry
        return await self._get(namespace, key, env, version, with_overrides, reveal)

    async def _get(self, namespace: str, key: str, env: str | Environment, version: int | None,
                   with_overrides: bool, reveal: bool) -> Entry:
        core = self._core
        self._check_open()
        entry, fetch, background = core.plan_get(namespace, key, env, version, with_overrides, reveal)
        self._watch(namespace)
        if fetch is None:
            assert entry is not None
            return entry
        if background:
            assert entry is not None
            self._spawn(self._revalidate(fetch))
            return entry
        try:
            response, _ = await self._send(fetch.call)
        except httpx.TransportError as exc:
            served: Entry = self._offline(fetch, exc)
            return served
        if response.status_code in UNREACHABLE_STATUSES and core.cached(fetch.key) is not None:
            served = self._offline(fetch, None)
            return served
        try:
            return core.finish_get(fetch, response.status_code, response.content, response.headers)
        finally:
            self._after_change()

    def _offline(self, fetch: Fetch, exc: BaseException | None) -> Any:
        core = self._core
        core.failed(exc or ConnectionError("a gateway could not reach the service"))
        slot = core.cached(fetch.key)
        if slot is not None:
            return slot.item
        raise core.unreachable(exc) from None

    async def list(
        self,
        namespace: str,
        *,
        env: str | Environment = _DEV,
        prefix: str = "",
        recursive: bool = False,
    ) -> builtins.list[Entry]:
        """`Client.list`."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, None, env)
        if recursive:
            return await self._list_pages(namespace, environment, prefix, True)
        ck = (LIST, namespace, environment, prefix, False)
        first = core.list_call(namespace, environment, prefix, False, None)
        cached, fetch, background = core.plan_collection(ck, first)
        self._watch(namespace)
        if fetch is None:
            return builtins.list(cached)
        if background:
            self._spawn(self._refill_list(fetch))
            return builtins.list(cached)
        try:
            entries = await self._list_pages(namespace, environment, prefix, False, fetch)
        finally:
            self._after_change()
        return builtins.list(entries)

    async def _list_pages(self, namespace: str, env: Environment, prefix: str, recursive: bool,
                          fetch: Fetch | None = None) -> builtins.list[Entry]:
        core = self._core
        entries: builtins.list[Entry] = []
        cursor: str | None = None
        while True:
            call = core.list_call(namespace, env, prefix, recursive, cursor)
            try:
                response, _ = await self._send(call)
            except httpx.TransportError as exc:
                if fetch is not None:
                    return builtins.list(self._offline(fetch, exc))
                core.failed(exc)
                raise core.unreachable(exc) from None
            if response.status_code != 200:
                if fetch is not None and response.status_code in UNREACHABLE_STATUSES and core.cached(fetch.key):
                    return builtins.list(self._offline(fetch, None))
                raise core.error(response.status_code, response.content, response.headers, namespace=namespace,
                                 env=env)
            entries.extend(entries_of(response.content))
            cursor = response.headers.get("x-next-cursor")
            if not cursor:
                break
        if fetch is not None:
            core.finish_collection(fetch, entries)
        return entries

    async def _refill_list(self, fetch: Fetch) -> None:
        _, namespace, env, prefix, _ = fetch.key
        try:
            await self._list_pages(namespace, env, prefix, False, fetch)
        except LLMConfigError:
            pass
        finally:
            self._core.background_done(fetch.key)
            self._after_change()

    async def history(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = _DEV,
        limit: int | None = None,
    ) -> builtins.list[HistoryItem]:
        """`Client.history`."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        response = await self._request(core.history_call(namespace, key, environment, limit))
        if response.status_code != 200:
            raise core.error(response.status_code, response.content, response.headers, namespace=namespace,
                             key=key, env=environment)
        return history_of(response.content)

    async def bind(self, model: type[_M], namespace: str, *, env: str | Environment = _DEV) -> _M:
        """`Client.bind`."""
        return bind_model(model, await self.resolve(namespace, env=env, reveal=True))

    async def resolve(
        self,
        namespace: str,
        *,
        env: str | Environment = _DEV,
        nested: bool = False,
        reveal: bool = False,
    ) -> dict[str, Any]:
        """`Client.resolve`."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, None, env)
        ck = (RESOLVE, namespace, environment, bool(nested), bool(reveal))
        call = core.resolve_call(namespace, environment, bool(nested), bool(reveal))
        cached, fetch, background = core.plan_collection(ck, call)
        self._watch(namespace)
        if fetch is None:
            return dict(cached)
        if background:
            self._spawn(self._refill_resolve(fetch))
            return dict(cached)
        try:
            return dict(await self._resolve(fetch))
        finally:
            self._after_change()

    async def _resolve(self, fetch: Fetch) -> dict[str, Any]:
        core = self._core
        try:
            response, _ = await self._send(fetch.call)
        except httpx.TransportError as exc:
            return dict(self._offline(fetch, exc))
        if response.status_code != 200:
            if response.status_code in UNREACHABLE_STATUSES and core.cached(fetch.key) is not None:
                return dict(self._offline(fetch, None))
            raise core.error(response.status_code, response.content, response.headers, namespace=fetch.key[1],
                             env=fetch.key[2])
        value = object_of(response.content)
        core.finish_collection(fetch, value)
        return value

    async def _refill_resolve(self, fetch: Fetch) -> None:
        try:
            await self._resolve(fetch)
        except LLMConfigError:
            pass
        finally:
            self._core.background_done(fetch.key)
            self._after_change()

    async def namespaces(self, prefix: str = "") -> builtins.list[str]:
        """`Client.namespaces`."""
        core = self._core
        self._check_open()
        response = await self._request(core.namespaces_call(prefix))
        if response.status_code != 200:
            raise core.error(response.status_code, response.content, response.headers)
        return strings_of(response.content)

    # ------------------------------------------------------------------ writes

    async def set(
        self,
        namespace: str,
        key: str,
        value: Any,
        *,
        env: str | Environment = _DEV,
        secret: bool | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        message: str | None = None,
        expected_version: int | None = None,
    ) -> Entry:
        """`Client.set`."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        call = core.set_call(namespace, key, value, environment, secret, description, tags, message,
                             expected_version)
        token = core.begin_write(namespace, key)
        response, ambiguous = await self._send_or_raise(call)
        if response.status_code != 200:
            exc = core.error(response.status_code, response.content, response.headers, namespace=namespace,
                             key=key, env=environment)
            if expected_version is None:
                raise core.not_compare_and_set(exc)
            if ambiguous and isinstance(exc, ConflictError):
                # an earlier attempt may have been applied, or someone else may have written the same: the
                # client cannot tell which, so the caller re-reads (never a guess that loses an update)
                raise ConflictError(
                    f"{exc.message} (an earlier attempt of this write got no answer and may have been applied: "
                    "read the entry to see)", namespace=namespace, key=key, environment=environment.value,
                ) from None
            raise exc
        entry = entry_of(response.content, response.headers)
        core.wrote(namespace, key, environment, entry, response.headers.get("etag"), token)
        self._watch(namespace)  # what it cached (read your writes) is kept fresh like any read
        self._after_change()
        return entry

    async def delete(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = _DEV,
        expected_version: int | None = None,
    ) -> Entry:
        """`Client.delete` (read, DELETE with If-Match, the tombstone's history item)."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        for attempt in range(DELETE_ATTEMPTS):
            before = await self._current(namespace, key, environment)
            version = before.version if expected_version is None else expected_version
            token = core.begin_write(namespace, key)
            response, _ = await self._send_or_raise(core.delete_call(namespace, key, environment, version))
            if response.status_code in (200, 204):
                break
            exc = core.error(response.status_code, response.content, response.headers, namespace=namespace,
                             key=key, env=environment)
            if not (isinstance(exc, ConflictError) and expected_version is None and attempt + 1 < DELETE_ATTEMPTS):
                raise exc
        core.wrote(namespace, key, environment, None, None, token)
        self._after_change()
        item = await self._history_item(namespace, key, environment, version + 1)
        return tombstone(before, version + 1, item, revision_of(response.headers))

    async def _current(self, namespace: str, key: str, env: Environment) -> Entry:
        core = self._core
        response = await self._request(core.get_call(namespace, key, env, None, False, False, None))
        if response.status_code != 200:
            raise core.error(response.status_code, response.content, response.headers, namespace=namespace,
                             key=key, env=env)
        return entry_of(response.content, response.headers)

    async def _history_item(self, namespace: str, key: str, env: Environment, version: int) -> HistoryItem | None:
        for limit in (1, 100):
            try:
                items = await self.history(namespace, key, env=env, limit=limit)
            except LLMConfigError:
                return None
            for item in items:
                if item.version == version:
                    return item
        return None

    async def rollback(
        self,
        namespace: str,
        key: str,
        version: int,
        *,
        env: str | Environment = _DEV,
    ) -> Entry:
        """`Client.rollback`."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        call = core.rollback_call(namespace, key, version, environment)
        token = core.begin_write(namespace, key)
        response, _ = await self._send_or_raise(call)
        if response.status_code != 200:
            raise core.not_compare_and_set(core.error(response.status_code, response.content, response.headers,
                                                      namespace=namespace, key=key, env=environment))
        entry = entry_of(response.content, response.headers)
        core.wrote(namespace, key, environment, entry, response.headers.get("etag"), token)
        self._watch(namespace)  # what it cached (read your writes) is kept fresh like any read
        self._after_change()
        return entry

    # ------------------------------------------------------------------ templates (never cached)

    async def set_template(
        self,
        namespace: str,
        name: str,
        content: str,
        *,
        env: str | Environment = _DEV,
        description: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        message: str | None = None,
    ) -> Template:
        """`Client.set_template`."""
        call = self._core.template_set_call(namespace, name, content, env, description, defaults,
                                            expected_version, message)
        response = await self._exchange(call, namespace, cas=expected_version is not None)
        return template_of(response.content)

    async def get_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                           version: int | None = None) -> Template:
        """`Client.get_template`."""
        response = await self._exchange(self._core.template_get_call(namespace, name, env, version), namespace)
        return template_of(response.content)

    async def list_templates(self, namespace: str, *, env: str | Environment = _DEV) -> builtins.list[Template]:
        """`Client.list_templates`."""
        response = await self._exchange(self._core.template_list_call(namespace, env), namespace)
        return templates_of(response.content)

    async def template_history(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                               limit: int | None = None) -> builtins.list[HistoryItem]:
        """`Client.template_history`."""
        response = await self._exchange(self._core.template_history_call(namespace, name, env, limit), namespace)
        return history_of(response.content)

    async def rollback_template(self, namespace: str, name: str, version: int, *,
                                env: str | Environment = _DEV) -> Template:
        """`Client.rollback_template`."""
        response = await self._exchange(self._core.template_rollback_call(namespace, name, version, env), namespace)
        return template_of(response.content)

    async def delete_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                              expected_version: int | None = None) -> None:
        """`Client.delete_template`."""
        call = self._core.template_delete_call(namespace, name, env, expected_version)
        await self._exchange(call, namespace, cas=expected_version is not None, ok=(200, 204))

    async def render(self, namespace: str, name: str, variables: Mapping[str, Any] | None = None, *,
                     env: str | Environment = _DEV, allow_extra: bool = False) -> str:
        """`Client.render`."""
        call = self._core.render_call(namespace, name, variables, env, allow_extra)
        return render_text_of((await self._exchange(call, namespace)).content)

    # ------------------------------------------------------------------ schemas (never cached)

    async def set_schema(
        self,
        namespace: str,
        pattern: str,
        schema: Mapping[str, Any] | None = None,
        *,
        builtin: str | None = None,
        description: str | None = None,
        expected_version: int | None = None,
    ) -> Schema:
        """`Client.set_schema`."""
        call = self._core.schema_set_call(namespace, pattern, schema, builtin, description, expected_version)
        response = await self._exchange(call, namespace, cas=expected_version is not None)
        return schema_of(response.content)

    async def get_schema(self, namespace: str, pattern: str, *, version: int | None = None) -> Schema:
        """`Client.get_schema`."""
        response = await self._exchange(self._core.schema_get_call(namespace, pattern, version), namespace)
        return schema_of(response.content)

    async def list_schemas(self, namespace: str) -> builtins.list[Schema]:
        """`Client.list_schemas`."""
        return schemas_of((await self._exchange(self._core.schema_list_call(namespace), namespace)).content)

    async def schema_history(self, namespace: str, pattern: str, *,
                             limit: int | None = None) -> builtins.list[HistoryItem]:
        """`Client.schema_history`."""
        response = await self._exchange(self._core.schema_history_call(namespace, pattern, limit), namespace)
        return history_of(response.content)

    async def rollback_schema(self, namespace: str, pattern: str, version: int) -> Schema:
        """`Client.rollback_schema`."""
        response = await self._exchange(self._core.schema_rollback_call(namespace, pattern, version), namespace)
        return schema_of(response.content)

    async def delete_schema(self, namespace: str, pattern: str, *, expected_version: int | None = None) -> None:
        """`Client.delete_schema`."""
        call = self._core.schema_delete_call(namespace, pattern, expected_version)
        await self._exchange(call, namespace, cas=expected_version is not None, ok=(200, 204))

    async def schema_builtins(self) -> builtins.list[dict[str, str]]:
        """`Client.schema_builtins`."""
        return schema_builtins_of((await self._exchange(self._core.schema_builtins_call())).content)

    # ------------------------------------------------------------------ environments

    async def diff(self, namespace: str, *, from_env: str | Environment, to_env: str | Environment) -> EnvDiff:
        """`Client.diff`."""
        response = await self._exchange(self._core.diff_call(namespace, from_env, to_env), namespace)
        return env_diff_of(response.content)

    async def promote(
        self,
        namespace: str,
        *,
        from_env: str | Environment,
        to_env: str | Environment,
        keys: Sequence[str] | None = None,
        prune: bool = False,
        dry_run: bool = False,
        plan: Promotion | None = None,
        secret: bool | None = None,
    ) -> Promotion:
        """`Client.promote`."""
        core = self._core
        call = core.promote_call(namespace, from_env, to_env, keys, prune, dry_run, plan, secret)
        response = await self._exchange(call, namespace, cas=plan is not None and not dry_run)
        promotion = promotion_of(response.content)
        core.promoted(promotion)
        self._after_change()
        return promotion

    # ------------------------------------------------------------------ any other route

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        raise_for_status: bool = True,
    ) -> httpx.Response:
        """`Client.request`, awaiting."""
        core = self._core
        self._check_open()
        verb = method.upper()
        body, sent_headers = body_of(json, content, headers)
        if body is None or isinstance(body, bytes):
            call = Call(verb, route(path), query(params), body, sent_headers, retry=verb in SAFE_METHODS)
            response = await self._request(call)
        else:
            try:
                response = await self._http.request(verb, route(path), params=query(params), content=body,
                                                    headers=sent_headers)
            except httpx.TransportError as exc:
                core.failed(exc)
                raise core.unreachable(exc) from None
            core.answered()
        if raise_for_status and response.status_code >= 400:
            raise core.error(response.status_code, response.content, response.headers)
        return response

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """`Client.stream`, async (`response.aiter_bytes()`)."""
        core = self._core
        self._check_open()
        try:
            async with self._http.stream(method.upper(), route(path), params=query(params),
                                         headers=dict(headers or {})) as response:
                core.answered()
                if response.status_code >= 400:
                    await response.aread()
                    raise core.error(response.status_code, response.content, response.headers)
                yield response
        except httpx.TransportError as exc:
            core.failed(exc)
            raise core.unreachable(exc) from None

    # ------------------------------------------------------------------ changes, status, closing

    def on_change(self, namespace: str, key_or_prefix: str, callback: AsyncChangeCallback) -> Subscription:
        """`Client.on_change`; `callback` may be a coroutine function (awaited in the stream's task). Must be
        called with the event loop running (the stream is a task of it)."""
        self._check_open()
        asyncio.get_running_loop()  # RuntimeError outside the loop, before anything is registered
        sub = self._core.subscribe(namespace, key_or_prefix, callback)
        self._watch(namespace)
        return sub

    def status(self) -> ClientStatus:
        """`Client.status`."""
        return self._core.status()

    async def aclose(self) -> None:
        """Stop the watch tasks, write the snapshot (if any) and close the connections. Idempotent."""
        core = self._core
        if core.closed:
            return
        core.closed = True
        watchers = [w.handle for w in builtins.list(core.watches.values()) if isinstance(w.handle, AsyncWatcher)]
        for watcher in watchers:
            await watcher.stop()
        for task in builtins.list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._snapshot is not None:
            await asyncio.to_thread(self._snapshot.save, core)
        await self._http.aclose()
        await self._streams.aclose()

    async def close(self) -> None:
        """`aclose()`."""
        await self.aclose()

    # ------------------------------------------------------------------ plumbing

    def _check_open(self) -> None:
        if self._core.closed:
            raise RuntimeError("this llm-config AsyncClient is closed")

    def _watch(self, namespace: str) -> None:
        core = self._core
        if namespace in core.watches or not core.watch_enabled:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        w = core.want_watch(namespace)
        if w is not None:
            watcher = AsyncWatcher(self, w)
            watcher.start()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, call: Call) -> tuple[httpx.Response, bool]:
        """`Client._send`, awaiting."""
        core = self._core
        policy = core.policy
        attempt = 0
        ambiguous = False
        while True:
            try:
                response = await self._http.request(call.method, call.path, params=call.params, content=call.body,
                                                    headers=call.headers)
            except httpx.TransportError as exc:
                delay = policy.decide(call, attempt)
                if delay is None:
                    raise
                ambiguous = ambiguous or not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            else:
                core.answered()
                if response.status_code not in (429, 502, 503, 504):
                    return response, ambiguous
                delay = policy.decide(call, attempt, status=response.status_code, retry_after=parse_retry_after(
                    response.headers.get("retry-after"), response.headers.get("date")))
                if delay is None:
                    return response, ambiguous
            attempt += 1
            await asyncio.sleep(delay)

    async def _send_or_raise(self, call: Call) -> tuple[httpx.Response, bool]:
        try:
            return await self._send(call)
        except httpx.TransportError as exc:
            self._core.failed(exc)
            raise self._core.unreachable(exc) from None

    async def _request(self, call: Call) -> httpx.Response:
        return (await self._send_or_raise(call))[0]

    async def _exchange(self, call: Call, namespace: str | None = None, *, cas: bool = False,
                        ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """`Client._exchange`, awaiting."""
        core = self._core
        self._check_open()
        response, ambiguous = await self._send_or_raise(call)
        if response.status_code not in ok:
            exc = core.error(response.status_code, response.content, response.headers, namespace=namespace)
            raise write_failure(exc, ambiguous and cas)
        return response

    async def _revalidate(self, fetch: Fetch) -> None:
        try:
            await self._refetch(fetch)
        finally:
            self._core.background_done(fetch.key)

    async def _refetch(self, fetch: Fetch) -> Entry | None:
        core = self._core
        try:
            response, _ = await self._send(fetch.call)
        except (httpx.TransportError, RuntimeError) as exc:
            core.failed(exc)
            return None
        try:
            return core.finish_get(fetch, response.status_code, response.content, response.headers)
        except LLMConfigError:
            return None
        finally:
            self._after_change()

    async def _refresh(self, ck: GetKey) -> None:
        fetch = self._core.revalidation(ck)
        if fetch is not None:
            await self._refetch(fetch)

    async def _entry_after(self, change: wire.WatchChange) -> Entry | None:
        if change.kind == "delete":
            return None
        core = self._core
        ck: GetKey = (change.namespace, change.key, change.environment, None, False, False)
        slot = core.hits.get(ck)
        if slot is not None and slot.fresh_until > self._clock():
            entry: Entry = slot.item
            return entry
        fetch = core.revalidation(ck)
        if fetch is None:
            _, fetch, _ = core.plan_get(*ck)
        return await self._refetch(fetch) if fetch is not None else None

    def _after_change(self) -> None:
        if self._snapshot is None or not self._core.dirty or self._snapshot_task is not None or self._core.closed:
            return
        try:
            self._snapshot_task = asyncio.get_running_loop().create_task(self._write_snapshot_later())
        except RuntimeError:  # no loop running (cannot happen inside our coroutines)
            return
        self._tasks.add(self._snapshot_task)
        self._snapshot_task.add_done_callback(self._tasks.discard)

    async def _write_snapshot_later(self) -> None:
        try:
            await asyncio.sleep(self._snapshot_interval)
            if self._snapshot is not None and not self._core.closed:
                await asyncio.to_thread(self._snapshot.save, self._core)
        finally:
            self._snapshot_task = None
