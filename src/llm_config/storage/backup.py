"""The backup file format (version 1): gzip'd JSON lines closed by a SHA-256 manifest.

    line 1      {"format": "llm-config-backup", "version": 1, "created_at": T, "source": BACKEND,
                 "tables": {TABLE: [COLUMN, ...], ...}}
    lines 2..n  [TABLE, [VALUE, ...]]       every row of every table, raw, tables in `ROW_TABLES` order
    last line   {"manifest": {"sha256": HEX, "rows": {TABLE: COUNT}, "revision": N, "epoch": E,
                 "audit_head": [SEQ, MAC]}}

`sha256` covers every byte of the uncompressed lines before the manifest. Rows are stored exactly as the
database holds them — secret values sealed, API keys as their peppered hashes, the instance secret sealed
under the master key, row MACs and the audit chain as they are — so a restore needs the same master key
and proves itself with `audit verify`.

Owns: writing that format, and reading it back with every check a restore needs before it touches
anything (gzip integrity, header, table and column names, row shapes and value types, table order, the
manifest's digest and counts, nothing after it). Reading is streaming: one line at a time.

Never: decrypts anything, or holds a whole backup in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

import orjson

from llm_config.errors import ValidationError
from llm_config.storage.sql import ROW_COLUMNS, ROW_TABLES

__all__ = ["FORMAT", "VERSION", "BackupInfo", "Digest", "read_rows", "row_line", "scan", "write_backup"]

FORMAT: Final = "llm-config-backup"
VERSION: Final = 1
MAX_LINE: Final = 64 << 20  # a 1 MiB value JSON-escaped stays far below; a crafted line cannot exhaust memory
_COLUMNS: Final = {table: [c.strip().strip('"') for c in cols.split(",")] for table, cols in ROW_COLUMNS.items()}
_ORDER: Final = {table: i for i, table in enumerate(ROW_TABLES)}


def row_line(table: str, row: Iterable[Any]) -> bytes:
    """The line a row is stored as (also what `migrate` digests on both sides)."""
    return orjson.dumps([table, list(row)]) + b"\n"


@dataclass
class Digest:
    """A running SHA-256 and row counts over row lines."""

    sha: Any = field(default_factory=hashlib.sha256)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROW_TABLES, 0))

    def add(self, table: str, row: Iterable[Any]) -> bytes:
        line = row_line(table, row)
        self.sha.update(line)
        self.rows[table] += 1
        return line

    @property
    def hexdigest(self) -> str:
        return str(self.sha.hexdigest())


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What a verified backup holds."""

    created_at: str
    source: str
    sha256: str
    rows: dict[str, int]
    revision: int
    epoch: str | None
    audit_head: tuple[int, str] | None
    meta: dict[str, str]  # the store settings it carries (sealed instance secret, revision, …)


def write_backup(out: IO[bytes], rows: Iterable[tuple[str, Iterable[Any]]], *, created_at: str,
                 source: str) -> BackupInfo:
    """Write `rows` (as `Storage.export_rows` yields them) to `out` as a backup file."""
    digest = Digest()
    meta: dict[str, str] = {}
    head: tuple[int, str] | None = None
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:
        header = orjson.dumps({"format": FORMAT, "version": VERSION, "created_at": created_at, "source": source,
                               "tables": _COLUMNS}) + b"\n"
        digest.sha.update(header)
        gz.write(header)
        for table, row in rows:
            values = list(row)
            gz.write(digest.add(table, values))
            if table == "meta":
                meta[str(values[0])] = str(values[1])
            elif table == "audit_events":
                head = (int(values[0]), str(values[15]))
        info = BackupInfo(created_at, source, digest.hexdigest, dict(digest.rows), int(meta.get("revision", "0")),
                          meta.get("epoch"), head, meta)
        gz.write(orjson.dumps({"manifest": {"sha256": info.sha256, "rows": info.rows, "revision": info.revision,
                                            "epoch": info.epoch, "audit_head": head}}) + b"\n")
    return info


def _corrupt(why: str) -> ValidationError:
    return ValidationError(f"Backup file refused: {why}; nothing was restored")


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as gz:
            while line := gz.readline(MAX_LINE):
                if not line.endswith(b"\n"):
                    raise _corrupt("a line is longer than allowed or the file ends mid-line (truncated)")
                yield line
    except EOFError:
        raise _corrupt("it is truncated (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise _corrupt(f"it is not an intact gzip file ({exc})") from None


def _header(first: bytes) -> dict[str, Any]:
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError:
        raise _corrupt("its first line is not a backup header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _corrupt("it is not an llm-config backup")
    if header.get("version") != VERSION:
        raise _corrupt(f"format version {header.get('version')!r} is not one this llm-config reads ({VERSION})")
    if header.get("tables") != _COLUMNS:
        raise _corrupt("its tables or columns differ from this llm-config's (made by another version)")
    return header


def read_rows(stream: IO[bytes], info: BackupInfo | None = None,
              found: dict[str, Any] | None = None) -> Iterator[tuple[str, list[Any]]]:
    """Every row of a backup, each checked as it passes; at the end the manifest must match what passed
    (a mismatch raises — inside a restore's transaction, so nothing is kept). With `info` (from `scan`),
    the file must also still be the one scanned. `found` receives the header and the manifest."""
    lines = _lines(stream)
    first = next(lines, None)
    if first is None:
        raise _corrupt("it is empty")
    sha = hashlib.sha256(first)
    header = _header(first)
    counts = dict.fromkeys(ROW_TABLES, 0)
    position = 0
    manifest: dict[str, Any] | None = None
    for number, line in enumerate(lines, start=2):
        if manifest is not None:
            raise _corrupt(f"line {number} follows the manifest")
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise _corrupt(f"line {number} is not JSON") from None
        if isinstance(item, dict):
            trailer = item.get("manifest")
            if not isinstance(trailer, dict):
                raise _corrupt(f"line {number} is neither a row nor the manifest")
            manifest = trailer
            continue
        sha.update(line)
        if not (isinstance(item, list) and len(item) == 2 and item[0] in _ORDER and isinstance(item[1], list)):
            raise _corrupt(f"line {number} is not a row of a known table")
        table, values = item
        if _ORDER[table] < position:
            raise _corrupt(f"line {number}: tables out of order")
        position = _ORDER[table]
        if len(values) != len(_COLUMNS[table]) or not all(v is None or type(v) in (str, int) for v in values):
            raise _corrupt(f"line {number}: a {table} row of the wrong shape")
        counts[table] += 1
        yield table, values
    if manifest is None:
        raise _corrupt("it has no manifest (truncated)")
    if manifest.get("sha256") != sha.hexdigest():
        raise _corrupt("its SHA-256 does not match its manifest (altered or damaged)")
    if manifest.get("rows") != counts:
        raise _corrupt("its row counts do not match its manifest")
    if info is not None and info.sha256 != manifest.get("sha256"):
        raise _corrupt("the file changed while it was being restored")
    if found is not None:
        found["header"], found["manifest"] = header, manifest


def scan(stream: IO[bytes]) -> BackupInfo:
    """Read a whole backup once and check everything (see `read_rows`); the settings it carries are
    kept (a few rows), its other rows are not."""
    meta: dict[str, str] = {}
    found: dict[str, Any] = {}
    for table, values in read_rows(stream, found=found):
        if table == "meta":
            meta[str(values[0])] = str(values[1])
    header, manifest = found["header"], found["manifest"]
    head = manifest.get("audit_head")
    try:
        return BackupInfo(
            created_at=str(header.get("created_at")), source=str(header.get("source")),
            sha256=str(manifest["sha256"]), rows=dict(manifest["rows"]), revision=int(manifest.get("revision") or 0),
            epoch=manifest.get("epoch"),
            audit_head=(int(head[0]), str(head[1])) if isinstance(head, list) and len(head) == 2 else None,
            meta=meta,
        )
    except (KeyError, TypeError, ValueError):
        raise _corrupt("its manifest is malformed") from None
