"""wire.py: the bodies the server reads and the client writes are one definition (SPEC §8)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_config import errors, wire
from llm_config.models import Environment
from llm_config.server.routes.schemas import ConfigWrite


def test_the_write_body_fields_are_the_documented_ones() -> None:
    assert frozenset(ConfigWrite.model_fields) == wire.SET_FIELDS


def test_a_write_body_round_trips() -> None:
    body = wire.SetBody("gpt-4o", env="production", secret=False, description="d", tags=("a", "b"),
                        message="m", expected_version=3)
    assert wire.SetBody.from_json(body.to_json()) == body
    assert wire.SetBody.from_json({"value": None}) == wire.SetBody(None)  # null is a value; env defaults
    assert wire.SetBody.from_json({"value": 1, "expected_version": 2.0}).expected_version == 2


@pytest.mark.parametrize(("body", "message"), [
    ([], "expected a JSON object"),
    ({}, "Missing field 'value'"),
    ({"value": 1, "actor": "me"}, "Unknown field(s) in body: 'actor'"),
    ({"value": 1, "secret": "yes"}, "Invalid field 'secret'"),
    ({"value": 1, "tags": "a"}, "Invalid field 'tags'"),
    ({"value": 1, "tags": [1]}, "Invalid field 'tags'"),
    ({"value": 1, "expected_version": -1}, "expected_version"),
    ({"value": 1, "expected_version": True}, "expected_version"),
    ({"value": 1, "expected_version": 2**63}, "expected_version"),
    ({"value": 1, "description": 5}, "Invalid field 'description'"),
    ({"value": 1, "env": "nowhere"}, "Unknown environment"),
])
def test_a_bad_write_body_is_a_validation_error_that_never_echoes_the_value(body: Any, message: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        wire.SetBody.from_json(body)
    assert message in caught.value.message


def test_error_responses_become_the_library_exceptions() -> None:
    cases = {400: errors.ValidationError, 401: errors.AuthenticationError, 403: errors.PermissionDeniedError,
             404: errors.NotFoundError, 409: errors.ConflictError, 412: errors.ConflictError,
             413: errors.ValidationError, 422: errors.SchemaViolationError, 429: errors.RateLimitedError,
             503: errors.StorageUnavailableError, 502: errors.StorageError, 418: errors.ValidationError}
    for status, cls in cases.items():
        exc = wire.error_for(status, wire.ErrorBody("x", f"m{status}"), retry_after=7)
        assert type(exc) is cls and exc.message == f"m{status}"
    limited = wire.error_for(429, wire.ErrorBody("Too Many Requests", "slow down"), 2.5)
    assert isinstance(limited, errors.RateLimitedError) and limited.retry_after == 2.5
    unavailable = wire.error_for(503, wire.ErrorBody("Service Unavailable", "down"), 4)
    assert isinstance(unavailable, errors.StorageUnavailableError) and unavailable.retry_after == 4
    # whatever a proxy answered still becomes an error with its status
    assert wire.ErrorBody.from_json("<html>", 502) == wire.ErrorBody("HTTP 502", "The service answered HTTP 502")


def test_watch_events_round_trip_and_malformed_ones_are_refused() -> None:
    change = wire.WatchChange(7, "acme/bot", "openai.model", Environment.PRODUCTION, 3, "rollback")
    assert wire.WatchChange.from_json(change.to_json()) == change
    hello = wire.WatchHello("e1", 7)
    assert wire.WatchHello.from_json(hello.to_json()) == hello
    resync = wire.WatchResync("epoch", "e2", 9)
    assert wire.WatchResync.from_json(resync.to_json()) == resync
    for bad in ({**change.to_json(), "kind": "explode"}, {**change.to_json(), "revision": "7"},
                {**change.to_json(), "environment": "mars"}, [], {"epoch": 1, "revision": 1}):
        with pytest.raises(errors.ValidationError):
            wire.WatchChange.from_json(bad)


def test_entries_and_history_items_read_back_from_their_json() -> None:
    from llm_config.models import build_entry

    entry = build_entry("id1", "ns", "k", {"a": [1]}, Environment.STAGING, 4, False, "t0", "alice", "t1", "bob",
                        ("x",), "d", 12)
    assert wire.entry_from_json(entry.to_json(), revision=12) == entry
    with pytest.raises(errors.ValidationError):
        wire.entry_from_json({"id": "x"})


def test_key_create_and_rotate_bodies_are_the_documented_ones_and_round_trip() -> None:
    from llm_config.server.routes.schemas import ApiKeyCreate

    assert frozenset(ApiKeyCreate.model_fields) == wire.KEY_CREATE_FIELDS
    body = wire.KeyCreateBody("ci", "viewer", ("acme",), ("production",), 30.0)
    assert wire.KeyCreateBody.from_json(body.to_json()) == body
    assert wire.RotateBody.from_json({"new_key_id": "0123456789abcdef"}).new_key_id == "0123456789abcdef"
    for bad in ({"name": "x"}, {"role": "viewer"}, {"name": "x", "role": "viewer", "expires_days": True},
                {"name": "x", "role": "viewer", "namespaces": "acme"}, {"name": "x", "role": "viewer", "root": 1}):
        with pytest.raises(errors.ValidationError):
            wire.KeyCreateBody.from_json(bad)
    for bad_rotate in ({}, {"new_key_id": "XYZ"}, {"new_key_id": "0123456789abcdef", "old": 1}, []):
        with pytest.raises(errors.ValidationError):
            wire.RotateBody.from_json(bad_rotate)
