"""Leak sweep: a canary secret and a canary API key go through every route — successes, errors
and denials — and then neither may appear in the server's logs and output, in any response body
(except the explicit reveals, and the one answer that creates the key), in `/metrics`, in the
audit table or in the raw SQLite files."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from llm_config.types import AuditQuery
from tests.e2e.conftest import LiveServer

C = "/api/v1/configs"
N = "/api/v1/namespaces"


def test_no_secret_or_api_key_leaks_anywhere(
    make_live_server: Callable[..., LiveServer], store_dir: Path, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    canary = f"sk-canary-{uuid.uuid4()}"
    caplog.set_level(logging.DEBUG, logger="llm_config")
    server = make_live_server(rate_limit_key="10000:10000", rate_limit_ip="10000:10000")
    bodies: list[tuple[str, str]] = []  # every answer that must not hold the canary
    revealed: list[str] = []

    with server.client() as admin:
        created = admin.post("/api/v1/keys", json={"name": "canary", "role": "editor"})
        assert created.status_code == 201
        api_key = created.json()["key"]  # shown once, here: the one body allowed to hold it
        key_id = created.json()["id"]
        viewer_key = admin.post("/api/v1/keys", json={"name": "peek", "role": "viewer"}).json()["key"]

        def record(label: str, response: httpx.Response, reveal: bool = False) -> httpx.Response:
            assert response.status_code < 500, (label, response.status_code, response.text[:200])
            (revealed.append(response.text) if reveal else bodies.append((label, response.text)))
            return response

        with server.client(api_key) as api, server.client(viewer_key) as viewer, server.client(key=None) as anon:
            secret_body = {"value": canary, "secret": True, "description": "the canary"}
            record("put secret", api.put(f"{C}/app/token", json=secret_body))
            record("put secret again", api.post(f"{C}/app/-/token", json=secret_body))
            record("put plain", api.put(f"{C}/app/model", json={"value": "gpt"}))
            for _ in range(3):  # miss, then hits on the event loop
                record("get", api.get(f"{C}/app/token"))
                record("get multi", api.get(f"{C}/app/-/token", params={"env": "dev"}))
            record("get version", api.get(f"{C}/app/token", params={"version": 1}))
            record("get 304", api.get(f"{C}/app/token", headers={"If-None-Match": "*"}))
            record("reveal", api.get(f"{C}/app/token", params={"reveal": "true"}), reveal=True)
            record("reveal old", api.get(f"{C}/app/token", params={"reveal": "true", "version": 1}), reveal=True)
            record("history", api.get(f"{C}/app/token/history"))
            record("rollback", api.post(f"{C}/app/token/rollback/1"))
            record("list", api.get(f"{C}/app"))
            record("list multi", api.get(f"{C}/app/-/", params={"recursive": "true"}))
            record("namespaces", api.get(N))
            record("resolve", api.get(f"{N}/app/-/resolve"))
            record("resolve nested", api.get(f"{N}/app/-/resolve", params={"nested": "true"}))
            record("resolve reveal", api.get(f"{N}/app/-/resolve", params={"reveal": "true"}), reveal=True)
            for fmt in ("json", "yaml", "dotenv"):
                record(f"export {fmt}", admin.get(f"{N}/app/-/export", params={"format": fmt}))
                record(f"export {fmt} reveal", admin.get(f"{N}/app/-/export", params={"format": fmt, "reveal": "true"}),
                       reveal=True)
            document = {"namespace": "app", "environment": "staging", "values": {"m": 1}, "secrets": {"t": canary}}
            record("import", admin.post(f"{N}/copy/-/import", json=document, params={"env": "staging"}))
            record("import dry", admin.post(f"{N}/copy/-/import", json=document, params={"dry_run": "true"}))
            # errors and refusals, each carrying the canary in what it refuses
            record("no echo: conflict", api.put(f"{C}/app/token", json={**secret_body, "expected_version": 99}))
            record("no echo: if-match", api.put(f"{C}/app/token", json=secret_body, headers={"If-Match": "77"}))
            record("no echo: plain over secret", api.put(f"{C}/app/token", json={"value": canary}))
            record("no echo: unknown field", api.put(f"{C}/app/x", json={"value": 1, "note": canary}))
            record("no echo: mass assignment", api.put(f"{C}/app/x", json={"value": canary, "created_by": canary}))
            record("no echo: NaN", api.put(f"{C}/app/x", content=f'{{"value": NaN, "c": "{canary}"}}',
                                           headers={"Content-Type": "application/json"}))
            record("no echo: malformed", api.put(f"{C}/app/x", content=f'{{"value": "{canary}"',
                                                 headers={"Content-Type": "application/json"}))
            record("no echo: content type", api.put(f"{C}/app/x", content=canary,
                                                    headers={"Content-Type": "text/plain"}))
            record("no echo: bad env", api.put(f"{C}/app/x", json={"value": canary, "env": "moon"}))
            record("no echo: import", admin.post(f"{N}/copy/-/import", json={"bad key!": canary}))
            record("denied write", viewer.put(f"{C}/app/token", json=secret_body))
            record("denied reveal", viewer.get(f"{C}/app/token", params={"reveal": "true"}))
            record("denied export", viewer.get(f"{N}/app/-/export", params={"reveal": "true"}))
            record("denied keys", viewer.post("/api/v1/keys", json={"name": canary[:90], "role": "admin"}))
            record("no key", anon.get(f"{C}/app/token"))
            record("bad key", anon.get(f"{C}/app/token", headers={"Authorization": f"Bearer {canary}"}))
            record("bad key header", anon.get(f"{C}/app/token", headers={"X-API-Key": api_key + "x"}))
            record("key in query", anon.get(f"{C}/app/token", params={"api_key": api_key}))
            record("key in query with header", api.get(f"{C}/app/token", params={"token": api_key}))
            record("oversized", api.put(f"{C}/app/x", content=b'{"value": "' + canary.encode() * 70_000 + b'"}',
                                        headers={"Content-Type": "application/json"}))
            record("delete", api.delete(f"{C}/app/model"))
            record("missing", api.get(f"{C}/app/model"))
            # audit, keys, bans, health, docs
            for path in ("/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit/head", "/api/v1/audit/export",
                         "/api/v1/keys", "/api/v1/admin/bans", "/health", "/health/ready", "/openapi.json", "/docs"):
                record(path, admin.get(path))
            record("lift no ban", admin.delete("/api/v1/admin/bans/192.0.2.1"))
            record("audit denied", viewer.get("/api/v1/audit"))
            record("revoke", admin.delete(f"/api/v1/keys/{key_id}"))
            record("revoked key", api.get(f"{C}/app/token"))
            metrics = record("metrics", anon.get("/metrics")).text

    assert any(canary in text for text in revealed), "the explicit reveals must show the value"
    for label, text in bodies:
        assert canary not in text, f"the canary secret leaked in: {label}"
        assert api_key not in text, f"the API key leaked in: {label}"
    assert canary not in metrics and api_key not in metrics
    logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    out, err = capfd.readouterr()
    assert "request" in logs  # the access log did run
    for where, text in (("logs", logs), ("stdout", out), ("stderr", err)):
        assert canary not in text, f"the canary secret leaked in the server's {where}"
        assert api_key not in text, f"the API key leaked in the server's {where}"
    trail = json.dumps([e.to_json() for e in server.manager.storage.audit_events(AuditQuery())])
    assert "secret_accessed" in trail and "access_denied" in trail and "auth_failed" in trail
    assert canary not in trail and api_key not in trail
    raw = b"".join(p.read_bytes() for p in sorted(store_dir.iterdir()) if p.is_file())
    assert raw, "no database files found"
    assert canary.encode() not in raw and api_key.encode() not in raw
    assert canary.split("-", 2)[2].encode() not in raw  # not even the uuid part
