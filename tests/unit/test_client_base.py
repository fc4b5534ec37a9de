"""The client's I/O-free half (`llm_config.client._base`): URLs, retry decisions, backoff, `Retry-After`,
key patterns, error mapping, and the cache's freshness and race rules on a fake monotonic clock."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from llm_config import wire
from llm_config.client._base import (
    LIST,
    RESOLVE,
    Call,
    ClientCore,
    RetryPolicy,
    Subscription,
    config_path,
    error_from,
    history_path,
    list_path,
    namespace_path,
    normalize_url,
    parse_pattern,
    parse_retry_after,
    resolve_path,
    rollback_path,
    stream_error,
    tombstone,
    watch_path,
)
from llm_config.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    StorageError,
    StorageUnavailableError,
    ValidationError,
)
from llm_config.models import Entry, Environment, HistoryItem, build_entry

PROD, BASE, DEV = Environment.PRODUCTION, Environment.BASE, Environment.DEVELOPMENT


def entry(key: str = "k", env: Environment = PROD, version: int = 1, value: Any = "v", ns: str = "acme/bot") -> Entry:
    return build_entry(f"id-{key}", ns, key, value, env, version, False, "2025-01-01T00:00:00Z", "a",
                       "2025-01-01T00:00:00Z", "a", (), None, version)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(clock: Clock) -> ClientCore:
    return ClientCore("http://127.0.0.1:8080", "llmc_test", ttl=5, clock=clock)


# ---------------------------------------------------------------------------------------------- URLs


def test_paths_use_the_separator_form_for_every_namespace() -> None:
    assert config_path("acme", "openai.model") == "/api/v1/configs/acme/-/openai.model"
    assert config_path("acme/chat.bot", "a-b_c") == "/api/v1/configs/acme/chat.bot/-/a-b_c"
    assert history_path("a/b", "k") == "/api/v1/configs/a/b/-/k/history"
    assert rollback_path("a/b", "k", 3) == "/api/v1/configs/a/b/-/k/rollback/3"
    assert list_path("a/b") == "/api/v1/configs/a/b/-/"
    assert resolve_path("a/b") == "/api/v1/namespaces/a/b/-/resolve"
    assert watch_path("a/b") == "/api/v1/watch/a/b"


def test_segments_are_percent_quoted_even_though_the_grammar_needs_none() -> None:
    assert namespace_path("a b/c%d/e?f") == "a%20b/c%25d/e%3Ff"
    assert config_path("x", "../admin") == "/api/v1/configs/x/-/..%2Fadmin"


def test_names_are_checked_before_any_request(core: ClientCore) -> None:
    for ns, key in (("a//b", "k"), ("a/-", "k"), ("a", "k/x"), ("a", ".."), ("", "k")):
        with pytest.raises(ValidationError):
            core.names(ns, key, "production")
    with pytest.raises(ValidationError, match="Unknown environment"):
        core.names("a", "k", "qa")
    assert core.names("a", "k", "PROD") is PROD


def test_base_url_is_normalised_and_credentials_refused() -> None:
    assert normalize_url("http://h:1/") == "http://h:1"
    assert normalize_url("https://h/prefix/") == "https://h/prefix"
    for bad in ("ftp://h", "h:8080", "http://user:pw@h", "http://h/?q=1", "http:///x"):
        with pytest.raises(ValueError):
            normalize_url(bad)


def test_the_api_key_is_required_and_never_in_the_repr() -> None:
    with pytest.raises(ValueError):
        ClientCore("http://h", "")
    with pytest.raises(ValueError):
        ClientCore("http://h", "llmc_x\r\nX-Evil: 1")


def test_requests_carry_only_the_parameters_they_need(core: ClientCore) -> None:
    call = core.get_call("a", "k", PROD, None, False, False, None)
    assert call.params == (("env", "production"),) and call.headers == ()
    call = core.get_call("a", "k", PROD, 3, True, True, '"e"')
    assert call.params == (("env", "production"), ("version", "3"), ("with_overrides", "true"), ("reveal", "true"))
    assert call.headers == (("If-None-Match", '"e"'),)
    assert core.resolve_call("a", BASE, True, False).params == (("env", "base"), ("nested", "true"))
    assert core.namespaces_call("").params == ()


def test_a_write_body_is_the_wire_body_and_values_are_strict(core: ClientCore) -> None:
    call = core.set_call("a", "k", {"x": [1, 2.5]}, PROD, True, "d", ["t"], "m", 0)
    assert call.method == "PUT" and call.body is not None
    import orjson

    assert wire.SetBody.from_json(orjson.loads(call.body)) == wire.SetBody(
        value={"x": [1, 2.5]}, env="production", secret=True, description="d", tags=("t",), message="m",
        expected_version=0)
    for bad in (math.nan, math.inf, 2**64, {1: 2}, object()):
        with pytest.raises(ValidationError):
            core.set_call("a", "k", bad, PROD, None, None, None, None, None)
    with pytest.raises(ValidationError):
        core.set_call("a", "k", 1, PROD, None, None, "onetag", None, None)
    with pytest.raises(ValidationError):
        core.set_call("a", "k", 1, PROD, None, None, None, None, -1)


# ---------------------------------------------------------------------------------------------- retries


def test_only_reads_and_compare_and_set_writes_are_retried(core: ClientCore) -> None:
    policy = RetryPolicy(retries=3)
    read = core.get_call("a", "k", PROD, None, False, False, None)
    blind = core.set_call("a", "k", 1, PROD, None, None, None, None, None)
    cas = core.set_call("a", "k", 1, PROD, None, None, None, None, 4)
    rollback = core.rollback_call("a", "k", 1, PROD)
    delete = core.delete_call("a", "k", PROD, 4)
    for call in (read, core.history_call("a", "k", PROD, None), core.list_call("a", PROD, "", False, None),
                 core.resolve_call("a", PROD, False, False), core.namespaces_call(""), cas, delete):
        assert call.retry, call
        assert policy.decide(call, 0) is not None  # connection failure
        for status in (429, 502, 503, 504):
            assert policy.decide(call, 0, status=status) is not None
        for status in (400, 401, 403, 404, 409, 412, 500):
            assert policy.decide(call, 0, status=status) is None
    for call in (blind, rollback):
        assert not call.retry
        assert policy.decide(call, 0) is None
        assert policy.decide(call, 0, status=503) is None
    assert delete.headers == (("If-Match", '"4"'),)


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(retries=10, backoff=0.1, backoff_max=1.0)
    low = [policy.delay(n, rand=lambda: 0.0) for n in range(6)]
    high = [policy.delay(n, rand=lambda: 1.0) for n in range(6)]
    assert low == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5])
    assert high == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.delay(10) is None  # attempts exhausted
    assert RetryPolicy(retries=0).delay(0) is None


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    policy = RetryPolicy(retries=3, retry_after_max=10)
    get = Call("GET", "/x")
    assert policy.decide(get, 0, status=429, retry_after=2.0, rand=lambda: 0.0) == pytest.approx(2.0)
    assert 2.0 <= (policy.decide(get, 0, status=503, retry_after=2.0) or 0) <= 2.1
    assert policy.decide(get, 0, status=503, retry_after=30.0) is None  # longer than we would wait
    assert policy.decide(get, 3, status=503, retry_after=1.0) is None


def test_retry_after_parses_seconds_and_dates_against_the_servers_own_clock() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:07 GMT", date) == 7.0
    # without the response's Date the local clock would have to be trusted: not used
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:07 GMT") is None


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "cls"), [
    (400, ValidationError), (401, AuthenticationError), (403, PermissionDeniedError), (404, NotFoundError),
    (409, ConflictError), (412, ConflictError), (429, RateLimitedError), (503, StorageUnavailableError),
    (502, StorageError),
])
def test_error_answers_map_to_the_library_exceptions(status: int, cls: type[Exception]) -> None:
    exc = error_from(status, b'{"error": "X", "message": "Config not found: a/k [production]"}', {})
    assert type(exc) is cls
    assert exc.message == "Config not found: a/k [production]"


def test_retry_after_reaches_the_exception_and_a_proxy_page_still_maps() -> None:
    exc = error_from(429, b'{"error": "Too Many Requests", "message": "slow down"}', {"retry-after": "3"})
    assert isinstance(exc, RateLimitedError) and exc.retry_after == 3.0
    html = error_from(502, b"<html>bad gateway</html>", {})
    assert isinstance(html, StorageError) and "502" in html.message


def test_stream_error_events_map_by_reason_phrase() -> None:
    assert isinstance(stream_error({"error": "Unauthorized", "message": "API key revoked"}), AuthenticationError)
    assert isinstance(stream_error({"error": "Forbidden", "message": "no"}), PermissionDeniedError)
    assert isinstance(stream_error("garbage"), AuthenticationError)


def test_unreachable_names_the_url_never_the_key() -> None:
    core = ClientCore("http://127.0.0.1:9", "llmc_secret_key_value")
    exc = core.unreachable(httpx.ConnectError("[Errno 111] Connection refused"))
    assert isinstance(exc, StorageUnavailableError)
    assert "http://127.0.0.1:9" in exc.message and "llmc_secret" not in exc.message


def test_a_tombstone_keeps_identity_and_takes_who_and_when_from_history() -> None:
    before = entry(version=3)
    item = HistoryItem(4, None, True, "2025-02-02T00:00:00Z", "key:ci#k1", "Deleted")
    dead = tombstone(before, 4, item, 9)
    assert (dead.id, dead.version, dead.value, dead.secret, dead.revision) == (before.id, 4, None, False, 9)
    assert dead.metadata.created_at == before.metadata.created_at
    assert (dead.metadata.updated_at, dead.metadata.updated_by) == ("2025-02-02T00:00:00Z", "key:ci#k1")


# ---------------------------------------------------------------------------------------------- patterns


def test_key_patterns_exact_prefix_and_everything(core: ClientCore) -> None:
    def sub(pattern: str) -> Subscription:
        return Subscription(core, "ns", pattern, lambda c, e: None)

    assert sub("openai.model").matches("openai.model")
    assert not sub("openai.model").matches("openai.model2")
    assert sub("openai.*").matches("openai.model") and sub("openai.*").matches("openai.")
    assert not sub("openai.*").matches("openai") and not sub("openai.*").matches("anthropic.model")
    assert sub("open*").matches("openai.model")
    assert all(sub("*").matches(k) for k in ("a", "openai.model", "Z-9"))
    for bad in ("", "*a", "a*b*", "a b*", "a/b", "**"):
        with pytest.raises(ValidationError):
            parse_pattern(bad)


def test_subscriptions_are_matched_and_cancelled(core: ClientCore) -> None:
    calls: list[str] = []
    first = core.subscribe("ns", "a.*", lambda c, e: calls.append("first"))
    core.subscribe("ns", "*", lambda c, e: calls.append("all"))
    assert [s.pattern for s in core.matching("ns", "a.x")] == ["a.*", "*"]
    assert [s.pattern for s in core.matching("ns", "b")] == ["*"]
    first()
    assert [s.pattern for s in core.matching("ns", "a.x")] == ["*"]
    assert core.matching("other", "a.x") == []


def test_on_change_needs_watching() -> None:
    core = ClientCore("http://h", "k", watch=False)
    with pytest.raises(ValueError, match="watch=False"):
        core.subscribe("ns", "*", lambda c, e: None)


# ---------------------------------------------------------------------------------------------- the cache


def _fill(core: ClientCore, ck: tuple[Any, ...], item: Any, etag: str | None = '"e1"') -> None:
    ns = ck[1] if isinstance(ck[0], int) else ck[0]
    token = core._token(ns, None if isinstance(ck[0], int) else ck[1])
    core.install(ck, item, etag, token)


def test_without_a_stream_an_entry_is_fresh_for_ttl_by_the_monotonic_clock(core: ClientCore, clock: Clock) -> None:
    ck = ("acme/bot", "k", PROD, None, False, False)
    _fill(core, ck, entry())
    assert core.hits[ck].fresh_until == clock.now + 5
    entry_now, fetch, _ = core.plan_get("acme/bot", "k", "production", None, False, False)
    assert entry_now is not None and fetch is None
    clock.now += 5.01
    entry_now, fetch, background = core.plan_get("acme/bot", "k", "production", None, False, False)
    assert entry_now is None and fetch is not None and not background
    assert ("If-None-Match", '"e1"') in fetch.call.headers  # revalidated with its ETag


def test_stale_while_revalidate_serves_once_and_revalidates_once(clock: Clock) -> None:
    core = ClientCore("http://h", "k", ttl=5, max_stale=10, clock=clock)
    ck = ("acme/bot", "k", PROD, None, False, False)
    _fill(core, ck, entry())
    clock.now += 6
    served, fetch, background = core.plan_get("acme/bot", "k", PROD, None, False, False)
    assert served is not None and fetch is not None and background
    served, fetch, background = core.plan_get("acme/bot", "k", PROD, None, False, False)
    assert served is not None and fetch is None  # one revalidation at a time
    core.background_done(ck)
    clock.now += 10
    served, fetch, background = core.plan_get("acme/bot", "k", PROD, None, False, False)
    assert served is None and fetch is not None  # beyond max_stale: wait for the service


def test_when_the_service_is_unreachable_any_age_is_served(core: ClientCore, clock: Clock) -> None:
    ck = ("acme/bot", "k", PROD, None, False, False)
    _fill(core, ck, entry())
    clock.now += 3600
    core.failed(httpx.ConnectError("refused"))
    served, fetch, _ = core.plan_get("acme/bot", "k", PROD, None, False, False)
    assert served is not None and fetch is None
    status = core.status()
    assert not status.connected and status.source == "cache"
    clock.now += core.offline_retry
    assert core.plan_get("acme/bot", "k", PROD, None, False, False)[1] is not None  # try the service again


def test_a_fill_that_raced_a_change_is_not_installed(core: ClientCore) -> None:
    _, fetch, _ = core.plan_get("acme/bot", "k", PROD, None, False, False)
    assert fetch is not None
    w = core.want_watch("acme/bot")
    assert w is not None
    core.on_hello(w, wire.WatchHello("0", 10))
    core.on_change(w, wire.WatchChange(11, "acme/bot", "k", PROD, 2, "set"))
    core.install(fetch.key, entry(version=1), None, fetch.token)  # the answer was sent before revision 11
    assert fetch.key not in core.hits


def test_a_fill_under_a_live_stream_stays_fresh_until_a_change(core: ClientCore, clock: Clock) -> None:
    w = core.want_watch("acme/bot")
    assert w is not None
    core.on_hello(w, wire.WatchHello("0", 10))
    _, fetch, _ = core.plan_get("acme/bot", "k", PROD, None, False, False)
    assert fetch is not None
    core.install(fetch.key, entry(), '"e"', fetch.token)
    assert core.hits[fetch.key].fresh_until == math.inf
    clock.now += 10**6
    assert core.plan_get("acme/bot", "k", PROD, None, False, False)[1] is None
    plan = core.on_change(w, wire.WatchChange(11, "acme/bot", "k", PROD, 2, "set"))
    assert plan is not None and plan[0] == [fetch.key]
    assert core.hits[fetch.key].fresh_until == -math.inf  # stale until refetched
    assert core.on_change(w, wire.WatchChange(11, "acme/bot", "k", PROD, 2, "set")) is not None
    core.done(w, 11)
    assert core.on_change(w, wire.WatchChange(11, "acme/bot", "k", PROD, 2, "set")) is None  # a duplicate


def test_a_base_change_invalidates_every_environments_override_copy(core: ClientCore) -> None:
    w = core.want_watch("acme/bot")
    assert w is not None
    core.on_hello(w, wire.WatchHello("0", 1))
    keys = {
        "prod_plain": ("acme/bot", "k", PROD, None, False, False),
        "prod_over": ("acme/bot", "k", PROD, None, True, False),
        "dev_over": ("acme/bot", "k", DEV, None, True, False),
        "base": ("acme/bot", "k", BASE, None, False, False),
        "pinned": ("acme/bot", "k", BASE, 1, False, False),
        "other_key": ("acme/bot", "k2", BASE, None, False, False),
    }
    for ck in keys.values():
        _fill(core, ck, entry(key=ck[1], env=ck[2]))
    for coll in ((RESOLVE, "acme/bot", PROD, False, False), (LIST, "acme/bot", PROD, "", False),
                 (LIST, "acme/bot", BASE, "", False)):
        _fill(core, coll, [] if coll[0] == LIST else {})
    plan = core.on_change(w, wire.WatchChange(2, "acme/bot", "k", BASE, 2, "set"))
    assert plan is not None
    assert set(plan[0]) == {keys["prod_over"], keys["dev_over"], keys["base"]}
    assert core.hits[keys["prod_plain"]].fresh_until == math.inf
    assert core.hits[keys["pinned"]].fresh_until == math.inf  # a version never changes
    assert core.colls[(RESOLVE, "acme/bot", PROD, False, False)].fresh_until == -math.inf  # resolves over base
    assert core.colls[(LIST, "acme/bot", PROD, "", False)].fresh_until == math.inf  # a list is not resolved
    assert core.colls[(LIST, "acme/bot", BASE, "", False)].fresh_until == -math.inf
    plan = core.on_change(w, wire.WatchChange(3, "acme/bot", "k", BASE, 1, "purge"))
    assert keys["pinned"] not in core.hits  # a purged version is gone for good


def test_first_hello_and_resync_revalidate_everything_a_resume_nothing(core: ClientCore, clock: Clock) -> None:
    ck = ("acme/bot", "k", PROD, None, False, False)
    _fill(core, ck, entry())  # filled before the stream connected
    w = core.want_watch("acme/bot")
    assert w is not None
    _, in_flight, _ = core.plan_get("acme/bot", "k2", PROD, None, False, False)  # sent before the hello
    assert in_flight is not None
    assert core.on_hello(w, wire.WatchHello("0", 5)) == [ck]
    core.install(in_flight.key, entry(key="k2"), None, in_flight.token)
    assert core.hits[in_flight.key].fresh_until == -math.inf  # kept (for offline use) but revalidated next
    _fill(core, ck, entry())
    assert core.hits[ck].fresh_until == math.inf
    core.stream_lost(w)
    assert core.hits[ck].fresh_until == clock.now + 5  # ttl from the drop, not forever
    assert core.watch_params(w) == (("since", "5"), ("epoch", "0"))
    assert core.on_hello(w, wire.WatchHello("0", 5)) == []  # a resume: the stream replays
    assert core.hits[ck].fresh_until == math.inf
    both = {ck, in_flight.key}
    assert set(core.on_resync(w, wire.WatchResync("epoch", "e2", 3))) == both
    assert (w.epoch, w.revision, core.status().epoch) == ("e2", 3, "e2")
    core.stream_lost(w)
    assert set(core.on_hello(w, wire.WatchHello("e3", 1))) == both  # another epoch in the hello: a resync too


def test_a_revoked_key_empties_the_cache(core: ClientCore) -> None:
    ck = ("acme/bot", "k", PROD, None, False, False)
    _fill(core, ck, entry())
    slot = core.hits[ck]
    w = core.want_watch("acme/bot")
    assert w is not None
    core.stream_stopped(w, AuthenticationError("API key revoked"))
    assert core.hits == {} and slot.fresh_until == -math.inf
    status = core.status()
    assert status.watch_errors == (("acme/bot", "AuthenticationError: API key revoked"),)
    assert core.want_watch("acme/bot") is None  # stopped for good


def test_our_own_write_is_read_back_from_the_cache(core: ClientCore) -> None:
    token = core.begin_write("acme/bot", "k")
    written = entry(version=2)
    core.wrote("acme/bot", "k", PROD, written, '"e2"', token)
    assert core.hits[("acme/bot", "k", PROD, None, False, False)].item is written
    core.wrote("acme/bot", "k", PROD, None, None, core.begin_write("acme/bot", "k"))
    assert core.hits[("acme/bot", "k", PROD, None, False, False)].fresh_until == -math.inf


def test_status_staleness_uses_the_monotonic_clock(core: ClientCore, clock: Clock) -> None:
    assert core.status().staleness_seconds == math.inf  # never heard from the service
    core.answered()
    clock.now += 7
    status = core.status()
    assert status.connected and status.source == "live" and status.staleness_seconds == 7
    w = core.want_watch("acme/bot")
    assert w is not None
    core.on_hello(w, wire.WatchHello("0", 1))
    assert core.status().watching == ()  # not before what it cached is revalidated
    core.caught_up(w)
    assert core.status().staleness_seconds == 0 and core.status().watching == ("acme/bot",)


def test_the_cache_is_bounded(clock: Clock) -> None:
    core = ClientCore("http://h", "k", max_entries=2, clock=clock)
    for n in range(4):
        _fill(core, ("ns", f"k{n}", PROD, None, False, False), entry(key=f"k{n}"))
    assert len(core.hits) == 2


def test_a_fill_in_flight_when_the_key_is_refused_is_not_installed(core: ClientCore) -> None:
    _, fetch, _ = core.plan_get("never/resynced", "k", PROD, None, False, False)
    assert fetch is not None
    core.forget_all("authentication failed")
    core.install(fetch.key, entry(ns="never/resynced"), None, fetch.token)
    assert core.hits == {}
