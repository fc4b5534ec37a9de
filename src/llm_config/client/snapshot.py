"""The client's offline snapshot: its cache in one AES-256-GCM-encrypted, authenticated file.

Layout: `MAGIC (8) | FORMAT (1) | nonce (12) | ciphertext+tag`. The additional authenticated data is the
header itself plus a *binding* — SHA-256 over the service URL and a hash of the API key — that is never
written to the file: a snapshot made for another service or another key fails authentication exactly
like a wrong snapshot key or a flipped bit, and is ignored. The plaintext (orjson) holds the cached
entries, secrets included when they were read revealed; it never touches the disk unencrypted.

Writing is atomic: a temporary file in the same directory (created 0600), fsync, rename, fsync of the
directory. Reading never raises for a bad file: it warns (`SnapshotWarning`, and the log) and returns None,
so a client starts without it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from llm_config.client._base import ClientCore

__all__ = ["ENV_KEY", "FORMAT", "MAGIC", "SnapshotStore", "SnapshotWarning", "binding", "dump", "load", "open_blob",
           "parse_key", "seal", "write_atomic"]

log = logging.getLogger("llm_config.client")

MAGIC: Final = b"LLMCSNAP"
FORMAT: Final = 1
_NONCE: Final = 12
_HEADER: Final = len(MAGIC) + 1 + _NONCE
_TAG: Final = 16
ENV_KEY: Final = "LLM_CONFIG_SNAPSHOT_KEY"
_MAX_BYTES: Final = 256 * 1024 * 1024


class SnapshotWarning(UserWarning):
    """An offline snapshot could not be used (missing key material, corrupt, tampered, from elsewhere)."""


class SnapshotError(Exception):
    """Why a snapshot file was not used (the message names no value)."""


def parse_key(key: str | bytes | None) -> bytes:
    """The snapshot key: 32 bytes, given base64 (as `keygen` prints) or raw; else `LLM_CONFIG_SNAPSHOT_KEY`."""
    if key is None:
        key = os.environ.get(ENV_KEY)
        if not key:
            raise ValueError(f"snapshot_path needs a key: snapshot_key= or {ENV_KEY} (base64 of 32 random bytes)")
    if isinstance(key, bytes) and len(key) == 32:
        return key
    try:
        raw = base64.b64decode(key.strip() if isinstance(key, str) else key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("snapshot_key: not base64 (expected 32 random bytes, base64-encoded)") from None
    if len(raw) != 32:
        raise ValueError(f"snapshot_key: {len(raw)} bytes; AES-256 needs exactly 32")
    if len(set(raw)) < 16:
        raise ValueError("snapshot_key: too weak (fewer than 16 distinct bytes)")
    return raw


def binding(url: str, api_key: str) -> bytes:
    """What a snapshot is bound to: the service URL and the API key (hashed; neither is stored)."""
    key_hash = hashlib.sha256(b"llm-config api key\0" + api_key.encode()).digest()
    return hashlib.sha256(b"llm-config snapshot\0" + url.encode() + b"\0" + key_hash).digest()


def seal(plaintext: bytes, key: bytes, bound_to: bytes, *, nonce: bytes | None = None) -> bytes:
    nonce = nonce if nonce is not None else os.urandom(_NONCE)
    header = MAGIC + bytes([FORMAT]) + nonce
    return header + AESGCM(key).encrypt(nonce, plaintext, header + bound_to)


def open_blob(blob: bytes, key: bytes, bound_to: bytes) -> bytes:
    """The plaintext of a sealed snapshot, or SnapshotError saying what is wrong with it."""
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise SnapshotError("not an llm-config snapshot (bad magic)")
    if len(blob) < _HEADER + _TAG:
        raise SnapshotError("truncated")
    if blob[len(MAGIC)] != FORMAT:
        raise SnapshotError(f"format {blob[len(MAGIC)]} is not supported (this client reads {FORMAT})")
    header, body = blob[:_HEADER], blob[_HEADER:]
    try:
        return AESGCM(key).decrypt(header[len(MAGIC) + 1:], body, header + bound_to)
    except InvalidTag:
        raise SnapshotError("authentication failed: another key, another service or API key, "
                            "or the file was altered") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temporary file (0600) in the same directory, fsync, rename, fsync dir."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def dump(path: Path, key: bytes, bound_to: bytes, payload: dict[str, Any]) -> None:
    """Seal `payload` (stamped with the local wall clock, for its age) and write it atomically."""
    document = dict(payload)
    document["format"] = FORMAT
    document["written_at"] = time.time()
    write_atomic(path, seal(orjson.dumps(document), key, bound_to))


def load(path: Path, key: bytes, bound_to: bytes) -> tuple[dict[str, Any], float] | None:
    """(payload, age in seconds) of the snapshot at `path`; None — with a `SnapshotWarning` — if it cannot be
    used; None silently if there is none yet."""
    try:
        with path.open("rb") as src:
            blob = src.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _warn(path, f"cannot be read ({type(exc).__name__})")
        return None
    try:
        if len(blob) > _MAX_BYTES:
            raise SnapshotError("larger than any snapshot this client writes")
        plaintext = open_blob(blob, key, bound_to)
        try:
            document = orjson.loads(plaintext)
        except orjson.JSONDecodeError:
            raise SnapshotError("its content is not valid") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise SnapshotError("its content is not valid")
        written = document.get("written_at")
        if not isinstance(written, (int, float)):
            raise SnapshotError("its content is not valid")
    except SnapshotError as exc:
        _warn(path, str(exc))
        return None
    return document, max(0.0, time.time() - float(written))


def _warn(path: Path, why: str) -> None:
    message = f"llm-config client: ignoring the offline snapshot {path}: {why}"
    log.warning("%s", message)
    warnings.warn(message, SnapshotWarning, stacklevel=4)


class SnapshotStore:
    """One client's snapshot file: read once at start, rewritten (debounced) after changes and at close."""

    def __init__(self, path: str | os.PathLike[str], key: str | bytes | None, url: str, api_key: str) -> None:
        self.path = Path(path)
        self.key = parse_key(key)
        self.bound = binding(url, api_key)
        self.url = url
        self.lock = threading.Lock()

    def load_into(self, core: ClientCore) -> int:
        """Fill `core` from the file (if there is a usable one); the number of cached answers loaded."""
        loaded = load(self.path, self.key, self.bound)
        if loaded is None:
            return 0
        payload, age = loaded
        if payload.get("url") != self.url:  # the binding already refuses it; belt and braces
            _warn(self.path, "it was written for another service")
            return 0
        return core.load_snapshot(payload, age)

    def save(self, core: ClientCore) -> None:
        """Write the cache now (never raises: a full disk must not break reads; it is logged)."""
        with self.lock:
            try:
                dump(self.path, self.key, self.bound, core.snapshot_payload())
            except (OSError, TypeError, ValueError) as exc:
                log.warning("llm-config client: could not write the offline snapshot %s (%s)", self.path,
                            type(exc).__name__)
