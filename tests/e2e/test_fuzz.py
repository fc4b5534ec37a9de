"""Schemathesis over the live server's own `/openapi.json`: no 5xx, responses match the schema.

Two runs over every operation, positive and negative cases each: with a valid admin API key (plus
schemathesis' `ignored_auth` probes: no key and a made-up key must be refused), and with no key at
all (every `/api` operation must answer 401). At least 1,000 requests in total (checked by the
last test of this module).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.server.routes.watch import WatchSettings
from llm_config.server.security import query_carries_key
from tests.e2e.conftest import LiveServer, serve_in_thread, server_options
from tests.e2e.test_rest import EXPECTED_ROUTES

# one fuzz server per worker; with `--dist loadgroup` both runs share one (see test_openapi_fuzz)
pytestmark = pytest.mark.xdist_group("fuzz")

MIN_REQUESTS = {"admin": 1000, "anonymous": 300}  # together well over the 1,000 the issue asks for
EXAMPLES = {"admin": 30, "anonymous": 8}


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
    thread, server = serve_in_thread(manager, server_options(max_body=256 * 1024))
    server.app.state.watch = WatchSettings(max_seconds=0.2)  # a watch stream ends, so a fuzz call can
    try:
        yield server
    finally:
        thread.stop()
        manager.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: LiveServer) -> Any:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    # credentials are ours to send (or not): generated Authorization / X-API-Key values would be
    # replaced by the admin key, turning a "negative" case into a valid one behind the checker's back
    schema.config.generation.update(with_security_parameters=False)
    return schema


def _anonymous_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """Without a key, every /api operation is 401 — whatever else is wrong with the request — except
    that a credential-looking query parameter (which schemathesis may add) is refused first with 400."""
    if case.path.startswith("/api/"):
        query = urlencode(case.query or {}, doseq=True).encode()
        if response.status_code == 400 and query_carries_key(query):
            return None
        assert response.status_code == 401, (case.method, case.formatted_path, response.status_code)
        assert response.headers.get("www-authenticate", [""])[0].startswith("Bearer")
    return None


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


def _fuzz_operation(operation: Any, mode: GenerationMode, who: str, headers: dict[str, str] | None,
                    checks: list[Any]) -> int:
    """Run one operation in one generation mode; the number of requests sent (0: no such input)."""
    sent = 0

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES[who],
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(headers=headers, checks=checks, timeout=30)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
    return sent


@pytest.mark.parametrize("who", ["admin", "anonymous"])
def test_openapi_fuzz(api_schema: Any, fuzz_server: LiveServer, who: str) -> None:
    """Every operation, positive and negative, as `who`; all failures reported together.

    One test per run (not per operation) so the request count cannot depend on how xdist
    distributes tests: with pytest 9, xdist 3.8's `--dist loadgroup` no longer keeps a group together.
    """
    if who == "admin":
        headers: dict[str, str] | None = {"Authorization": f"Bearer {fuzz_server.admin_key}"}
        checks = [*CHECKS, ignored_auth]
    else:
        headers, checks = None, [*CHECKS, _anonymous_refused]
    sent: Counter[str] = Counter()
    failures: list[str] = []
    for method, path in OPERATIONS:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{mode.value} {method.upper()} {path}"
            try:
                sent[label] = _fuzz_operation(api_schema[path][method.upper()], mode, who, headers, checks)
            except Exception as exc:  # keep going: report every failing operation at once
                failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:600]}")
    total = sum(sent.values())
    print(f"fuzz as {who}: {total} generated requests over {len(sent)} operation/mode pairs")
    assert not failures, "\n\n".join(failures)
    assert all(sent[f"positive {m.upper()} {p}"] > 0 for m, p in OPERATIONS)
    assert total >= MIN_REQUESTS[who], f"only {total} generated requests"
    # and the server is still healthy afterwards: the audit chain verifies, nobody got banned
    with fuzz_server.client() as client:
        assert client.get("/api/v1/audit/verify").json()["ok"] is True
        assert client.get("/health").status_code == 200


SCHEMATHESIS_CONFIG = """\
# A precondition on state (If-Match: * on a missing entry, a stale ETag) is answered 412 by design
# (RFC 9110), and a value that breaks a JSON Schema the run itself attached to its key 422; every other
# schema-valid request must be accepted as the document says.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422"]

# One rule the document cannot state: an import naming the same key in `values` and in `secrets` is
# refused (400) — JSON Schema cannot tie the key sets of two objects together.
[[operations]]
include-path-regex = "/-/import$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "412", "422"]

# Nor these: whether a template's text parses, whether its `defaults` name variables that text uses, and
# whether a render's variables are the template's own depend on the text — stored or in the same body.
[[operations]]
include-path-regex = "/api/v1/templates/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "412", "422"]

# Whether a document is a valid JSON Schema (each keyword's own rules; references only inside it): the
# metaschema is the server's to apply, not something the OpenAPI document can restate.
[[operations]]
include-path-regex = "/api/v1/schemas/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "412", "422"]

# diff and promote need two different environments (a rule between two fields), and a plan passed back
# must be for this namespace and these environments; a promoted value may break a schema the run itself
# attached to its key (422).
[[operations]]
include-path-regex = "/-/(diff|promote)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "412", "422"]

# Nor this one: rotate-key takes only the id of a key the server's keyring holds, which the document
# cannot list (key ids are the server's own); any other well-formed id is refused (400).
[[operations]]
include-path-regex = "/admin/rotate-key$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]
"""


@pytest.mark.parametrize("who", ["admin", "anonymous"])
def test_schemathesis_run_with_all_checks_passes(
    fuzz_server: LiveServer, tmp_path: Path, who: str
) -> None:
    """The issue's goal, literally: `schemathesis run --checks all` against the running server passes —
    with a key and without. So the OpenAPI document declares every constraint the server enforces
    (names, environments with their aliases, If-Match, times, cursors, anchors, addresses, bodies),
    and the server takes every request the document calls valid."""
    import subprocess
    import sys

    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    auth = ["-H", f"Authorization: Bearer {fuzz_server.admin_key}"] if who == "admin" else []
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         f"{fuzz_server.url}/openapi.json", "--checks", "all", "--max-examples", "25" if who == "admin" else "10",
         "--seed", "20261202", "--no-color", *auth],
        capture_output=True, text=True, timeout=600, check=False,
        cwd=tmp_path,  # its crash cache (.schemathesis/) stays out of the checkout
    )
    tail = result.stdout[-4000:]
    assert result.returncode == 0, tail
    generated = re.search(r"(\d+) generated, (\d+) passed", tail)
    assert generated is not None and generated.group(1) == generated.group(2), tail
    assert int(generated.group(1)) >= (1000 if who == "admin" else 300), tail
