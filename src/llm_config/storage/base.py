"""Opening a store from a `--storage` target (SPEC §1).

Owns: parsing the target — a directory (layout: `DIR/config.db`) or a URL (`sqlite:///relative.db`,
`sqlite:////absolute.db`, `postgresql://…`, `mysql://…`: server backends through `storage.registry`) —,
creating a missing store with a 0700 directory and 0600 database files, refusing to create one for
readers (`StoreMissingError` naming the path), and masking passwords in URLs.

Never: prints, logs or puts into a message a URL that has not been through `mask_url`; never reads or
writes entries itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from llm_config.errors import StorageError, StoreMissingError, ValidationError
from llm_config.storage.registry import SCHEMES, open_server
from llm_config.storage.sqlite import open_sqlite
from llm_config.types import Storage

log = logging.getLogger("llm_config")

__all__ = [
    "DB_FILE_NAME",
    "INITIAL_KEY_FILE",
    "initial_key_path",
    "StoreLocation",
    "mask_url",
    "open_storage",
    "parse_target",
    "store_exists",
]

DB_FILE_NAME: Final = "config.db"
"""The database file inside a store directory."""
INITIAL_KEY_FILE: Final = "initial-admin-key"
"""Where `serve` writes the first admin key of a store (in its directory, 0600)."""

_SQLITE_PREFIX: Final = "sqlite:///"
_SECRET_QUERY = re.compile(r"([?&;](?:password|passwd|pwd|pass|sslpassword)=)[^&;#]*", re.IGNORECASE)
_SIDE_FILES: Final = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where a target points: the backend, the database file and, for the directory layout, its
    directory (the thing to create 0700)."""

    backend: str  # "sqlite", "postgresql" or "mysql"
    db_path: Path  # SQLite's database file (a server database: Path())
    directory: Path | None
    url: str  # masked, for messages
    server_url: str | None = None  # a server database's URL, unmasked (never shown)


def mask_url(url: str) -> str:
    """Return `url` with any password (in the user-info part or the query) replaced by `***`.

    Errs on the side of hiding: with an unencoded `@` or `/` in a password, more than the password
    may be masked, never less. SQLite URLs hold no password and are returned unchanged.
    """
    text = os.fspath(url)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() == "sqlite":
        return text
    end = len(rest)
    for mark in "?#":
        index = rest.find(mark)
        if index != -1:
            end = min(end, index)
    at = rest.rfind("@", 0, end)
    if at != -1:
        user, colon, _password = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
    return scheme + "://" + _SECRET_QUERY.sub(r"\1***", rest)


def parse_target(target: str | os.PathLike[str]) -> StoreLocation:
    """Resolve a `--storage` value without touching the file system."""
    text = os.fspath(target)
    if not text:
        raise ValidationError("Storage target is empty")
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme in SCHEMES:
            if not text.split("://", 1)[1].strip("/"):
                raise ValidationError(f"Invalid storage URL {mask_url(text)}: it names no host or database")
            return StoreLocation(SCHEMES[scheme].name, Path(), None, mask_url(text), server_url=text)
        if scheme != "sqlite":
            raise ValidationError(
                f"Unsupported storage URL {mask_url(text)}: use a directory, sqlite:///path.db, "
                "postgresql://... or mysql://..."
            )
        if not text.startswith(_SQLITE_PREFIX) or len(text) == len(_SQLITE_PREFIX):
            raise ValidationError(
                f"Invalid SQLite URL {mask_url(text)}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        path_text = text[len(_SQLITE_PREFIX):]
        if path_text == ":memory:" or "?" in path_text:
            raise ValidationError(
                f"Invalid SQLite URL {mask_url(text)}: a store must be a file path (no :memory:, no query)"
            )
        db_path = Path(path_text).expanduser()
        return StoreLocation("sqlite", db_path, None, mask_url(text))
    directory = Path(text).expanduser()
    return StoreLocation("sqlite", directory / DB_FILE_NAME, directory, text)


def _private_directory(directory: Path, *, fix: bool) -> None:
    """A store directory other users can enter: writers tighten it to 0700, readers warn."""
    try:
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError:
        return
    if not mode & 0o077:
        return
    if fix:
        try:
            os.chmod(directory, 0o700)
        except OSError:
            raise ValidationError(
                f"Store directory {directory} is accessible by other users (mode {mode:04o}) and cannot be "
                f"made private: run 'chmod 700 {directory}'"
            ) from None
        log.warning("store directory %s was mode %04o: tightened to 0700", directory, mode)
    else:
        log.warning("store directory %s is accessible by other users (mode %04o): run 'chmod 700 %s'",
                    directory, mode, directory)


def _create_sqlite_files(location: StoreLocation) -> None:
    """Create the store directory (0700) and an empty database file (0600) if they are missing."""
    if location.directory is not None:
        if location.directory.exists() and not location.directory.is_dir():
            raise ValidationError(
                f"Storage path {location.directory} is a file, not a store directory "
                "(for a database file use sqlite:///PATH)"
            )
        try:
            location.directory.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            _private_directory(location.directory, fix=True)
        else:
            os.chmod(location.directory, 0o700)  # mkdir's mode is filtered by the umask
    else:
        location.db_path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 before SQLite opens it, so no other user can ever read it; SQLite gives its
    # -wal/-shm/-journal files the mode of the database file.
    try:
        fd = os.open(location.db_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(location.db_path, 0o600)


def _tighten_modes(db_path: Path) -> None:
    for path in (db_path, *(Path(f"{db_path}{suffix}") for suffix in _SIDE_FILES)):
        try:
            if path.exists() and (path.stat().st_mode & 0o077):
                os.chmod(path, 0o600)
        except OSError:  # not ours to change (e.g. a shared file): leave it
            pass


def initial_key_path(target: str | os.PathLike[str]) -> Path:
    """Where `serve` writes the first admin key of the store at `target`: in a directory store, else in
    `$XDG_CONFIG_HOME/llm-config/`."""
    location = parse_target(target)
    if location.directory is not None:
        return location.directory / INITIAL_KEY_FILE
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "llm-config" / INITIAL_KEY_FILE


def store_exists(target: str | os.PathLike[str]) -> bool:
    """Whether `target` names a store that exists (without opening or creating anything; a server
    database is taken to exist: whether it holds a store is known only once connected)."""
    location = parse_target(target)
    return location.server_url is not None or location.db_path.is_file()


def open_storage(target: str | os.PathLike[str], *, create: bool, upgrade: bool = True) -> Storage:
    """Open the store at `target`, creating it when `create` (writers, `init`, `serve`).

    With `create=False` (reading commands) a missing store raises `StoreMissingError` naming the
    path and nothing is created. Pending schema migrations are applied either way — unless `upgrade`
    is False (`serve --no-upgrade`), which refuses a store with pending migrations instead.
    """
    location = parse_target(target)
    if location.server_url is not None:
        return open_server(SCHEMES[location.server_url.split("://", 1)[0].lower()], location.server_url,
                           location.url, upgrade=upgrade)
    if create:
        _create_sqlite_files(location)
    elif location.directory is not None and location.directory.exists() and not location.directory.is_dir():
        raise ValidationError(
            f"Storage path {location.directory} is a file, not a store directory "
            "(for a database file use sqlite:///PATH)"
        )
    elif not location.db_path.is_file():
        shown = location.directory if location.directory is not None else location.db_path
        raise StoreMissingError(
            f"Store not found: {shown} (create it with 'llm-config init' or a first write)"
        )
    elif location.directory is not None:
        _private_directory(location.directory, fix=False)
    url = _sqlite_url(location)
    try:
        storage = open_sqlite(location.db_path, url=url, upgrade=upgrade)
    except StorageError:
        if _writable(location.db_path):
            raise
        if create:
            raise StorageError(
                f"The store at {url} cannot be written here: its directory {location.db_path.parent} is read-only "
                "(reading commands still work)"
            ) from None
        # a reader of a store in a directory it cannot write (read-only or immutable): read-only access
        storage = open_sqlite(location.db_path, url=url, read_only=True)
        log.warning("store %s is read-only here (its directory cannot be written): reads only", url)
    if create:
        _tighten_modes(location.db_path)
    return storage


def _writable(db_path: Path) -> bool:
    """Whether SQLite could create its -wal/-shm files next to the database (root ignores modes, not
    the immutable attribute, so try it)."""
    probe = db_path.parent / f".{db_path.name}.probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


def _sqlite_url(location: StoreLocation) -> str:
    """The canonical URL of a database file: `sqlite:///` + its absolute path (so four slashes)."""
    return f"{_SQLITE_PREFIX}{location.db_path.absolute().as_posix()}"
