"""`/api/v1/configs/...`: get, write, delete, history, rollback and list (SPEC §8).

Every route exists twice: `{ns}` (one segment, the original's form) and `{ns…}/-/` (any namespace
path; `-` can never be a namespace segment or a key). Cache hits of a plain GET never reach these
handlers: the edge answers them on the event loop (`edge/cached.py`, matching with `paths.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from llm_config.errors import ConflictError, NotFoundError, ValidationError
from llm_config.server.errors import HTTPError
from llm_config.server.paths import CONFIGS_NS, CONFIGS_NS_PATH
from llm_config.server.routes.common import (
    authorize_before_body,
    call,
    caller,
    entry_etag,
    error_responses,
    etag_matches,
    etag_matches_strong,
    json_response,
    parse_json_bytes,
    read_body,
)
from llm_config.server.routes.schemas import (
    CURSOR_PATTERN,
    ENV_DOC,
    ENV_PATTERN,
    KEY_PATTERN,
    NAMESPACE_PATH_PATTERN,
    NAMESPACE_SEGMENT_PATTERN,
    PREFIX_PATTERN,
    ConfigResponse,
    HistoryItemModel,
)
from llm_config.wire import MAX_VERSION, SetBody

__all__ = ["MAX_VERSION", "IfMatch", "parse_if_match", "router"]

router = APIRouter(tags=["configs"])

_TAG: Final = r'(?:W/)?"[\x21\x23-\x7e]{0,198}"'
_IF_MATCH_PATTERN: Final = rf'^(?:\*|[0-9]{{1,19}}|"[0-9]{{1,19}}"|{_TAG}(?:[ \t]*,[ \t]*{_TAG})*)$'
_ENTITY_TAG: Final = re.compile(_TAG)
_IF_MATCH: Final = re.compile(_IF_MATCH_PATTERN)

_ETAG_HEADER: Final = {"ETag": {"description": "Entity tag of the served entry (id, version, reveal state)",
                                "schema": {"type": "string"}},
                       "X-Config-Revision": {"description": "Store-wide revision (commit order) of the write that "
                                             "produced this version", "schema": {"type": "integer"}}}
_CURSOR_HEADER: Final = {"X-Next-Cursor": {"description": "Cursor of the next page; absent on the last page",
                                           "schema": {"type": "string"}}}


def _write_body_doc() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConfigWrite"}}},
        },
        "parameters": [{
            "name": "If-Match", "in": "header", "required": False,
            "description": "Compare-and-set: the current version (`3` or `\"3\"`), this entry's ETag as "
                           "served with it, or `*` (exists and is not deleted); mismatch → 412",
            "schema": {"type": "string", "pattern": _IF_MATCH_PATTERN, "maxLength": 400},
        }],
    }


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed `If-Match`: a bare version (`3`, `"3"`), exactly our ETags, or `*` (exists, not deleted)."""

    version: int | None = None
    etags: tuple[str, ...] = ()
    any_live: bool = False


def parse_if_match(header: str | None) -> IfMatch | None:
    """`If-Match` → what a write must find. Strong comparison (RFC 9110): a weak tag never matches."""
    if header is None:
        return None
    text = header.strip()
    if not _IF_MATCH.fullmatch(text):
        raise ValidationError(
            'Invalid If-Match: expected a version like 3 or "3", this entry\'s ETag as sent with it, or *'
        )
    if text == "*":
        return IfMatch(any_live=True)
    bare = text.strip('"')
    if bare.isdigit():
        return IfMatch(version=int(bare))  # beyond 2**63-1 it simply matches no entry (412)
    # a weak tag is well formed but never matches: If-Match compares strongly (RFC 9110)
    strong = tuple(m.group(0) for m in _ENTITY_TAG.finditer(text) if not m.group(0).startswith("W/"))
    return IfMatch(etags=strong or ("W/",))


async def _expected_version(
    request: Request, if_match: IfMatch | None, body_expected: int | None, ns: str, key: str, env: str,
) -> tuple[int | None, bool]:
    """The version a write compares against, and whether it came from If-Match (→ 412 on mismatch).

    An ETag matches only this entry's own (its id, environment and version), never another's.
    """
    if if_match is None:
        return body_expected, False
    if if_match.version is not None:
        if if_match.version > MAX_VERSION:
            raise HTTPError(412, "If-Match: no entry has that version")
        expected: int | None = if_match.version
    else:
        try:
            current = await call(request, "get", env, caller(request).get, ns, key, env=env)
        except NotFoundError:
            raise HTTPError(412, "If-Match: the entry does not exist (or is deleted)") from None
        if if_match.etags and not any(etag_matches_strong(tag, current) for tag in if_match.etags):
            raise HTTPError(412, "If-Match: the ETag is not this entry's current one")
        expected = current.version
    if body_expected is not None and body_expected != expected:
        raise HTTPError(412, "If-Match and expected_version name different versions: neither can hold")
    return expected, True


def _endpoints(ns_pattern: str) -> dict[str, Callable[..., Any]]:
    """The handlers for one path form; `ns_pattern` documents (and enforces) the namespace grammar."""
    ns_doc = "Namespace (one segment)" if ns_pattern == NAMESPACE_SEGMENT_PATTERN else \
        "Namespace: 1-8 '/'-joined segments"

    async def get_config(
        request: Request,
        ns: str = Path(description=ns_doc, pattern=ns_pattern),
        key: str = Path(pattern=KEY_PATTERN),
        env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
        with_overrides: bool = Query(False, description="Fall back to the base value"),
        version: int | None = Query(None, ge=1, le=MAX_VERSION, description="A past version"),
        reveal: bool = Query(False, description="Decrypt a secret (audited)"),
    ) -> Response:
        entry = await call(
            request, "reveal" if reveal else "get", env, caller(request).get, ns, key, env=env, version=version,
            with_overrides=with_overrides, reveal=reveal,
        )
        etag = entry_etag(entry, reveal and entry.secret)
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"ETag": etag, "X-Config-Revision": str(entry.revision)})
        return json_response(entry.to_json(), headers={"ETag": etag, "X-Config-Revision": str(entry.revision)})

    async def write_config(
        request: Request,
        ns: str = Path(description=ns_doc, pattern=ns_pattern),
        key: str = Path(pattern=KEY_PATTERN),
    ) -> Response:
        if_match = parse_if_match(request.headers.get("if-match"))
        # the environment (and whether it is a secret) may come from the body: role and namespace first
        await authorize_before_body(request, "set", "config:create", ns)
        raw, _ = await read_body(request)
        body = SetBody.from_json(parse_json_bytes(raw))  # shape only: the core validates the rest, once
        expected, via_if_match = await _expected_version(request, if_match, body.expected_version, ns, key, body.env)
        try:
            entry = await call(
                request, "set", body.env, caller(request).set, ns, key, body.value, env=body.env, secret=body.secret,
                description=body.description, tags=body.tags, message=body.message, expected_version=expected,
            )
        except ConflictError as exc:
            if via_if_match:
                raise HTTPError(412, exc.message) from None
            raise
        return json_response(entry.to_json(), headers={"ETag": entry_etag(entry, False),
                                                       "X-Config-Revision": str(entry.revision)})

    async def delete_config(
        request: Request,
        ns: str = Path(description=ns_doc, pattern=ns_pattern),
        key: str = Path(pattern=KEY_PATTERN),
        env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
    ) -> Response:
        expected, via_if_match = await _expected_version(
            request, parse_if_match(request.headers.get("if-match")), None, ns, key, env
        )
        try:
            tombstone = await call(request, "delete", env, caller(request).delete, ns, key, env=env,
                                   expected_version=expected)
        except ConflictError as exc:
            if via_if_match:
                raise HTTPError(412, exc.message) from None
            raise
        return Response(status_code=204, headers={"X-Config-Revision": str(tombstone.revision)})

    async def config_history(
        request: Request,
        ns: str = Path(description=ns_doc, pattern=ns_pattern),
        key: str = Path(pattern=KEY_PATTERN),
        env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
        limit: int | None = Query(None, ge=1, le=10_000),
    ) -> Response:
        items = await call(request, "history", env, caller(request).history, ns, key, env=env, limit=limit)
        return json_response([item.to_json() for item in items])

    async def rollback_config(
        request: Request,
        ns: str = Path(description=ns_doc, pattern=ns_pattern),
        key: str = Path(pattern=KEY_PATTERN),
        version: int = Path(ge=1, le=MAX_VERSION),
        env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
        secret: Literal["false"] | None = Query(
            None, description="false: allow rolling a secret back to a plain version (as set's secret=false)"),
    ) -> Response:
        entry = await call(request, "rollback", env, caller(request).rollback, ns, key, version, env=env,
                           secret=False if secret else None)
        return json_response(entry.to_json(), headers={"ETag": entry_etag(entry, False),
                                                       "X-Config-Revision": str(entry.revision)})

    async def list_configs(
        request: Request,
        ns: str = Path(description=ns_doc, pattern=ns_pattern),
        env: str = Query("development", pattern=ENV_PATTERN, description=ENV_DOC),
        prefix: str = Query("", pattern=PREFIX_PATTERN, description="Key prefix"),
        limit: int | None = Query(None, ge=1, le=10_000, description="Page size (default: everything)"),
        cursor: str | None = Query(None, pattern=CURSOR_PATTERN,
                                   description="X-Next-Cursor of the previous page (opaque)"),
        recursive: bool = Query(False, description="Include sub-namespaces"),
    ) -> Response:
        entries, next_cursor = await call(
            request, "list", env, caller(request).list_page, ns, env=env, prefix=prefix, recursive=recursive,
            limit=limit, cursor=cursor,
        )
        headers = {"X-Next-Cursor": next_cursor} if next_cursor else None
        return json_response([e.to_json() for e in entries], headers=headers)

    return {
        "get": get_config, "write": write_config, "delete": delete_config,
        "history": config_history, "rollback": rollback_config, "list": list_configs,
    }


def _register(prefix: str, ns_pattern: str, suffix: str) -> None:
    """Add the routes of one path form (`suffix` names its operations uniquely)."""
    ep = _endpoints(ns_pattern)
    one = f"{prefix}/{{key}}"
    router.add_api_route(
        f"{one}/history", ep["history"], methods=["GET"], name=f"config_history{suffix}",
        summary="History of a config, newest first",
        responses={200: {"model": list[HistoryItemModel]}, **error_responses(400, 404, 503)},
    )
    router.add_api_route(
        f"{one}/rollback/{{version}}", ep["rollback"], methods=["POST"], name=f"rollback_config{suffix}",
        summary="Write a new version holding version N's value",
        responses={200: {"model": ConfigResponse}, **error_responses(400, 404, 409, 422, 503)},
    )
    router.add_api_route(
        one, ep["get"], methods=["GET"], name=f"get_config{suffix}", summary="Get a config",
        responses={200: {"model": ConfigResponse, "headers": _ETAG_HEADER},
                   304: {"description": "Not modified (If-None-Match)"},
                   **error_responses(400, 404, 503)},
    )
    for method in ("PUT", "POST"):
        router.add_api_route(
            one, ep["write"], methods=[method], name=f"{method.lower()}_config{suffix}",
            summary="Write a config (new version)", openapi_extra=_write_body_doc(),
            responses={200: {"model": ConfigResponse, "headers": _ETAG_HEADER},
                       **error_responses(400, 408, 409, 412, 413, 415, 422, 503)},
        )
    router.add_api_route(
        one, ep["delete"], methods=["DELETE"], name=f"delete_config{suffix}", status_code=204,
        summary="Delete a config (writes a tombstone version)",
        responses={204: {"description": "Deleted",
                         "headers": {"X-Config-Revision": _ETAG_HEADER["X-Config-Revision"]}},
                   **error_responses(400, 404, 409, 412, 503)},
        openapi_extra={"parameters": [{
            "name": "If-Match", "in": "header", "required": False,
            "description": "Compare-and-set: the current version, this entry's ETag, or `*`; mismatch → 412",
            "schema": {"type": "string", "pattern": _IF_MATCH_PATTERN, "maxLength": 400},
        }]},
    )


_register(CONFIGS_NS_PATH, NAMESPACE_PATH_PATTERN, "_path")
_register(CONFIGS_NS, NAMESPACE_SEGMENT_PATTERN, "")

_list_multi = _endpoints(NAMESPACE_PATH_PATTERN)["list"]
_list_single = _endpoints(NAMESPACE_SEGMENT_PATTERN)["list"]
router.add_api_route(
    CONFIGS_NS_PATH + "/", _list_multi, methods=["GET"], name="list_configs_path",
    summary="List the configs of a namespace ordered by key",
    responses={200: {"model": list[ConfigResponse], "headers": _CURSOR_HEADER}, **error_responses(400, 503)},
)
router.add_api_route(
    CONFIGS_NS, _list_single, methods=["GET"], name="list_configs",
    summary="List the configs of a namespace ordered by key",
    responses={200: {"model": list[ConfigResponse], "headers": _CURSOR_HEADER}, **error_responses(400, 503)},
)
