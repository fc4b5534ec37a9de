"""`/api/v1/audit`: list, verify, head and export of the audit chain (SPEC §7, §8)."""

from __future__ import annotations

from typing import Final, Literal

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from llm_config.audit import EVENT_TYPES, export_record
from llm_config.errors import ValidationError
from llm_config.models import AuditEvent
from llm_config.names import validate_namespace
from llm_config.server.auth import require_unscoped
from llm_config.server.routes.common import (
    call,
    caller,
    error_responses,
    json_response,
    manager_of,
    principal_of,
    request_id_of,
    source_ip_of,
)
from llm_config.server.routes.schemas import (
    ANCHOR_PATTERN,
    NAMESPACE_PATH_PATTERN,
    TIME_SCHEMA,
    AuditEventModel,
    AuditHead,
    VerifyReportModel,
)
from llm_config.times import normalize_time
from llm_config.types import AuditQuery

__all__ = ["router"]

router = APIRouter(tags=["audit"])

MAX_SEQ: Final = 2**63 - 1
DEFAULT_LIMIT: Final = 1000
_CURSOR_HEADER: Final = {"X-Next-Cursor": {"description": "seq of the last event; pass as cursor for the next page",
                                           "schema": {"type": "string"}}}


def _query(
    since: str | None, until: str | None, user: str | None, type_: str | None, namespace: str | None,
    cursor: int | None, limit: int | None,
) -> AuditQuery:
    if namespace:
        validate_namespace(namespace)
    if type_ is not None and type_ not in EVENT_TYPES:
        raise ValidationError(f"Unknown event type {type_[:40]!a}: use one of {', '.join(EVENT_TYPES)}")
    return AuditQuery(
        since=normalize_time(since, "since"), until=normalize_time(until, "until"), actor=user or None,
        type=type_ or None, namespace=namespace or None, after_seq=cursor or 0, limit=limit,
    )


@router.get(
    "/api/v1/audit",
    summary="Audit events, oldest first",
    responses={200: {"model": list[AuditEventModel], "headers": _CURSOR_HEADER}, **error_responses(400, 503)},
)
async def list_audit(
    request: Request,
    since: str | None = Query(None, description="Events at or after this RFC 3339 time (or date)",
                              json_schema_extra=TIME_SCHEMA),
    until: str | None = Query(None, description="Events before this RFC 3339 time (or date)",
                              json_schema_extra=TIME_SCHEMA),
    user: str | None = Query(None, min_length=1, max_length=300, description="Actor, e.g. key:ci#key_0123…"),
    type: str | None = Query(None, description="Event type", json_schema_extra={"enum": list(EVENT_TYPES)}),
    namespace: str | None = Query(None, pattern=NAMESPACE_PATH_PATTERN, description="Namespace (and its "
                                  "sub-namespaces)"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=10_000),
    cursor: int | None = Query(None, ge=0, le=MAX_SEQ, description="X-Next-Cursor of the previous page"),
) -> Response:
    query = _query(since, until, user, type, namespace, cursor, limit + 1)
    events = await call(request, "audit_list", None, caller(request).audit_events, query)
    headers = None
    if len(events) > limit:
        events = events[:limit]
        headers = {"X-Next-Cursor": str(events[-1].seq)}
    return json_response([e.to_json() for e in events], headers=headers)


@router.get(
    "/api/v1/audit/verify",
    summary="Verify the audit chain and version references (ok false when broken)",
    responses={200: {"model": VerifyReportModel}, **error_responses(400, 503)},
)
async def verify_audit(
    request: Request,
    anchor: str | None = Query(None, pattern=ANCHOR_PATTERN, description="SEQ:MAC as printed by audit head"),
) -> Response:
    report = await call(request, "audit_verify", None, caller(request).audit_verify, anchor or None)
    return json_response(report.to_json())


@router.get(
    "/api/v1/audit/head",
    summary="SEQ:MAC of the newest event, to keep outside the database",
    responses={200: {"model": AuditHead}, **error_responses(503)},
)
async def audit_head(request: Request) -> Response:
    head = await call(request, "audit_head", None, caller(request).audit_head)
    return json_response({"head": head})


def _export_lines(events: list[AuditEvent]) -> bytes:
    return b"".join(orjson.dumps(export_record(e)) + b"\n" for e in events)


@router.get(
    "/api/v1/audit/export",
    summary="The whole audit trail as JSON lines (with prev_mac and mac, for offline verification)",
    responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                     "description": "One event per line, oldest first"},
               **error_responses(503)},
)
async def export_audit(
    request: Request,
    format: Literal["jsonl"] = Query("jsonl", description="jsonl (the only format)"),
) -> Response:
    manager = manager_of(request)
    principal = principal_of(request)
    source_ip, request_id = source_ip_of(request), request_id_of(request)
    view = caller(request)

    def build() -> bytes:
        # the whole trail with its MACs: unscoped keys with audit_log:export only
        require_unscoped(manager, principal, "audit_log:export", source_ip=source_ip, request_id=request_id)
        return _export_lines(view.audit_events(AuditQuery()))

    return Response(await call(request, "audit_export", None, build), media_type="application/x-ndjson")
