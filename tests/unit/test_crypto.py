"""AES-256-GCM keyring: AAD binding, key ids, rotation keyrings, weak keys, key lookup order."""

import base64
import os
from pathlib import Path

import orjson
import pytest

from llm_config.crypto.aead import Keyring, derive_key, key_id, parse_key
from llm_config.crypto.keys import default_key_file, find_keyring, generate_key, write_key_file
from llm_config.errors import KeyMissingError, SecretKeyError


def test_seal_open_round_trip_and_fresh_nonces() -> None:
    ring = Keyring.from_text(generate_key())
    a, b = ring.seal(b"sk-1", b"ns\x00k\x00production"), ring.seal(b"sk-1", b"ns\x00k\x00production")
    assert a != b
    assert ring.open(a, b"ns\x00k\x00production") == b"sk-1"
    doc = orjson.loads(a)
    assert doc["alg"] == "AES-256-GCM" and doc["kid"] == ring.primary_id
    assert len(base64.b64decode(doc["n"])) == 12
    assert b"sk-1" not in a.encode()


def test_aad_binds_ciphertext_to_its_entry() -> None:
    ring = Keyring.from_text(generate_key())
    sealed = ring.seal(b"v", b"ns\x00a\x00production")
    with pytest.raises(SecretKeyError, match="authentication failed"):
        ring.open(sealed, b"ns\x00b\x00production")


def test_tampered_ciphertext_fails() -> None:
    ring = Keyring.from_text(generate_key())
    doc = orjson.loads(ring.seal(b"value", b"x"))
    ct = bytearray(base64.b64decode(doc["ct"]))
    ct[0] ^= 1
    doc["ct"] = base64.b64encode(bytes(ct)).decode()
    with pytest.raises(SecretKeyError):
        ring.open(orjson.dumps(doc).decode(), b"x")


def test_keyring_first_seals_all_open() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = Keyring.from_text(old).seal(b"v", b"a")
    rotating = Keyring.from_text(f"{new},{old}")
    assert rotating.open(sealed_old, b"a") == b"v"
    assert orjson.loads(rotating.seal(b"v", b"a"))["kid"] == key_id(base64.b64decode(new))
    with pytest.raises(SecretKeyError, match="not in the keyring"):
        Keyring.from_text(new).open(sealed_old, b"a")


@pytest.mark.parametrize(
    "bad", ["", "not base64!", base64.b64encode(b"short").decode(), base64.b64encode(bytes(32)).decode(),
            base64.b64encode(b"\x07" * 32).decode(), base64.b64encode(bytes(range(31))).decode()],
)
def test_bad_keys_are_refused(bad: str) -> None:
    with pytest.raises(SecretKeyError):
        Keyring.from_text(bad) if bad == "" else parse_key(bad)


def test_derived_keys_differ_by_purpose() -> None:
    secret = os.urandom(32)
    assert derive_key(secret, "audit-chain") != derive_key(secret, "fingerprint")
    assert derive_key(secret, "audit-chain") == derive_key(secret, "audit-chain")


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k_flag, k_file, k_env, k_envfile, k_default = (generate_key() for _ in range(5))
    f = tmp_path / "k1"
    f.write_text(k_file)
    f.chmod(0o600)
    ef = tmp_path / "k2"
    ef.write_text(k_envfile)
    ef.chmod(0o600)
    write_key_file(default_key_file(), k_default)
    assert oct(default_key_file().stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("LLM_CONFIG_KEY", k_env)
    monkeypatch.setenv("LLM_CONFIG_KEY_FILE", str(ef))

    def kid(text: str) -> str:
        return key_id(base64.b64decode(text))

    def found(**kw: str) -> str:
        source = find_keyring(**kw)
        assert source is not None
        return source.keyring.primary_id

    assert found(encryption_key=k_flag, key_file=str(f)) == kid(k_flag)
    assert found(key_file=str(f)) == kid(k_file)
    assert found() == kid(k_env)
    monkeypatch.delenv("LLM_CONFIG_KEY")
    assert found() == kid(k_envfile)
    monkeypatch.delenv("LLM_CONFIG_KEY_FILE")
    assert found() == kid(k_default)


def test_no_key_anywhere_is_none_and_broken_source_is_an_error(tmp_path: Path) -> None:
    assert find_keyring() is None
    with pytest.raises(KeyMissingError):
        find_keyring(key_file=str(tmp_path / "missing"))


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "d" / "master.key"
    write_key_file(path, generate_key())
    with pytest.raises(FileExistsError):
        write_key_file(path, generate_key())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_can_read_is_refused_like_ssh_does(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    path.write_text(generate_key())
    path.chmod(mode)
    with pytest.raises(SecretKeyError, match=f"mode 0{mode:o}.*chmod 600 {path}"):
        find_keyring(key_file=str(path))
    path.chmod(0o600)
    assert find_keyring(key_file=str(path)) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by root needs root")
@pytest.mark.parametrize(("mode", "accepted"), [(0o440, True), (0o640, True), (0o400, True), (0o460, False),
                                                (0o444, False), (0o644, False), (0o604, False)])
def test_a_root_owned_key_file_may_be_readable_by_its_group_like_postgresql_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int, accepted: bool,
) -> None:
    """As a Kubernetes Secret volume with fsGroup or a root-provisioned service group delivers it:
    owned by root, readable (never writable) by the group the server runs in."""
    path = tmp_path / "master.key"
    path.write_text(generate_key())
    os.chown(path, 0, 0)
    path.chmod(mode)
    monkeypatch.setattr(os, "geteuid", lambda: 10001)  # the server runs as an unprivileged user
    if accepted:
        assert find_keyring(key_file=str(path)) is not None
    else:
        with pytest.raises(SecretKeyError, match=f"mode 0{mode:o}.*chmod 640 {path}"):
            find_keyring(key_file=str(path))


@pytest.mark.parametrize("raw", [b"ab" * 16, b"password" * 4, bytes(range(8)) * 4, bytes(range(15)) * 2 + b"\x00\x01"])
def test_patterned_keys_are_weak(raw: bytes) -> None:
    with pytest.raises(SecretKeyError, match="weak key"):
        parse_key(base64.b64encode(raw).decode())
    parse_key(generate_key())  # a random one passes
