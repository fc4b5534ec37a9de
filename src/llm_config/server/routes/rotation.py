"""`POST /api/v1/admin/rotate-key` (SPEC §2, §8; admins on keys without namespace or environment limits).

Re-seals every secret (history too) and the instance secret under a key the server's keyring already holds,
named by its id in the body `{"new_key_id": "<kid>"}` — key material never travels over HTTP: give the
server the new key first (LLM_CONFIG_KEY=old,new or new,old), then call this. Authorized before a single
body byte is read; an unknown key id is 400 (naming none of the keys the server has). Answers 202 with a job
to poll at `/api/v1/admin/jobs/{id}`; the job runs `ConfigManager.rotate_key_to`, the same rotation as the
CLI's `rotate-key`, and its result holds key ids and counts only.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from llm_config.errors import ValidationError
from llm_config.server.auth import require_unscoped
from llm_config.server.routes.backup import jobs_of
from llm_config.server.routes.common import (
    call,
    caller,
    error_responses,
    json_response,
    manager_of,
    parse_json_bytes,
    principal_of,
    read_body,
    request_id_of,
    source_ip_of,
)
from llm_config.server.routes.schemas import JobModel
from llm_config.wire import MASTER_KEY_ID_PATTERN, RotateBody

__all__ = ["KEY_ID_PATTERN", "ROTATE_PATH", "router"]

ROTATE_PATH: Final = "/api/v1/admin/rotate-key"
KEY_ID_PATTERN: Final = MASTER_KEY_ID_PATTERN
_BODY_SCHEMA: Final = {
    "type": "object",
    "required": ["new_key_id"],
    "additionalProperties": False,
    "properties": {"new_key_id": {
        "type": "string", "pattern": KEY_ID_PATTERN,
        "description": "Id of the key to seal with from now on: one the server's keyring already holds "
                       "(`llm-config doctor` and `/health` with system:read list the ids; keys never travel over "
                       "HTTP). An id the keyring does not hold is 400.",
    }},
}

router = APIRouter(tags=["admin"])


@router.post(
    ROTATE_PATH,
    status_code=202,
    summary="Re-seal every secret and the instance secret under a key of the server's keyring; 202 with a job",
    responses={202: {"model": JobModel, "description": "Started; poll the job at Location"},
               **error_responses(400, 408, 413, 415, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}},
)
async def post_rotate_key(request: Request) -> Response:
    manager, principal = manager_of(request), principal_of(request)
    await call(request, "rotate_key", None, require_unscoped, manager, principal, "system:update",
               source_ip=source_ip_of(request), request_id=request_id_of(request))
    raw, _ = await read_body(request)
    key_id = RotateBody.from_json(parse_json_bytes(raw)).new_key_id
    if key_id not in manager.key_ids:
        raise ValidationError("Unknown new_key_id: the server's keyring holds no such key (give the server the new "
                              "key first: LLM_CONFIG_KEY=old,new, then restart it)")
    view = caller(request)

    def work() -> dict[str, Any]:
        return view.rotate_key_to(key_id).to_json()

    job = jobs_of(request).start("rotate-key", principal.actor, work)
    return json_response(job.to_json(), status_code=202, headers={"Location": f"/api/v1/admin/jobs/{job.id}"})
