"""URL scheme → storage backend, imported only when used (ARCHITECTURE decision 2).

Owns: which schemes name which backend, the module that opens it and the pip extra holding its driver,
so `postgresql://…` without psycopg installed is one clear error naming the extra, and a CLI call on
SQLite never imports a server driver.

Never: shows an unmasked URL.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final

from llm_config.errors import MissingDependencyError
from llm_config.types import Storage

__all__ = ["SCHEMES", "Backend", "open_server", "scrub"]


@dataclass(frozen=True, slots=True)
class Backend:
    name: str  # canonical backend name
    module: str  # its `DIALECT(url, masked)` is opened by `sql.open_dialect`
    drivers: tuple[str, ...]  # top-level packages it needs
    extra: str  # the pip extra that installs them


_POSTGRES: Final = Backend("postgresql", "llm_config.storage.postgres", ("psycopg", "psycopg_pool"), "postgres")
_MYSQL: Final = Backend("mysql", "llm_config.storage.mysql", ("pymysql", "dbutils"), "mysql")

SCHEMES: Final = {
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
    "postgresql+psycopg": _POSTGRES,
    "mysql": _MYSQL,
    "mariadb": _MYSQL,
    "mysql+pymysql": _MYSQL,
}
"""Every URL scheme a server backend answers to (lower case)."""


def scrub(text: str, url: str) -> str:
    """`text` (a driver's message) with every spelling of `url`'s password replaced by `***`: drivers may
    quote the connection string they could not parse."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password is None:
        rest = url.split("://", 1)[-1].split("@", 1)
        password = rest[0].partition(":")[2] if len(rest) == 2 else None
    for form in {password, unquote(password)} if password else ():
        if form:
            text = text.replace(form, "***")
    return text


def open_server(backend: Backend, url: str, masked: str, *, upgrade: bool = True) -> Storage:
    """Open the store at a server database URL, applying pending migrations unless `upgrade` is False
    (then pending migrations are a StorageError)."""
    try:
        module = importlib.import_module(backend.module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in backend.drivers:
            raise MissingDependencyError(missing, backend.extra) from None
        raise
    from llm_config.storage.sql import open_dialect

    return open_dialect(module.DIALECT(url, masked), upgrade=upgrade)
