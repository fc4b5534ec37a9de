"""Schemathesis over the live server's own `/openapi.json`: no 5xx, responses match the schema.

Positive and negative cases for every operation, at least 1,000 requests in total (checked by the
last test of this module).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.server.app import create_app
from llm_config.settings import ServeOptions
from tests.e2e.conftest import LiveServer, ServerThread
from tests.e2e.test_rest import EXPECTED_ROUTES

# all of this module on one xdist worker, in order, so the request count below sees every case
pytestmark = pytest.mark.xdist_group("fuzz")

MIN_REQUESTS = 1000
EXAMPLES_PER_OPERATION = 60
_requests: list[int] = []


def _server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, ever (503 included: the store and the key are there)."""
    if response.status_code >= 500:
        raise AssertionError(f"{case.method} {case.formatted_path} answered {response.status_code}: "
                             f"{response.text[:300]}")
    return None


def _error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx body is exactly {"error", "message"}."""
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "message"}, body
    return None


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server for the whole fuzz run, seeded with a few entries so reads find something."""
    store: Path = tmp_path_factory.mktemp("fuzz") / "store"
    manager = ConfigManager.open(str(store), encryption_key=generate_key(), actor="seed")
    for ns in ("app", "a/b", "A0"):
        manager.set(ns, "k", {"model": "m", "n": 1})
        manager.set(ns, "k", "second")
        manager.set(ns, "s", "hidden", secret=True)
        manager.set(ns, "k", 0, env="base")
    options = ServeOptions(max_body=256 * 1024)
    app = create_app(manager, options)
    thread = ServerThread(app, options)
    port = thread.start()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=app, manager=manager, options=options)
    finally:
        thread.stop()
        manager.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


CHECKS = [
    _server_error,
    _error_shape,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
OPERATIONS = sorted(EXPECTED_ROUTES, key=lambda mp: (mp[1], mp[0]))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_openapi_fuzz(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method.upper()]

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        _requests.append(1)
        case.call_and_validate(checks=CHECKS, timeout=30)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("no negative input exists for this operation")


def test_fuzz_sent_enough_requests(fuzz_server: LiveServer) -> None:
    if not _requests:
        pytest.skip("the fuzz test did not run in this session")
    assert len(_requests) >= MIN_REQUESTS, f"only {len(_requests)} generated requests"
    # and the server is still healthy afterwards: the audit chain verifies
    with httpx.Client(base_url=fuzz_server.url) as client:
        assert client.get("/api/v1/audit/verify").json()["ok"] is True
        assert client.get("/health").status_code == 200
