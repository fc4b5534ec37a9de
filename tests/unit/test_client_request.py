"""`Client.request` / `Client.stream`: the SDK's escape hatch for routes without a method (what the CLI's
`--server` mode uses for keys, audit, export/import, backup and restore)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from llm_config import errors
from llm_config.client import Client

KEY = "llmc_test_key_0123456789"


def client(handler: httpx.MockTransport) -> Client:
    return Client("http://127.0.0.1:9", api_key=KEY, watch=False, ttl=0.0, backoff=0.001, transport=handler)


def test_a_request_carries_the_key_its_parameters_and_a_json_body() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    with client(httpx.MockTransport(handle)) as api:
        response = api.request("post", "/api/v1/keys", params={"a": "x", "b": True, "c": None, "n": 3},
                               json={"name": "ci"})
    assert response.status_code == 201 and response.json() == {"ok": True}
    request = seen[0]
    assert request.method == "POST" and request.url.path == "/api/v1/keys"
    assert dict(request.url.params) == {"a": "x", "b": "true", "n": "3"}
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json" and orjson.loads(request.content) == {"name": "ci"}


@pytest.mark.parametrize(("status", "cls"), [
    (400, errors.ValidationError), (401, errors.AuthenticationError), (403, errors.PermissionDeniedError),
    (404, errors.NotFoundError), (409, errors.ConflictError), (422, errors.SchemaViolationError),
])
def test_an_error_answer_is_the_library_exception(status: int, cls: type[errors.LLMConfigError]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "x", "message": f"said {status}"})

    with client(httpx.MockTransport(handle)) as api:
        with pytest.raises(cls) as caught:
            api.request("GET", "/api/v1/audit")
        assert caught.value.message == f"said {status}"
        assert api.request("GET", "/health", raise_for_status=False).status_code == status


def test_reads_are_retried_and_writes_are_not() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(503, json={"error": "Service Unavailable", "message": "busy"})

    with client(httpx.MockTransport(handle)) as api:
        with pytest.raises(errors.StorageUnavailableError):
            api.request("GET", "/api/v1/audit/head")
        assert calls.count("GET") == 4  # the first attempt and 3 retries
        with pytest.raises(errors.StorageUnavailableError):
            api.request("POST", "/api/v1/admin/restore", content=b"x")
        assert calls.count("POST") == 1


def test_a_streamed_body_and_a_streamed_answer() -> None:
    received: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            received.append(request.read())
            return httpx.Response(202, json={"id": "j"})
        if request.url.path == "/missing":
            return httpx.Response(404, json={"error": "Not Found", "message": "no such thing"})
        return httpx.Response(200, content=b"abc" * 1000)

    def chunks() -> Iterator[bytes]:
        yield b"part1-"
        yield b"part2"

    with client(httpx.MockTransport(handle)) as api:
        assert api.request("POST", "/api/v1/admin/restore", content=chunks()).status_code == 202
        assert received == [b"part1-part2"]
        with api.stream("GET", "/api/v1/admin/backup") as response:
            assert b"".join(response.iter_bytes()) == b"abc" * 1000
        with pytest.raises(errors.NotFoundError, match="no such thing"), api.stream("GET", "/missing"):
            pass


def test_only_paths_of_the_service_and_the_key_is_never_in_an_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with client(httpx.MockTransport(handle)) as api:
        for path in ("http://elsewhere.example/api", "//elsewhere.example/api", "api/v1/keys"):
            with pytest.raises(ValueError, match="never a full URL"):
                api.request("GET", path)
        with pytest.raises(ValueError, match="json or content"):
            api.request("POST", "/x", json={}, content=b"")
        with pytest.raises(errors.StorageUnavailableError) as caught:
            api.request("GET", "/api/v1/keys")
        assert KEY not in str(caught.value) and "http://127.0.0.1:9" in caught.value.message
        with pytest.raises(errors.StorageUnavailableError), api.stream("GET", "/api/v1/admin/backup"):
            pass
