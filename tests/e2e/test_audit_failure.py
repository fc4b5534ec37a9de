"""If the audit event cannot be written, the operation fails with 503 and nothing changes:
no write lands and no secret is returned unaudited (issue 3, SPEC §7).

The failure is real: a trigger in the store's own database refuses audit inserts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.e2e.conftest import LiveServer

ENTRY = "/api/v1/configs/acme/openai.api_key"


def _break_audit(store: Path) -> None:
    with sqlite3.connect(store / "config.db") as conn:
        conn.execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                     "BEGIN SELECT RAISE(ABORT, 'disk full'); END")


def test_unwritable_audit_fails_closed(live_server: LiveServer, api: httpx.Client, store_dir: Path) -> None:
    assert api.put(ENTRY, json={"value": "sk-unaudited-canary", "secret": True}).status_code == 200
    assert api.put("/api/v1/configs/acme/model", json={"value": "gpt-4o"}).status_code == 200
    _break_audit(store_dir)

    reveal = api.get(ENTRY, params={"reveal": "true"})
    assert reveal.status_code == 503 and "sk-unaudited-canary" not in reveal.text
    assert set(reveal.json()) == {"error", "message"}

    write = api.put("/api/v1/configs/acme/model", json={"value": "gpt-5"})
    assert write.status_code == 503
    assert api.delete("/api/v1/configs/acme/model").status_code == 503

    got = api.get("/api/v1/configs/acme/model")
    assert got.status_code == 200 and got.json()["value"] == "gpt-4o" and got.json()["version"] == 1
    assert [h["version"] for h in api.get("/api/v1/configs/acme/model/history").json()] == [1]
