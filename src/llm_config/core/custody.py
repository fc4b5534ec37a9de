"""Key custody of an open store (SPEC §2): the keyring, the instance secret and the keys derived from it.

Owns: creating the instance secret of a new store (32 random bytes sealed under the master key),
opening it, and deriving with HKDF the audit-chain key, the fingerprint key, the API-key pepper and
the row-MAC key. A keyring that does not open the store is reported, not fatal: the store then
behaves as if no key had been given (plain reads only), with a warning naming the key id it needs.

Never: logs, prints or returns the instance secret or a derived key to anyone but the manager's parts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Final

from llm_config import integrity
from llm_config.crypto.aead import Keyring, derive_key, envelope_key_id
from llm_config.crypto.keys import HOW_TO_SUPPLY, KeySource
from llm_config.errors import KeyMissingError, SecretKeyError
from llm_config.models import Environment
from llm_config.types import Storage

__all__ = [
    "EPOCH", "INSTANCE_SECRET", "StoreKeys", "derive_keys", "open_instance_secret", "place", "seal_instance_secret",
    "unlock",
]

log = logging.getLogger("llm_config")

INSTANCE_SECRET: Final = "instance_secret"  # noqa: S105 - a meta row name
EPOCH: Final = "epoch"
"""The meta row of the store epoch: a new value after every restore, so caches, key custody and watchers
of other processes start over (SPEC §4)."""
_INSTANCE_AAD: Final = b"llm-config instance secret v1"


def place(namespace: str, key: str, env: Environment) -> bytes:
    """The place of a value: the AAD of its ciphertext and the binding of its fingerprint."""
    return f"{namespace}\x00{key}\x00{env.value}".encode()


@dataclass(frozen=True, slots=True)
class StoreKeys:
    """Everything the master key unlocks for one store."""

    source: KeySource
    audit: bytes  # HMAC key of the audit chain
    fingerprint: bytes  # HMAC key of value fingerprints
    pepper: bytes  # HMAC key of stored API-key hashes
    row: bytes  # MAC key of protected rows
    cache: bytes  # key of shared-cache records (their tag) and of the store's id in Redis

    @property
    def keyring(self) -> Keyring:
        return self.source.keyring


def open_instance_secret(keyring: Keyring, envelope: str) -> bytes:
    """The instance secret sealed in `envelope`; SecretKeyError if no key of `keyring` opens it."""
    return keyring.open(envelope, _INSTANCE_AAD)


def seal_instance_secret(keyring: Keyring, secret: bytes) -> str:
    """The envelope of the instance secret sealed under `keyring`'s first key (creation; `rotate-key`)."""
    return keyring.seal(secret, _INSTANCE_AAD)


def unlock(storage: Storage, source: KeySource | None, *, create: bool) -> tuple[StoreKeys | None, str | None]:
    """Open the store's instance secret with `source`; returns (keys, warning).

    No source: (None, None). A keyring that does not open the store: (None, a warning naming the key
    id the store expects) — plain reads still work. With `create`, a store without an instance secret
    gets one sealed under the keyring's first key.
    """
    if source is None:
        return None, None
    keyring = source.keyring
    epoch = storage.get_meta(EPOCH)  # before the envelope: a restore in between leaves writes fenced, not forked
    envelope = storage.get_meta(INSTANCE_SECRET)
    if envelope is None:
        if not create:
            return None, None
        fresh = seal_instance_secret(keyring, os.urandom(32))
        storage.swap_meta(INSTANCE_SECRET, None, fresh, sealed_by=keyring.primary_id)  # counted (NIST SP 800-38D)
        envelope = storage.get_meta(INSTANCE_SECRET)
        assert envelope is not None
    try:
        secret = open_instance_secret(keyring, envelope)
    except SecretKeyError:
        sealed_by = envelope_key_id(envelope) or "unknown"
        return None, (
            f"the encryption key does not open this store (it was sealed by key id {sealed_by}; the keyring "
            f"from {source.origin} has {', '.join(keyring.key_ids)}): plain values only"
        )
    keys = derive_keys(source, secret)
    storage.set_row_key(keys.row, epoch, keys.audit)
    return keys, None


def derive_keys(source: KeySource, secret: bytes) -> StoreKeys:
    """Everything keyed of a store, from its instance secret (HKDF, one purpose each)."""
    return StoreKeys(
        source=source,
        audit=derive_key(secret, "audit-chain"),
        fingerprint=derive_key(secret, "fingerprint"),
        pepper=derive_key(secret, "api-key-pepper"),
        row=derive_key(secret, integrity.PURPOSE),
        cache=derive_key(secret, "cache-record"),
    )


def need(keys: StoreKeys | None, what: str, warning: str | None = None) -> StoreKeys:
    """`keys`, or KeyMissingError saying how to supply the key (or why the given one does not fit)."""
    if keys is None:
        if warning is not None:
            raise KeyMissingError(f"{what} needs the master key: {warning}")
        raise KeyMissingError(f"{what} needs the master key: {HOW_TO_SUPPLY}")
    return keys
