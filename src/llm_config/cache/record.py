"""What a cache holds for one live entry: the entry and what the REST edge sends for it.

Built once where the entry is loaded from storage (or promoted from Redis), so a cache hit at the edge
is a lookup plus a send: the body is the entry's JSON already serialised, the ETag already formatted.
Never holds a plaintext secret: the entry is in its unrevealed form (`"<encrypted>"` for secrets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from llm_config.models import Entry, entry_etag

__all__ = ["RECORD_OVERHEAD", "CacheRecord", "make_record"]

# bytes charged per record besides its value and body: the Entry, its metadata, the headers, the L1's own
# slots — ~1,600 B measured with tracemalloc for a 200-byte string value (the RSS slope in bench.footprint
# is higher still: the allocator's own overhead), so the L1's byte bound means memory
RECORD_OVERHEAD: Final = 1600


@dataclass(frozen=True, slots=True)
class CacheRecord:
    entry: Entry
    body: bytes  # orjson of entry.to_json(): the REST body of an unrevealed GET
    etag: str  # entry_etag(entry, revealed=False)
    size: int  # what the L1 byte bound charges for it
    # Content-Length, ETag and X-Config-Revision of the 200, encoded once (a 304 sends the last two)
    headers: tuple[tuple[bytes, bytes], tuple[bytes, bytes], tuple[bytes, bytes]]

    @property
    def revision(self) -> int:
        return self.entry.revision


def make_record(entry: Entry, stored_len: int) -> CacheRecord:
    # orjson's bytes keep the 4 KiB buffer they were written into; a cached body lives for minutes, so it
    # is copied to its own size (~0.1 µs once per fill; 6 MiB less per 1,000 entries, bench.footprint)
    body = bytes(memoryview(orjson.dumps(entry.to_json())))
    etag = entry_etag(entry, False)
    headers = ((b"content-length", str(len(body)).encode()), (b"etag", etag.encode()),
               (b"x-config-revision", str(entry.revision).encode()))
    return CacheRecord(entry, body, etag, RECORD_OVERHEAD + stored_len + len(body), headers)
