"""Shared helpers for the deployment checks (make test-ops): where the repository is, and tools that
must be installed — a missing one skips the test, or fails it with LLM_CONFIG_REQUIRE_SERVICES=1 (CI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES

REPO = Path(__file__).resolve().parents[2]


def require_tool(name: str, why: str = "") -> str:
    """The path of executable `name` on PATH, beside this Python (the venv's tools) or in an sbin directory;
    skips (or, with LLM_CONFIG_REQUIRE_SERVICES=1, fails) without it."""
    extra = ":".join([str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    path = shutil.which(name) or shutil.which(name, path=extra)
    if path:
        return path
    message = f"{name} is not installed" + (f" ({why})" if why else "")
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def wait_until_answers(url: str, process: subprocess.Popen[bytes] | subprocess.Popen[str], log: Path,
                       timeout: float = 60) -> None:
    """Wait for `url` to answer 200 while `process` (whose output goes to `log`) keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
        time.sleep(0.2)
