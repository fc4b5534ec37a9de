"""`POST /api/v1/admin/rotate-key` (SPEC §2, §8): admins only, the new key named by its id (key material never
travels over HTTP), 202 with a job to poll; and a replica that meets a ciphertext sealed by a key it lacks
fails closed — 503 naming the key id, never a 500 or a wrong value — reports degraded, and recovers once it
is given the key. A secret never shows in the job, the audit trail or the logs."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llm_config.core.health import ciphertexts_by_key_id
from llm_config.core.manager import ConfigManager
from llm_config.crypto.aead import key_id
from llm_config.crypto.keys import generate_key
from llm_config.types import AuditQuery
from tests.e2e.conftest import LiveServer

ROTATE = "/api/v1/admin/rotate-key"
SECRET = "sk-rotation-canary-9b1f4c"


def _kid(key: str) -> str:
    return key_id(base64.b64decode(key))


def _finished(client: httpx.Client, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        answer = client.get(location)
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        if job["status"] != "running":
            return job
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)


def test_rotation_over_http_reseals_everything_and_leaks_nothing(
    make_live_server: Callable[..., LiveServer], make_manager: Callable[..., ConfigManager], key: str,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_config")
    new = generate_key()
    make_manager()  # the store is created under the old key
    server = make_live_server(manager=make_manager(encryption_key=f"{key},{new}"))  # new key second (SPEC §2)
    with server.client() as api:
        for i in range(25):
            assert api.put(f"/api/v1/configs/app/k{i % 5}", json={"value": f"{SECRET}-{i}", "secret": True}
                           ).status_code == 200
        started = api.post(ROTATE, json={"new_key_id": _kid(new)})
        assert started.status_code == 202, started.text
        assert started.headers["location"] == f"/api/v1/admin/jobs/{started.json()['id']}"
        assert started.json()["kind"] == "rotate-key"
        job = _finished(api, started.headers["location"])
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["complete"] is True and result["resealed"] == 25 and result["instance_secret"] is True
        assert result["new_key_id"] == _kid(new) and result["by_key_id"] == {_kid(key): 25}
        # the server seals with the new key from now on
        assert api.put("/api/v1/configs/app/later", json={"value": f"{SECRET}-later", "secret": True}
                       ).status_code == 200
        health = api.get("/health").json()["checks"]["key"]
        assert health["status"] == "healthy" and health["key_ids"][0] == _kid(new)
        texts = [started.text, json.dumps(job), api.get("/api/v1/audit", params={"type": "key_rotated"}).text]
    assert ciphertexts_by_key_id(server.manager.storage) == {_kid(new): 27}
    only_new = make_manager(encryption_key=new)
    assert only_new.get("app", "k3", reveal=True).value == f"{SECRET}-23"
    assert only_new.get("app", "k3", version=1, reveal=True).value == f"{SECRET}-3"
    assert only_new.get("app", "later", reveal=True).value == f"{SECRET}-later"
    trail = json.dumps([e.to_json() for e in server.manager.storage.audit_events(AuditQuery())])
    logs = "\n".join(r.getMessage() for r in caplog.records)
    out, err = capfd.readouterr()
    for text in (*texts, trail, logs, out, err):
        assert SECRET not in text and key not in text and new not in text


def test_only_unscoped_admins_and_bad_bodies_are_4xx(live_server: LiveServer, key: str) -> None:
    kid = _kid(key)
    editor, scoped = live_server.new_key("editor"), live_server.new_key("admin", namespaces=["app"])
    for who in (editor, scoped):
        with live_server.client(key=who) as api:
            answer = api.post(ROTATE, json={"new_key_id": kid})
            assert answer.status_code == 403 and set(answer.json()) == {"error", "message"}
    with live_server.client(key=None) as anon:
        assert anon.post(ROTATE, json={"new_key_id": kid}).status_code == 401
    with live_server.client() as api:
        for body, status in ((b"", 400), (b"{", 400), (b"[]", 400), (b'{"new_key_id": 5}', 400),
                             (b'{"new_key_id": "ABC"}', 400), (b'{"new_key_id": "0123456789abcdef"}', 400),
                             (b'{"new_key_id": "%s", "key": "x"}' % kid.encode(), 400)):
            answer = api.post(ROTATE, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == status, (body, answer.text)
            assert set(answer.json()) == {"error", "message"}
        unknown = api.post(ROTATE, json={"new_key_id": "0123456789abcdef"}).json()["message"]
        assert unknown.startswith("Unknown new_key_id") and kid not in unknown  # lists none of the server's keys
        assert api.post(ROTATE, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
        assert api.post(ROTATE + "?force=true", json={"new_key_id": kid}).status_code == 400
        # naming the key already sealing is a re-run: a job that finds nothing to do
        job = _finished(api, api.post(ROTATE, json={"new_key_id": kid}).headers["location"])
        assert job["status"] == "succeeded" and job["result"]["resealed"] == 0 and job["result"]["complete"]
    events = [e for e in live_server.manager.audit_events() if e.type in ("access_denied", "key_rotated")]
    assert [e.type for e in events].count("access_denied") == 2 and events[-1].type == "key_rotated"


def test_a_replica_lacking_the_new_key_fails_closed_then_recovers(
    make_live_server: Callable[..., LiveServer], make_manager: Callable[..., ConfigManager], key: str,
) -> None:
    new = generate_key()
    primary = make_live_server(manager=make_manager(encryption_key=f"{key},{new}"))
    replica = make_live_server(manager=make_manager(encryption_key=key))  # an old replica: only the old key
    token = primary.new_key("admin", name="ops")  # one store: the key works on both replicas
    with primary.client(key=token) as api:
        assert api.put("/api/v1/configs/app/token", json={"value": SECRET, "secret": True}).status_code == 200
        assert api.put("/api/v1/configs/app/model", json={"value": "gpt-4o"}).status_code == 200
        job = _finished(api, api.post(ROTATE, json={"new_key_id": _kid(new)}).headers["location"])
        assert job["result"]["complete"] is True
    with replica.client(key=token) as api:
        for _ in range(3):  # every time, the same fail-closed answer
            refused = api.get("/api/v1/configs/app/token", params={"reveal": "true"})
            assert refused.status_code == 503, refused.text
            assert _kid(new) in refused.json()["message"] and SECRET not in refused.text
        resolved = api.get("/api/v1/namespaces/app/-/resolve", params={"reveal": "true"})
        assert resolved.status_code == 503 and _kid(new) in resolved.json()["message"]
        assert api.get("/api/v1/configs/app/model").json()["value"] == "gpt-4o"  # plain values still served
        assert api.get("/api/v1/configs/app/token").json()["value"] == "<encrypted>"
        health = api.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        check = health.json()["checks"]["key"]
        assert check["status"] == "degraded" and _kid(new) in check["message"]
    with replica.client(key=None) as anon:
        assert anon.get("/health").json()["checks"]["key"] == {"status": "degraded"}  # no reason for the public
    # the replica restarted with the new key (first, as SPEC §2's last steps have it)
    healed = make_live_server(manager=make_manager(encryption_key=f"{new},{key}"))
    with healed.client(key=token) as api:
        got = api.get("/api/v1/configs/app/token", params={"reveal": "true"})
        assert got.status_code == 200 and got.json()["value"] == SECRET
        assert api.get("/health").json()["status"] == "healthy"
