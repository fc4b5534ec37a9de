"""`/api/v1/admin/bans`: list and lift bans of client addresses (SPEC §8, §9).

Bans are the edge's, not the manager's, so the permission check is here: listing needs
`system:list` (admins and auditors), lifting `system:delete` (admins), both on unscoped keys — a
key limited to a namespace or an environment never sees or changes server-wide state. A refusal
is audited as `access_denied` like every other.
"""

from __future__ import annotations

from fastapi import APIRouter, Path
from starlette.requests import Request
from starlette.responses import Response

from llm_config.errors import NotFoundError, ValidationError
from llm_config.server.auth import require_unscoped
from llm_config.server.routes.common import (
    call,
    error_responses,
    json_response,
    manager_of,
    principal_of,
    request_id_of,
    source_ip_of,
)
from llm_config.server.routes.schemas import BanModel
from llm_config.server.security import BanList, normalize_ip

__all__ = ["router"]

router = APIRouter(tags=["admin"])


def _bans(request: Request) -> BanList:
    bans: BanList = request.app.state.bans
    return bans


@router.get(
    "/api/v1/admin/bans",
    summary="Client addresses banned after repeated failed authentications",
    responses={200: {"model": list[BanModel]}, **error_responses(503)},
)
async def list_bans(request: Request) -> Response:
    manager, principal = manager_of(request), principal_of(request)
    source_ip, request_id = source_ip_of(request), request_id_of(request)
    # the check (and the audit of a refusal) in the pool; the ban list itself lives on the event loop
    # (with --redis-url it is read from Redis, shared by every worker and replica)
    await call(request, "bans_list", None, require_unscoped, manager, principal, "system:list",
               source_ip=source_ip, request_id=request_id)
    return json_response([ban.to_json() for ban in await _bans(request).alist()])


@router.delete(
    "/api/v1/admin/bans/{ip}",
    status_code=204,
    summary="Lift the ban of a client address",
    responses={204: {"description": "Lifted"}, **error_responses(400, 503)},
)
async def lift_ban(
    request: Request,
    ip: str = Path(max_length=64, description="IPv4 or IPv6 address",
                   json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
) -> Response:
    manager, principal = manager_of(request), principal_of(request)
    source_ip, request_id = source_ip_of(request), request_id_of(request)
    addr = normalize_ip(ip)
    if addr is None:
        raise ValidationError("Invalid address: expected an IPv4 or IPv6 address")
    await call(request, "bans_lift", None, require_unscoped, manager, principal, "system:delete",
               source_ip=source_ip, request_id=request_id)
    if not await _bans(request).alift(str(addr)):
        raise NotFoundError("No ban for this address")
    return Response(status_code=204)
