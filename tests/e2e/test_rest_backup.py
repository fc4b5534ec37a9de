"""`GET /api/v1/admin/backup`, `POST /api/v1/admin/restore` (202 + job) and `/api/v1/admin/jobs/{id}`
(SPEC §8): admins only, authorized before any body byte, the restore body under its own limit."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from typing import Any

import httpx

from llm_config.core.manager import ConfigManager
from tests.e2e.conftest import LiveServer

SECRET = "sk-rest-backup-secret"
GZIP = {"Content-Type": "application/gzip"}
OCTETS = {"Content-Type": "application/octet-stream"}


def _wait(client: httpx.Client, location: str, *others: httpx.Client) -> dict[str, Any]:
    """The finished job; `others` are tried when `client`'s key stops working (a restore replaces keys)."""
    deadline = time.monotonic() + 60
    while True:
        for each in (client, *others):
            answer = each.get(location)
            if answer.status_code == 200:
                job: dict[str, Any] = answer.json()
                if job["status"] != "running":
                    return job
                break
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)


def test_backup_over_http_restores_into_another_server(
    make_live_server: Callable[..., LiveServer], make_manager: Callable[..., ConfigManager], tmp_path: Any,
) -> None:
    source = make_live_server()
    with source.client() as api:
        assert api.put("/api/v1/configs/app/model", json={"value": "gpt-4o", "env": "production"}).status_code == 200
        assert api.put("/api/v1/configs/app/key", json={"value": SECRET, "secret": True}).status_code == 200
        response = api.get("/api/v1/admin/backup")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert response.headers["cache-control"] == "no-store"
    body = response.content
    assert SECRET.encode() not in gzip.decompress(body)
    assert len(response.headers["x-backup-sha256"]) == 64

    target = make_live_server(manager=make_manager(storage=tmp_path / "other"), max_body=1024)
    with target.client() as api:
        refused = api.post("/api/v1/admin/restore", content=body, headers=GZIP)
        assert refused.status_code == 202  # the check runs in the job: the target holds the test's admin key
        job = _wait(api, refused.headers["location"])
        assert job["status"] == "failed" and job["error"]["status"] == 409, job
        started = api.post("/api/v1/admin/restore?force=true", content=body,
                           headers=GZIP)
        assert started.status_code == 202  # larger than --max-body 1024: restore has its own limit
        with target.client(key=source.admin_key) as restored_api:
            job = _wait(api, started.headers["location"], restored_api)
    assert job["status"] == "succeeded", job
    assert job["result"]["verified"] is True and job["result"]["rows"]["entries"] == 2
    # the target now holds the source's keys: the source's admin key works there, the old one does not
    with target.client(key=source.admin_key) as api:
        got = api.get("/api/v1/configs/app/model", params={"env": "production"})
        assert got.status_code == 200 and got.json()["value"] == "gpt-4o"
        assert api.get("/api/v1/configs/app/key", params={"reveal": "true"}).json()["value"] == SECRET
    with target.client() as api:
        assert api.get("/api/v1/configs/app/model").status_code == 401


def test_only_unscoped_admins_and_a_bad_body_is_a_failed_job(live_server: LiveServer) -> None:
    editor = live_server.new_key("editor")
    with live_server.client(key=editor) as api:
        assert api.get("/api/v1/admin/backup").status_code == 403
        denied = api.post("/api/v1/admin/restore", content=b"x" * 10)
        assert denied.status_code == 403
    scoped = live_server.new_key("admin", namespaces=["app"])
    with live_server.client(key=scoped) as api:
        assert api.get("/api/v1/admin/backup").status_code == 403
    with live_server.client() as api:
        assert api.post("/api/v1/admin/restore", content=b"x").status_code == 415  # no Content-Type
        empty = api.post("/api/v1/admin/restore", content=b"", headers=OCTETS)
        assert _wait(api, empty.headers["location"])["error"]["message"].endswith("it is empty; nothing was restored")
        started = api.post("/api/v1/admin/restore?force=true", content=b"not a backup" * 100, headers=OCTETS)
        assert started.status_code == 202
        job = _wait(api, started.headers["location"])
        assert job["status"] == "failed" and job["error"]["status"] == 400
        assert "Backup file refused" in job["error"]["message"]
        assert api.get("/api/v1/admin/jobs/00000000-0000-4000-8000-000000000000").status_code == 404
        assert api.get("/api/v1/configs/app/anything").status_code == 404  # the store is still there


def test_restore_body_limit_is_its_own(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(max_restore_body=1000)
    with server.client() as api:
        too_big = api.post("/api/v1/admin/restore", content=b"x" * 5000, headers=OCTETS)
        assert too_big.status_code == 413
        assert "max-restore-body" in too_big.json()["message"]
