"""A promotion plan sent back by a client is applied only if this server issued its id, for that promotion
alone; its step keys are validated like any key name (SPEC §3: 400) and never echoed back verbatim."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import LiveServer

P = "/api/v1/namespaces/acme/-/promote"


def _promote(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post(P, json={"from": "development", "to": "staging", **body})


def test_a_plan_id_the_server_never_issued_is_not_accepted(api: httpx.Client) -> None:
    assert api.put("/api/v1/configs/acme/model", json={"value": "gpt-4o"}).status_code == 200
    plan = _promote(api, dry_run=True).json()
    forged = {**plan, "id": "0123456789abcdef"}
    applied = _promote(api, plan=forged)
    assert applied.status_code in (400, 409), f"{applied.status_code}: {applied.text[:300]}"


def test_one_promotion_id_cannot_be_reused_for_another_promotion(live_server: LiveServer, api: httpx.Client) -> None:
    assert api.put("/api/v1/configs/acme/model", json={"value": "gpt-4o"}).status_code == 200
    first = _promote(api)
    assert first.status_code == 200, first.text
    first_id = first.json()["id"]

    with live_server.client(live_server.new_key("editor", name="mallory")) as mallory:
        assert mallory.put("/api/v1/configs/acme/temperature", json={"value": 2}).status_code == 200
        plan = _promote(mallory, dry_run=True).json()
        replayed = _promote(mallory, plan={**plan, "id": first_id})
    events = [e for e in api.get("/api/v1/audit").json() if e["details"].get("promotion_id") == first_id]
    actors = {e["actor"] for e in events}
    assert replayed.status_code in (400, 409) and len(actors) == 1, (
        f"promotion {first_id} now names writes of {sorted(actors)}: {[(e['key'], e['actor']) for e in events]}")


def test_plan_step_keys_are_validated_not_echoed(api: httpx.Client) -> None:
    assert api.put("/api/v1/configs/acme/model", json={"value": "gpt-4o"}).status_code == 200
    plan = _promote(api, dry_run=True).json()
    odd = "x\r\n\x1b[2J" + "A" * 50_000
    step = {"key": odd, "action": "create", "source_version": 1, "target_version": 0, "secret": False}
    answer = _promote(api, plan={**plan, "steps": [*plan["steps"], step]})
    assert answer.status_code == 400, f"{answer.status_code}, {len(answer.text)} bytes: {answer.text[:160]!r}"
    assert "\x1b" not in answer.json()["message"] and len(answer.text) < 2000
