"""`--server` mode prints, exits and fails exactly as local mode for the same commands, error paths included."""

from __future__ import annotations

import pytest

from tests.e2e.test_cli_remote import Setup, setup  # noqa: F401

NS = "acme/bot"

CASES = [
    ("set", NS, "k", "2", "--expect-version", "7"),
    ("set", NS, "s", "plain"),
    ("delete", NS, "missing", "-y"),
    ("get", NS, "k", "--version", "99"),
    ("get", NS, "k", "--format", "json"),
    ("get", NS, "k", "-o", "-e", "production", "--format", "json"),
    ("get", NS, "s", "--reveal"),
    ("list", NS, "--format", "json"),
    ("list", NS, "--format", "table"),
    ("history", NS, "k", "--format", "json"),
    ("namespaces",),
    ("export", NS, "--format", "dotenv", "--reveal"),
    ("rollback", NS, "k", "99", "-y"),
    ("get", "Bad NS", "k"),
    ("set", NS, "k", "NaN"),
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_remote_matches_local(setup: Setup, args) -> None:  # noqa: F811
    m = setup.server.manager
    m.set(NS, "k", 1, env="base")
    m.set(NS, "k", 1)
    m.set(NS, "s", "sk-123", secret=True)
    local = setup.local(*args)
    remote = setup.remote(*args)
    assert setup.server.admin_key not in remote.out + remote.err
    assert (remote.code, remote.out) == (local.code, local.out), (local, remote)
    assert remote.err.strip() == local.err.strip(), (local.err, remote.err)
