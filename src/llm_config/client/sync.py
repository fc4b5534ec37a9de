"""`llm_config.Client`: the remote SDK over `httpx.Client` (the async twin is `AsyncClient`).

    from llm_config import Client
    with Client("https://config.internal", api_key=os.environ["LLM_CONFIG_API_KEY"]) as cfg:
        model = cfg.get("acme/chatbot", "openai.model", env="production").value   # then served from memory
        cfg.on_change("acme/chatbot", "openai.*", lambda change, entry: print(change.key, change.version))

The same read and write methods as `ConfigManager` (`llm_config.types.ConfigAPI`), the same exceptions.
Reads are cached and kept fresh by one watch stream per namespace read (see `client/_base.py` and
`client/watch.py`); callbacks run on that namespace's watch thread.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import orjson

import llm_config
from llm_config import wire
from llm_config.client._base import (
    DELETE_ATTEMPTS,
    LIST,
    RESOLVE,
    UNREACHABLE_STATUSES,
    Call,
    ChangeCallback,
    ClientCore,
    ClientStatus,
    Fetch,
    GetKey,
    RetryPolicy,
    Slot,
    Subscription,
    entries_of,
    entry_of,
    env_diff_of,
    history_of,
    is_loopback,
    object_of,
    parse_retry_after,
    promotion_of,
    render_text_of,
    revision_of,
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
from llm_config.client.watch import SyncWatcher
from llm_config.documents import EnvDiff, Promotion, Schema, Template
from llm_config.errors import ConflictError, LLMConfigError
from llm_config.models import Entry, Environment, HistoryItem
from llm_config.nesting import bind_model

__all__ = ["Client"]

_M = TypeVar("_M")

log = logging.getLogger("llm_config.client")

_DEV = Environment.DEVELOPMENT


class Client:
    """A remote llm-config service, with the manager's read and write methods and a local cache.

    `url`: the service's base URL; `api_key`: sent as `Authorization: Bearer …` (never logged or shown).
    `timeout` / `connect_timeout`: seconds per request (read and connect). `retries`: further attempts of
    a request that is safe to repeat (reads, and writes with `expected_version`) after a connection
    failure, 429 or 502-504, with exponential backoff and jitter, honouring `Retry-After` up to
    `retry_after_max` seconds. `ttl`: how long a cached answer counts as fresh when its namespace is not
    watched (or its stream is down); `max_stale`: how much longer it may be served while it is revalidated
    behind the caller. `watch=False`: no streams (and no `on_change`), only `ttl` and ETag revalidation;
    `max_watched`: at most this many namespaces get a stream for being read (each holds a connection and a
    thread or task); others are kept by `ttl` (a namespace with an `on_change` always gets one).
    `snapshot_path` / `snapshot_key` (or `LLM_CONFIG_SNAPSHOT_KEY`): keep an encrypted copy of the cache
    on disk, served when the service cannot be reached at start. `transport`, `event_hooks`, `verify`:
    passed to `httpx.Client`.
    """

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
        transport: httpx.BaseTransport | None = None,
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
        self._snapshot_timer: threading.Timer | None = None
        self._stopping = threading.Event()
        self._background: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        connect = timeout if connect_timeout is None else connect_timeout
        self._stream_timeout = httpx.Timeout(timeout, connect=connect, read=watch_idle_timeout)
        self._http = httpx.Client(
            base_url=core.url, timeout=httpx.Timeout(timeout, connect=connect), verify=verify, transport=transport,
            event_hooks=dict(event_hooks) if event_hooks else None, follow_redirects=False,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                     "User-Agent": f"llm-config-client/{llm_config.__version__}"},
        )
        # watch streams hold their connection for as long as they live: a pool of their own (unbounded — the
        # number of streams is bounded by `max_watched` and `on_change`), so they never starve the requests
        self._streams = httpx.Client(
            base_url=core.url, timeout=self._stream_timeout, verify=verify, transport=transport,
            event_hooks=dict(event_hooks) if event_hooks else None, follow_redirects=False, headers=self._http.headers,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
        if not core.url.startswith("https:") and not is_loopback(core.url):
            log.warning("llm-config client: %s is plain HTTP: the API key crosses the network unencrypted",
                        core.url)
        if self._snapshot is not None:
            self._snapshot.load_into(core)

    def __repr__(self) -> str:
        return f"Client({self._core.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def get(
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
        return self._get(namespace, key, env, version, with_overrides, reveal)

    def _get(self, namespace: str, key: str, env: str | Environment, version: int | None, with_overrides: bool,
             reveal: bool) -> Entry:
        core = self._core
        self._check_open()
        entry, fetch, background = core.plan_get(namespace, key, env, version, with_overrides, reveal)
        self._watch(namespace)
        if fetch is None:
            assert entry is not None
            return entry
        if background:
            assert entry is not None
            self._in_background(self._revalidate, fetch)
            return entry
        try:
            response, _ = self._send(fetch.call)
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

    def list(
        self,
        namespace: str,
        *,
        env: str | Environment = _DEV,
        prefix: str = "",
        recursive: bool = False,
    ) -> builtins.list[Entry]:
        """Live entries of a namespace ordered by key (secrets unrevealed); every page of the listing."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, None, env)
        if recursive:  # spans sub-namespaces, which this namespace's stream does not cover: never cached
            return self._list_pages(namespace, environment, prefix, True)
        ck = (LIST, namespace, environment, prefix, False)
        first = core.list_call(namespace, environment, prefix, False, None)
        cached, fetch, background = core.plan_collection(ck, first)
        self._watch(namespace)
        if fetch is None:
            return builtins.list(cached)
        if background:
            self._in_background(self._refill_list, fetch)
            return builtins.list(cached)
        try:
            entries = self._list_pages(namespace, environment, prefix, False, fetch)
        finally:
            self._after_change()
        return builtins.list(entries)

    def _list_pages(self, namespace: str, env: Environment, prefix: str, recursive: bool,
                    fetch: Fetch | None = None) -> builtins.list[Entry]:
        core = self._core
        entries: builtins.list[Entry] = []
        cursor: str | None = None
        while True:
            call = core.list_call(namespace, env, prefix, recursive, cursor)
            try:
                response, _ = self._send(call)
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

    def _refill_list(self, fetch: Fetch) -> None:
        _, namespace, env, prefix, _ = fetch.key
        try:
            self._list_pages(namespace, env, prefix, False, fetch)
        except LLMConfigError:
            pass
        finally:
            self._core.background_done(fetch.key)
            self._after_change()

    def history(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = _DEV,
        limit: int | None = None,
    ) -> builtins.list[HistoryItem]:
        """Every version newest first (never cached)."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        response = self._request(core.history_call(namespace, key, environment, limit))
        if response.status_code != 200:
            raise core.error(response.status_code, response.content, response.headers, namespace=namespace,
                             key=key, env=environment)
        return history_of(response.content)

    def bind(self, model: type[_M], namespace: str, *, env: str | Environment = _DEV) -> _M:
        """`ConfigManager.bind`: the resolved namespace (secrets revealed) as a validated pydantic model."""
        return bind_model(model, self.resolve(namespace, env=env, reveal=True))

    def resolve(
        self,
        namespace: str,
        *,
        env: str | Environment = _DEV,
        nested: bool = False,
        reveal: bool = False,
    ) -> dict[str, Any]:
        """`{KEY: VALUE}` of the environment over base (cached like `get`)."""
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
            self._in_background(self._refill_resolve, fetch)
            return dict(cached)
        try:
            return dict(self._resolve(fetch))
        finally:
            self._after_change()

    def _resolve(self, fetch: Fetch) -> dict[str, Any]:
        core = self._core
        try:
            response, _ = self._send(fetch.call)
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

    def _refill_resolve(self, fetch: Fetch) -> None:
        try:
            self._resolve(fetch)
        except LLMConfigError:
            pass
        finally:
            self._core.background_done(fetch.key)
            self._after_change()

    def namespaces(self, prefix: str = "") -> builtins.list[str]:
        """Namespaces holding at least one live entry that this key may list (never cached)."""
        core = self._core
        self._check_open()
        response = self._request(core.namespaces_call(prefix))
        if response.status_code != 200:
            raise core.error(response.status_code, response.content, response.headers)
        return strings_of(response.content)

    # ------------------------------------------------------------------ writes

    def set(
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
        """Write a new version (`PUT`). Retried only with `expected_version` (a compare-and-set cannot apply
        twice); if a retry meets a conflict because the first attempt did apply, that write is returned."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        call = core.set_call(namespace, key, value, environment, secret, description, tags, message,
                             expected_version)
        token = core.begin_write(namespace, key)
        response, ambiguous = self._send_or_raise(call)
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

    def delete(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = _DEV,
        expected_version: int | None = None,
    ) -> Entry:
        """Write a tombstone and return it, as the manager does.

        The REST DELETE answers 204 without a body, so the client reads the entry first and deletes with
        `If-Match: <its version>` (a compare-and-set, so it is safe to retry; without `expected_version` a
        concurrent write makes it read and try again), then takes who and when from the tombstone's history
        item: three requests. `revision` is the answer's `X-Config-Revision` if the service sends one, else 0.
        """
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        for attempt in range(DELETE_ATTEMPTS):
            before = self._current(namespace, key, environment)
            version = before.version if expected_version is None else expected_version
            token = core.begin_write(namespace, key)
            response, _ = self._send_or_raise(core.delete_call(namespace, key, environment, version))
            if response.status_code in (200, 204):
                break
            exc = core.error(response.status_code, response.content, response.headers, namespace=namespace,
                             key=key, env=environment)
            if not (isinstance(exc, ConflictError) and expected_version is None and attempt + 1 < DELETE_ATTEMPTS):
                raise exc
        core.wrote(namespace, key, environment, None, None, token)
        self._after_change()
        item = self._history_item(namespace, key, environment, version + 1)
        return tombstone(before, version + 1, item, revision_of(response.headers))

    def _current(self, namespace: str, key: str, env: Environment) -> Entry:
        core = self._core
        response = self._request(core.get_call(namespace, key, env, None, False, False, None))
        if response.status_code != 200:
            raise core.error(response.status_code, response.content, response.headers, namespace=namespace,
                             key=key, env=env)
        return entry_of(response.content, response.headers)

    def _history_item(self, namespace: str, key: str, env: Environment, version: int) -> HistoryItem | None:
        for limit in (1, 100):
            try:
                items = self.history(namespace, key, env=env, limit=limit)
            except LLMConfigError:
                return None
            for item in items:
                if item.version == version:
                    return item
        return None

    def rollback(
        self,
        namespace: str,
        key: str,
        version: int,
        *,
        env: str | Environment = _DEV,
    ) -> Entry:
        """Write a new version holding version `version`'s value (never retried: it is not a compare-and-set)."""
        core = self._core
        self._check_open()
        environment = core.names(namespace, key, env)
        call = core.rollback_call(namespace, key, version, environment)
        token = core.begin_write(namespace, key)
        response, _ = self._send_or_raise(call)
        if response.status_code != 200:
            raise core.not_compare_and_set(core.error(response.status_code, response.content, response.headers,
                                                      namespace=namespace, key=key, env=environment))
        entry = entry_of(response.content, response.headers)
        core.wrote(namespace, key, environment, entry, response.headers.get("etag"), token)
        self._watch(namespace)  # what it cached (read your writes) is kept fresh like any read
        self._after_change()
        return entry

    # ------------------------------------------------------------------ templates (never cached)

    def set_template(
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
        """Store a new version of a prompt template (`PUT /api/v1/templates/{ns…}/-/{name}`); a syntax error
        stores nothing. Retried only with `expected_version` (a compare-and-set; 0: must not exist)."""
        call = self._core.template_set_call(namespace, name, content, env, description, defaults,
                                            expected_version, message)
        return template_of(self._exchange(call, namespace, cas=expected_version is not None).content)

    def get_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                     version: int | None = None) -> Template:
        """The live (or one past) version of a template of this environment."""
        call = self._core.template_get_call(namespace, name, env, version)
        return template_of(self._exchange(call, namespace).content)

    def list_templates(self, namespace: str, *, env: str | Environment = _DEV) -> builtins.list[Template]:
        """The environment's own live templates, by name."""
        return templates_of(self._exchange(self._core.template_list_call(namespace, env), namespace).content)

    def template_history(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                         limit: int | None = None) -> builtins.list[HistoryItem]:
        """Every version newest first; `value` is `{"content", "defaults"}`."""
        call = self._core.template_history_call(namespace, name, env, limit)
        return history_of(self._exchange(call, namespace).content)

    def rollback_template(self, namespace: str, name: str, version: int, *,
                          env: str | Environment = _DEV) -> Template:
        """A new version holding version N's text and defaults (sent once: not a compare-and-set)."""
        call = self._core.template_rollback_call(namespace, name, version, env)
        return template_of(self._exchange(call, namespace).content)

    def delete_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                        expected_version: int | None = None) -> None:
        """Delete a template (history is kept; rollback undeletes). Retried only with `expected_version`."""
        call = self._core.template_delete_call(namespace, name, env, expected_version)
        self._exchange(call, namespace, cas=expected_version is not None, ok=(200, 204))

    def render(self, namespace: str, name: str, variables: Mapping[str, Any] | None = None, *,
               env: str | Environment = _DEV, allow_extra: bool = False) -> str:
        """The template rendered by the service, strictly, with this key's permissions (`{{ secret:K }}` needs
        secret read; such a render is audited). A POST that changes nothing: retried like a read."""
        call = self._core.render_call(namespace, name, variables, env, allow_extra)
        return render_text_of(self._exchange(call, namespace).content)

    # ------------------------------------------------------------------ schemas (never cached)

    def set_schema(
        self,
        namespace: str,
        pattern: str,
        schema: Mapping[str, Any] | None = None,
        *,
        builtin: str | None = None,
        description: str | None = None,
        expected_version: int | None = None,
    ) -> Schema:
        """Attach a JSON Schema (or a built-in, by name) to a key or key pattern (admins only). Retried only
        with `expected_version`."""
        call = self._core.schema_set_call(namespace, pattern, schema, builtin, description, expected_version)
        return schema_of(self._exchange(call, namespace, cas=expected_version is not None).content)

    def get_schema(self, namespace: str, pattern: str, *, version: int | None = None) -> Schema:
        """The live (or one past) version of a schema."""
        return schema_of(self._exchange(self._core.schema_get_call(namespace, pattern, version), namespace).content)

    def list_schemas(self, namespace: str) -> builtins.list[Schema]:
        """The namespace's live schemas, by pattern."""
        return schemas_of(self._exchange(self._core.schema_list_call(namespace), namespace).content)

    def schema_history(self, namespace: str, pattern: str, *, limit: int | None = None) -> builtins.list[HistoryItem]:
        """Every version of a schema newest first."""
        call = self._core.schema_history_call(namespace, pattern, limit)
        return history_of(self._exchange(call, namespace).content)

    def rollback_schema(self, namespace: str, pattern: str, version: int) -> Schema:
        """A new version holding version N's schema (sent once)."""
        call = self._core.schema_rollback_call(namespace, pattern, version)
        return schema_of(self._exchange(call, namespace).content)

    def delete_schema(self, namespace: str, pattern: str, *, expected_version: int | None = None) -> None:
        """Detach a schema. Retried only with `expected_version`."""
        call = self._core.schema_delete_call(namespace, pattern, expected_version)
        self._exchange(call, namespace, cas=expected_version is not None, ok=(200, 204))

    def schema_builtins(self) -> builtins.list[dict[str, str]]:
        """The service's built-in schemas: `[{"name", "description"}]`."""
        return schema_builtins_of(self._exchange(self._core.schema_builtins_call()).content)

    # ------------------------------------------------------------------ environments

    def diff(self, namespace: str, *, from_env: str | Environment, to_env: str | Environment) -> EnvDiff:
        """Each environment's own entries compared by the service; secrets compared there, never shown."""
        return env_diff_of(self._exchange(self._core.diff_call(namespace, from_env, to_env), namespace).content)

    def promote(
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
        """Copy the source environment's own entries (or `keys`) to the target in one transaction of
        compare-and-set writes; `dry_run` returns the plan only, and passing it back as `plan` applies it only
        if nothing moved since (else ConflictError). Retried with a `plan` or as a dry run; a blind promotion
        is sent once. What it wrote is dropped from the cache."""
        core = self._core
        call = core.promote_call(namespace, from_env, to_env, keys, prune, dry_run, plan, secret)
        promotion = promotion_of(self._exchange(call, namespace, cas=plan is not None and not dry_run).content)
        core.promoted(promotion)
        self._after_change()
        return promotion

    # ------------------------------------------------------------------ changes, status, closing

    def on_change(self, namespace: str, key_or_prefix: str, callback: ChangeCallback) -> Subscription:
        """Call `callback(change, entry)` after every change of a matching key of `namespace` (not its
        sub-namespaces): `key_or_prefix` is an exact key, a prefix ending in `*` (`"openai.*"`) or `"*"`.

        `change` is the `llm_config.wire.WatchChange` (revision, namespace, key, environment, version, kind);
        `entry` the key's entry in that environment as it is after the change (secrets unrevealed; cached,
        so reading it through the client costs nothing), or None after a delete or if the key may not read
        it. Callbacks run on the namespace's watch thread, one at a time and in revision order; an exception
        is logged (its type only) and swallowed. Returns a `Subscription`: call it to unsubscribe."""
        self._check_open()
        sub = self._core.subscribe(namespace, key_or_prefix, callback)
        self._watch(namespace)
        return sub

    def status(self) -> ClientStatus:
        """Connection, watch streams and cache, as this client sees them."""
        return self._core.status()

    def close(self) -> None:
        """Stop the watch streams, write the snapshot (if any) and close the connections. Idempotent."""
        core = self._core
        with self._lock:
            if core.closed:
                return
            core.closed = True
            self._stopping.set()
            timer, self._snapshot_timer = self._snapshot_timer, None
        if timer is not None:
            timer.cancel()
        watchers = [w.handle for w in builtins.list(core.watches.values()) if isinstance(w.handle, SyncWatcher)]
        for watcher in watchers:
            watcher.stop()
        for watcher in watchers:
            if watcher.thread.is_alive() and watcher.thread is not threading.current_thread():
                watcher.thread.join(timeout=5)
        if self._background is not None:
            self._background.shutdown(wait=False, cancel_futures=True)
        if self._snapshot is not None:
            self._snapshot.save(core)
        self._http.close()
        self._streams.close()

    # ------------------------------------------------------------------ plumbing

    def _check_open(self) -> None:
        if self._core.closed:
            raise RuntimeError("this llm-config Client is closed")

    def _watch(self, namespace: str) -> None:
        core = self._core
        if namespace in core.watches or not core.watch_enabled:
            return
        w = core.want_watch(namespace)
        if w is not None:
            SyncWatcher(self, w).start()

    def _send(self, call: Call) -> tuple[httpx.Response, bool]:
        """Send with retries; (response, whether an earlier attempt may have reached the service).
        Raises httpx.TransportError when every attempt failed to connect or to get an answer."""
        core = self._core
        policy = core.policy
        attempt = 0
        ambiguous = False
        while True:
            try:
                response = self._http.request(call.method, call.path, params=call.params, content=call.body,
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
            if self._stopping.wait(delay):
                raise httpx.ConnectError("the client was closed while waiting to retry")

    def _send_or_raise(self, call: Call) -> tuple[httpx.Response, bool]:
        try:
            return self._send(call)
        except httpx.TransportError as exc:
            self._core.failed(exc)
            raise self._core.unreachable(exc) from None

    def _request(self, call: Call) -> httpx.Response:
        return self._send_or_raise(call)[0]

    def _exchange(self, call: Call, namespace: str | None = None, *, cas: bool = False,
                  ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """Send a call of a route that is never cached; an answer other than `ok` raises its error (`cas`: a
        compare-and-set write, whose conflict after a lost answer may be its own doing)."""
        core = self._core
        self._check_open()
        response, ambiguous = self._send_or_raise(call)
        if response.status_code not in ok:
            exc = core.error(response.status_code, response.content, response.headers, namespace=namespace)
            raise write_failure(exc, ambiguous and cas)
        return response

    def _revalidate(self, fetch: Fetch) -> None:
        """Run a get `Fetch` behind the caller (stale-while-revalidate); errors only leave the slot stale."""
        try:
            self._refetch(fetch)
        finally:
            self._core.background_done(fetch.key)

    def _refetch(self, fetch: Fetch) -> Entry | None:
        core = self._core
        try:
            response, _ = self._send(fetch.call)
        except (httpx.TransportError, RuntimeError) as exc:
            core.failed(exc)
            return None
        try:
            return core.finish_get(fetch, response.status_code, response.content, response.headers)
        except LLMConfigError:
            return None
        finally:
            self._after_change()

    def _refresh(self, ck: GetKey) -> None:
        """Revalidate one cached entry now (the watch thread, before callbacks)."""
        fetch = self._core.revalidation(ck)
        if fetch is not None:
            self._refetch(fetch)

    def _entry_after(self, change: wire.WatchChange) -> Entry | None:
        """The entry a callback gets: from the cache (just refetched) or read now; None after a delete."""
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
        return self._refetch(fetch) if fetch is not None else None

    def _in_background(self, fn: Callable[[Fetch], None], fetch: Fetch) -> None:
        with self._lock:
            if self._core.closed:
                self._core.background_done(fetch.key)
                return
            if self._background is None:
                self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llm-config-refresh")
            try:
                self._background.submit(fn, fetch)
            except RuntimeError:  # shut down meanwhile
                self._core.background_done(fetch.key)

    def _after_change(self) -> None:
        """Schedule a (debounced) snapshot write if the cache changed."""
        if self._snapshot is None or not self._core.dirty or self._snapshot_timer is not None:
            return
        with self._lock:
            if self._snapshot_timer is not None or self._core.closed:
                return
            timer = threading.Timer(self._snapshot_interval, self._write_snapshot)
            timer.daemon = True
            timer.name = "llm-config-snapshot"
            self._snapshot_timer = timer
        timer.start()

    def _write_snapshot(self) -> None:
        with self._lock:
            self._snapshot_timer = None
            if self._core.closed:
                return
        if self._snapshot is not None:
            with contextlib.suppress(Exception):
                self._snapshot.save(self._core)

    # ------------------------------------------------------------------ routes without a method

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        raise_for_status: bool = True,
    ) -> httpx.Response:
        """The escape hatch: one request to a route this client has no method for (API keys, the audit
        trail, export and import, admin routes, `/health`), its answer read whole.

        `path` is a path of the service (`/api/v1/keys`), never a full URL: the API key goes to no other
        host. The request goes through this client's own connection pool, with its API key, timeouts and
        User-Agent. GET and HEAD are retried as reads are (connection failures, 429, 502-504, honouring
        `Retry-After`); other methods are sent once. `params`: query parameters (None values left out, booleans
        as `true`/`false`); `json`: a body sent as JSON; `content`: a body as it is — bytes, or an iterable of
        bytes streamed without being held in memory (give its `Content-Length` in `headers` if you know it).

        An error answer raises the library's exception, as every other method does (400 ValidationError,
        401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409 ConflictError, 429
        RateLimitedError, 503 StorageUnavailableError, …); with `raise_for_status=False` it is returned like
        any answer (`/health` answers 503 with its report). A service that cannot be reached raises
        StorageUnavailableError (naming the URL, never the key).
        """
        core = self._core
        self._check_open()
        verb, query, pairs = self._prepare(method, path, params, headers)
        if json is not None and content is not None:
            raise ValueError("request: give json or content, not both")
        body: bytes | None = None
        if json is not None:
            try:
                body = orjson.dumps(json)
            except TypeError as exc:
                raise ValueError(f"request: json is not JSON-serialisable ({exc})") from None
            if not any(name.lower() == "content-type" for name, _ in pairs):
                pairs += (("Content-Type", "application/json"),)
        elif isinstance(content, bytes | bytearray | memoryview):
            body = bytes(content)
        if content is None or body is not None:
            response = self._request(Call(verb, path, query, body, pairs, retry=verb in ("GET", "HEAD")))
        else:  # a streamed body cannot be sent twice
            try:
                response = self._http.request(verb, path, params=query, content=content, headers=pairs)
            except httpx.TransportError as exc:
                core.failed(exc)
                raise core.unreachable(exc) from None
            core.answered()
        if raise_for_status and response.status_code >= 400:
            raise core.error(response.status_code, response.content, response.headers)
        return response

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """`request` for a large answer (a backup): the response with its body unread — iterate
        `response.iter_bytes()` inside the block; it is closed when the block ends. Sent once (never retried);
        an error answer raises as `request` does, and so does a connection lost on the way."""
        core = self._core
        self._check_open()
        verb, query, pairs = self._prepare(method, path, params, headers)
        try:
            with self._http.stream(verb, path, params=query, headers=pairs) as response:
                core.answered()
                if response.status_code >= 400:
                    response.read()
                    raise core.error(response.status_code, response.content, response.headers)
                yield response
        except httpx.TransportError as exc:
            core.failed(exc)
            raise core.unreachable(exc) from None

    @staticmethod
    def _prepare(method: str, path: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None,
                 ) -> tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
            raise ValueError("path: a path of the service, e.g. /api/v1/keys (never a full URL)")
        query = tuple((name, ("true" if value else "false") if isinstance(value, bool) else str(value))
                      for name, value in (params or {}).items() if value is not None)
        return method.upper(), query, tuple((headers or {}).items())
