"""Where the master key comes from (SPEC §2 lookup order) and how new keys are made.

Never prints or logs a key; the default key file lives outside the store, 0600.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from llm_config.crypto.aead import KEY_BYTES, Keyring, parse_key
from llm_config.errors import KeyMissingError, SecretKeyError

__all__ = [
    "HOW_TO_SUPPLY",
    "KeySource",
    "check_key_file_mode",
    "default_key_file",
    "find_keyring",
    "generate_key",
    "read_single_key",
    "write_key_file",
]

HOW_TO_SUPPLY = (
    "keys are looked up in --encryption-key, --key-file, LLM_CONFIG_KEY, LLM_CONFIG_KEY_FILE, then the default "
    "key file ($XDG_CONFIG_HOME/llm-config/master.key); set one of them to the store's key"
)


@dataclass(frozen=True, slots=True)
class KeySource:
    """A loaded keyring and a description of where it came from (never the key itself)."""

    keyring: Keyring
    origin: str


def generate_key() -> str:
    """A new random 32-byte master key, base64."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def default_key_file() -> Path:
    """`$XDG_CONFIG_HOME/llm-config/master.key` (default `~/.config/llm-config/master.key`)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "llm-config" / "master.key"


def check_key_file_mode(path: Path, mode: int, owner: int | None = None, *, acl: bool = False) -> None:
    """Refuse a key file that others may read or replace, as ssh and PostgreSQL refuse such a private key.

    The file must belong to the user running us or to root. A file the process owns must be private
    (0600 or stricter). A file owned by root may also be readable, never writable, by its group (0640 or
    stricter) — PostgreSQL's rule for its server key, and what a Kubernetes Secret volume with `fsGroup`
    or a root-provisioned service group produces — unless it carries an access-control list (`acl`),
    whose grants its group bits no longer show.
    """
    me = os.geteuid()
    if owner is not None and owner not in (me, 0):
        raise SecretKeyError(
            f"Key file {path} belongs to uid {owner}, neither the user running llm-config (uid {me}) nor root, "
            f"who alone may be trusted with it: run 'chown {me} {path}'"
        )
    relaxed = owner == 0 and me != 0 and not acl
    if mode & (0o037 if relaxed else 0o077):
        fix = f"run 'chmod 640 {path}'" if relaxed else f"run 'chmod 600 {path}'"
        if acl:
            fix = f"run 'setfacl -b {path}' and then 'chmod 600 {path}'"
        raise SecretKeyError(
            f"Key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}): {fix}"
        )


def _has_acl(fd: int) -> bool:
    """True if the open file carries a POSIX access-control list (Linux; False where xattrs are unknown)."""
    try:
        return "system.posix_acl_access" in os.listxattr(fd)
    except (OSError, AttributeError):
        return False


def _key_file_text(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            info = os.fstat(fh.fileno())
            check_key_file_mode(path, info.st_mode, info.st_uid, acl=_has_acl(fh.fileno()))
            return fh.read(4096).decode("utf-8")
    except FileNotFoundError:
        raise KeyMissingError(f"Key file not found: {path}") from None
    except IsADirectoryError:
        raise SecretKeyError(f"Key file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(f"Key file {path} cannot be read: {type(exc).__name__}") from None


def _read_key_file(path: Path) -> Keyring:
    return Keyring.from_text(_key_file_text(path))


def read_single_key(path: Path) -> bytes:
    """The one master key in a key file (mode checked as for any key file; several keys are refused)."""
    text = _key_file_text(path)
    if "," in text:
        raise SecretKeyError(f"Key file {path} holds several keys: give the one new key alone")
    return parse_key(text)


def find_keyring(
    *, encryption_key: str | None = None, key_file: str | os.PathLike[str] | None = None
) -> KeySource | None:
    """Look the key up in SPEC §2 order; None when no source is configured at all.

    A configured source that is broken (a missing file, a short key) is an error, not a fallthrough.
    """
    if encryption_key:
        return KeySource(Keyring.from_text(encryption_key), "--encryption-key")
    if key_file:
        return KeySource(_read_key_file(Path(key_file)), f"key file {key_file}")
    env_key = os.environ.get("LLM_CONFIG_KEY")
    if env_key:
        return KeySource(Keyring.from_text(env_key), "LLM_CONFIG_KEY")
    env_file = os.environ.get("LLM_CONFIG_KEY_FILE")
    if env_file:
        return KeySource(_read_key_file(Path(env_file)), f"key file {env_file} (LLM_CONFIG_KEY_FILE)")
    default = default_key_file()
    if default.exists():
        return KeySource(_read_key_file(default), f"key file {default}")
    return None


def write_key_file(path: Path, key: str) -> None:
    """Create a key file 0600 (its directory 0700); refuses to overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
