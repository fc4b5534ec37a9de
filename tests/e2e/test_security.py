"""The security layer over HTTP (SPEC §8, §9): authentication, keys, bans, address lists, trusted
proxies, rate limits, headers, CORS, metrics and logs — against a real uvicorn server."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from llm_config.core.manager import ConfigManager
from llm_config.crypto.apikeys import generate_api_key
from llm_config.errors import ValidationError
from llm_config.server.limits import LocalBuckets, RateSpec, parse_rate
from llm_config.server.logs import REDACTED, redact
from llm_config.server.runner import INITIAL_KEY_FILE, initial_key_path, show_initial_key
from llm_config.server.security import BanList, client_address, parse_networks, query_carries_key
from llm_config.types import AuditQuery
from tests.e2e.conftest import LiveServer

C = "/api/v1/configs"


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == httpx.codes.get_reason_phrase(status)
    return str(body["message"])


def server_lines(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (the test's own client logs its URLs, query strings included)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("llm_config", "uvicorn")))


def audit(server: LiveServer, type_: str) -> list[dict[str, object]]:
    return [e.to_json() for e in server.manager.storage.audit_events(AuditQuery(type=type_))]


# ----------------------------------------------------------------------------- authentication

def test_missing_malformed_and_unknown_keys_are_401(live_server: LiveServer, anon: httpx.Client) -> None:
    live_server.manager.set("app", "k", 1)
    unknown = generate_api_key()
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "x" * 600},
        {"Authorization": f"Bearer {unknown}"},
        {"X-API-Key": unknown},
        {"X-API-Key": "not-a-key"},
        {"Authorization": f"Token {live_server.admin_key}"},
    ]
    for i, headers in enumerate(attempts):
        for path in (f"{C}/app/k", f"{C}/app/-/k/history", "/api/v1/audit", "/api/v1/keys"):
            r = anon.get(path, headers={**headers, "X-Request-ID": f"auth-{i}-{len(path)}"})
            assert_error(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.headers["cache-control"] == "no-store"
            assert unknown not in r.text and live_server.admin_key not in r.text
        r = anon.put(f"{C}/app/k", json={"value": 2}, headers=headers)
        assert_error(r, 401)
    assert live_server.manager.get("app", "k").value == 1
    # 40 failures from one address within a minute: one audit event (coalesced, SPEC §9), not 40 fsyncs
    events = audit(live_server, "auth_failed")
    assert len(events) == 1
    assert events[0]["source_ip"] == "127.0.0.1" and events[0]["actor"] == "anonymous"
    assert str(events[0]["request_id"]).startswith("auth-0-") and events[0]["details"]["reason"] == "missing"
    # the same key works through either header
    for headers in ({"Authorization": f"Bearer {live_server.admin_key}"}, {"X-API-Key": live_server.admin_key},
                    {"authorization": f"bearer {live_server.admin_key}"}):
        assert anon.get(f"{C}/app/k", headers=headers).status_code == 200
    # public routes need no key
    for path in ("/health", "/health/ready", "/metrics", "/openapi.json", "/docs"):
        assert anon.get(path).status_code == 200, path


def test_expired_key_is_401(live_server: LiveServer, anon: httpx.Client) -> None:
    live_server.manager.set("app", "k", 1)
    key = live_server.new_key("viewer", expires_days=1.0 / 86400)  # one second
    assert anon.get(f"{C}/app/k", headers={"X-API-Key": key}).status_code == 200
    time.sleep(1.6)  # past the expiry and the 0.5 s principal cache
    assert "expired" in assert_error(anon.get(f"{C}/app/k", headers={"X-API-Key": key}), 401)


def test_revocation_is_effective_on_the_next_request(live_server: LiveServer, api: httpx.Client) -> None:
    created = api.post("/api/v1/keys", json={"name": "ci", "role": "viewer"}).json()
    with live_server.client(created["key"]) as ci:
        assert ci.get(f"{C}/app").status_code == 200
        assert ci.get(f"{C}/app").status_code == 200  # cached principal
        assert api.delete(f"/api/v1/keys/{created['id']}").status_code == 204
        assert_error(ci.get(f"{C}/app"), 401)
    listed = {k["id"]: k for k in api.get("/api/v1/keys").json()}
    assert listed[created["id"]]["revoked_at"] is not None
    assert [e["details"]["key_id"] for e in audit(live_server, "key_revoked")] == [created["id"]]


@pytest.mark.parametrize("query", ["api_key={key}", "key={key}", "token={key}", "access_token={key}",
                                   "env=dev&apikey={key}", "x={key}", "API_KEY=zq9secret", "Token=x"])
def test_keys_in_the_query_string_are_refused(
    live_server: LiveServer, api: httpx.Client, caplog: pytest.LogCaptureFixture, query: str,
) -> None:
    live_server.manager.set("app", "k", 1)
    q = query.format(key=live_server.admin_key)
    with caplog.at_level(logging.INFO, logger="llm_config"):
        for client_headers in ({}, {"Authorization": "Bearer nothing"}):
            r = api.get(f"{C}/app/k?{q}", headers=client_headers)
            assert "query string" in assert_error(r, 400)
            assert live_server.admin_key not in r.text
        assert_error(api.put(f"{C}/app/k?{q}", json={"value": 2}), 400)
    server_log = server_lines(caplog)
    assert server_log and live_server.admin_key not in server_log and "zq9secret" not in server_log
    assert live_server.manager.get("app", "k").value == 1


def test_mass_assignment_is_refused(live_server: LiveServer, api: httpx.Client) -> None:
    for field in ("actor", "created_by", "updated_by", "role", "id", "version", "metadata"):
        message = assert_error(api.put(f"{C}/app/k", json={"value": 1, field: "root"}), 400)
        assert field in message
    for field, value in (("id", "key_0000000000000000"), ("created_by", "root"), ("key", generate_api_key()),
                         ("revoked_at", None), ("key_hash", "00"), ("actor", "root")):
        body = {"name": "x", "role": "viewer", field: value}
        assert field in assert_error(api.post("/api/v1/keys", json=body), 400)
    entry = api.put(f"{C}/app/k", json={"value": 1}).json()
    assert entry["metadata"]["created_by"] == live_server.admin_actor and entry["version"] == 1
    assert [k["name"] for k in api.get("/api/v1/keys").json()] == ["test-admin"]


# ----------------------------------------------------------------------------- keys over HTTP

def test_keys_create_list_revoke(live_server: LiveServer, api: httpx.Client) -> None:
    r = api.post("/api/v1/keys", json={"name": "ci-dev", "role": "editor", "namespaces": ["acme"],
                                       "environments": ["dev"], "expires_days": 30})
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "name", "role", "namespaces", "environments", "expires_at", "key"}
    assert created["key"].startswith("llmc_") and len(created["key"]) >= 5 + 32
    assert created["environments"] == ["development"] and created["namespaces"] == ["acme"]
    assert created["expires_at"].endswith("Z")
    assert r.headers["cache-control"] == "no-store"
    listed = api.get("/api/v1/keys")
    assert created["key"] not in listed.text and "key_hash" not in listed.text
    assert {k["name"] for k in listed.json()} == {"test-admin", "ci-dev"}
    # the new key acts within its limits only
    with live_server.client(created["key"]) as ci:
        assert ci.put(f"{C}/acme/-/model", json={"value": "m"}).status_code == 200
        assert ci.put(f"{C}/acme/sub/-/model", json={"value": "m"}).status_code == 200
        assert_error(ci.put(f"{C}/acme/-/model", json={"value": "m", "env": "prod"}), 403)
        assert_error(ci.put(f"{C}/acmex/-/model", json={"value": "m"}), 403)
        assert_error(ci.get("/api/v1/keys"), 403)
        assert_error(ci.post("/api/v1/keys", json={"name": "x", "role": "viewer"}), 403)
    # a scoped admin may create narrower keys only, and sees only those
    scoped = live_server.new_key("admin", namespaces=["acme"])
    with live_server.client(scoped) as admin_acme:
        assert admin_acme.post("/api/v1/keys", json={"name": "n", "role": "viewer",
                                                     "namespaces": ["acme/sub"]}).status_code == 201
        assert_error(admin_acme.post("/api/v1/keys", json={"name": "w", "role": "viewer"}), 403)
        assert_error(admin_acme.post("/api/v1/keys", json={"name": "w", "role": "viewer",
                                                           "namespaces": ["other"]}), 403)
        visible = {k["name"] for k in admin_acme.get("/api/v1/keys").json()}
        assert {"ci-dev", "n"} <= visible and "test-admin" not in visible
        assert_error(admin_acme.delete(f"/api/v1/keys/{live_server.manager.list_api_keys()[0].id}"), 404)
    assert api.delete(f"/api/v1/keys/{created['id']}").status_code == 204
    assert api.delete(f"/api/v1/keys/{created['id']}").status_code == 204  # idempotent
    assert_error(api.delete("/api/v1/keys/key_0123456789abcdef"), 404)
    assert_error(api.delete("/api/v1/keys/not-an-id"), 400)
    for bad in ({"name": "", "role": "viewer"}, {"name": "x", "role": "root"}, {"name": "x"},
                {"name": "x", "role": "viewer", "expires_days": 0}, {"name": "x", "role": "viewer",
                                                                     "environments": ["moon"]},
                {"name": "x", "role": "viewer", "namespaces": ["../etc"]}, [1]):
        assert_error(api.post("/api/v1/keys", json=bad), 400)
    assert_error(api.post("/api/v1/keys", content=b"name=x", headers={"Content-Type": "text/plain"}), 415)
    types = Counter(e["type"] for e in audit(live_server, "key_created") + audit(live_server, "access_denied"))
    assert types["key_created"] == 4 and types["access_denied"] >= 5


# ----------------------------------------------------------------------------- bans, CIDR lists, proxies

def _fail(client: httpx.Client, n: int, **headers: str) -> list[int]:
    bad = {"Authorization": f"Bearer {generate_api_key()}", **headers}
    return [client.get(f"{C}/app/k", headers=bad).status_code for _ in range(n)]


def test_ten_failures_ban_the_address_for_an_hour(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(ban_loopback=True)
    with server.client() as api, server.client(key=None) as anon:
        assert api.get(f"{C}/app").status_code == 200
        assert _fail(anon, 10) == [401] * 10
        r = api.get(f"{C}/app")  # banned: even a valid key, even public routes
        assert "failed authentications" in assert_error(r, 403)
        assert 3500 <= int(r.headers["retry-after"]) <= 3600
        assert_error(anon.get("/health"), 403)
    bans = server.app.state.bans.list()
    assert [b.ip for b in bans] == ["127.0.0.1"] and bans[0].expires_at - bans[0].banned_at == 3600


def test_loopback_is_exempt_from_bans_by_default(live_server: LiveServer, anon: httpx.Client) -> None:
    assert _fail(anon, 25) == [401] * 25
    assert anon.get("/health").status_code == 200
    assert live_server.app.state.bans.list() == []


def test_list_and_lift_bans_behind_a_trusted_proxy(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(trusted_proxy=["127.0.0.1/32"])
    attacker, admin_ip = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.1"}
    with server.client(headers=admin_ip) as api, server.client(key=None) as anon:
        assert _fail(anon, 9, **attacker) == [401] * 9
        assert api.get("/api/v1/admin/bans").json() == []
        assert _fail(anon, 2, **attacker) == [401, 403]
        assert_error(anon.get("/health", headers=attacker), 403)
        assert anon.get("/health", headers=admin_ip).status_code == 200
        bans = api.get("/api/v1/admin/bans").json()
        assert [b["ip"] for b in bans] == ["203.0.113.7"] and bans[0]["failures"] == 10
        assert set(bans[0]) == {"ip", "banned_at", "expires_at", "failures"}
        viewer = server.new_key("viewer")
        scoped_admin = server.new_key("admin", namespaces=["acme"])
        auditor = server.new_key("auditor")
        for key, list_status, lift_status in ((viewer, 403, 403), (scoped_admin, 403, 403), (auditor, 200, 403)):
            with server.client(key, headers=admin_ip) as other:
                assert other.get("/api/v1/admin/bans").status_code == list_status
                assert other.delete("/api/v1/admin/bans/203.0.113.7").status_code == lift_status
        assert api.delete("/api/v1/admin/bans/203.0.113.7").status_code == 204
        assert_error(api.delete("/api/v1/admin/bans/203.0.113.7"), 404)
        assert_error(api.delete("/api/v1/admin/bans/not-an-ip"), 400)
        assert _fail(anon, 1, **attacker) == [401]  # lifted, and the count starts over
        assert api.get("/api/v1/admin/bans").json() == []
    denied = audit(server, "access_denied")
    assert len(denied) == 5 and {e["source_ip"] for e in denied} == {"198.51.100.1"}


def test_forwarded_for_only_from_trusted_proxies(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(trusted_proxy=["127.0.0.1/32", "10.0.0.0/8"])
    cases = [
        ("1.2.3.4", "1.2.3.4"),
        ("6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client's own claim (left) never counts
        ("1.2.3.4, 10.0.0.9", "1.2.3.4"),  # trusted hops are skipped
        ("10.0.0.1, 10.0.0.2", "10.0.0.1"),
        ("garbage, 1.2.3.4", "1.2.3.4"),
        # a hop that is no address is its own client, never the proxy (whose ban would lock out everyone)
        ("1.2.3.4, garbage", "hop:garbage"),
        ("010.000.000.001", "hop:010.000.000.001"),
        ("2001:db8::5", "2001:db8::5"),
        ("203.0.113.7:4711", "203.0.113.7"),  # hops may carry ports
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("[2001:db8::8]", "2001:db8::8"),
        ("1.2.3.4, 10.0.0.9:8080", "1.2.3.4"),
    ]
    with server.client() as api:
        for i, (header, expected) in enumerate(cases):
            r = api.put(f"{C}/app/k{i}", json={"value": i}, headers={"X-Forwarded-For": header})
            assert r.status_code == 200
            event = server.manager.storage.audit_events(AuditQuery(namespace="app"))[-1]
            assert event.source_ip == expected, (header, event.source_ip)
    assert client_address("1.2.3.4", [b"5.6.7.8"], parse_networks(["10.0.0.0/8"], "x")) == "1.2.3.4"
    assert client_address("::ffff:127.0.0.1", [], ()) == "127.0.0.1"


@pytest.mark.parametrize(("options", "forwarded", "status"), [
    ({"deny_cidr": ["127.0.0.0/8"]}, None, 403),
    ({"allow_cidr": ["10.0.0.0/8"]}, None, 403),
    ({"allow_cidr": ["10.0.0.0/8", "127.0.0.1/32"]}, None, 200),
    ({"deny_cidr": ["2001:db8::/32"], "trusted_proxy": ["127.0.0.1"]}, "2001:db8::7", 403),
    ({"deny_cidr": ["2001:db8::/32"], "trusted_proxy": ["127.0.0.1"]}, "2001:db9::7", 200),
    ({"allow_cidr": ["::ffff:192.0.2.0/120"], "trusted_proxy": ["127.0.0.1"]}, "192.0.2.9", 200),
    ({"allow_cidr": ["192.0.2.0/24"], "deny_cidr": ["192.0.2.9"], "trusted_proxy": ["127.0.0.1"]}, "192.0.2.9", 403),
])
def test_cidr_lists_come_first(make_live_server: Callable[..., LiveServer], options: dict[str, list[str]],
                               forwarded: str | None, status: int) -> None:
    server = make_live_server(**options)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with server.client(headers=headers) as api, server.client(key=None, headers=headers) as anon:
        for client, path in ((api, f"{C}/app"), (anon, "/health"), (anon, f"{C}/app"), (anon, "/metrics")):
            r = client.get(path)
            if status == 403:
                assert "not allowed" in assert_error(r, 403)
            else:
                assert r.status_code in (200, 401), r.text
    if status == 403:
        assert audit(server, "auth_failed") == []  # refused before authentication was even tried


# ----------------------------------------------------------------------------- rate limits

def test_a_burst_of_1000_requests_meets_the_key_limit(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(rate_limit_key="100:50")
    server.manager.set("app", "k", 1)
    statuses: Counter[int] = Counter()
    with server.client() as api:
        started = time.monotonic()
        last_ok = last_limited = None
        for _ in range(1000):
            r = api.get(f"{C}/app/k")
            statuses[r.status_code] += 1
            if r.status_code == 200:
                last_ok = r
            else:
                last_limited = r
        elapsed = time.monotonic() - started
    assert set(statuses) == {200, 429}, statuses
    assert 50 <= statuses[200] <= 50 + 100 * elapsed + 2, (statuses, elapsed)
    assert last_ok is not None and last_limited is not None
    assert last_ok.headers["x-ratelimit-limit"] == "50"
    assert 0 <= int(last_ok.headers["x-ratelimit-remaining"]) < 50
    assert int(last_ok.headers["x-ratelimit-reset"]) >= 0
    assert "Rate limit" in assert_error(last_limited, 429)
    assert int(last_limited.headers["retry-after"]) >= 1
    assert last_limited.headers["x-ratelimit-remaining"] == "0"
    # one key's flood does not touch another key's bucket
    with server.client(server.new_key("viewer")) as other:
        assert other.get(f"{C}/app/k").status_code == 200


def test_unauthenticated_requests_meet_the_address_limit(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(rate_limit_ip="1:10")  # a bucket of 10, one token back per second
    with server.client(key=None) as anon, server.client() as api:
        health = [anon.get("/health").status_code for _ in range(30)]
        assert health[:10] == [200] * 10 and 429 in health[10:] and health.count(200) <= 11
        limited = anon.get("/health")
        assert_error(limited, 429)
        assert limited.headers["x-ratelimit-limit"] == "10" and int(limited.headers["retry-after"]) >= 1
        assert api.get(f"{C}/app").status_code == 200  # a valid key uses its own bucket
        assert_error(anon.get(f"{C}/app"), 429)  # nothing presented: refused before any audit write
    assert audit(server, "auth_failed") == []


def test_rate_specs() -> None:
    assert parse_rate("100:50", "x") == RateSpec(100, 50)
    assert parse_rate("0", "x") is None and parse_rate("0:9", "x") is None and parse_rate("", "x") is None
    assert parse_rate("2.5:5", "x") == RateSpec(2.5, 5)
    for bad in ("a:b", "-1:5", "10:0", "1e9:1"):
        with pytest.raises(ValidationError, match="RATE"):
            parse_rate(bad, "x")
    clock = [1000.0]
    bucket = LocalBuckets(RateSpec(10, 3), clock=lambda: clock[0])
    assert [bucket.hit("a").allowed for _ in range(4)] == [True, True, True, False]
    assert bucket.hit("a").retry_after == 1
    clock[0] += 0.1  # one token back
    assert bucket.hit("a").allowed and not bucket.hit("a").allowed
    clock[0] += 10
    assert bucket.hit("a").remaining == 2


# ----------------------------------------------------------------------------- headers, CORS

def test_security_headers_everywhere(live_server: LiveServer, api: httpx.Client, anon: httpx.Client) -> None:
    live_server.manager.set("app", "k", 1)
    for client, path, status in ((anon, "/health", 200), (anon, "/metrics", 200), (anon, "/openapi.json", 200),
                                 (anon, f"{C}/app/k", 401), (api, f"{C}/app/k", 200), (api, f"{C}/app/none", 404),
                                 (anon, "/nothing", 404), (anon, "/docs", 200)):
        r = client.get(path)
        assert r.status_code == status, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in r.headers  # plain HTTP
        if path == "/docs":
            assert "content-security-policy" not in r.headers  # Swagger UI loads its scripts
        else:
            assert "default-src 'none'" in r.headers["content-security-policy"]
        assert (r.headers.get("cache-control") == "no-store") is path.startswith("/api/")
        assert "server" not in r.headers


def test_cors_is_off_by_default(api: httpx.Client) -> None:
    preflight = api.options(f"{C}/app/k", headers={"Origin": "https://app.example.com",
                                                   "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    r = api.get(f"{C}/app", headers={"Origin": "https://app.example.com"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_allows_exactly_the_configured_origins(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(cors_origin=["https://app.example.com", "http://localhost:3000/"])
    with server.client() as api, server.client(key=None) as anon:
        for origin in ("https://app.example.com", "http://localhost:3000"):
            pre = anon.options(f"{C}/app/k", headers={"Origin": origin, "Access-Control-Request-Method": "PUT",
                                                      "Access-Control-Request-Headers": "authorization,content-type"})
            assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
            assert "authorization" in pre.headers["access-control-allow-headers"].lower()
            assert pre.headers["x-content-type-options"] == "nosniff"
        evil = anon.options(f"{C}/app/k", headers={"Origin": "https://evil.example.com",
                                                   "Access-Control-Request-Method": "GET"})
        assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
        r = api.get(f"{C}/app", headers={"Origin": "https://app.example.com"})
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "x-ratelimit-remaining" in r.headers["access-control-expose-headers"].lower()
        assert "access-control-allow-credentials" not in r.headers
        denied = anon.get(f"{C}/app", headers={"Origin": "https://app.example.com"})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "access-control-allow-origin" not in api.get(f"{C}/app", headers={"Origin": "https://x.com"}).headers


def test_bad_options_are_refused(make_live_server: Callable[..., LiveServer]) -> None:
    for options in ({"cors_origin": ["*"]}, {"deny_cidr": ["300.1.1.1"]}, {"trusted_proxy": ["nope"]},
                    {"rate_limit_key": "fast"}):
        with pytest.raises(ValidationError, match="Invalid"):
            make_live_server(**options)


# ----------------------------------------------------------------------------- metrics

def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_by_route_template(live_server: LiveServer, api: httpx.Client, anon: httpx.Client) -> None:
    before = anon.get("/metrics").text
    api.put(f"{C}/secretns/-/secretkey", json={"value": "v"})
    for _ in range(3):
        api.get(f"{C}/secretns/-/secretkey")  # the first fills the cache, the others hit it
    api.get(f"{C}/secretns/-/secretkey", params={"env": "prod"})  # 404
    anon.get(f"{C}/secretns/-/secretkey")
    with live_server.client(live_server.new_key("viewer")) as viewer:
        viewer.put(f"{C}/secretns/-/secretkey", json={"value": "w"})
    r = anon.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "secretns" not in text and "secretkey" not in text and live_server.admin_key not in text
    route = "/api/v1/configs/{ns}/-/{key}"
    assert _metric(text, "llm_config_http_requests_total", route=route, method="GET", status="200") - \
        _metric(before, "llm_config_http_requests_total", route=route, method="GET", status="200") == 3
    assert _metric(text, "llm_config_http_requests_total", route=route, method="GET", status="404") >= 1
    assert _metric(text, "llm_config_http_requests_total", route=route, method="GET", status="401") >= 1
    assert _metric(text, "llm_config_http_request_duration_seconds_count", route=route, method="GET") >= 5
    assert _metric(text, "llm_config_operations_total", operation="set", environment="development",
                   outcome="ok") >= 1
    assert _metric(text, "llm_config_operation_duration_seconds_count", operation="get",
                   environment="production") >= 1
    assert _metric(text, "llm_config_cache_hits_total", tier="l1") >= 2
    assert _metric(text, "llm_config_cache_misses_total", tier="l1") >= 1
    assert "llm_config_cache_evictions_total" in text and "llm_config_cache_entries" in text
    assert _metric(text, "llm_config_rbac_checks_total", outcome="denied") >= 1
    assert _metric(text, "llm_config_rbac_denials_total", operation="set") >= 1
    assert _metric(text, "llm_config_auth_failures_total", reason="missing") >= 1
    assert _metric(text, "llm_config_audit_events_total") == live_server.manager.storage.audit_head()[0]  # type: ignore[index]
    for name in ("llm_config_rate_limited_total", "llm_config_storage_errors_total", "llm_config_bans_total",
                 "llm_config_ip_refused_total"):
        assert f"# HELP {name} " in text, name
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert names and all(n.startswith("llm_config_") for n in names), names


def test_metrics_auth(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(metrics_auth=True)
    with server.client(key=None) as anon:
        assert_error(anon.get("/metrics"), 401)
        assert anon.get("/health").status_code == 200
        for role, status in (("viewer", 403), ("editor", 403), ("auditor", 200), ("admin", 200)):
            assert anon.get("/metrics", headers={"X-API-Key": server.new_key(role)}).status_code == status
        scoped = server.new_key("auditor", namespaces=["acme"])
        assert_error(anon.get("/metrics", headers={"X-API-Key": scoped}), 403)
        spec = anon.get("/openapi.json").json()
        assert spec["paths"]["/metrics"]["get"]["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]
    assert len(audit(server, "access_denied")) == 3


# ----------------------------------------------------------------------------- logs and the first key

def test_redaction_processor() -> None:
    key = generate_api_key()
    event = {
        "event": f"saw {key} here", "api_key": "x", "Authorization": "Bearer y", "password": "p",
        "client_secret": "s", "value": "v", "x_token": "t", "route": "/api/v1/configs/{ns}/{key}",
        "nested": {"inner": [f"prefix {key}", {"token": "z"}]}, "status": 200,
    }
    out = redact(None, "info", dict(event))
    rendered = json.dumps(out)
    assert key not in rendered and "Bearer y" not in rendered
    for name in ("api_key", "Authorization", "password", "client_secret", "value", "x_token"):
        assert out[name] == REDACTED
    assert out["route"] == event["route"] and out["status"] == 200
    assert out["nested"]["inner"][1]["token"] == REDACTED and "llmc_" in out["event"]


def test_access_log_lines(live_server: LiveServer, api: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="llm_config.server.access"):
        api.put(f"{C}/app/-/k", json={"value": "v", "env": "prod"}, headers={"X-Request-ID": "log-1"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_config.server.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "PUT" and line["route"] == "/api/v1/configs/{ns}/-/{key}" and line["status"] == 200
    assert line["request_id"] == "log-1" and line["client_ip"] == "127.0.0.1"
    assert line["actor"] == live_server.admin_actor
    assert line["duration_ms"] > 0
    assert "prod" not in server_lines(caplog) and live_server.admin_key not in server_lines(caplog)


def test_first_start_key_is_shown_once(
    make_manager: Callable[..., ConfigManager], store_dir: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    manager = make_manager()
    with caplog.at_level(logging.INFO, logger="llm_config"):
        path = show_initial_key(manager, str(store_dir), interactive=False)
    assert path == store_dir / INITIAL_KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = path.read_text().strip()
    assert key.startswith("llmc_") and manager.authenticate(key).role.value == "admin"
    assert str(path) in server_lines(caplog) and key not in caplog.text and key not in capsys.readouterr().err
    assert show_initial_key(manager, str(store_dir), interactive=False) is None  # never twice
    # on a terminal: shown there too, and written to the same file (SPEC §9)
    other = make_manager(storage=str(tmp_path / "tty-store"))
    written = show_initial_key(other, str(tmp_path / "tty-store"), interactive=True)
    shown = capsys.readouterr().err
    assert written == tmp_path / "tty-store" / INITIAL_KEY_FILE
    assert written.read_text().strip() in shown and "delete that file" in shown
    # URL stores: in the configuration directory
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert initial_key_path(url) == Path(os.environ["XDG_CONFIG_HOME"]) / "llm-config" / INITIAL_KEY_FILE


def test_unit_helpers() -> None:
    assert query_carries_key(b"api_key=x") and query_carries_key(b"a=1&TOKEN=2") and query_carries_key(b"k%65y=1")
    assert query_carries_key(b"v=llmc_abc") and not query_carries_key(b"env=dev&prefix=key")
    bans = BanList(threshold=3, window=10, duration=60, clock=lambda: 100.0)
    assert bans.record_failure("127.0.0.1") is None and bans.record_failure("::1") is None  # loopback exempt
    assert [bans.record_failure("192.0.2.1") for _ in range(3)][-1] is not None
    assert bans.banned("192.0.2.1") is not None and bans.lift("192.0.2.1") and bans.banned("192.0.2.1") is None


def test_audit_reads_record_who_read_from_where(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(audit_reads=True, trusted_proxy=["127.0.0.1/32"])
    server.manager.set("app", "k", 1)
    with server.client(headers={"X-Forwarded-For": "198.51.100.9"}) as api:
        for i in range(3):  # cached after the first: still audited, with the caller's address and id
            assert api.get(f"{C}/app/k", headers={"X-Request-ID": f"read-{i}"}).status_code == 200
    deadline = time.monotonic() + 5
    while len(events := audit(server, "config_accessed")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["request_id"] for e in events] == ["read-0", "read-1", "read-2"]
    assert {e["source_ip"] for e in events} == {"198.51.100.9"}
    assert {e["actor"] for e in events} == {server.admin_actor}
