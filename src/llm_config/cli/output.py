"""The one output helper of the CLI: text, JSON, YAML and plain tables to stdout; messages to stderr.

JSON goes through orjson (indented for people, valid for machines); YAML through PyYAML's
`safe_dump`, imported only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import orjson

if TYPE_CHECKING:
    from llm_config.models import HistoryItem

_T = TypeVar("_T")

__all__ = [
    "dump_json",
    "dump_yaml",
    "emit",
    "err",
    "history_table",
    "out",
    "out_raw",
    "release_library_logging",
    "render_table",
    "route_library_warnings",
    "value_text",
    "write_private_file",
    "write_private_stream",
]


def out(text: str) -> None:
    """Write one item of data and a newline to stdout."""
    sys.stdout.write(text + "\n")


def out_raw(text: str) -> None:
    """Write text to stdout exactly as given (documents that carry their own newlines)."""
    sys.stdout.write(text)


def err(text: str) -> None:
    """Write a message to stderr."""
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def dump_json(data: Any, *, compact: bool = False) -> str:
    """JSON text of `data` (indented unless `compact`), no trailing newline."""
    option = 0 if compact else orjson.OPT_INDENT_2
    return orjson.dumps(data, option=option).decode()


def dump_yaml(data: Any) -> str:
    """YAML text of `data` via `yaml.safe_dump` (keys in the given order)."""
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))


def value_text(value: Any) -> str:
    """A value as a shell user wants it: a string raw, anything else as compact JSON."""
    return value if isinstance(value, str) else dump_json(value, compact=True)


def _cell(text: str) -> str:
    # one physical line per row, whatever the value holds
    return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, max_width: int = 60) -> str:
    """A plain aligned table (no rich: it would cost startup time for every command)."""
    cells = [[_cell(c) for c in row] for row in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 3] + "..." for c in row] for row in cells]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def history_table(items: Sequence[HistoryItem]) -> str:
    """History items as the text table of `history`, `template history` and `schema history`."""
    rows = [
        [str(i.version), i.created_at, i.created_by, i.change_description,
         "(deleted)" if i.deleted else value_text(i.value)]
        for i in items
    ]
    return render_table(["VERSION", "CREATED_AT", "CREATED_BY", "CHANGE", "VALUE"], rows)


def emit(data: Any, fmt: str, text: Callable[[], str] | None = None) -> None:
    """Print `data` as json or yaml; any other format uses the `text` renderer (JSON if none)."""
    if fmt == "json":
        out(dump_json(data))
    elif fmt == "yaml":
        out_raw(dump_yaml(data))
    elif text is not None:
        rendered = text()
        if rendered:
            out(rendered)
    else:
        out(dump_json(data))


def write_private_file(path: str, text: str) -> None:
    """Write `text` to a new regular file at `path`, atomically and mode 0600 (exports may hold secrets);
    `-` means stdout. See `write_private_stream`."""
    if path == "-":
        out_raw(text)
        return
    write_private_stream(path, lambda fh: fh.write(text.encode()))


def write_private_stream(path: str, write: Callable[[IO[bytes]], _T]) -> _T:
    """Let `write` fill a new regular file at `path`, atomically and mode 0600; returns what it returns.

    The text goes to a temporary file created 0600 in the same directory, is flushed to disk and then
    renamed over `path`: a reader sees the old file or the new one, never a half. `path` must not be
    a symlink or anything but a regular file (`-o /dev/null` would otherwise chmod the device);
    `-` means stdout. Errors are one line naming the path.
    """
    import stat
    import tempfile

    from llm_config.errors import ValidationError

    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise ValidationError(f"Cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    if existing is not None and stat.S_ISLNK(existing.st_mode):
        raise ValidationError(f"Refusing to write {path}: it is a symbolic link (name the file itself)")
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise ValidationError(f"Refusing to write {path}: not a regular file")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise ValidationError(f"Cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        with os.fdopen(fd, "wb") as fh:  # mkstemp made it 0600
            result = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ValidationError(f"Cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return result


class _WarningsToStderr(logging.Handler):
    """The library's warnings (a key that does not open the store, a store others can enter) as
    `warning: ...` lines; its errors reach the user as the command's own `error:` line instead."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            err(f"warning: {record.getMessage()}")


def route_library_warnings() -> None:
    """Show the library's warnings on stderr, once, in the CLI's own words."""
    logger = logging.getLogger("llm_config")
    if not any(isinstance(h, _WarningsToStderr) for h in logger.handlers):
        logger.addHandler(_WarningsToStderr())
    logger.propagate = False


def release_library_logging() -> None:
    """Hand the library's loggers back (to `serve`, which logs structured JSON lines of its own)."""
    logger = logging.getLogger("llm_config")
    for handler in [h for h in logger.handlers if isinstance(h, _WarningsToStderr)]:
        logger.removeHandler(handler)
    logger.propagate = True
