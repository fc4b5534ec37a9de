"""AES-256-GCM envelopes under a keyring (SPEC §2–3, ARCHITECTURE decision 4).

The first key seals; every key can open. An envelope is JSON text recording the algorithm, the
id of the sealing key, the 96-bit nonce and the ciphertext; the caller's AAD binds it to its
namespace/key/environment, so a ciphertext moved to another entry fails to open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from typing import Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from llm_config.errors import SecretKeyError

__all__ = ["ALGORITHM", "KEY_BYTES", "Keyring", "check_key", "derive_key", "envelope_key_id", "key_id", "parse_key"]

ALGORITHM: Final = "AES-256-GCM"
KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_MIN_DISTINCT_BYTES: Final = 16  # 32 random bytes have fewer only with probability ~1e-9
_MAX_MISSING: Final = 32  # key ids remembered as missing (a tampered store could name any number)


def parse_key(text: str | bytes) -> bytes:
    """Decode one base64 master key, refusing wrong lengths and weak (patterned) keys."""
    raw_text = text.decode() if isinstance(text, bytes) else text
    raw_text = raw_text.strip()
    try:
        key = base64.b64decode(raw_text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(
            "Invalid encryption key: not base64 (generate one with 'llm-config keygen')"
        ) from None
    return check_key(key)


def check_key(key: bytes) -> bytes:
    """`key` if it is a usable master key (32 bytes, not patterned), else SecretKeyError."""
    if len(key) != KEY_BYTES:
        raise SecretKeyError(
            f"Invalid encryption key: {len(key)} bytes, need {KEY_BYTES} "
            "(generate one with 'llm-config keygen')"
        )
    if len(set(key)) < _MIN_DISTINCT_BYTES:
        raise SecretKeyError(
            f"Invalid encryption key: weak key (fewer than {_MIN_DISTINCT_BYTES} distinct bytes; a random key has "
            "about 28): generate one with 'llm-config keygen'"
        )
    return key


def key_id(key: bytes) -> str:
    """Short public fingerprint naming a master key (not usable to recover it)."""
    return hashlib.sha256(b"llm-config key id\x00" + key).hexdigest()[:16]


def derive_key(secret: bytes, purpose: str) -> bytes:
    """HKDF-SHA256 sub-key of the instance secret for one purpose (pepper, audit, fingerprint)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"llm-config/" + purpose.encode()
    ).derive(secret)


def envelope_key_id(envelope: str) -> str | None:
    """The id of the key that sealed an envelope, or None if it is not one of ours."""
    try:
        doc = orjson.loads(envelope)
    except orjson.JSONDecodeError:
        return None
    kid = doc.get("kid") if isinstance(doc, dict) else None
    return kid if isinstance(kid, str) else None


class Keyring:
    """Master keys: the first seals, all open. Implements the `Cipher` protocol.

    A keyring remembers the ids of keys it was asked for but does not hold (`missing_key_ids`): a process
    that meets a ciphertext sealed by a key it lacks fails closed for that value and reports degraded.
    """

    __slots__ = ("_by_id", "_missing", "_primary", "_primary_id")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretKeyError("A keyring needs at least one key")
        self._primary = AESGCM(keys[0])
        self._primary_id = key_id(keys[0])
        self._by_id = {key_id(k): AESGCM(k) for k in reversed(keys)}
        self._missing: set[str] = set()

    def with_primary(self, key: bytes) -> Keyring:
        """A keyring sealing with `key` (checked like any master key) that still opens with every key of this
        one — what a key rotation re-seals with."""
        kid = key_id(check_key(key))
        ring = Keyring([key])
        ring._by_id = {kid: ring._primary, **{k: v for k, v in self._by_id.items() if k != kid}}
        return ring

    def promoted(self, kid: str) -> Keyring:
        """This keyring with the key of id `kid` (already in it) sealing; SecretKeyError if it holds no such key."""
        aead = self._by_id.get(kid)
        if aead is None:
            raise SecretKeyError(f"Key id {str(kid)[:16]} is not in the keyring")
        ring = Keyring.__new__(Keyring)
        ring._primary, ring._primary_id, ring._missing = aead, kid, set()
        ring._by_id = {kid: aead, **{k: v for k, v in self._by_id.items() if k != kid}}
        return ring

    @property
    def missing_key_ids(self) -> list[str]:
        """Ids of keys that sealed a ciphertext this keyring was asked to open but does not hold."""
        return sorted(self._missing)

    @classmethod
    def from_text(cls, text: str) -> Keyring:
        """Parse comma-separated base64 keys (LLM_CONFIG_KEY may hold several for rotation)."""
        parts = [p for p in (s.strip() for s in text.split(",")) if p]
        if not parts:
            raise SecretKeyError("Invalid encryption key: empty")
        return cls([parse_key(p) for p in parts])

    @property
    def primary_id(self) -> str:
        return self._primary_id

    @property
    def key_ids(self) -> list[str]:
        return list(self._by_id)

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        ct = self._primary.encrypt(nonce, plaintext, aad)
        return orjson.dumps(
            {
                "alg": ALGORITHM,
                "kid": self._primary_id,
                "n": base64.b64encode(nonce).decode(),
                "ct": base64.b64encode(ct).decode(),
            }
        ).decode()

    def open(self, envelope: str, aad: bytes) -> bytes:
        try:
            doc = orjson.loads(envelope)
            alg, kid = doc["alg"], doc["kid"]
            nonce = base64.b64decode(doc["n"], validate=True)
            ct = base64.b64decode(doc["ct"], validate=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, ValueError):
            raise SecretKeyError("Secret cannot be decrypted: malformed ciphertext envelope") from None
        if alg != ALGORITHM or len(nonce) != _NONCE_BYTES:
            raise SecretKeyError(f"Secret cannot be decrypted: unsupported algorithm {str(alg)[:32]!r}")
        aead = self._by_id.get(kid)
        if aead is None:
            shown = str(kid)[:16]
            if len(self._missing) < _MAX_MISSING:
                self._missing.add(shown)
            raise SecretKeyError(
                f"Secret cannot be decrypted: sealed by key id {shown}, which is not in the keyring"
            )
        try:
            return aead.decrypt(nonce, ct, aad)
        except InvalidTag:
            raise SecretKeyError(
                "Secret cannot be decrypted: authentication failed (ciphertext altered or moved)"
            ) from None
