"""Integrity and abuse hardening over HTTP, each finding of the adversarial review replayed against a
real server: tampered rows, the fingerprint oracle, work before authorization, the environment scope
and `base`, attribution, the key tree, authentication floods, slow and vanishing clients, ambiguous
requests, health levels and what editors may move in and out."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from llm_config import metrics
from llm_config.core import transfer
from llm_config.errors import NotFoundError
from llm_config.types import AuditQuery
from tests.e2e.conftest import LiveServer

C = "/api/v1/configs"
N = "/api/v1/namespaces"


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    return str(body["message"])


def events(server: LiveServer, type_: str) -> list[dict[str, object]]:
    return [e.to_json() for e in server.manager.storage.audit_events(AuditQuery(type=type_))]


# ----------------------------------------------------------------------------- tampered rows

def test_a_tampered_row_is_a_503_naming_it_and_health_turns_unhealthy_but_stays_live(
    live_server: LiveServer, api: httpx.Client, store_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    assert api.put(f"{C}/acme/-/base_url", json={"value": "https://api.openai.com", "env": "prod"}).status_code == 200
    assert api.put(f"{C}/acme/-/model", json={"value": "gpt-4o", "env": "prod"}).status_code == 200
    with sqlite3.connect(store_dir / "config.db") as conn:
        conn.execute("UPDATE entries SET stored_value = '\"https://evil.example\"' WHERE key = 'base_url'")
    conn.close()
    time.sleep(0.02)  # past the foreign-commit check interval: the cached copy is dropped
    with caplog.at_level(logging.ERROR, logger="llm_config"):
        r = api.get(f"{C}/acme/base_url", params={"env": "prod"})
        message = assert_error(r, 503)
    assert message.startswith("Integrity check failed") and "base_url" in message and "evil" not in message
    assert any("Integrity check failed" in rec.getMessage() for rec in caplog.records)
    assert_error(api.get(f"{C}/acme", params={"env": "prod"}), 503)  # a listing fails whole
    assert_error(api.get(f"{N}/acme/-/resolve", params={"env": "prod"}), 503)
    assert api.get(f"{C}/acme/model", params={"env": "prod"}).status_code == 200  # other rows still serve
    live_server.app.state.health_cache = {}
    with live_server.client(key=None) as anon:
        health = anon.get("/health")
        assert health.status_code == 503 and health.json()["checks"]["integrity"] == {"status": "unhealthy"}
        assert anon.get("/health/live").status_code == 200  # a data problem must not restart the process
    verify = api.get("/api/v1/audit/verify").json()
    assert not verify["ok"] and any("base_url" in p for p in verify["problems"])


# ----------------------------------------------------------------------------- the fingerprint oracle

def test_fingerprints_are_no_oracle_across_places_or_scopes(live_server: LiveServer, api: httpx.Client) -> None:
    """The review's attack: an editor limited to development writes guesses in a scratch namespace and
    compares its events' fingerprints with a production secret's. Fingerprints are now bound to their
    place, production events are outside its scope, and roles that cannot read a value see no fingerprint."""
    secret = "sk-prod-guessable"
    assert api.put(f"{C}/acme/-/openai.api_key", json={"value": secret, "env": "prod", "secret": True}).status_code \
        == 200
    dev_editor = live_server.new_key("editor", environments=["development"])
    with live_server.client(dev_editor) as editor:
        for guess in ("sk-wrong", secret):
            assert editor.put(f"{C}/scratch/guess", json={"value": guess, "secret": True}).status_code == 200
        seen = editor.get("/api/v1/audit").json()
    assert all(e["environment"] in ("development", "base") for e in seen)
    assert not any(e["namespace"] == "acme" for e in seen)
    mine = [e["details"]["fingerprint"] for e in seen if e["type"] == "secret_modified"]
    assert len(mine) == 2  # its own writes keep their fingerprints
    prod = events(live_server, "secret_modified")[0]["details"]
    assert prod["fingerprint_scheme"] == 2
    assert prod["fingerprint"] not in mine  # same value, other place: a different fingerprint
    auditor = live_server.new_key("auditor")
    with live_server.client(auditor) as audit_reader:
        for event in audit_reader.get("/api/v1/audit").json():
            if event["type"] == "secret_modified":
                assert "fingerprint" not in event["details"]  # an auditor may not read secrets
        exported = audit_reader.get("/api/v1/audit/export").text
        assert prod["fingerprint"] not in exported
    with live_server.client(live_server.new_key("viewer")) as viewer:
        assert_error(viewer.get("/api/v1/audit"), 403)


# ----------------------------------------------------------------------------- work before authorization

def test_a_viewers_nested_yaml_import_is_refused_before_any_parser_runs(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_parsing(*_: object, **__: object) -> None:
        raise AssertionError("a parser ran before the permission check")

    monkeypatch.setattr(transfer, "parse_import", no_parsing)
    body = b"[" * 20_000
    viewer = live_server.new_key("viewer")
    with live_server.client(viewer) as client:
        r = client.post(f"{N}/acme/-/import", content=body, headers={"Content-Type": "application/yaml"})
        assert "may not config:import" in assert_error(r, 403)
        r = client.put(f"{C}/acme/k", content=b'{"value": ' + b"[" * 20_000 + b"}",
                       headers={"Content-Type": "application/json"})
        assert_error(r, 403)
        assert_error(client.post("/api/v1/keys", json={"name": "x", "role": "viewer"}), 403)
    assert len(events(live_server, "access_denied")) == 3


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/yaml", b"[" * 20_000),
    ("application/yaml", b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 600))),
    ("application/yaml", b"a: &x [1]\nb: *x\n"),
    ("application/json", b"[" * 100_000),
    ("application/json", b'{"values": {"k": ' + b"[" * 40 + b"]" * 40 + b"}}"),
])
def test_deep_or_aliased_documents_are_a_400_for_an_admin_too(
    api: httpx.Client, content_type: str, body: bytes
) -> None:
    started = time.monotonic()
    r = api.post(f"{N}/acme/-/import", content=body, headers={"Content-Type": content_type})
    message = assert_error(r, 400)
    assert "nested" in message or "aliases" in message or "Invalid" in message
    assert time.monotonic() - started < 30  # generous: the review measured 130 s for the first one


# ----------------------------------------------------------------------------- environment scope and base

def test_an_environment_scope_reads_base_but_writes_it_only_when_in_scope(
    live_server: LiveServer, api: httpx.Client
) -> None:
    api.put(f"{C}/acme/-/temperature", json={"value": 0.2, "env": "base"})
    api.put(f"{C}/acme/-/provider.key", json={"value": "sk-base", "env": "base", "secret": True})
    prod_only = live_server.new_key("editor", environments=["production"])
    with live_server.client(prod_only) as client:
        assert client.get(f"{C}/acme/temperature", params={"env": "base"}).json()["value"] == 0.2
        assert client.get(f"{C}/acme/temperature", params={"env": "prod", "with_overrides": "true"}).json()[
            "environment"] == "base"
        resolved = client.get(f"{N}/acme/-/resolve", params={"env": "prod", "reveal": "true"}).json()
        assert resolved == {"provider.key": "sk-base", "temperature": 0.2}
        assert client.get(f"{C}/acme/provider.key", params={"env": "base", "reveal": "true"}).json()[
            "value"] == "sk-base"
        assert_error(client.put(f"{C}/acme/-/temperature", json={"value": 0.9, "env": "base"}), 403)
        assert_error(client.delete(f"{C}/acme/temperature", params={"env": "base"}), 403)
        assert_error(client.get(f"{C}/acme/temperature", params={"env": "staging"}), 403)
    with_base = live_server.new_key("editor", environments=["production", "base"])
    with live_server.client(with_base) as client:
        assert client.put(f"{C}/acme/-/temperature", json={"value": 0.9, "env": "base"}).status_code == 200


# ----------------------------------------------------------------------------- attribution and the key tree

def test_events_name_the_key_id_and_live_key_names_are_unique(live_server: LiveServer, api: httpx.Client) -> None:
    created = api.post("/api/v1/keys", json={"name": "deployer", "role": "editor"}).json()
    assert_error(api.post("/api/v1/keys", json={"name": "deployer", "role": "viewer"}), 409)
    with live_server.client(created["key"]) as deployer:
        assert deployer.put(f"{C}/acme/k", json={"value": 1}).status_code == 200
    event = events(live_server, "config_created")[-1]
    assert event["actor"] == f"key:deployer#{created['id']}"
    key_created = next(e for e in events(live_server, "key_created") if e["details"]["key_id"] == created["id"])
    assert key_created["actor"] == live_server.admin_actor  # who created it, with its id
    assert api.delete(f"/api/v1/keys/{created['id']}").status_code == 204
    assert api.post("/api/v1/keys", json={"name": "deployer", "role": "viewer"}).status_code == 201  # reusable


def test_a_child_key_never_outlives_its_parent_and_dies_with_it(live_server: LiveServer, api: httpx.Client) -> None:
    parent = api.post("/api/v1/keys", json={"name": "team-admin", "role": "admin", "expires_days": 1}).json()
    with live_server.client(parent["key"]) as team:
        child = team.post("/api/v1/keys", json={"name": "ci", "role": "editor", "expires_days": 365}).json()
        forever = team.post("/api/v1/keys", json={"name": "bot", "role": "viewer"}).json()
        assert child["expires_at"] == parent["expires_at"] and forever["expires_at"] == parent["expires_at"]
        with live_server.client(child["key"]) as ci:
            grandchild = ci.post("/api/v1/keys", json={"name": "ci-read", "role": "viewer"})
            assert_error(grandchild, 403)  # editors hold no users:* permissions
        sub_admin = team.post("/api/v1/keys", json={"name": "sub", "role": "admin"}).json()
        with live_server.client(sub_admin["key"]) as sub:
            grand = sub.post("/api/v1/keys", json={"name": "grand", "role": "viewer"}).json()
    assert api.delete(f"/api/v1/keys/{parent['id']}").status_code == 204
    time.sleep(0.6)  # past the principal cache (AUTH_CACHE_SECONDS)
    for key in (parent, child, forever, sub_admin, grand):
        with live_server.client(key["key"]) as gone:
            assert_error(gone.get(f"{C}/acme"), 401)
    revoked = {e["details"]["key_id"]: e["details"] for e in events(live_server, "key_revoked")}
    assert set(revoked) == {parent["id"], child["id"], forever["id"], sub_admin["id"], grand["id"]}
    assert all(d.get("revoked_with") == parent["id"] for k, d in revoked.items() if k != parent["id"])


# ----------------------------------------------------------------------------- authentication floods

def test_a_flood_of_bad_keys_costs_one_audit_event_and_meets_the_address_limit(
    make_live_server: Callable[..., LiveServer]
) -> None:
    server = make_live_server(rate_limit_ip="10:10")
    with server.client(key="llmc_" + "A" * 43) as bad, server.client() as admin:
        statuses = [bad.get(f"{C}/acme/k").status_code for _ in range(200)]
        assert statuses[:10] == [401] * 10 and statuses.count(429) >= 150
        assert admin.put(f"{C}/acme/k", json={"value": 1}).status_code == 200  # a valid key is not held back
    assert len(events(server, "auth_failed")) == 1


# ----------------------------------------------------------------------------- slow and vanishing clients

def _connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (TimeoutError, OSError):
        return False


def test_slow_headers_are_cut_off(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(header_timeout=0.5)
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert _closed_by_server(sock, 5)
    with _connect(server) as idle:  # a connection that says nothing at all
        assert _closed_by_server(idle, 5)


def test_a_slow_body_gets_408(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(body_timeout=0.5)
    with _connect(server) as sock:
        sock.sendall(b"PUT /api/v1/configs/acme/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + server.admin_key.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(5)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and b"Request body not received within 0.5 s" in answer


def test_one_address_may_hold_only_so_many_connections(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(max_connections_per_ip=3, header_timeout=30)
    held = [_connect(server) for _ in range(3)]
    try:
        time.sleep(0.2)
        with _connect(server) as extra:
            assert _closed_by_server(extra, 5)
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    with server.client(key=None) as anon:
        assert anon.get("/health/live").status_code == 200  # the slots are free again


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    before = metrics.CLIENT_DISCONNECTS._value.get()
    with caplog.at_level(logging.INFO, logger="llm_config"):
        with _connect(live_server) as sock:
            sock.sendall(b"PUT /api/v1/configs/acme/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + live_server.admin_key.encode()
                         + b"\r\nContent-Length: 1000\r\n\r\n{\"value\": ")
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while metrics.CLIENT_DISCONNECTS._value.get() == before and time.monotonic() < deadline:
            time.sleep(0.05)
    assert metrics.CLIENT_DISCONNECTS._value.get() == before + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not any(k[2] == 500 for k, child in _http_counts().items() if child)


def _http_counts() -> dict[tuple[str, str, int], float]:
    out: dict[tuple[str, str, int], float] = {}
    for metric in metrics.HTTP_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                out[(labels["method"], labels["route"], int(labels["status"]))] = sample.value
    return out


# ----------------------------------------------------------------------------- ambiguous requests

def test_ambiguous_requests_are_refused(live_server: LiveServer, api: httpx.Client) -> None:
    r = api.put(f"{C}/acme/k", content=b'{"value": "x", "secret": true, "secret": false}',
                headers={"Content-Type": "application/json"})
    assert "same key twice" in assert_error(r, 400)
    with pytest.raises(NotFoundError):  # nothing was stored
        live_server.manager.get("acme", "k")
    other_key = live_server.new_key("admin")
    two = httpx.Headers([("Authorization", f"Bearer {live_server.admin_key}"),
                         ("Authorization", f"Bearer {other_key}")])
    with live_server.client(key=None) as anon:
        assert "one Authorization" in assert_error(anon.get(f"{C}/acme", headers=two), 400)
        two_x = httpx.Headers([("X-API-Key", live_server.admin_key), ("X-API-Key", other_key)])
        assert_error(anon.get(f"{C}/acme", headers=two_x), 400)


def test_if_match_compares_the_whole_etag_and_star_means_exists(api: httpx.Client) -> None:
    a = api.put(f"{C}/acme/a", json={"value": 1})
    b = api.put(f"{C}/acme/b", json={"value": 1})
    etag_a, etag_b = a.headers["etag"], b.headers["etag"]
    assert etag_a != etag_b and a.json()["version"] == b.json()["version"] == 1
    # b's ETag names the same version number, but another entry: never a match for a
    assert_error(api.put(f"{C}/acme/a", json={"value": 2}, headers={"If-Match": etag_b}), 412)
    assert_error(api.delete(f"{C}/acme/a", headers={"If-Match": etag_b}), 412)
    assert api.get(f"{C}/acme/a").json()["value"] == 1
    assert api.put(f"{C}/acme/a", json={"value": 2}, headers={"If-Match": etag_a}).status_code == 200
    assert_error(api.put(f"{C}/acme/a", json={"value": 3}, headers={"If-Match": etag_a}), 412)  # stale now
    assert_error(api.put(f"{C}/acme/a", json={"value": 3}, headers={"If-Match": f"W/{etag_a}"}), 412)
    assert api.put(f"{C}/acme/a", json={"value": 3}, headers={"If-Match": "*"}).status_code == 200
    assert_error(api.put(f"{C}/acme/new", json={"value": 1}, headers={"If-Match": "*"}), 412)
    assert api.delete(f"{C}/acme/b", headers={"If-Match": "*"}).status_code == 204
    assert_error(api.put(f"{C}/acme/b", json={"value": 1}, headers={"If-Match": "*"}), 412)  # a tombstone
    assert api.put(f"{C}/acme/a", json={"value": 4}, headers={"If-Match": '"3"'}).status_code == 200
    assert_error(api.put(f"{C}/acme/a", json={"value": 5}, headers={"If-Match": "garbage"}), 400)


# ----------------------------------------------------------------------------- health levels

def test_health_shows_details_only_to_a_key_with_system_read(live_server: LiveServer) -> None:
    with live_server.client(key=None) as anon:
        public = anon.get("/health").json()
    assert public["status"] == "healthy"
    assert all(check == {"status": "healthy"} for check in public["checks"].values())
    for role, detailed in (("auditor", True), ("admin", True), ("viewer", False), ("editor", False)):
        live_server.app.state.health_cache = {}
        with live_server.client(live_server.new_key(role)) as client:
            checks = client.get("/health").json()["checks"]
        assert ("message" in checks["audit"]) is detailed, role
        text = str(checks)
        assert "events" not in text or detailed
    with live_server.client(key="llmc_" + "B" * 43) as bad:
        assert_error(bad.get("/health"), 401)  # a key sent is checked like on any route


# ----------------------------------------------------------------------------- editors move files

def test_editors_export_and_import_within_their_scope(live_server: LiveServer, api: httpx.Client) -> None:
    api.put(f"{C}/acme/-/model", json={"value": "gpt-4o", "env": "dev"})
    api.put(f"{C}/acme/-/token", json={"value": "sk-1", "env": "dev", "secret": True})
    editor = live_server.new_key("editor", namespaces=["acme"], environments=["development"])
    with live_server.client(editor) as ci:
        doc = ci.get(f"{N}/acme/-/export", params={"env": "dev"}).json()
        assert doc["values"] == {"model": "gpt-4o"} and "secrets" not in doc
        revealed = ci.get(f"{N}/acme/-/export", params={"env": "dev", "reveal": "true"}).json()
        assert revealed["secrets"] == {"token": "sk-1"}
        plan = ci.post(f"{N}/acme/-/import", params={"env": "dev"}, json={"model": "gpt-4.1", "temp": 0.1})
        assert plan.status_code == 200 and plan.json()["created"] == ["temp"]
        assert_error(ci.post(f"{N}/acme/-/import", params={"env": "prod"}, json={"a": 1}), 403)
        assert_error(ci.post(f"{N}/other/-/import", params={"env": "dev"}, json={"a": 1}), 403)
        assert_error(ci.get(f"{N}/other/-/export", params={"env": "dev"}), 403)
