"""A canary secret driven through the error paths of render, diff, promote, rollback and import against a
schema (violations naming nested paths) never appears in a REST answer, an audit event or a log record."""

from __future__ import annotations

import logging
import secrets

import httpx
import pytest

from tests.e2e.conftest import LiveServer

NS = "acme"


def test_canary_secret_never_leaves_through_new_error_paths(
    live_server: LiveServer, api: httpx.Client, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"sk-canary-{secrets.token_hex(12)}"
    nested = {"auth": {canary: "x"}, "token": canary}
    seen: list[str] = []

    def call(client: httpx.Client, method: str, path: str, **kw: object) -> httpx.Response:
        r = client.request(method, path, **kw)  # type: ignore[arg-type]
        seen.append(f"{method} {path} {r.status_code} {r.text}")
        return r

    assert call(api, "PUT", f"/api/v1/configs/{NS}/api.key", json={"value": canary, "secret": True}).status_code == 200
    assert call(api, "PUT", f"/api/v1/configs/{NS}/creds", json={"value": nested, "secret": True}).status_code == 200
    # schemas written after the values: rollback, promotion and import meet them
    assert call(api, "PUT", f"/api/v1/schemas/{NS}/-/api.key",
                json={"schema": {"type": "string", "maxLength": 8, "pattern": "^[a-z]+$"}}).status_code == 200
    assert call(api, "PUT", f"/api/v1/schemas/{NS}/-/creds", json={"schema": {
        "type": "object", "properties": {"auth": {"type": "object", "additionalProperties": {"type": "integer"},
                                                  "propertyNames": {"maxLength": 3}}},
        "additionalProperties": False}}).status_code == 200

    # render: the secret used where it cannot go, the output cap, a config: reference to a secret
    call(api, "PUT", f"/api/v1/templates/{NS}/-/t", json={"content": "{{ secret:api.key }}{{ pad }}"})
    call(api, "PUT", f"/api/v1/templates/{NS}/-/c", json={"content": "{{ config:api.key }}"})
    call(api, "POST", f"/api/v1/templates/{NS}/-/t/render", json={"variables": {"pad": "p" * (1 << 20)}})
    call(api, "POST", f"/api/v1/templates/{NS}/-/c/render", json={})
    with live_server.client(live_server.new_key("viewer")) as viewer:
        call(viewer, "POST", f"/api/v1/templates/{NS}/-/t/render", json={"variables": {"pad": ""}})
        call(viewer, "GET", f"/api/v1/namespaces/{NS}/-/diff", params={"from": "development", "to": "staging"})
        call(viewer, "GET", f"/api/v1/configs/{NS}/api.key")
    # rollback / promotion / import against the schemas (422 naming key, path, rule)
    call(api, "PUT", f"/api/v1/configs/{NS}/api.key", json={"value": "short", "secret": True})
    call(api, "POST", f"/api/v1/configs/{NS}/api.key/rollback/1")
    call(api, "POST", f"/api/v1/namespaces/{NS}/-/promote", json={"from": "development", "to": "staging"})
    call(api, "POST", f"/api/v1/namespaces/{NS}/-/import", params={"env": "production"},
         json={"namespace": NS, "environment": "production", "values": {}, "secrets": {"creds": nested}})
    call(api, "PUT", f"/api/v1/configs/{NS}/creds", json={"value": nested, "secret": True, "env": "edge"})
    call(api, "GET", "/api/v1/audit")

    statuses = [line.split(" ", 3)[2] for line in seen]
    assert {"400", "403", "422"} <= set(statuses), seen  # the paths were really taken
    leaks = [line[:200] for line in seen if canary in line]
    leaks += [r.getMessage()[:200] for r in caplog.records if canary in r.getMessage()]
    assert not leaks, leaks
