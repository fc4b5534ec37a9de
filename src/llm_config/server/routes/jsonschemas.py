"""`/api/v1/schemas/…`: JSON Schemas on keys — the built-ins, and per namespace list, get, write, delete,
history, rollback (SPEC §6, §8).

Schemas apply to every environment of their namespace, so no route takes `env`. Reading them needs
`system:read` (admins and auditors), changing them `system:update` / `system:delete` (admins); the core
decides, this module only answers. The list of built-ins is open to any authenticated key: it names
documents that ship with llm-config, nothing of the store. A pattern may hold `*` and `?` (which a client
sends as %3F): it is one decoded path segment.
(`routes/schemas.py` holds the pydantic models of the OpenAPI document, hence this module's name.)
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from llm_config.core.schemas import builtin_descriptions
from llm_config.server.paths import SCHEMA_ENTRY_PATH, SCHEMAS_BUILTINS, SCHEMAS_NS_PATH
from llm_config.server.routes.common import (
    authorize_before_body,
    call,
    caller,
    error_responses,
    json_response,
    parse_json_bytes,
    read_body,
    refuse_if_match,
)
from llm_config.server.routes.schemas import (
    NAMESPACE_PATH_PATTERN,
    SCHEMA_KEY_PATTERN,
    BuiltinSchemaModel,
    HistoryItemModel,
    SchemaModel,
)
from llm_config.wire import MAX_VERSION, SchemaBody

__all__ = ["router"]

router = APIRouter(tags=["schemas"])

_NS_DOC: Final = "Namespace: 1-8 '/'-joined segments"
_PATTERN_DOC: Final = "A key, or a glob of one using '*' and '?' (send '?' as %3F)"


@router.get(
    SCHEMAS_BUILTINS,
    summary="The built-in schemas (one per provider's model parameters), by name",
    responses={200: {"model": list[BuiltinSchemaModel]}, **error_responses(503)},
)
async def list_builtins(request: Request) -> Response:
    # package data, the same for every caller: any authenticated key may read it (the edge authenticated it)
    return json_response([{"name": name, "description": description}
                          for name, description in builtin_descriptions().items()])


@router.get(
    SCHEMAS_NS_PATH + "/",
    summary="The live schemas of a namespace, by pattern",
    responses={200: {"model": list[SchemaModel]}, **error_responses(400, 503)},
)
async def list_schemas(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
) -> Response:
    schemas = await call(request, "schema_list", None, caller(request).list_schemas, ns)
    return json_response([s.to_json() for s in schemas])


@router.get(
    SCHEMA_ENTRY_PATH + "/history",
    summary="Every version of a schema, newest first",
    responses={200: {"model": list[HistoryItemModel]}, **error_responses(400, 404, 503)},
)
async def schema_history(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    pattern: str = Path(description=_PATTERN_DOC, pattern=SCHEMA_KEY_PATTERN),
    limit: int | None = Query(None, ge=1, le=10_000, description="At most this many versions"),
) -> Response:
    items = await call(request, "schema_history", None, caller(request).schema_history, ns, pattern, limit=limit)
    return json_response([item.to_json() for item in items])


@router.post(
    SCHEMA_ENTRY_PATH + "/rollback/{version}",
    summary="Write a new version of a schema holding version N's document (undeletes)",
    responses={200: {"model": SchemaModel}, **error_responses(400, 404, 409, 503)},
)
async def rollback_schema(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    pattern: str = Path(description=_PATTERN_DOC, pattern=SCHEMA_KEY_PATTERN),
    version: int = Path(ge=1, le=MAX_VERSION),
) -> Response:
    schema = await call(request, "schema_rollback", None, caller(request).rollback_schema, ns, pattern, version)
    return json_response(schema.to_json())


@router.get(
    SCHEMA_ENTRY_PATH,
    summary="Get a schema (the live version, or a past one)",
    responses={200: {"model": SchemaModel}, **error_responses(400, 404, 503)},
)
async def get_schema(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    pattern: str = Path(description=_PATTERN_DOC, pattern=SCHEMA_KEY_PATTERN),
    version: int | None = Query(None, ge=1, le=MAX_VERSION, description="A past version"),
) -> Response:
    schema = await call(request, "schema_get", None, caller(request).get_schema, ns, pattern, version=version)
    return json_response(schema.to_json())


@router.put(
    SCHEMA_ENTRY_PATH,
    summary="Attach a JSON Schema (or a built-in) to a key or key pattern; enforced on every later write, "
            "import, rollback and promotion of a matching key",
    responses={200: {"model": SchemaModel}, **error_responses(400, 408, 409, 413, 415, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/SchemaWrite"}}}}},
)
async def put_schema(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    pattern: str = Path(description=_PATTERN_DOC, pattern=SCHEMA_KEY_PATTERN),
) -> Response:
    await authorize_before_body(request, "schema_set", "system:update", ns)
    refuse_if_match(request)
    raw, _ = await read_body(request)
    body = SchemaBody.from_json(parse_json_bytes(raw))
    schema = await call(request, "schema_set", None, caller(request).set_schema, ns, pattern, body.schema,
                        builtin=body.builtin, description=body.description, expected_version=body.expected_version)
    return json_response(schema.to_json())


@router.delete(
    SCHEMA_ENTRY_PATH,
    status_code=204,
    summary="Detach a schema (its history is kept; a rollback reattaches it)",
    responses={204: {"description": "Deleted"}, **error_responses(400, 404, 409, 503)},
)
async def delete_schema(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    pattern: str = Path(description=_PATTERN_DOC, pattern=SCHEMA_KEY_PATTERN),
    expected_version: int | None = Query(None, ge=0, le=MAX_VERSION,
                                         description="Compare-and-set: the current version"),
) -> Response:
    refuse_if_match(request)
    await call(request, "schema_delete", None, caller(request).delete_schema, ns, pattern,
               expected_version=expected_version)
    return Response(status_code=204)

