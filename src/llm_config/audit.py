"""Audit events and their keyed HMAC-SHA256 chain (SPEC §7, ARCHITECTURE decision 6). Pure.

Storage appends events inside its write transaction (computing `event_mac`); `ChainCheck` and
`verify_chain` check a trail. Never put a value here: secrets appear only as keyed fingerprints,
bound to their place (`FINGERPRINT_SCHEME`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from llm_config.models import AuditEvent, WriteKind

__all__ = [
    "EVENT_TYPES",
    "FINGERPRINT_SCHEME",
    "GENESIS_MAC",
    "MAX_PROBLEMS",
    "ChainCheck",
    "VerifyReport",
    "canonical",
    "compute_mac",
    "event_mac",
    "export_record",
    "fingerprint",
    "fingerprint_with",
    "mac_fields",
    "parse_anchor",
    "verify_chain",
    "write_event_type",
]

GENESIS_MAC: Final = "0" * 64

EVENT_TYPES: Final = (
    "config_created",
    "config_updated",
    "config_deleted",
    "config_rolled_back",
    "config_purged",
    "secret_modified",
    "secret_accessed",
    "config_accessed",
    "template_rendered",
    "key_created",
    "key_revoked",
    "schema_changed",
    "auth_failed",
    "access_denied",
    "ip_banned",
    "session_created",
    "key_rotated",
    "backup_created",
    "store_restored",
    "integrity_migrated",
)

FINGERPRINT_SCHEME: Final = 2
"""Scheme of the fingerprints written now; events record it as `details.fingerprint_scheme`.

1 (events without the field): HMAC of the value alone, so equal values fingerprinted alike in every
namespace and environment — an oracle for anyone who could write guesses somewhere and read events.
2: HMAC of the place (namespace, key, environment) and the value.
"""

_MAC_FIELDS: Final = (
    "seq",
    "id",
    "timestamp",
    "type",
    "actor",
    "namespace",
    "key",
    "environment",
    "old_version",
    "new_version",
    "outcome",
    "source_ip",
    "request_id",
    "details",
)


def canonical(fields: Mapping[str, Any]) -> bytes:
    """Canonical JSON of an event's MAC'd fields: sorted keys, compact, UTF-8.

    `subject` is covered only when the event has one, so events written before subjects existed
    keep verifying; its presence and its value are covered alike.
    """
    doc = {name: fields.get(name) for name in _MAC_FIELDS}
    subject = fields.get("subject")
    if subject is not None:
        doc["subject"] = subject
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def compute_mac(key: bytes, prev_mac: str, fields: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) over the previous MAC and this event's canonical JSON."""
    return hmac.new(key, prev_mac.encode() + b"\n" + canonical(fields), hashlib.sha256).hexdigest()


def mac_fields(event: AuditEvent) -> dict[str, Any]:
    """Every field the chain MAC of `event` covers (its SPEC §7 JSON plus any subject)."""
    fields = event.to_json()
    if event.subject is not None:
        fields["subject"] = event.subject
    return fields


def export_record(event: AuditEvent) -> dict[str, Any]:
    """One line of an audit export: the event with everything its MAC covers and both MACs, so an
    exported trail can be verified away from the database."""
    record = mac_fields(event)
    record["prev_mac"] = event.prev_mac
    record["mac"] = event.mac
    return record


def event_mac(key: bytes, event: AuditEvent) -> str:
    """The chain MAC `event` should carry."""
    return compute_mac(key, event.prev_mac, mac_fields(event))


def fingerprint(key: bytes, place: bytes, data: bytes) -> str:
    """Keyed fingerprint of a value at its place (scheme 2): equal values in two places differ.

    `place` is the secret's AAD (namespace, key, environment). Lets imports and audits tell
    whether a value changed without showing it.
    """
    return fingerprint_with(FINGERPRINT_SCHEME, key, place, data)


def fingerprint_with(scheme: int, key: bytes, place: bytes, data: bytes) -> str:
    """The fingerprint of `data` under an older or current scheme (for verifying old events)."""
    if scheme == 1:
        message = data
    elif scheme == 2:
        message = b"fp2\x00" + place + b"\x00" + data
    else:
        raise ValueError(f"unknown fingerprint scheme {scheme}")
    return "hmac-sha256:" + hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def write_event_type(kind: WriteKind, *, secret: bool, existed: bool) -> str:
    """Event type for a write: `secret_modified` for any write touching a secret (SPEC §7)."""
    if secret:
        return "secret_modified"
    if kind is WriteKind.SET:
        return "config_updated" if existed else "config_created"
    return {
        WriteKind.DELETE: "config_deleted",
        WriteKind.ROLLBACK: "config_rolled_back",
        WriteKind.PURGE: "config_purged",
    }[kind]


def parse_anchor(text: str) -> tuple[int, str]:
    """Parse `SEQ:MAC` as printed by `audit head`; raises ValueError on bad input."""
    seq_text, sep, mac = text.strip().partition(":")
    if not sep or not seq_text.isdigit() or len(mac) != 64:
        raise ValueError("anchor must look like SEQ:MAC (as printed by 'audit head')")
    int(mac, 16)
    return int(seq_text), mac.lower()


MAX_PROBLEMS: Final = 50
"""How many problems a verification report lists (it counts on: `ok` is False after the first)."""


@dataclass(slots=True)
class VerifyReport:
    """Outcome of `verify_chain`: ok, how many events were checked, and every problem found."""

    ok: bool = True
    events: int = 0
    head: tuple[int, str] | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head": f"{self.head[0]}:{self.head[1]}" if self.head else None,
            "problems": self.problems,
        }


class ChainCheck:
    """Checks a trail event by event (MACs, links, sequence continuity, an anchor), so a trail of any
    length is verified without holding it in memory."""

    def __init__(self, key: bytes, report: VerifyReport, *, anchor: tuple[int, str] | None = None) -> None:
        self._key = key
        self._report = report
        self._anchor = anchor
        self._anchor_seen = anchor is None
        self._prev_mac = GENESIS_MAC
        self._expected_seq = 1

    def feed(self, event: AuditEvent) -> None:
        report = self._report
        report.events += 1
        if len(report.problems) < MAX_PROBLEMS:
            if event.seq != self._expected_seq:
                report.fail(f"event seq {event.seq}: expected seq {self._expected_seq} (events missing or reordered)")
            if not hmac.compare_digest(event.prev_mac, self._prev_mac):
                report.fail(f"event seq {event.seq}: does not link to the previous event")
            if not hmac.compare_digest(event_mac(self._key, event), event.mac):
                report.fail(f"event seq {event.seq}: MAC mismatch (event altered or wrong key)")
            if self._anchor is not None and event.seq == self._anchor[0]:
                self._anchor_seen = True
                if not hmac.compare_digest(event.mac, self._anchor[1]):
                    report.fail(f"anchor {self._anchor[0]}: MAC differs from the anchored one")
        self._prev_mac = event.mac
        self._expected_seq = event.seq + 1
        report.head = (event.seq, event.mac)

    def finish(self) -> None:
        if not self._anchor_seen and self._anchor is not None:
            self._report.fail(f"anchor {self._anchor[0]}: event missing (trail cut off or rewritten)")


def verify_chain(
    events: Iterable[AuditEvent],
    key: bytes,
    *,
    anchor: tuple[int, str] | None = None,
) -> VerifyReport:
    """Check MACs, links and sequence continuity and, with an anchor, that the anchored event is
    still there unchanged. (The cross-checks with the stored rows are `core.verify`'s.)"""
    report = VerifyReport()
    check = ChainCheck(key, report, anchor=anchor)
    for event in events:
        check.feed(event)
    check.finish()
    return report
