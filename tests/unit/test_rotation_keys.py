"""The key side of rotation (SPEC §2): keyrings that seal with a new key and still open with the old ones,
reading exactly one new key from a file, failing closed on a ciphertext sealed by a key the keyring lacks —
reported by health — and the warning before AES-GCM's 2^32 encryptions per key (NIST SP 800-38D)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_config.core.health import SEAL_WARNING
from llm_config.core.manager import ConfigManager
from llm_config.crypto.aead import Keyring, envelope_key_id, key_id
from llm_config.crypto.keys import generate_key, read_single_key
from llm_config.errors import KeyMissingError, SecretKeyError


def _raw(key: str) -> bytes:
    return base64.b64decode(key)


def test_with_primary_seals_with_the_new_key_and_opens_with_every_old_one() -> None:
    old, other, new = _raw(generate_key()), _raw(generate_key()), _raw(generate_key())
    ring = Keyring([old, other])
    sealed_old = ring.seal(b"v", b"aad")
    rotated = ring.with_primary(new)
    assert rotated.primary_id == key_id(new) and rotated.key_ids[0] == key_id(new)
    assert set(rotated.key_ids) == {key_id(old), key_id(other), key_id(new)}
    assert rotated.open(sealed_old, b"aad") == b"v"
    assert envelope_key_id(rotated.seal(b"v", b"aad")) == key_id(new)
    assert ring.primary_id == key_id(old)  # the original keyring is unchanged
    with pytest.raises(SecretKeyError):
        ring.with_primary(b"\x01" * 32)  # weak
    with pytest.raises(SecretKeyError):
        ring.with_primary(new[:16])  # short


def test_promoted_reorders_without_key_material() -> None:
    old, new = _raw(generate_key()), _raw(generate_key())
    ring = Keyring([old, new])
    promoted = ring.promoted(key_id(new))
    assert promoted.primary_id == key_id(new) and promoted.key_ids[0] == key_id(new)
    assert envelope_key_id(promoted.seal(b"x", b"a")) == key_id(new)
    assert promoted.open(ring.seal(b"x", b"a"), b"a") == b"x"
    with pytest.raises(SecretKeyError):
        ring.promoted("0" * 16)


def test_a_keyring_remembers_the_key_ids_it_lacked() -> None:
    old, new = _raw(generate_key()), _raw(generate_key())
    sealed = Keyring([new]).seal(b"secret", b"aad")
    ring = Keyring([old])
    assert ring.missing_key_ids == []
    with pytest.raises(SecretKeyError, match=f"sealed by key id {key_id(new)}, which is not in the keyring"):
        ring.open(sealed, b"aad")
    assert ring.missing_key_ids == [key_id(new)]


def test_read_single_key_checks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    key = generate_key()
    path.write_text(key + "\n")
    path.chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        read_single_key(path)
    path.chmod(0o600)
    assert read_single_key(path) == _raw(key)
    path.write_text(f"{key},{generate_key()}")
    with pytest.raises(SecretKeyError, match="several keys"):
        read_single_key(path)
    with pytest.raises(KeyMissingError):
        read_single_key(tmp_path / "missing.key")


def test_a_process_lacking_a_key_fails_closed_and_reports_degraded(
    make_manager: Callable[..., ConfigManager], key: str,
) -> None:
    new = generate_key()
    make_manager()  # the store is created under `key`
    make_manager(encryption_key=f"{new},{key}").set("app", "token", "sk-sealed-by-new", secret=True)
    replica = make_manager(encryption_key=key)  # opens the store (instance secret under `key`), lacks `new`
    assert replica.doctor(public=True)["checks"]["key"]["status"] == "healthy"
    with pytest.raises(SecretKeyError, match=f"key id {key_id(_raw(new))}") as raised:
        replica.get("app", "token", reveal=True)
    assert raised.value.http_status == 503 and "sk-sealed" not in str(raised.value)
    report = replica.doctor(public=True, detail=True)
    assert report["status"] == "degraded" and report["checks"]["key"]["status"] == "degraded"
    assert key_id(_raw(new)) in report["checks"]["key"]["message"]
    healed = make_manager(encryption_key=f"{key},{new}")  # given the key (a restart with both)
    assert healed.get("app", "token", reveal=True).value == "sk-sealed-by-new"
    assert healed.doctor(public=True)["status"] == "healthy"


def test_health_warns_well_before_the_nist_limit(make_manager: Callable[..., ConfigManager], key: str) -> None:
    manager = make_manager()
    kid = key_id(_raw(key))
    manager.storage.set_meta(f"seals:{kid}", str(SEAL_WARNING - 1))
    manager.set("app", "token", "sk-one-more", secret=True)  # the 2^30th encryption under this key
    assert manager.storage.seal_counts() == {kid: SEAL_WARNING}
    check = manager.doctor(public=True, detail=True)["checks"]["key"]
    assert check["status"] == "degraded" and "NIST SP 800-38D" in check["message"]
    assert "rotate-key" in check["message"] and check["seals_by_key_id"] == {kid: SEAL_WARNING}
    assert manager.doctor(public=True, detail=False)["checks"]["key"] == {"status": "degraded"}
    manager.rotate_key(_raw(generate_key()))
    assert manager.doctor(public=True)["checks"]["key"]["status"] == "healthy"  # the new key starts at 0
