"""API keys: `llmc_` + 256 random bits, stored only as HMAC-SHA256 under the instance pepper.

Not argon2: a key has 256 bits of entropy, so a slow hash buys nothing and would cost ~180 ms per
request. Never logs or stores a key in clear; compare hashes with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

__all__ = ["KEY_PREFIX", "generate_api_key", "hash_api_key", "looks_like_api_key", "same_hash"]

KEY_PREFIX: Final = "llmc_"
_RANDOM_BYTES: Final = 32  # 256 bits (SPEC §9 asks for at least 192)
_SHAPE: Final = re.compile(r"llmc_[A-Za-z0-9_-]{43}")


def generate_api_key() -> str:
    """A new key; shown to its owner once, never stored."""
    return KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def looks_like_api_key(text: str) -> bool:
    """Cheap shape check before any lookup (refuses garbage without touching storage)."""
    return bool(_SHAPE.fullmatch(text))


def hash_api_key(pepper: bytes, key: str) -> str:
    """The stored form of a key: hex HMAC-SHA256 under the instance's pepper."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two stored hashes."""
    return hmac.compare_digest(a, b)
