"""`/api/v1/keys`: list, create and revoke API keys (SPEC §8, §9; admins, and narrower keys per §4).

The manager enforces `users:*` and "equal or narrower role and scope"; a created key is returned
once, in the 201 body (with `Cache-Control: no-store`, like every `/api` answer), and never again.
Unknown body fields (`id`, `created_by`, `key`, …) are refused: nobody picks their own id or actor.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Path
from starlette.requests import Request
from starlette.responses import Response

from llm_config.server.routes.common import (
    authorize_before_body,
    call,
    caller,
    error_responses,
    json_response,
    parse_json_bytes,
    read_body,
)
from llm_config.server.routes.schemas import ApiKeyCreated, ApiKeyModel
from llm_config.wire import KeyCreateBody

__all__ = ["KEY_ID_PATTERN", "router"]

router = APIRouter(tags=["keys"])

KEY_ID_PATTERN: Final = r"^key_[0-9a-f]{16}$"


@router.get(
    "/api/v1/keys",
    summary="API keys this key could have created itself (never the keys themselves)",
    responses={200: {"model": list[ApiKeyModel]}, **error_responses(503)},
)
async def list_keys(request: Request) -> Response:
    keys = await call(request, "keys_list", None, caller(request).list_api_keys)
    return json_response([k.to_json() for k in keys])


@router.post(
    "/api/v1/keys",
    status_code=201,
    summary="Create an API key of equal or narrower role and scope; the key is shown once",
    responses={201: {"model": ApiKeyCreated, "description": "Created; `key` is shown only here"},
               **error_responses(400, 408, 409, 413, 415, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ApiKeyCreate"}}}}},
)
async def create_key(request: Request) -> Response:
    await authorize_before_body(request, "keys_create", "users:create")
    raw, _ = await read_body(request)
    body = KeyCreateBody.from_json(parse_json_bytes(raw))
    record, secret = await call(request, "keys_create", None, caller(request).create_api_key, body.name, body.role,
                                namespaces=body.namespaces, environments=body.environments,
                                expires_days=body.expires_days)
    doc = record.to_json()
    created = {name: doc[name] for name in ("id", "name", "role", "namespaces", "environments", "expires_at")}
    created["key"] = secret
    return json_response(created, status_code=201)


@router.delete(
    "/api/v1/keys/{key_id}",
    status_code=204,
    summary="Revoke an API key (effective on every worker within a second)",
    responses={204: {"description": "Revoked"}, **error_responses(400, 503)},
)
async def revoke_key(request: Request, key_id: str = Path(pattern=KEY_ID_PATTERN)) -> Response:
    await call(request, "keys_revoke", None, caller(request).revoke_api_key, key_id)
    return Response(status_code=204)
