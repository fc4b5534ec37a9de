"""Audit events and their keyed HMAC-SHA256 chain (SPEC §7, ARCHITECTURE decision 6). Pure.

Storage appends events inside its write transaction using `link`; `verify_chain` checks a whole
trail. Never put a value here: secrets appear only as keyed fingerprints.
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
    "GENESIS_MAC",
    "VerifyReport",
    "canonical",
    "compute_mac",
    "fingerprint",
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
)

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
    """Canonical JSON of an event's MAC'd fields: sorted keys, compact, UTF-8."""
    return orjson.dumps({name: fields.get(name) for name in _MAC_FIELDS}, option=orjson.OPT_SORT_KEYS)


def compute_mac(key: bytes, prev_mac: str, fields: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) over the previous MAC and this event's canonical JSON."""
    return hmac.new(key, prev_mac.encode() + b"\n" + canonical(fields), hashlib.sha256).hexdigest()


def fingerprint(key: bytes, data: bytes) -> str:
    """Keyed fingerprint of a value: lets diffs and audits compare secrets without showing them."""
    return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()[:32]


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


@dataclass(slots=True)
class VerifyReport:
    """Outcome of `verify_chain`: ok, how many events were checked, and every problem found."""

    ok: bool = True
    events: int = 0
    head: tuple[int, str] | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head": f"{self.head[0]}:{self.head[1]}" if self.head else None,
            "problems": self.problems,
        }


def verify_chain(
    events: Iterable[AuditEvent],
    key: bytes,
    *,
    anchor: tuple[int, str] | None = None,
    version_refs: Iterable[tuple[str, str, str, int, int]] = (),
    max_problems: int = 50,
) -> VerifyReport:
    """Check MACs, links and sequence continuity; that every version row references a matching
    event; and, with an anchor, that the anchored event is still there unchanged."""
    report = VerifyReport()
    prev_mac = GENESIS_MAC
    expected_seq = 1
    by_seq: dict[int, tuple[str | None, str | None, str | None, int | None]] = {}
    anchor_seen = anchor is None
    for event in events:
        report.events += 1
        if len(report.problems) >= max_problems:
            continue
        if event.seq != expected_seq:
            report.fail(f"event seq {event.seq}: expected seq {expected_seq} (events missing or reordered)")
        if not hmac.compare_digest(event.prev_mac, prev_mac):
            report.fail(f"event seq {event.seq}: does not link to the previous event")
        fields = event.to_json()
        if not hmac.compare_digest(compute_mac(key, event.prev_mac, fields), event.mac):
            report.fail(f"event seq {event.seq}: MAC mismatch (event altered or wrong key)")
        if anchor is not None and event.seq == anchor[0]:
            anchor_seen = True
            if not hmac.compare_digest(event.mac, anchor[1]):
                report.fail(f"anchor {anchor[0]}: MAC differs from the anchored one")
        by_seq[event.seq] = (event.namespace, event.key, event.environment, event.new_version)
        prev_mac = event.mac
        expected_seq = event.seq + 1
        report.head = (event.seq, event.mac)
    if not anchor_seen and anchor is not None:
        report.fail(f"anchor {anchor[0]}: event missing (trail cut off or rewritten)")
    for namespace, key_name, env, version, seq in version_refs:
        if len(report.problems) >= max_problems:
            break
        if by_seq.get(seq) != (namespace, key_name, env, version):
            report.fail(
                f"version {version} of {namespace}/{key_name} [{env}]: audit event {seq} missing or mismatched"
            )
    return report
