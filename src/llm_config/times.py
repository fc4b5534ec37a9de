"""The one time format of the store: RFC 3339 UTC with microseconds, `2026-01-31T12:00:00.000000Z`.

Pure. Stored times are text in this exact form, so comparing them as strings orders them in time;
every time that enters (a `--since`, an `?until=`) is normalised here before it is compared.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Final

from llm_config.errors import ValidationError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["TIME_PATTERN", "normalize_time", "rfc3339", "utc_now"]

TIME_PATTERN: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2}))?"
)
"""A time given to a filter: an RFC 3339 date-time (with its offset) or a full date (UTC midnight)."""
_TIME = re.compile(TIME_PATTERN)
_LEAP_SECOND = re.compile(r"^(.{16}):60(?:\.[0-9]+)?")


def _stored(moment: datetime) -> str:
    # %Y is not zero-padded below year 1000 on every platform; the stored form must sort as text
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.%fZ")


def rfc3339(timestamp: float) -> str:
    """Seconds since the epoch → the stored form (no `datetime` import: a CLI read never needs one)."""
    whole = int(timestamp // 1)
    micros = round((timestamp - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    t = time.gmtime(whole)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d}Z"


def utc_now() -> str:
    """Now, in the stored form."""
    return rfc3339(time.time())


def normalize_time(text: str | None, name: str) -> str | None:
    """An RFC 3339 time or a bare date (naive means UTC) → the stored form; None stays None.

    `name` names the option or parameter in the error (`--since`, `until`).
    """
    if text is None:
        return None
    bad = ValidationError(
        f"Invalid {name}: expected an RFC 3339 time like 2026-01-31T12:00:00Z or a date like 2026-01-31"
    )
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise bad
    from datetime import UTC, datetime

    normal = _LEAP_SECOND.sub(r"\1:59.999999", text.upper())  # the instant just before the next minute
    try:
        moment = datetime.fromisoformat(normal)
    except ValueError:
        raise bad from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # an offset that pushes the first or last day out of range: clamp
        moment = datetime.min.replace(tzinfo=UTC) if moment.year == 1 else datetime.max.replace(tzinfo=UTC)
    return _stored(moment)
