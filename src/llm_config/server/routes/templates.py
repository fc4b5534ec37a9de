"""`/api/v1/templates/{ns…}/-/…`: prompt templates — list, get, write, delete, render, history, rollback
(SPEC §6, §8).

Templates follow the `config` permissions, checked by the core in the template's environment; a render
using `{{ secret:… }}` also needs `secret:read` there (a refusal is audited like any other, and a render
that used secrets is audited as `template_rendered`, naming the keys and never a value). Its answer may
hold secrets, and — as every `/api` answer — carries `Cache-Control: no-store` (set by the edge).
Routes with a body decide role and namespace before reading a byte of it (the environment is in the body).
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from llm_config.server.paths import TEMPLATE_ENTRY_PATH, TEMPLATES_NS_PATH
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
    ENV_DOC,
    ENV_PATTERN,
    NAMESPACE_PATH_PATTERN,
    TEMPLATE_NAME_PATTERN,
    HistoryItemModel,
    RenderedText,
    TemplateModel,
)
from llm_config.wire import MAX_VERSION, RenderBody, TemplateBody

__all__ = ["router"]

router = APIRouter(tags=["templates"])

_NS_DOC: Final = "Namespace: 1-8 '/'-joined segments"
_NAME_DOC: Final = "Template name: 1-200 letters, digits, '_', '.', '-', starting with a letter or digit"
_NO_STORE: Final = {"Cache-Control": {"description": "no-store (the edge sends it on every /api answer)",
                                      "schema": {"type": "string", "enum": ["no-store"]}}}


def _body_doc(model: str) -> dict[str, object]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}}}


@router.get(
    TEMPLATES_NS_PATH + "/",
    summary="The live templates of one environment of a namespace, by name",
    responses={200: {"model": list[TemplateModel]}, **error_responses(400, 503)},
)
async def list_templates(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
) -> Response:
    templates = await call(request, "template_list", env, caller(request).list_templates, ns, env=env)
    return json_response([t.to_json() for t in templates])


@router.get(
    TEMPLATE_ENTRY_PATH + "/history",
    summary="Every version of a template, newest first (value: {content, defaults})",
    responses={200: {"model": list[HistoryItemModel]}, **error_responses(400, 404, 503)},
)
async def template_history(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    name: str = Path(description=_NAME_DOC, pattern=TEMPLATE_NAME_PATTERN),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
    limit: int | None = Query(None, ge=1, le=10_000, description="At most this many versions"),
) -> Response:
    items = await call(request, "template_history", env, caller(request).template_history, ns, name, env=env,
                       limit=limit)
    return json_response([item.to_json() for item in items])


@router.post(
    TEMPLATE_ENTRY_PATH + "/rollback/{version}",
    summary="Write a new version of a template holding version N's text and defaults (undeletes)",
    responses={200: {"model": TemplateModel}, **error_responses(400, 404, 409, 503)},
)
async def rollback_template(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    name: str = Path(description=_NAME_DOC, pattern=TEMPLATE_NAME_PATTERN),
    version: int = Path(ge=1, le=MAX_VERSION),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
) -> Response:
    template = await call(request, "template_rollback", env, caller(request).rollback_template, ns, name, version,
                          env=env)
    return json_response(template.to_json())


@router.post(
    TEMPLATE_ENTRY_PATH + "/render",
    summary="Render a template strictly (every variable given or defaulted; config and secret references "
            "resolved as the caller); the answer is never cached",
    responses={200: {"model": RenderedText, "description": "The rendered text (it may hold secrets)",
                     "headers": _NO_STORE},
               **error_responses(400, 404, 408, 413, 415, 503)},
    openapi_extra=_body_doc("RenderRequest"),
)
async def render_template(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    name: str = Path(description=_NAME_DOC, pattern=TEMPLATE_NAME_PATTERN),
) -> Response:
    # the environment is in the body: role and namespace are decided before it is read
    await authorize_before_body(request, "render", "config:read", ns)
    raw, _ = await read_body(request)
    body = RenderBody.from_json(parse_json_bytes(raw))
    text = await call(request, "render", body.env, caller(request).render, ns, name, body.variables, env=body.env,
                      allow_extra=body.allow_extra)
    return json_response({"text": text})


@router.get(
    TEMPLATE_ENTRY_PATH,
    summary="Get a template (the live version, or a past one)",
    responses={200: {"model": TemplateModel}, **error_responses(400, 404, 503)},
)
async def get_template(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    name: str = Path(description=_NAME_DOC, pattern=TEMPLATE_NAME_PATTERN),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
    version: int | None = Query(None, ge=1, le=MAX_VERSION, description="A past version"),
) -> Response:
    template = await call(request, "template_get", env, caller(request).get_template, ns, name, env=env,
                          version=version)
    return json_response(template.to_json())


@router.put(
    TEMPLATE_ENTRY_PATH,
    summary="Write a template (a new version); a syntax error stores nothing",
    responses={200: {"model": TemplateModel}, **error_responses(400, 408, 409, 413, 415, 503)},
    openapi_extra=_body_doc("TemplateWrite"),
)
async def put_template(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    name: str = Path(description=_NAME_DOC, pattern=TEMPLATE_NAME_PATTERN),
) -> Response:
    await authorize_before_body(request, "template_set", "config:create", ns)
    refuse_if_match(request)
    raw, _ = await read_body(request)
    body = TemplateBody.from_json(parse_json_bytes(raw))
    template = await call(
        request, "template_set", body.env, caller(request).set_template, ns, name, body.content, env=body.env,
        description=body.description, defaults=body.defaults, expected_version=body.expected_version,
        message=body.message,
    )
    return json_response(template.to_json())


@router.delete(
    TEMPLATE_ENTRY_PATH,
    status_code=204,
    summary="Delete a template (its history is kept; a rollback undeletes it)",
    responses={204: {"description": "Deleted"}, **error_responses(400, 404, 409, 503)},
)
async def delete_template(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    name: str = Path(description=_NAME_DOC, pattern=TEMPLATE_NAME_PATTERN),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
    expected_version: int | None = Query(None, ge=0, le=MAX_VERSION,
                                         description="Compare-and-set: the current version"),
) -> Response:
    refuse_if_match(request)
    await call(request, "template_delete", env, caller(request).delete_template, ns, name, env=env,
               expected_version=expected_version)
    return Response(status_code=204)
