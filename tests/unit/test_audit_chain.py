"""The keyed audit chain detects edits, deletions, reordering, a wrong key and a cut-off tail."""

import dataclasses
import os

from llm_config import audit
from llm_config.models import AuditEvent, WriteKind

KEY = os.urandom(32)


def chain(n: int, key: bytes = KEY) -> list[AuditEvent]:
    events, prev = [], audit.GENESIS_MAC
    for seq in range(1, n + 1):
        fields = {
            "seq": seq, "id": f"id{seq}", "timestamp": f"2026-01-01T00:00:{seq:02d}.000000Z",
            "type": "config_created", "actor": "alice", "namespace": "ns", "key": f"k{seq}",
            "environment": "development", "old_version": None, "new_version": 1, "outcome": "success",
            "source_ip": None, "request_id": None, "details": {"fingerprint": "x"},
        }
        mac = audit.compute_mac(key, prev, fields)
        events.append(AuditEvent(**fields, prev_mac=prev, mac=mac))  # type: ignore[arg-type]
        prev = mac
    return events


def test_intact_chain_verifies() -> None:
    events = chain(5)
    report = audit.verify_chain(events, KEY, anchor=(5, events[-1].mac))
    assert report.ok, report.problems
    assert report.events == 5 and report.head == (5, events[-1].mac)


def test_edit_is_detected() -> None:
    events = chain(5)
    events[2] = dataclasses.replace(events[2], actor="mallory")
    report = audit.verify_chain(events, KEY)
    assert not report.ok and any("seq 3" in p for p in report.problems)


def test_deletion_and_reorder_are_detected() -> None:
    events = chain(5)
    assert not audit.verify_chain(events[:2] + events[3:], KEY).ok
    assert not audit.verify_chain([events[1], events[0], *events[2:]], KEY).ok


def test_wrong_key_fails() -> None:
    assert not audit.verify_chain(chain(3), os.urandom(32)).ok


def test_cut_tail_is_caught_only_by_anchor() -> None:
    events = chain(5)
    anchor = (5, events[-1].mac)
    assert audit.verify_chain(events[:4], KEY).ok
    assert not audit.verify_chain(events[:4], KEY, anchor=anchor).ok


def test_subject_is_covered_when_present_and_old_events_still_verify() -> None:
    events = chain(3)  # written before subjects existed: none has one, and they verify as they did
    assert audit.verify_chain(events, KEY).ok
    with_subject = dataclasses.replace(events[2], subject="c:ns/k3@development")
    with_subject = dataclasses.replace(with_subject, mac=audit.event_mac(KEY, with_subject))
    assert audit.verify_chain([*events[:2], with_subject], KEY).ok
    for forged in (dataclasses.replace(with_subject, subject="c:ns/other@development"),
                   dataclasses.replace(with_subject, subject=None)):
        report = audit.verify_chain([*events[:2], forged], KEY)
        assert not report.ok and "seq 3" in report.problems[0]


def test_fingerprints_are_bound_to_their_place() -> None:
    here, there = b"ns\x00openai.api_key\x00production", b"ns\x00scratch\x00development"
    assert audit.fingerprint(KEY, here, b'"sk-1"') != audit.fingerprint(KEY, there, b'"sk-1"')
    assert audit.fingerprint(KEY, here, b'"sk-1"') == audit.fingerprint_with(2, KEY, here, b'"sk-1"')
    # scheme 1 (events written before) ignored the place: kept only so those events still verify
    assert audit.fingerprint_with(1, KEY, here, b'"sk-1"') == audit.fingerprint_with(1, KEY, there, b'"sk-1"')


def test_event_types() -> None:
    assert audit.write_event_type(WriteKind.SET, secret=False, existed=False) == "config_created"
    assert audit.write_event_type(WriteKind.SET, secret=False, existed=True) == "config_updated"
    assert audit.write_event_type(WriteKind.DELETE, secret=True, existed=True) == "secret_modified"
    assert audit.write_event_type(WriteKind.ROLLBACK, secret=False, existed=True) == "config_rolled_back"


def test_parse_anchor() -> None:
    mac = "ab" * 32
    assert audit.parse_anchor(f"12:{mac}") == (12, mac)
    for bad in ("12", f"x:{mac}", "12:abc", f"12:{'zz' * 32}"):
        try:
            audit.parse_anchor(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
