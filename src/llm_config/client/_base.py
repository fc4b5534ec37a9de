"""What `Client` and `AsyncClient` share, with no I/O: requests, responses, errors, retries, the cache.

The two clients are thin: they send the `Call`s built here (`httpx.Client` / `httpx.AsyncClient`), sleep
the delays decided here, and hand responses back. Everything that decides anything lives in this module,
so the sync and async clients cannot drift apart.

The cache (`ClientCore`):
- `hits` maps `(namespace, key, environment, version, with_overrides, reveal)` to a `Slot`; the clients'
  `get` looks it up and compares `Slot.fresh_until` with the monotonic clock — nothing else — and only on a
  miss comes here (`plan_get`). Mutations take `lock`; the hit path takes none (a dict read and an
  attribute read are atomic in CPython, and slots are replaced, never half-written).
- Freshness: a slot of a namespace whose watch stream is live is fresh until the stream says otherwise
  (`fresh_until = inf`); otherwise for `ttl` seconds after it was fetched, then servable for `max_stale`
  more while it is revalidated in the background (stale-while-revalidate). Revalidation sends the slot's
  ETag (`If-None-Match` → 304). When the service cannot be reached, any slot is served, whatever its age.
- Races: each (namespace, key) and each namespace have generation counters, bumped by every change event,
  resync and local write; a fetch installs its result only if the counters it read before sending are
  unchanged, so an answer that raced a change never overwrites the newer state.
- `version=` reads are immutable and stay fresh for good (a purge of that key drops them).

Times are the monotonic clock's, never a server's timestamp compared with the local clock.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import orjson

from llm_config import wire
from llm_config.documents import EnvDiff, Promotion, Schema, Template
from llm_config.errors import (
    AuthenticationError,
    ConflictError,
    LLMConfigError,
    PermissionDeniedError,
    SecretOverwriteError,
    StorageUnavailableError,
    ValidationError,
)
from llm_config.models import Entry, Environment, HistoryItem, build_entry
from llm_config.names import (
    parse_environment,
    validate_key,
    validate_name,
    validate_namespace,
    validate_schema_pattern,
)
from llm_config.values import check_version, validate_value

__all__ = [
    "API",
    "RETRY_STATUSES",
    "Call",
    "ChangeCallback",
    "ClientCore",
    "ClientStatus",
    "Fetch",
    "RetryPolicy",
    "Slot",
    "Subscription",
    "body_of",
    "WatchState",
    "config_path",
    "diff_path",
    "env_diff_of",
    "history_path",
    "list_path",
    "namespace_path",
    "parse_retry_after",
    "promote_path",
    "promotion_of",
    "query",
    "render_text_of",
    "resolve_path",
    "route",
    "revision_of",
    "rollback_path",
    "schema_builtins_of",
    "schema_list_path",
    "schema_of",
    "schema_path",
    "schemas_of",
    "template_list_path",
    "template_of",
    "template_path",
    "templates_of",
    "watch_path",
    "write_failure",
]

log = logging.getLogger("llm_config.client")

API: Final = "/api/v1"
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
"""Answers that say "not now": retried (for requests safe to repeat), honouring `Retry-After`."""
UNREACHABLE_STATUSES: Final = frozenset({502, 504})
"""A gateway in front of the service could not reach it: served from the cache like a connection error."""
INF: Final = math.inf
DELETE_ATTEMPTS: Final = 5
"""A delete without `expected_version` reads the current version and deletes with If-Match; if another
writer moved it in between, it tries again (this many times in all)."""

GetKey = tuple[str, str, Environment, int | None, bool, bool]
CollKey = tuple[int, str, Environment, Any, bool]  # (LIST, ns, env, prefix, False) | (RESOLVE, ns, env, nested, reveal)
LIST: Final = 1
RESOLVE: Final = 2
"""First element of a collection key: an int, which no get key (a namespace first) can start with."""


def is_collection(ck: tuple[Any, ...]) -> bool:
    return type(ck[0]) is int


def namespace_of(ck: tuple[Any, ...]) -> str:
    ns: str = ck[1] if type(ck[0]) is int else ck[0]
    return ns
Source = Literal["live", "cache", "snapshot"]
ChangeCallback = Callable[[wire.WatchChange, Entry | None], Any]
"""`callback(change, entry)`: the change event, and the entry as it is now (its environment's own value,
secrets unrevealed) or None when the key is deleted or cannot be read."""


# ---------------------------------------------------------------------------------------------- paths

def _segment(text: str) -> str:
    return quote(text, safe="")


def namespace_path(namespace: str) -> str:
    """`acme/chatbot` → `acme/chatbot`, each segment percent-quoted (the grammar needs none; belt and braces)."""
    return "/".join(_segment(s) for s in namespace.split("/"))


def config_path(namespace: str, key: str) -> str:
    """`/api/v1/configs/{ns…}/-/{key}` — the `-` form works for one segment and for many."""
    return f"{API}/configs/{namespace_path(namespace)}/-/{_segment(key)}"


def history_path(namespace: str, key: str) -> str:
    return config_path(namespace, key) + "/history"


def rollback_path(namespace: str, key: str, version: int) -> str:
    return f"{config_path(namespace, key)}/rollback/{int(version)}"


def list_path(namespace: str) -> str:
    return f"{API}/configs/{namespace_path(namespace)}/-/"


def resolve_path(namespace: str) -> str:
    return f"{API}/namespaces/{namespace_path(namespace)}/-/resolve"


def watch_path(namespace: str) -> str:
    return f"{API}/watch/{namespace_path(namespace)}"


def template_list_path(namespace: str) -> str:
    """`/api/v1/templates/{ns…}/-/`: the environment's templates."""
    return f"{API}/templates/{namespace_path(namespace)}/-/"


def template_path(namespace: str, name: str) -> str:
    """`/api/v1/templates/{ns…}/-/{name}` (then `/render`, `/history`, `/rollback/{version}`)."""
    return f"{API}/templates/{namespace_path(namespace)}/-/{_segment(name)}"


SCHEMA_BUILTINS_PATH: Final = f"{API}/schemas/builtins"


def schema_list_path(namespace: str) -> str:
    """`/api/v1/schemas/{ns…}/-/`: the namespace's schemas."""
    return f"{API}/schemas/{namespace_path(namespace)}/-/"


def schema_path(namespace: str, pattern: str) -> str:
    """`/api/v1/schemas/{ns…}/-/{pattern}`: the pattern is one segment, its `*` and `?` percent-encoded (`?`
    would start the query; `*` is encoded too, as every character outside the unreserved set)."""
    return f"{API}/schemas/{namespace_path(namespace)}/-/{_segment(pattern)}"


def diff_path(namespace: str) -> str:
    return f"{API}/namespaces/{namespace_path(namespace)}/-/diff"


def promote_path(namespace: str) -> str:
    return f"{API}/namespaces/{namespace_path(namespace)}/-/promote"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def query(params: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """Query parameters for `Client.request`: None dropped (the route's default), booleans `true`/`false`."""
    if not params:
        return ()
    return tuple((name, _flag(value) if isinstance(value, bool) else str(value))
                 for name, value in params.items() if value is not None)


def route(path: str) -> str:
    """A path of the service for `Client.request` (`/api/v1/…`, `/health`): never a URL, so the API key is
    never sent anywhere but the service."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or "://" in path \
            or any(c in path for c in "\r\n?#"):
        raise ValueError("path: a path of the service starting with '/', without query or fragment "
                         "(give parameters as params=)")
    return path


SAFE_METHODS: Final = frozenset({"GET", "HEAD"})


def body_of(json: Any, content: Any, headers: Mapping[str, str] | None
            ) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """`Client.request`'s body (JSON encoded with orjson, or the content as given) and headers."""
    sent = dict(headers or {})
    if json is not None:
        if content is not None:
            raise ValueError("request: give json= or content=, not both")
        try:
            content = orjson.dumps(json)
        except TypeError:
            raise ValidationError("Invalid body: not serializable as JSON") from None
        if not any(name.lower() == "content-type" for name in sent):
            sent["Content-Type"] = "application/json"
    return content, tuple(sent.items())


_JSON_BODY: Final = (("Content-Type", "application/json"),)


def _encode(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:
        raise ValidationError("Invalid body: not serializable as JSON (strings, numbers, booleans, null, "
                              "lists and objects with string keys)") from None


def _template_env(namespace: str, name: str, env: str | Environment) -> Environment:
    validate_namespace(namespace)
    validate_name(name, "template name")
    return parse_environment(env)


def _schema_names(namespace: str, pattern: str) -> None:
    validate_namespace(namespace)
    validate_schema_pattern(pattern)


# ---------------------------------------------------------------------------------------------- requests

@dataclass(frozen=True, slots=True)
class Call:
    """One request to send. `retry`: safe to send again (a read, or a write that carries its expected
    version — a compare-and-set cannot apply twice)."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    retry: bool = True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter; `Retry-After` honoured up to `retry_after_max` (longer: give up)."""

    retries: int = 3
    backoff: float = 0.1
    backoff_max: float = 2.0
    retry_after_max: float = 10.0

    def backoff_delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Attempt 0, 1, 2… → about backoff·2^attempt (capped), half of it random ("equal jitter")."""
        ceiling = min(self.backoff_max, self.backoff * 2.0 ** min(attempt, 30))
        return ceiling / 2 + rand() * ceiling / 2

    def delay(self, attempt: int, retry_after: float | None = None,
              rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before sending again after failed attempt `attempt` (0-based), or None: give up."""
        if attempt >= self.retries:
            return None
        if retry_after is not None:
            if retry_after > self.retry_after_max:
                return None  # the service asks for longer than we would wait: let the caller decide
            return retry_after + rand() * min(0.1, retry_after / 10 + 0.01)
        return self.backoff_delay(attempt, rand)

    def decide(self, call: Call, attempt: int, *, status: int | None = None,
               retry_after: float | None = None, rand: Callable[[], float] = random.random) -> float | None:
        """After a connection failure (`status` None) or an answer with `status`: wait this long and send
        again, or None. Never a request that is not safe to repeat (a blind write)."""
        if not call.retry:
            return None
        if status is not None and status not in RETRY_STATUSES:
            return None
        return self.delay(attempt, retry_after, rand)


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds, or an HTTP date taken relative to the response's own `Date`
    (both the server's clock, so clock skew never matters); None if absent or unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        if date is None:
            return None
        try:
            then, now = email.utils.parsedate_to_datetime(text), email.utils.parsedate_to_datetime(date)
            seconds = (then - now).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


_STATUS_BY_PHRASE: Final = {s.phrase: s.value for s in HTTPStatus}


def error_from(status: int, content: bytes, headers: Mapping[str, str]) -> LLMConfigError:
    """The library's exception for an error answer (the same classes the embedded manager raises)."""
    try:
        data = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        data = None
    body = wire.ErrorBody.from_json(data, status)
    return wire.error_for(status, body, parse_retry_after(headers.get("retry-after"), headers.get("date")))


def stream_error(data: Any) -> LLMConfigError:
    """The exception an `event: error` of a watch stream stands for (its `error` is the reason phrase)."""
    body = wire.ErrorBody.from_json(data, 0)
    status = _STATUS_BY_PHRASE.get(body.error, 401 if body.error == "HTTP 0" else 500)
    return wire.error_for(status, body)


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ValidationError("Invalid response from the service: not JSON") from None


def revision_of(headers: Mapping[str, str]) -> int:
    """`X-Config-Revision` (0 when absent)."""
    text = headers.get("x-config-revision")
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) <= 19 else 0


def entry_of(content: bytes, headers: Mapping[str, str]) -> Entry:
    """A ConfigResponse body → `Entry`, with `revision` from `X-Config-Revision`."""
    return wire.entry_from_json(_json(content), revision_of(headers))


def entries_of(content: bytes) -> list[Entry]:
    data = _json(content)
    if not isinstance(data, list):
        raise ValidationError("Invalid response from the service: expected a JSON array")
    return [wire.entry_from_json(item) for item in data]


def history_of(content: bytes) -> list[HistoryItem]:
    data = _json(content)
    if not isinstance(data, list):
        raise ValidationError("Invalid response from the service: expected a JSON array")
    return [wire.history_item_from_json(item) for item in data]


def object_of(content: bytes) -> dict[str, Any]:
    data = _json(content)
    if not isinstance(data, dict):
        raise ValidationError("Invalid response from the service: expected a JSON object")
    return data


def strings_of(content: bytes) -> list[str]:
    data = _json(content)
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise ValidationError("Invalid response from the service: expected an array of strings")
    return data


def _array(content: bytes) -> list[Any]:
    data = _json(content)
    if not isinstance(data, list):
        raise ValidationError("Invalid response from the service: expected a JSON array")
    return data


def template_of(content: bytes) -> Template:
    return Template.from_json(_json(content))


def templates_of(content: bytes) -> list[Template]:
    return [Template.from_json(item) for item in _array(content)]


def schema_of(content: bytes) -> Schema:
    return Schema.from_json(_json(content))


def schemas_of(content: bytes) -> list[Schema]:
    return [Schema.from_json(item) for item in _array(content)]


def env_diff_of(content: bytes) -> EnvDiff:
    return EnvDiff.from_json(_json(content))


def promotion_of(content: bytes) -> Promotion:
    return Promotion.from_json(_json(content))


def render_text_of(content: bytes) -> str:
    """`{"text": "..."}` → the rendered text."""
    text = object_of(content).get("text")
    if not isinstance(text, str):
        raise ValidationError("Invalid response from the service: expected {\"text\": a string}")
    return text


def schema_builtins_of(content: bytes) -> list[dict[str, str]]:
    """`[{"name", "description"}]` of `GET /api/v1/schemas/builtins`."""
    items = _array(content)
    if not all(isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("description"), str)
               for i in items):
        raise ValidationError("Invalid response from the service: expected [{\"name\", \"description\"}]")
    return [{"name": i["name"], "description": i["description"]} for i in items]


def write_failure(exc: LLMConfigError, ambiguous: bool) -> LLMConfigError:
    """The error a write that is safe to repeat raises: a conflict met after an attempt whose answer was lost
    may be that attempt's own doing, which the client cannot tell: it says so (the caller re-reads)."""
    if ambiguous and type(exc) is ConflictError:
        return ConflictError(
            f"{exc.message} (an earlier attempt of this write got no answer and may have been applied: "
            "read it again to see)", namespace=exc.namespace, key=exc.key, environment=exc.environment,
        )
    return exc


# ---------------------------------------------------------------------------------------------- status

@dataclass(frozen=True, slots=True)
class ClientStatus:
    """What the client knows about its connection and its cache. Never holds a value or the API key.

    - `connected`: the service answered the last request (any answer, even an error) or a stream is live.
    - `source`: where reads come from now — `"live"` (the service answers), `"cache"` (it cannot be
      reached; entries this process fetched are served, whatever their age) or `"snapshot"` (it cannot be
      reached and the entries come from the offline snapshot read at start).
    - `staleness_seconds`: 0 while live watch streams keep the cache current; otherwise the time since the
      cache was last known current — the service's last answer, or the snapshot's writing — by this
      process's monotonic clock (never a server timestamp).
    - `watching`: namespaces whose stream is live; `watch_errors`: (namespace, reason) of streams that
      stopped for good (a revoked key, a route the service lacks).
    """

    url: str
    connected: bool
    source: Source
    staleness_seconds: float
    watching: tuple[str, ...]
    watch_errors: tuple[tuple[str, str], ...]
    epoch: str | None
    last_revision: int
    cached_entries: int
    malformed_events: int
    snapshot_age_seconds: float | None
    last_error: str | None
    closed: bool


# ---------------------------------------------------------------------------------------------- cache

class Slot:
    """One cached answer: an `Entry` (get), a list of entries (list) or a dict (resolve)."""

    __slots__ = ("etag", "fresh_until", "item", "origin", "stale_until")

    def __init__(self, item: Any, fresh_until: float, stale_until: float, etag: str | None,
                 origin: Source) -> None:
        self.item = item
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.etag = etag
        self.origin = origin


@dataclass(slots=True)
class Fetch:
    """A cache miss (or revalidation) in flight: what to send, and what to compare when it comes back."""

    key: Any  # GetKey | CollKey
    call: Call
    token: tuple[int, int, int]
    slot: Slot | None


class WatchState:
    """One namespace's stream: where it is (epoch, revision), whether it is live, why it stopped."""

    __slots__ = ("attempt", "current", "epoch", "error", "handle", "live", "malformed", "namespace", "resynced_at",
                 "revision", "stopped", "token")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.epoch: str | None = None
        self.revision = -1  # -1: never connected (the first stream starts "from now")
        self.live = False
        self.current = False  # live, and what was cached before its hello has been revalidated
        self.token = 0  # bumped at every hello: fills that began under another connection are not trusted
        self.stopped = False
        self.error: str | None = None
        self.malformed = 0
        self.attempt = 0
        self.resynced_at = -1
        self.handle: Any = None  # the thread or task running it; the open response (to close it)


class Subscription:
    """An `on_change` registration; call it (or `.cancel()`) to unsubscribe."""

    __slots__ = ("_core", "active", "callback", "exact", "namespace", "pattern", "prefix")

    def __init__(self, core: ClientCore, namespace: str, pattern: str, callback: ChangeCallback) -> None:
        self._core = core
        self.namespace = namespace
        self.pattern = pattern
        self.callback = callback
        self.exact, self.prefix = parse_pattern(pattern)
        self.active = True

    def matches(self, key: str) -> bool:
        if self.exact is not None:
            return key == self.exact
        assert self.prefix is not None
        return key.startswith(self.prefix)

    def cancel(self) -> None:
        """Stop calling the callback (the namespace stays watched while it is cached)."""
        self.active = False
        self._core.unsubscribe(self)

    def __call__(self) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return f"Subscription({self.namespace!r}, {self.pattern!r}, active={self.active})"


def parse_pattern(pattern: str) -> tuple[str | None, str | None]:
    """`"openai.model"` → exact key; `"openai.*"` → prefix `"openai."`; `"*"` → every key."""
    if not isinstance(pattern, str) or not pattern:
        raise ValidationError("Invalid key pattern: an exact key, a prefix ending in '*', or '*'")
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        if "*" in prefix or not all(c.isascii() and (c.isalnum() or c in "_.-") for c in prefix):
            raise ValidationError("Invalid key pattern: only one '*', at the end, after letters, digits, '_.-'")
        return None, prefix
    return validate_key(pattern), None


# ---------------------------------------------------------------------------------------------- the core

class ClientCore:
    """The shared state of one client: settings, cache, watch positions, subscriptions, status."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ttl: float = 5.0,
        max_stale: float = 0.0,
        watch: bool = True,
        max_entries: int = 10_000,
        max_watched: int = 32,
        policy: RetryPolicy | None = None,
        offline_retry: float = 1.0,
        page_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = normalize_url(url)
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key: an API key is required (llm-config keys create …)")
        if any(c in api_key for c in "\r\n") or not api_key.isascii():
            raise ValueError("api_key: not a valid API key")
        for name, seconds in (("ttl", ttl), ("max_stale", max_stale), ("offline_retry", offline_retry)):
            if not isinstance(seconds, (int, float)) or not 0 <= seconds < INF:
                raise ValueError(f"{name}: a finite number of seconds >= 0")
        if page_size is not None and not 1 <= page_size <= 10_000:
            raise ValueError("page_size: between 1 and 10000")
        self.api_key = api_key
        self.ttl = float(ttl)
        self.max_stale = float(max_stale)
        self.watch_enabled = bool(watch)
        if isinstance(max_watched, bool) or not isinstance(max_watched, int) or max_watched < 0:
            raise ValueError("max_watched: a number of namespaces >= 0")
        self.max_watched = max_watched  # namespaces read beyond it are kept by `ttl`, without a stream
        self.max_entries = max_entries
        self.policy = policy or RetryPolicy()
        self.offline_retry = float(offline_retry)
        self.page_size = page_size
        self.clock = clock
        self.lock = threading.RLock()
        self.hits: dict[GetKey, Slot] = {}
        self.colls: dict[CollKey, Slot] = {}
        self._by_place: dict[tuple[str, str], set[GetKey]] = {}
        self._by_ns: dict[str, set[Any]] = {}
        self._key_gen: dict[tuple[str, str], int] = {}
        self._ns_gen: dict[str, int] = {}
        self._resync_gen: dict[str, int] = {}
        self._forgotten = 0
        self.watches: dict[str, WatchState] = {}
        self._subs: dict[str, list[Subscription]] = {}
        self.connected = False
        self.closed = False
        self._offline_until = -INF
        self._last_contact = -INF  # monotonic time of the service's last answer
        self._last_error: str | None = None
        self._served_origin: Source | None = None  # what the last read served while offline came from
        self._snapshot_loaded = False
        self._snapshot_age: float | None = None
        self._snapshot_at = -INF  # the snapshot's writing, on the monotonic clock
        self._live_fills = 0
        self.epoch: str | None = None
        self.last_revision = 0
        self.dirty = False  # the cache changed since the snapshot was last written
        self._revalidating: set[Any] = set()

    # ------------------------------------------------------------------ building requests

    def get_call(self, namespace: str, key: str, env: Environment, version: int | None, with_overrides: bool,
                 reveal: bool, etag: str | None) -> Call:
        params: list[tuple[str, str]] = [("env", env.value)]
        if version is not None:
            params.append(("version", str(version)))
        if with_overrides:
            params.append(("with_overrides", "true"))
        if reveal:
            params.append(("reveal", "true"))
        headers = (("If-None-Match", etag),) if etag else ()
        return Call("GET", config_path(namespace, key), tuple(params), headers=headers)

    @staticmethod
    def set_call(namespace: str, key: str, value: Any, env: Environment, secret: bool | None,
                 description: str | None, tags: Sequence[str] | None, message: str | None,
                 expected_version: int | None) -> Call:
        validate_value(value)  # NaN, huge integers and the like are refused here, as the manager does
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        if isinstance(tags, str):
            raise ValidationError("Invalid tags: a sequence of strings, not one string")
        body = wire.SetBody(value=value, env=env.value, secret=secret, description=description,
                            tags=None if tags is None else tuple(tags), message=message,
                            expected_version=expected_version)
        try:
            content = orjson.dumps(body.to_json())
        except TypeError:
            raise ValidationError("Invalid body: tags, description and message must be strings") from None
        return Call("PUT", config_path(namespace, key), body=content,
                    headers=(("Content-Type", "application/json"),), retry=expected_version is not None)

    @staticmethod
    def delete_call(namespace: str, key: str, env: Environment, expected_version: int) -> Call:
        # always a compare-and-set (If-Match), so a DELETE is safe to repeat and its tombstone is known
        return Call("DELETE", config_path(namespace, key), (("env", env.value),),
                    headers=(("If-Match", f'"{expected_version}"'),), retry=True)

    @staticmethod
    def rollback_call(namespace: str, key: str, version: int, env: Environment) -> Call:
        return Call("POST", rollback_path(namespace, key, check_version(version)), (("env", env.value),),
                    retry=False)

    @staticmethod
    def history_call(namespace: str, key: str, env: Environment, limit: int | None) -> Call:
        params: list[tuple[str, str]] = [("env", env.value)]
        if limit is not None:
            params.append(("limit", str(check_version(limit, "limit"))))
        return Call("GET", history_path(namespace, key), tuple(params))

    def list_call(self, namespace: str, env: Environment, prefix: str, recursive: bool,
                  cursor: str | None) -> Call:
        params: list[tuple[str, str]] = [("env", env.value)]
        if prefix:
            params.append(("prefix", prefix))
        if recursive:
            params.append(("recursive", "true"))
        if self.page_size is not None:
            params.append(("limit", str(self.page_size)))
        if cursor is not None:
            params.append(("cursor", cursor))
        return Call("GET", list_path(namespace), tuple(params))

    @staticmethod
    def resolve_call(namespace: str, env: Environment, nested: bool, reveal: bool) -> Call:
        params: list[tuple[str, str]] = [("env", env.value)]
        if nested:
            params.append(("nested", "true"))
        if reveal:
            params.append(("reveal", "true"))
        return Call("GET", resolve_path(namespace), tuple(params))

    @staticmethod
    def namespaces_call(prefix: str) -> Call:
        if not isinstance(prefix, str):
            raise ValidationError("Invalid prefix: must be a string")
        return Call("GET", f"{API}/namespaces", (("prefix", prefix),) if prefix else ())

    # ------------------------------------------------------------------ templates, schemas, environments
    # (never cached: each call asks the service; their names are checked here as the manager checks them,
    # so a bad one fails with the same words and never reaches a path)

    @staticmethod
    def template_list_call(namespace: str, env: str | Environment) -> Call:
        validate_namespace(namespace)
        return Call("GET", template_list_path(namespace), (("env", parse_environment(env).value),))

    @staticmethod
    def template_get_call(namespace: str, name: str, env: str | Environment, version: int | None) -> Call:
        params = [("env", _template_env(namespace, name, env).value)]
        if version is not None:
            params.append(("version", str(check_version(version))))
        return Call("GET", template_path(namespace, name), tuple(params))

    @staticmethod
    def template_set_call(namespace: str, name: str, content: str, env: str | Environment,
                          description: str | None, defaults: Mapping[str, Any] | None,
                          expected_version: int | None, message: str | None) -> Call:
        environment = _template_env(namespace, name, env)
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        if defaults is not None and not isinstance(defaults, Mapping):
            raise ValidationError("Invalid defaults: a mapping of variable names to values")
        body = wire.TemplateBody(content=content, env=environment.value, description=description,
                                 defaults=None if defaults is None else dict(defaults), message=message,
                                 expected_version=expected_version)
        return Call("PUT", template_path(namespace, name), body=_encode(body.to_json()), headers=_JSON_BODY,
                    retry=expected_version is not None)

    @staticmethod
    def template_delete_call(namespace: str, name: str, env: str | Environment,
                             expected_version: int | None) -> Call:
        params = [("env", _template_env(namespace, name, env).value)]
        if expected_version is not None:
            params.append(("expected_version", str(check_version(expected_version, "expected_version",
                                                                 allow_zero=True))))
        return Call("DELETE", template_path(namespace, name), tuple(params), retry=expected_version is not None)

    @staticmethod
    def template_history_call(namespace: str, name: str, env: str | Environment, limit: int | None) -> Call:
        params = [("env", _template_env(namespace, name, env).value)]
        if limit is not None:
            params.append(("limit", str(check_version(limit, "limit"))))
        return Call("GET", template_path(namespace, name) + "/history", tuple(params))

    @staticmethod
    def template_rollback_call(namespace: str, name: str, version: int, env: str | Environment) -> Call:
        environment = _template_env(namespace, name, env)
        return Call("POST", f"{template_path(namespace, name)}/rollback/{check_version(version)}",
                    (("env", environment.value),), retry=False)

    @staticmethod
    def render_call(namespace: str, name: str, variables: Mapping[str, Any] | None, env: str | Environment,
                    allow_extra: bool) -> Call:
        """A POST that changes nothing (an audit event at most): retried like a read."""
        environment = _template_env(namespace, name, env)
        if variables is not None and not isinstance(variables, Mapping):
            raise ValidationError("Invalid variables: a mapping of variable names to values")
        if not isinstance(allow_extra, bool):
            raise ValidationError("Invalid allow_extra flag: must be true or false")
        body = wire.RenderBody(env=environment.value, variables=None if variables is None else dict(variables),
                               allow_extra=allow_extra)
        return Call("POST", template_path(namespace, name) + "/render", body=_encode(body.to_json()),
                    headers=_JSON_BODY, retry=True)

    @staticmethod
    def schema_builtins_call() -> Call:
        return Call("GET", SCHEMA_BUILTINS_PATH)

    @staticmethod
    def schema_list_call(namespace: str) -> Call:
        validate_namespace(namespace)
        return Call("GET", schema_list_path(namespace))

    @staticmethod
    def schema_get_call(namespace: str, pattern: str, version: int | None) -> Call:
        _schema_names(namespace, pattern)
        params = () if version is None else (("version", str(check_version(version))),)
        return Call("GET", schema_path(namespace, pattern), params)

    @staticmethod
    def schema_set_call(namespace: str, pattern: str, schema: Mapping[str, Any] | None, builtin: str | None,
                        description: str | None, expected_version: int | None) -> Call:
        _schema_names(namespace, pattern)
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        if schema is not None and not isinstance(schema, Mapping):
            raise ValidationError("Invalid schema: a JSON Schema is a JSON object")
        body = wire.SchemaBody(schema=None if schema is None else dict(schema), builtin=builtin,
                               description=description, expected_version=expected_version)
        return Call("PUT", schema_path(namespace, pattern), body=_encode(body.to_json()), headers=_JSON_BODY,
                    retry=expected_version is not None)

    @staticmethod
    def schema_delete_call(namespace: str, pattern: str, expected_version: int | None) -> Call:
        _schema_names(namespace, pattern)
        params = () if expected_version is None else (
            ("expected_version", str(check_version(expected_version, "expected_version", allow_zero=True))),)
        return Call("DELETE", schema_path(namespace, pattern), params, retry=expected_version is not None)

    @staticmethod
    def schema_history_call(namespace: str, pattern: str, limit: int | None) -> Call:
        _schema_names(namespace, pattern)
        params = () if limit is None else (("limit", str(check_version(limit, "limit"))),)
        return Call("GET", schema_path(namespace, pattern) + "/history", params)

    @staticmethod
    def schema_rollback_call(namespace: str, pattern: str, version: int) -> Call:
        _schema_names(namespace, pattern)
        return Call("POST", f"{schema_path(namespace, pattern)}/rollback/{check_version(version)}", retry=False)

    @staticmethod
    def diff_call(namespace: str, from_env: str | Environment, to_env: str | Environment) -> Call:
        validate_namespace(namespace)
        return Call("GET", diff_path(namespace), (("from", parse_environment(from_env).value),
                                                  ("to", parse_environment(to_env).value)))

    @staticmethod
    def promote_call(namespace: str, from_env: str | Environment, to_env: str | Environment,
                     keys: Sequence[str] | None, prune: bool, dry_run: bool, plan: Promotion | None,
                     secret: bool | None = None) -> Call:
        """Safe to repeat with a `plan` (applied only if the store is still as planned, so never twice) or as a
        dry run (writes nothing); a blind promotion is sent once."""
        validate_namespace(namespace)
        source, target = parse_environment(from_env), parse_environment(to_env)
        if keys is not None:
            if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
                raise ValidationError("Invalid keys: a list of key names")
            keys = tuple(validate_key(k) for k in keys)
        if not isinstance(prune, bool) or not isinstance(dry_run, bool):
            raise ValidationError("Invalid prune or dry_run flag: must be true or false")
        if plan is not None and not isinstance(plan, Promotion):
            raise ValidationError("Invalid plan: the Promotion a dry run returned")
        if secret is not None and not isinstance(secret, bool):
            raise ValidationError("Invalid secret flag: must be false or omitted")
        body = wire.PromoteBody(source=source.value, target=target.value, keys=keys, prune=prune,
                                dry_run=dry_run, plan=plan, secret=secret)
        return Call("POST", promote_path(namespace), body=_encode(body.to_json()), headers=_JSON_BODY,
                    retry=plan is not None or dry_run)

    def watch_params(self, w: WatchState) -> tuple[tuple[str, str], ...]:
        params: list[tuple[str, str]] = []
        if w.revision >= 0:
            params.append(("since", str(w.revision)))
            if w.epoch is not None:
                params.append(("epoch", w.epoch))
        return tuple(params)

    # ------------------------------------------------------------------ answers

    def unreachable(self, exc: BaseException | None = None) -> StorageUnavailableError:
        """The error for "cannot reach the service and nothing cached to serve" (names the URL, never the key)."""
        why = f" ({type(exc).__name__}: {_short(exc)})" if exc is not None else ""
        return StorageUnavailableError(f"The llm-config service at {self.url} cannot be reached{why}, "
                                       "and nothing is cached to serve")

    def failed(self, exc: BaseException) -> None:
        """A request could not reach the service (after its retries)."""
        with self.lock:
            self.connected = False
            self._offline_until = self.clock() + self.offline_retry
            self._last_error = f"cannot reach {self.url}: {type(exc).__name__}"

    def answered(self) -> None:
        """The service answered (any status)."""
        self.connected = True
        self._offline_until = -INF
        self._last_contact = self.clock()

    def offline(self) -> bool:
        return self.clock() < self._offline_until

    def error(self, status: int, content: bytes, headers: Mapping[str, str], *, namespace: str | None = None,
              key: str | None = None, env: Environment | None = None) -> LLMConfigError:
        """Map an error answer; a 401 also empties the cache (a revoked key is served nothing more)."""
        exc = error_from(status, content, headers)
        if namespace is not None and exc.namespace is None:
            exc.namespace, exc.key = namespace, key
            exc.environment = env.value if env is not None else None
        if isinstance(exc, AuthenticationError):
            self.forget_all(f"authentication failed: {exc.message}")
        elif status >= 500 or status == 429:
            with self.lock:  # the service's trouble, not an answer about one entry (a 404 is not news)
                self._last_error = f"HTTP {status}: {type(exc).__name__}"
        return exc

    @staticmethod
    def not_compare_and_set(exc: LLMConfigError) -> LLMConfigError:
        """A 409 to a write that compared no version cannot be a version conflict: over REST that is the
        refusal to put a plain value over a secret (`SecretOverwriteError`, a 409 too)."""
        if type(exc) is ConflictError:
            return SecretOverwriteError(exc.message, namespace=exc.namespace, key=exc.key,
                                        environment=exc.environment)
        return exc

    # ------------------------------------------------------------------ names

    @staticmethod
    def names(namespace: str, key: str | None, env: str | Environment) -> Environment:
        validate_namespace(namespace)
        if key is not None:
            validate_key(key)
        return parse_environment(env)

    # ------------------------------------------------------------------ reads through the cache

    def _token(self, namespace: str, key: str | None) -> tuple[int, int, int]:
        w = self.watches.get(namespace)
        live = w.token if w is not None and w.live else -1
        gen = self._key_gen.get((namespace, key), 0) if key is not None else self._ns_gen.get(namespace, 0)
        # both counters only grow, so their sum changes whenever either does
        return gen, self._resync_gen.get(namespace, 0) + self._forgotten, live

    def _freshness(self, namespace: str, token: tuple[int, int, int], *, pinned: bool = False) -> tuple[float, float]:
        if pinned:
            return INF, INF
        w = self.watches.get(namespace)
        if w is not None and w.live:
            if token[2] == w.token:
                return INF, INF  # read under this connection: every later change comes through the stream
            # read before this connection's hello: it may have missed a change made in between, so the
            # next read revalidates it (a 304, and then it is fresh for good)
            return -INF, -INF
        fresh = self.clock() + self.ttl
        return fresh, fresh + self.max_stale

    def serve(self, slot: Slot) -> Any:
        """A slot served while the service cannot be reached (or is being revalidated behind it)."""
        if not self.connected:
            self._served_origin = slot.origin
        return slot.item

    def plan_get(self, namespace: str, key: str, env: str | Environment, version: int | None,
                 with_overrides: bool, reveal: bool) -> tuple[Entry | None, Fetch | None, bool]:
        """A get that missed the hit path: (entry to return now, fetch to send, send it in the background).

        (entry, None, _): an alias of the environment hit, or the service is known unreachable and a slot of
        any age is served. (entry, fetch, True): stale but within `max_stale` — served, and revalidated
        behind it. (None, fetch, False): send it and wait."""
        environment = self.names(namespace, key, env)
        if version is not None:
            check_version(version)
        ck: GetKey = (namespace, key, environment, version, bool(with_overrides), bool(reveal))
        slot = self.hits.get(ck)
        now = self.clock()
        if slot is not None:
            if slot.fresh_until > now:
                return slot.item, None, False
            if slot.stale_until > now and slot.origin == "live":
                return self.serve(slot), self.background(ck), True
            if self.offline():
                return self.serve(slot), None, False
        call = self.get_call(namespace, key, environment, version, bool(with_overrides), bool(reveal),
                             slot.etag if slot is not None else None)
        with self.lock:
            token = self._token(namespace, key)
        return None, Fetch(ck, call, token, slot), False

    def background(self, ck: GetKey) -> Fetch | None:
        """A revalidation to run behind a stale answer (None if one is already running)."""
        with self.lock:
            if ck in self._revalidating:
                return None
            fetch = self.revalidation(ck)
            if fetch is not None:
                self._revalidating.add(ck)
            return fetch

    def background_done(self, ck: Any) -> None:
        with self.lock:
            self._revalidating.discard(ck)

    def revalidation(self, ck: GetKey) -> Fetch | None:
        """A conditional GET of a cached entry (None if it is no longer cached)."""
        slot = self.hits.get(ck)
        if slot is None:
            return None
        namespace, key, env, version, with_overrides, reveal = ck
        with self.lock:
            token = self._token(namespace, key)
        return Fetch(ck, self.get_call(namespace, key, env, version, with_overrides, reveal, slot.etag), token, slot)

    def finish_get(self, fetch: Fetch, status: int, content: bytes, headers: Mapping[str, str]) -> Entry:
        """The answer to a get `Fetch`: install and return the entry, or raise the mapped error."""
        namespace, key, env, version, _, _ = fetch.key
        self.answered()
        if status == 304 and fetch.slot is not None:
            with self.lock:
                fresh, stale = self._freshness(namespace, fetch.token, pinned=version is not None)
                if self._token(namespace, key)[:2] == fetch.token[:2] and self.hits.get(fetch.key) is fetch.slot:
                    fetch.slot.fresh_until, fetch.slot.stale_until = fresh, stale
                    if fetch.slot.origin != "live":
                        self.hits[fetch.key] = Slot(fetch.slot.item, fresh, stale, fetch.slot.etag, "live")
                        self._live_fills += 1
            entry: Entry = fetch.slot.item
            return entry
        if status != 200:
            if status in (403, 404):
                self.drop(fetch.key)
            raise self.error(status, content, headers, namespace=namespace, key=key, env=env)
        entry = entry_of(content, headers)
        self.install(fetch.key, entry, headers.get("etag"), fetch.token, pinned=version is not None)
        return entry

    def install(self, ck: Any, item: Any, etag: str | None, token: tuple[int, int, int], *,
                pinned: bool = False) -> None:
        """Cache `item` under `ck` unless a change raced the fetch that produced it."""
        coll = is_collection(ck)
        namespace = namespace_of(ck)
        key = None if coll else ck[1]
        with self.lock:
            if self.closed or self._token(namespace, key)[:2] != token[:2]:
                return
            existing = self.colls.get(ck) if coll else self.hits.get(ck)
            if existing is None and len(self.hits) + len(self.colls) >= self.max_entries:
                return
            fresh, stale = self._freshness(namespace, token, pinned=pinned)
            slot = Slot(item, fresh, stale, etag, "live")
            if coll:
                self.colls[ck] = slot
            else:
                self.hits[ck] = slot
                self._by_place.setdefault((namespace, ck[1]), set()).add(ck)
            self._by_ns.setdefault(namespace, set()).add(ck)
            self._live_fills += 1
            self.dirty = True

    def drop(self, ck: Any) -> None:
        with self.lock:
            namespace = namespace_of(ck)
            if is_collection(ck):
                slot = self.colls.pop(ck, None)
            else:
                slot = self.hits.pop(ck, None)
                place = self._by_place.get((ck[0], ck[1]))
                if place is not None:
                    place.discard(ck)
            keys = self._by_ns.get(namespace)
            if keys is not None:
                keys.discard(ck)
            if slot is not None:
                slot.fresh_until = slot.stale_until = -INF
                self.dirty = True

    def forget_all(self, reason: str) -> None:
        """Empty the cache (the key was refused: nothing it fetched may be served any more)."""
        with self.lock:
            for slot in (*self.hits.values(), *self.colls.values()):
                slot.fresh_until = slot.stale_until = -INF
            self.hits.clear()
            self.colls.clear()
            self._by_place.clear()
            self._by_ns.clear()
            self._forgotten += 1  # and no fetch in flight may put anything back
            self._last_error = reason
            self.dirty = True

    def plan_collection(self, ck: CollKey, call: Call) -> tuple[Any, Fetch | None, bool]:
        """A list or resolve: (cached value, fetch, revalidate in background) as `plan_get` does."""
        slot = self.colls.get(ck)
        now = self.clock()
        if slot is not None:
            if slot.fresh_until > now:
                return slot.item, None, False
            if slot.stale_until > now and slot.origin == "live":
                with self.lock:
                    if ck in self._revalidating:
                        return self.serve(slot), None, False
                    self._revalidating.add(ck)
                    return self.serve(slot), Fetch(ck, call, self._token(ck[1], None), slot), True
            if self.offline():
                return self.serve(slot), None, False
        with self.lock:
            token = self._token(ck[1], None)
        return None, Fetch(ck, call, token, slot), False

    def finish_collection(self, fetch: Fetch, value: Any) -> None:
        self.install(fetch.key, value, None, fetch.token)

    def cached(self, ck: Any) -> Slot | None:
        """The slot to serve when the service cannot be reached (any age)."""
        slot = self.colls.get(ck) if is_collection(ck) else self.hits.get(ck)
        if slot is not None:
            self._served_origin = slot.origin
        return slot

    # ------------------------------------------------------------------ local writes

    def begin_write(self, namespace: str, key: str) -> tuple[int, int, int]:
        with self.lock:
            return self._token(namespace, key)

    def wrote(self, namespace: str, key: str, env: Environment, entry: Entry | None, etag: str | None,
              token: tuple[int, int, int]) -> None:
        """Our own write succeeded: what it changed is stale; cache the entry it returned (read your writes)."""
        with self.lock:
            unchanged = self._token(namespace, key)[:2] == token[:2]
            self._changed(namespace, key, env, "delete" if entry is None else "set")
            if entry is not None and unchanged:
                ck: GetKey = (namespace, key, env, None, False, False)
                self.install(ck, entry, etag, self._token(namespace, key))

    def promoted(self, promotion: Promotion) -> None:
        """Our own promotion was applied: what it wrote in the target environment is stale (the entries are
        read again on demand; the watch stream, if any, reports the same writes later)."""
        if not promotion.applied:
            return
        with self.lock:
            for step in promotion.steps:
                self._changed(promotion.namespace, step.key, promotion.target,
                              "delete" if step.action == "delete" else "set")

    def _changed(self, namespace: str, key: str, env: Environment, kind: str) -> list[GetKey]:
        """Bump generations and take out what a change of (namespace, key, env) makes stale; the get slots
        to refetch are returned (they stay in place, marked stale, to be served if the service is down)."""
        place = (namespace, key)
        self._key_gen[place] = self._key_gen.get(place, 0) + 1
        self._ns_gen[namespace] = self._ns_gen.get(namespace, 0) + 1
        refetch: list[GetKey] = []
        for ck in list(self._by_place.get(place, ())):
            _, _, slot_env, version, with_overrides, _ = ck
            if version is not None:
                if kind == "purge" and slot_env is env:
                    self.drop(ck)
                continue
            if slot_env is env or (with_overrides and env is Environment.BASE):
                slot = self.hits.get(ck)
                if slot is not None:
                    slot.fresh_until = slot.stale_until = -INF
                    refetch.append(ck)
        for ck in list(self._by_ns.get(namespace, ())):
            if is_collection(ck) and (ck[2] is env or (ck[0] == RESOLVE and env is Environment.BASE)):
                slot = self.colls.get(ck)
                if slot is not None:
                    slot.fresh_until = slot.stale_until = -INF
        self.dirty = True
        return refetch

    # ------------------------------------------------------------------ watching

    def want_watch(self, namespace: str) -> WatchState | None:
        """The namespace is read or subscribed to: a new `WatchState` to start, or None (already watched,
        stopped for good, watching off, or closed)."""
        if not self.watch_enabled or self.closed:
            return None
        w = self.watches.get(namespace)
        if w is not None:
            return None
        with self.lock:
            if namespace in self.watches or self.closed:
                return None
            if len(self.watches) >= self.max_watched and not self._subs.get(namespace):
                return None  # read-only beyond the cap: `ttl` and revalidation; an `on_change` always watches
            w = WatchState(namespace)
            self.watches[namespace] = w
            return w

    def on_hello(self, w: WatchState, hello: wire.WatchHello) -> list[GetKey]:
        """The stream is (re)connected. Returns the get slots to revalidate: every one of the namespace after
        a first connection (a fill that started before it may have missed a change) or another epoch; none
        after a resume (the stream replays what happened while it was down)."""
        with self.lock:
            fresh_start = w.epoch is None or w.revision < 0
            new_epoch = w.epoch is not None and w.epoch != hello.epoch
            w.epoch = hello.epoch
            self.epoch = hello.epoch
            w.revision = hello.revision
            w.live = True
            w.current = False
            w.token += 1
            w.attempt = 0
            w.error = None
            self.connected = True
            self._last_contact = self.clock()
            self.last_revision = max(self.last_revision, hello.revision) if not new_epoch else hello.revision
            if new_epoch:  # the store was replaced: a fill in flight may hold anything
                w.resynced_at = hello.revision
                return self._resync(w.namespace)
            if fresh_start:  # nothing changed that we know of; what was read before the hello is checked
                return self._stale_all(w.namespace)
            for ck in self._by_ns.get(w.namespace, ()):
                slot = self.hits.get(ck) if ck in self.hits else self.colls.get(ck)
                if slot is not None and slot.origin == "live" and slot.fresh_until > -INF:
                    slot.fresh_until = slot.stale_until = INF
            return []

    def on_resync(self, w: WatchState, resync: wire.WatchResync) -> list[GetKey]:
        with self.lock:
            w.epoch = resync.epoch
            self.epoch = resync.epoch
            w.revision = resync.revision
            self.last_revision = resync.revision
            if w.resynced_at == resync.revision:
                return []
            w.resynced_at = resync.revision
            return self._resync(w.namespace)

    def unsettled(self, w: WatchState) -> list[GetKey]:
        """Get slots of the stream's namespace still marked stale once the hello's revalidation ran (fills
        that were in flight across the hello, snapshot entries): revalidated too before the stream counts
        as current."""
        with self.lock:
            return [ck for ck in self._by_ns.get(w.namespace, ())
                    if not is_collection(ck) and (slot := self.hits.get(ck)) is not None
                    and slot.fresh_until == -INF]

    def caught_up(self, w: WatchState) -> None:
        """What `on_hello`/`on_resync` asked to revalidate has been: the stream now keeps the cache current."""
        with self.lock:
            w.current = w.live

    def _resync(self, namespace: str) -> list[GetKey]:
        self._resync_gen[namespace] = self._resync_gen.get(namespace, 0) + 1
        return self._stale_all(namespace)

    def _stale_all(self, namespace: str) -> list[GetKey]:
        """Mark everything cached of `namespace` stale; the get slots to revalidate."""
        self._ns_gen[namespace] = self._ns_gen.get(namespace, 0) + 1
        refetch: list[GetKey] = []
        for ck in list(self._by_ns.get(namespace, ())):
            if ck in self.hits:  # pinned versions too: after a restore, version N may not be what it was
                slot = self.hits[ck]
                slot.fresh_until = slot.stale_until = -INF
                refetch.append(ck)
            elif ck in self.colls:
                slot = self.colls[ck]
                slot.fresh_until = slot.stale_until = -INF
        self.dirty = True
        return refetch

    def on_change(self, w: WatchState, change: wire.WatchChange) -> tuple[list[GetKey], list[Subscription]] | None:
        """A change event: None if already seen (deduplicated by revision) or not this stream's; else the
        get slots to refetch and the subscriptions to call, in that order, before `done`."""
        with self.lock:
            if change.revision <= w.revision or change.namespace != w.namespace:
                return None
            if change.kind not in wire.CONFIG_KINDS:  # a template or schema: no cached value moved
                return [], []
            refetch = self._changed(change.namespace, change.key, change.environment, change.kind)
            return refetch, self.matching(change.namespace, change.key)

    def done(self, w: WatchState, revision: int) -> None:
        with self.lock:
            w.revision = max(w.revision, revision)
            self.last_revision = max(self.last_revision, revision)

    def stream_lost(self, w: WatchState, reason: str | None = None) -> None:
        """The stream dropped: its namespace's slots are fresh for `ttl` more, then revalidated (or served as
        they are if the service cannot be reached) until the stream resumes."""
        with self.lock:
            was_live = w.live
            w.live = w.current = False
            if reason is not None:
                self._last_error = reason
            if not was_live:
                return
            fresh = self.clock() + self.ttl
            for ck in self._by_ns.get(w.namespace, ()):
                slot = self.hits.get(ck) if ck in self.hits else self.colls.get(ck)
                if slot is not None and slot.fresh_until > fresh and not (ck in self.hits and ck[3] is not None):
                    slot.fresh_until, slot.stale_until = fresh, fresh + self.max_stale

    def stream_stopped(self, w: WatchState, exc: LLMConfigError) -> None:
        """The service ended the stream for good (`event: error`, or 401/403/404 when opening it)."""
        self.stream_lost(w)
        with self.lock:
            w.stopped = True
            w.error = f"{type(exc).__name__}: {exc.message}"
            self._last_error = f"watch {w.namespace}: {w.error}"
        if isinstance(exc, AuthenticationError):
            self.forget_all(f"watch {w.namespace}: {w.error}")
        elif isinstance(exc, PermissionDeniedError):
            with self.lock:
                for ck in list(self._by_ns.get(w.namespace, ())):
                    self.drop(ck)
        log.warning("llm-config client: watching %s stopped (%s)", w.namespace, type(exc).__name__)

    def malformed(self, w: WatchState, what: str) -> None:
        with self.lock:
            w.malformed += 1
        log.warning("llm-config client: skipped a malformed %s event on the %s stream", what, w.namespace)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, namespace: str, pattern: str, callback: ChangeCallback) -> Subscription:
        validate_namespace(namespace)
        if not callable(callback):
            raise TypeError("on_change: callback must be callable")
        if not self.watch_enabled:
            raise ValueError("on_change needs the watch stream: this client was made with watch=False")
        sub = Subscription(self, namespace, pattern, callback)
        with self.lock:
            self._subs.setdefault(namespace, []).append(sub)
        return sub

    def matching(self, namespace: str, key: str) -> list[Subscription]:
        with self.lock:
            return [s for s in self._subs.get(namespace, ()) if s.active and s.matches(key)]

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            subs = self._subs.get(sub.namespace)
            if subs is not None and sub in subs:
                subs.remove(sub)

    # ------------------------------------------------------------------ status

    def status(self) -> ClientStatus:
        with self.lock:
            now = self.clock()
            watches = list(self.watches.values())
            running = [w for w in watches if not w.stopped]
            live = tuple(sorted(w.namespace for w in running if w.live and w.current))
            connected = self.connected or bool(live)
            all_live = bool(running) and len(live) == len(running)
            if connected and all_live:
                staleness = 0.0
            else:
                known = max(self._last_contact, self._snapshot_at)
                staleness = now - known if known > -INF else INF
            source: Source
            if connected:
                source = "live"
            elif self._served_origin is not None:
                source = "snapshot" if self._served_origin == "snapshot" else "cache"
            else:
                source = "snapshot" if self._snapshot_loaded and not self._live_fills else "cache"
            errors = tuple(sorted((w.namespace, w.error) for w in watches if w.stopped and w.error))
            snapshot_age = None
            if self._snapshot_loaded and self._snapshot_age is not None:
                snapshot_age = now - self._snapshot_at
            return ClientStatus(
                url=self.url, connected=connected, source=source, staleness_seconds=max(0.0, staleness),
                watching=live, watch_errors=errors, epoch=self.epoch, last_revision=self.last_revision,
                cached_entries=len(self.hits) + len(self.colls),
                malformed_events=sum(w.malformed for w in watches), snapshot_age_seconds=snapshot_age,
                last_error=self._last_error, closed=self.closed,
            )

    # ------------------------------------------------------------------ snapshot contents

    def snapshot_payload(self) -> dict[str, Any]:
        """Everything cached, as JSON-ready data (values included: the caller encrypts it)."""
        with self.lock:
            gets = [[ck[0], ck[1], ck[2].value, ck[3], ck[4], ck[5], slot.item.to_json(), slot.item.revision,
                     slot.etag] for ck, slot in self.hits.items()]
            colls: list[list[Any]] = []
            for ck, slot in self.colls.items():
                if ck[0] == LIST:
                    colls.append(["list", ck[1], ck[2].value, ck[3], [[e.to_json(), e.revision] for e in slot.item]])
                else:
                    colls.append(["resolve", ck[1], ck[2].value, ck[3], ck[4], slot.item])
            self.dirty = False
        return {"url": self.url, "gets": gets, "colls": colls}

    def load_snapshot(self, payload: Mapping[str, Any], age: float) -> int:
        """Fill the cache from a snapshot's payload: every slot stale (served only when the service cannot be
        reached, revalidated with its ETag otherwise). Returns the number of slots; malformed ones are skipped."""
        loaded = 0
        now = self.clock()
        with self.lock:
            for row in _rows(payload.get("gets")):
                try:
                    ns, key, env, version, with_overrides, reveal, body, revision, etag = row
                    entry = wire.entry_from_json(body, int(revision))
                    ck: GetKey = (validate_namespace(ns), validate_key(key), parse_environment(env),
                                  None if version is None else check_version(version), bool(with_overrides),
                                  bool(reveal))
                except (LLMConfigError, ValueError, TypeError):
                    continue
                self.hits[ck] = Slot(entry, -INF, -INF, etag if isinstance(etag, str) else None, "snapshot")
                self._by_place.setdefault((ck[0], ck[1]), set()).add(ck)
                self._by_ns.setdefault(ck[0], set()).add(ck)
                loaded += 1
            for row in _rows(payload.get("colls")):
                try:
                    if row[0] == "list":
                        _, ns, env, prefix, items = row
                        value: Any = [wire.entry_from_json(body, int(rev)) for body, rev in items]
                        cck: CollKey = (LIST, validate_namespace(ns), parse_environment(env), str(prefix), False)
                    else:
                        _, ns, env, nested, reveal, value = row
                        if not isinstance(value, dict):
                            continue
                        cck = (RESOLVE, validate_namespace(ns), parse_environment(env), bool(nested), bool(reveal))
                except (LLMConfigError, ValueError, TypeError):
                    continue
                self.colls[cck] = Slot(value, -INF, -INF, None, "snapshot")
                self._by_ns.setdefault(cck[1], set()).add(cck)
                loaded += 1
            self._snapshot_loaded = True
            self._snapshot_age = max(0.0, age)
            self._snapshot_at = now - self._snapshot_age
        return loaded


def _rows(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text[:160] if text else "no detail"


def normalize_url(url: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash; refuses anything else (and credentials)."""
    if not isinstance(url, str):
        raise ValueError("url: the service's base URL, e.g. http://127.0.0.1:8080")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url: expected http://host[:port] or https://host[:port]")
    if parts.username or parts.password:
        raise ValueError("url: give the API key as api_key=, never inside the URL")
    if parts.query or parts.fragment:
        raise ValueError("url: no query or fragment, just the service's base URL")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def tombstone(before: Entry, version: int, item: HistoryItem | None, revision: int) -> Entry:
    """The Entry a DELETE produced (the REST DELETE answers 204): the entry as it was just before, at the
    tombstone's version, without a value, updated when and by whom its history says."""
    meta = before.metadata
    return build_entry(
        before.id, before.namespace, before.key, None, before.environment, version, False,
        meta.created_at, meta.created_by, item.created_at if item else meta.updated_at,
        item.created_by if item else meta.updated_by, meta.tags, meta.description, revision,
    )

