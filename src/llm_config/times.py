"""The one time format of the store: RFC 3339 UTC with microseconds, `2026-01-31T12:00:00.000000Z`.

Pure. Stored times are text in this exact form, so comparing them as strings orders them in time;
every time that enters (a `--since`, an `?until=`) is normalised here before it is compared.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from llm_config.errors import ValidationError

__all__ = ["STORED_FORMAT", "normalize_time", "rfc3339", "utc_now"]

STORED_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def rfc3339(timestamp: float) -> str:
    """Seconds since the epoch → the stored form."""
    return datetime.fromtimestamp(timestamp, UTC).strftime(STORED_FORMAT)


def utc_now() -> str:
    """Now, in the stored form."""
    return datetime.now(UTC).strftime(STORED_FORMAT)


def normalize_time(text: str | None, name: str) -> str | None:
    """An RFC 3339 time or a bare date (naive means UTC) → the stored form; None/"" stay None.

    `name` names the option or parameter in the error (`--since`, `until`).
    """
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"Invalid {name}: expected an RFC 3339 time like 2026-01-31T12:00:00Z or a date like 2026-01-31"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError(f"Invalid {name}: out of range") from None
    return moment.strftime(STORED_FORMAT)
