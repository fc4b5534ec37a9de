"""`/api/v1/namespaces`: the namespace list, resolve, export and import (SPEC §5, §8), and diff and
promotion between two environments (SPEC §4, §8).

Diff and promotion answer with keys and versions, never a value: secrets are compared (and copied) inside
the core. A promotion applies a plan as one transaction of compare-and-set writes: a target that moved
since a dry run's plan (`plan`) is 409 with nothing written, a value breaking a schema 422.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from llm_config.errors import ValidationError
from llm_config.server.paths import NAMESPACES_NS_PATH
from llm_config.server.routes.common import (
    authorize_before_body,
    call,
    caller,
    error_responses,
    json_response,
    parse_json_bytes,
    read_body,
)
from llm_config.server.routes.schemas import (
    ENV_DOC,
    ENV_PATTERN,
    IMPORT_DOCUMENT_SCHEMA,
    NAMESPACE_PATH_PATTERN,
    EnvDiffModel,
    ExportDocument,
    ImportPlanModel,
    PromotionModel,
)
from llm_config.wire import PromoteBody

__all__ = ["router"]

router = APIRouter(tags=["namespaces"])

_NS_DOC: Final = "Namespace: 1-8 '/'-joined segments"
_EXPORT_TYPES: Final = {"json": "application/json", "yaml": "application/yaml", "dotenv": "text/plain; charset=utf-8"}
_YAML_TYPES: Final = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


@router.get(
    "/api/v1/namespaces",
    summary="Namespaces holding at least one live entry",
    responses={200: {"model": list[str]}, **error_responses(400, 503)},
)
async def list_namespaces(
    request: Request,
    prefix: str = Query("", pattern=r"^[A-Za-z0-9_./-]{0,600}$", description="Namespace prefix"),
) -> Response:
    return json_response(await call(request, "namespaces", None, caller(request).namespaces, prefix))


@router.get(
    NAMESPACES_NS_PATH + "/resolve",
    summary="The namespace resolved for an environment (its values over base) as {KEY: VALUE}",
    responses={200: {"model": dict[str, Any]}, **error_responses(400, 503)},
)
async def resolve_namespace(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
    reveal: bool = Query(False, description="Decrypt secrets (audited)"),
    nested: bool = Query(False, description="Split keys on dots into nested objects"),
) -> Response:
    resolved = await call(
        request, "resolve_reveal" if reveal else "resolve", env, caller(request).resolve, ns, env=env,
        nested=nested, reveal=reveal,
    )
    return json_response(resolved)


@router.get(
    NAMESPACES_NS_PATH + "/export",
    summary="Export one environment of a namespace (secrets only with reveal)",
    responses={
        200: {
            "model": ExportDocument,
            "content": {"application/yaml": {"schema": {"$ref": "#/components/schemas/ExportDocument"}},
                        "text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(400, 503),
    },
)
async def export_namespace(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
    format: str = Query("json", pattern="^(json|yaml|dotenv)$", description="json, yaml or dotenv"),
    reveal: bool = Query(False, description="Include decrypted secrets (audited)"),
) -> Response:
    text = await call(
        request, "export_reveal" if reveal else "export", env, caller(request).export_text, ns, env=env,
        fmt=format, reveal=reveal,
    )
    return Response(text.encode(), media_type=_EXPORT_TYPES[format])


@router.post(
    NAMESPACES_NS_PATH + "/import",
    summary="Import a document (JSON or YAML) into one environment, all or nothing",
    responses={200: {"model": ImportPlanModel}, **error_responses(400, 408, 409, 413, 415, 422, 503)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": IMPORT_DOCUMENT_SCHEMA},
                "application/yaml": {"schema": IMPORT_DOCUMENT_SCHEMA},
            },
        },
    },
)
async def import_namespace(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
    prune: bool = Query(False, description="Delete keys the document lacks"),
    dry_run: bool = Query(False, description="Plan only, write nothing"),
    secret: bool | None = Query(None, description="true: seal every value; false: plain values in the document "
                                "may replace secrets (a secrets section is always sealed)"),
) -> Response:
    # who may import here is known from the path and query: refuse before a byte of the body is read
    await authorize_before_body(request, "import", "config:import", ns, env)
    raw, media = await read_body(request, ("application/json", *_YAML_TYPES))
    fmt = "yaml" if media in _YAML_TYPES else "json"
    if not raw.strip():
        raise ValidationError("Request body is required: the document to import")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("Invalid document: not UTF-8") from None
    plan = await call(
        request, "import", env, caller(request).import_, ns, text, env=env, fmt=fmt, prune=prune,
        dry_run=dry_run, secret=secret,
    )
    return json_response(plan.to_json())


@router.get(
    NAMESPACES_NS_PATH + "/diff",
    summary="Compare two environments' own entries by key (secrets compared inside, never shown)",
    responses={200: {"model": EnvDiffModel}, **error_responses(400, 503)},
)
async def diff_environments(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
    source: str = Query(alias="from", pattern=ENV_PATTERN, description="Source environment (" + ENV_DOC + ")"),
    target: str = Query(alias="to", pattern=ENV_PATTERN, description="Target environment, not the source"),
) -> Response:
    diff = await call(request, "diff", target, caller(request).diff, ns, from_env=source, to_env=target)
    return json_response(diff.to_json())


@router.post(
    NAMESPACES_NS_PATH + "/promote",
    summary="Promote one environment's own entries to another (plan with dry_run; apply with the plan)",
    responses={200: {"model": PromotionModel, "description": "The plan (dry run) or the applied promotion"},
               **error_responses(400, 404, 408, 409, 413, 415, 422, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PromoteRequest"}}}}},
)
async def promote_environments(
    request: Request,
    ns: str = Path(description=_NS_DOC, pattern=NAMESPACE_PATH_PATTERN),
) -> Response:
    # both environments are in the body: a key that may write nowhere in this namespace is refused first
    await authorize_before_body(request, "promote", "config:create", ns)
    raw, _ = await read_body(request)
    body = PromoteBody.from_json(parse_json_bytes(raw))
    promotion = await call(
        request, "promote", body.target, caller(request).promote, ns, from_env=body.source, to_env=body.target,
        keys=body.keys, prune=body.prune, dry_run=body.dry_run, plan=body.plan, secret=body.secret,
    )
    return json_response(promotion.to_json())
