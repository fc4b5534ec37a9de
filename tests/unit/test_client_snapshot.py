"""The client's offline snapshot: AES-256-GCM, bound to service and key, written atomically 0600, and any
bad file — tampered, truncated, corrupt, another key, another service or API key — ignored with a warning."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from llm_config.client._base import LIST, RESOLVE, ClientCore
from llm_config.client.snapshot import (
    ENV_KEY,
    MAGIC,
    SnapshotStore,
    SnapshotWarning,
    binding,
    dump,
    load,
    parse_key,
)
from llm_config.models import Environment, build_entry

URL = "http://127.0.0.1:8080"
API_KEY = "llmc_" + "k" * 43
SECRET_VALUE = "sk-very-secret-value-0123456789"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def filled_core() -> ClientCore:
    core = ClientCore(URL, API_KEY)
    secret = build_entry("id1", "acme/bot", "openai.api_key", SECRET_VALUE, Environment.PRODUCTION, 3, True,
                         "2025-01-01T00:00:00Z", "a", "2025-01-02T00:00:00Z", "b", ("t",), "d", 17)
    plain = build_entry("id2", "acme/bot", "openai.model", "gpt-4o", Environment.PRODUCTION, 1, False,
                        "2025-01-01T00:00:00Z", "a", "2025-01-01T00:00:00Z", "a", (), None, 5)
    core.install(("acme/bot", "openai.api_key", Environment.PRODUCTION, None, False, True), secret, '"e.r"',
                 core._token("acme/bot", "openai.api_key"))
    core.install(("acme/bot", "openai.model", Environment.PRODUCTION, 1, False, False), plain, '"e.s"',
                 core._token("acme/bot", "openai.model"))
    core.install((LIST, "acme/bot", Environment.PRODUCTION, "", False), [plain], None, core._token("acme/bot", None))
    core.install((RESOLVE, "acme/bot", Environment.PRODUCTION, True, True),
                 {"openai": {"api_key": SECRET_VALUE, "model": "gpt-4o"}}, None, core._token("acme/bot", None))
    return core


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "snapshot.bin"


def test_round_trip_restores_every_cached_answer_as_stale(path: Path) -> None:
    key = new_key()
    source = filled_core()
    SnapshotStore(path, key, URL, API_KEY).save(source)
    core = ClientCore(URL, API_KEY)
    assert SnapshotStore(path, key, URL, API_KEY).load_into(core) == 4
    assert {ck: s.item for ck, s in core.hits.items()} == {ck: s.item for ck, s in source.hits.items()}
    assert {ck: s.item for ck, s in core.colls.items()} == {ck: s.item for ck, s in source.colls.items()}
    assert all(s.origin == "snapshot" and s.fresh_until < 0 for s in (*core.hits.values(), *core.colls.values()))
    assert {s.etag for s in core.hits.values()} == {'"e.r"', '"e.s"'}
    status = core.status()
    assert status.source == "snapshot" and status.snapshot_age_seconds is not None
    assert status.snapshot_age_seconds < 60 and status.cached_entries == 4


def test_the_file_is_0600_encrypted_and_holds_no_plaintext(path: Path) -> None:
    SnapshotStore(path, new_key(), URL, API_KEY).save(filled_core())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blob = path.read_bytes()
    assert blob.startswith(MAGIC)
    for text in (SECRET_VALUE, "gpt-4o", "openai", "acme", URL, API_KEY):
        assert text.encode() not in blob
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def _expect_ignored(path: Path, key: str, url: str = URL, api_key: str = API_KEY, match: str = "") -> None:
    core = ClientCore(url, api_key)
    with pytest.warns(SnapshotWarning, match=match):
        assert SnapshotStore(path, key, url, api_key).load_into(core) == 0
    assert core.hits == {} and core.colls == {}


def test_a_tampered_snapshot_is_ignored(path: Path) -> None:
    key = new_key()
    SnapshotStore(path, key, URL, API_KEY).save(filled_core())
    blob = bytearray(path.read_bytes())
    for position in (len(MAGIC) + 3, len(blob) // 2, len(blob) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        path.write_bytes(bytes(tampered))
        _expect_ignored(path, key, match="authentication failed")


def test_a_snapshot_under_another_key_is_ignored(path: Path) -> None:
    SnapshotStore(path, new_key(), URL, API_KEY).save(filled_core())
    _expect_ignored(path, new_key(), match="authentication failed")


def test_a_snapshot_of_another_service_or_api_key_is_ignored(path: Path) -> None:
    key = new_key()
    SnapshotStore(path, key, URL, API_KEY).save(filled_core())
    _expect_ignored(path, key, url="http://127.0.0.1:8081", match="authentication failed")
    _expect_ignored(path, key, api_key="llmc_" + "x" * 43, match="authentication failed")


@pytest.mark.parametrize(("content", "match"), [
    (b"", "bad magic"),
    (b"not a snapshot at all", "bad magic"),
    (MAGIC, "truncated"),
    (MAGIC + bytes([1]) + b"\0" * 12, "truncated"),
    (MAGIC + bytes([99]) + b"\0" * 40, "format 99"),
])
def test_a_corrupt_or_truncated_snapshot_is_ignored(path: Path, content: bytes, match: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    _expect_ignored(path, new_key(), match=match)


def test_a_cut_off_snapshot_is_ignored(path: Path) -> None:
    key = new_key()
    SnapshotStore(path, key, URL, API_KEY).save(filled_core())
    path.write_bytes(path.read_bytes()[:-5])
    _expect_ignored(path, key, match="authentication failed")


def test_valid_encryption_of_invalid_content_is_ignored(path: Path) -> None:
    from llm_config.client.snapshot import seal, write_atomic

    key = new_key()
    raw = parse_key(key)
    path.parent.mkdir(parents=True)
    write_atomic(path, seal(b"[1, 2, 3]", raw, binding(URL, API_KEY)))
    _expect_ignored(path, key, match="content is not valid")
    write_atomic(path, seal(b"\xff\xfe", raw, binding(URL, API_KEY)))
    _expect_ignored(path, key, match="content is not valid")


def test_malformed_rows_inside_a_valid_snapshot_are_skipped(path: Path) -> None:
    key = new_key()
    raw = parse_key(key)
    good = filled_core().snapshot_payload()
    payload: dict[str, Any] = {"url": URL, "gets": [*good["gets"], ["bad"], ["a//b", "k", "production", None,
                                                                          False, False, {}, 0, None]],
                               "colls": [*good["colls"], ["list", "ns", "nowhere", "", []], "junk"]}
    dump(path, raw, binding(URL, API_KEY), payload)
    core = ClientCore(URL, API_KEY)
    assert SnapshotStore(path, key, URL, API_KEY).load_into(core) == 4


def test_no_file_yet_is_silent(path: Path) -> None:
    assert load(path, parse_key(new_key()), binding(URL, API_KEY)) is None


def test_the_key_comes_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    assert parse_key(key) == base64.b64decode(key)
    with pytest.raises(ValueError, match=ENV_KEY):
        parse_key(None)
    monkeypatch.setenv(ENV_KEY, key)
    assert parse_key(None) == base64.b64decode(key)
    with pytest.raises(ValueError, match="base64"):
        parse_key("not base64!")
    with pytest.raises(ValueError, match="16 bytes"):
        parse_key(base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(ValueError, match="weak"):
        parse_key(base64.b64encode(b"\0" * 32).decode())


def test_a_client_with_a_snapshot_path_needs_a_key(path: Path) -> None:
    from llm_config import Client

    with pytest.raises(ValueError, match="snapshot_path needs a key"):
        Client(URL, api_key=API_KEY, snapshot_path=path)
