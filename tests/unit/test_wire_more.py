"""wire.py, the rest of it: what `--server` reads back (keys, audit, import plans, restores, jobs) is what
the server wrote with each type's `to_json()` (SPEC §4, §7, §8)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from llm_config import errors, wire
from llm_config.audit import VerifyReport, export_record
from llm_config.core.backups import RestoreSummary
from llm_config.core.transfer import ImportPlan
from llm_config.models import ApiKey, AuditEvent, Environment, Role
from llm_config.server.jobs import Job
from llm_config.server.routes.schemas import (
    ApiKeyCreated,
    ApiKeyModel,
    AuditEventModel,
    ImportPlanModel,
    JobModel,
    VerifyReportModel,
)

KEY = ApiKey(id="key_0123456789abcdef", name="ci", role=Role.EDITOR, namespaces=("acme", "beta/x"),
             environments=(Environment.PRODUCTION, Environment.BASE), key_hash="", created_at="2026-01-01T00:00:00Z",
             created_by="root", expires_at="2026-02-01T00:00:00Z", revoked_at=None, parent_id="key_fedcba9876543210")
EVENT = AuditEvent(seq=7, id="ev1", timestamp="2026-01-01T00:00:00Z", type="config_updated",
                   actor="key:ci#key_0123456789abcdef", namespace="acme", key="model", environment="production",
                   old_version=1, new_version=2, outcome="success", source_ip="10.0.0.1", request_id="r1",
                   details={"fingerprint": "ab", "nested": {"n": [1, 2]}}, prev_mac="a" * 64, mac="b" * 64,
                   subject="entry:xyz")


def test_api_keys_read_back_from_their_json() -> None:
    assert wire.api_key_from_json(KEY.to_json()) == KEY  # the stored hash is never sent: empty
    bare = {k: v for k, v in KEY.to_json().items() if k != "parent_id"}  # the documented model has no parent_id
    assert wire.api_key_from_json(bare).parent_id is None
    assert set(ApiKeyModel.model_fields) <= set(KEY.to_json())


def test_a_created_key_reads_back_with_its_key() -> None:
    doc = KEY.to_json()
    body = {name: doc[name] for name in ("id", "name", "role", "namespaces", "environments", "expires_at")}
    body["key"] = "llmc_secret"
    assert set(body) == set(ApiKeyCreated.model_fields)
    record, key = wire.created_api_key_from_json(body)
    assert key == "llmc_secret"
    assert (record.id, record.name, record.role, record.namespaces, record.environments, record.expires_at) == \
        (KEY.id, KEY.name, KEY.role, KEY.namespaces, KEY.environments, KEY.expires_at)
    assert (record.created_at, record.created_by, record.revoked_at, record.key_hash) == ("", "", None, "")


def test_audit_events_read_back_from_a_listing_and_from_an_export_line() -> None:
    listed = wire.audit_event_from_json(EVENT.to_json())
    assert listed.to_json() == EVENT.to_json()
    assert (listed.prev_mac, listed.mac, listed.subject) == ("", "", None)  # a listing carries no MACs
    assert set(AuditEventModel.model_fields) == set(EVENT.to_json())
    exported = wire.audit_event_from_json(export_record(EVENT))
    assert exported == EVENT and export_record(exported) == export_record(EVENT)
    bare = dataclasses.replace(EVENT, subject=None, namespace=None, key=None, environment=None, old_version=None,
                               new_version=None, source_ip=None, request_id=None, details={})
    assert wire.audit_event_from_json(export_record(bare)) == bare


def test_verify_reports_read_back() -> None:
    for report in (VerifyReport(ok=True, events=12, head=(12, "c" * 64), problems=[]),
                   VerifyReport(ok=False, events=3, head=None, problems=["event 2: MAC mismatch"])):
        again = VerifyReport(**wire.verify_report_from_json(report.to_json()))
        assert again == report and again.to_json() == report.to_json()
    assert set(VerifyReportModel.model_fields) == set(VerifyReport().to_json())


def test_import_plans_and_restore_summaries_read_back() -> None:
    plan = ImportPlan(created=["a"], updated=["b", "c"], unchanged=[], deleted=["d"], dry_run=True)
    assert ImportPlan(**wire.import_plan_from_json(plan.to_json())) == plan
    assert set(ImportPlanModel.model_fields) == set(plan.to_json())
    summary = RestoreSummary(sha256="f" * 64, rows={"entries": 2, "versions": 3, "api_keys": 1, "audit_events": 9},
                             revision=5, previous_epoch=None, epoch="e2", verified=False, problems=("broken",))
    assert RestoreSummary(**wire.restore_summary_from_json(summary.to_json())) == summary


def test_jobs_read_back_and_a_failed_one_is_its_exception() -> None:
    job = Job("0b0e6b2c-1f7e-4d0c-9a43-5a3c1e2f4b6d", "restore", "key:admin#key_0123456789abcdef")
    assert wire.Job.from_json(job.to_json()).to_json() == job.to_json()
    assert set(JobModel.model_fields) == set(job.to_json())
    job.status, job.result = "succeeded", {"epoch": "e2"}
    assert wire.Job.from_json(job.to_json()).result == {"epoch": "e2"}
    job.status, job.error = "failed", {"error": "Conflict", "message": "The target store is not empty", "status": 409}
    failed = wire.Job.from_json(job.to_json())
    exc = failed.exception()
    assert type(exc) is errors.ConflictError and exc.message == "The target store is not empty"
    odd = wire.Job.from_json({**job.to_json(), "error": {"status": True}})
    assert isinstance(odd.exception(), errors.StorageError)  # no usable status: the service's fault, 500


@pytest.mark.parametrize(("parse", "data"), [
    (wire.api_key_from_json, []),
    (wire.api_key_from_json, {**KEY.to_json(), "role": "root"}),
    (wire.api_key_from_json, {**KEY.to_json(), "environments": ["mars"]}),
    (wire.api_key_from_json, {**KEY.to_json(), "namespaces": "acme"}),
    (wire.api_key_from_json, {**KEY.to_json(), "expires_at": 5}),
    (wire.created_api_key_from_json, {**KEY.to_json()}),  # no key
    (wire.audit_event_from_json, {**EVENT.to_json(), "seq": 0}),
    (wire.audit_event_from_json, {**EVENT.to_json(), "details": []}),
    (wire.audit_event_from_json, {**EVENT.to_json(), "old_version": "1"}),
    (wire.audit_event_from_json, {**EVENT.to_json(), "mac": 1}),
    (wire.verify_report_from_json, {"ok": "yes", "events": 1, "head": None, "problems": []}),
    (wire.verify_report_from_json, {"ok": True, "events": 1, "head": "x:abc", "problems": []}),
    (wire.verify_report_from_json, {"ok": True, "events": 1, "head": None, "problems": [1]}),
    (wire.import_plan_from_json, {"created": [], "updated": [], "unchanged": [], "deleted": []}),
    (wire.restore_summary_from_json, None),
    (wire.restore_summary_from_json, {"sha256": "x", "rows": {"entries": -1}, "revision": 0, "epoch": "e",
                                      "verified": True, "problems": []}),
    (wire.Job.from_json, {"id": "j", "kind": "restore", "status": "exploded", "started_by": "a",
                          "started_at": "t"}),
    (wire.Job.from_json, {"id": "j", "kind": "restore", "status": "running", "started_by": "a", "started_at": "t",
                          "result": [1]}),
])
def test_malformed_answers_are_validation_errors(parse: Any, data: Any) -> None:
    with pytest.raises(errors.ValidationError):
        parse(data)
