"""Helpers shared by the routes: the manager, the thread pool, JSON in and out, caller identity.

The edge middleware authenticates every `/api` request and leaves the principal, the real client
address and the request id in the ASGI scope; `caller(request)` binds all three once into the
manager's view for that caller, and routes call its methods, so the actor is always the key's
principal and never anything from the request body.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from llm_config import rbac, tracing
from llm_config.core.context import CallContext, Caller
from llm_config.core.manager import ConfigManager
from llm_config.errors import AuthenticationError, ValidationError
from llm_config.models import Entry, Environment, Principal, entry_etag
from llm_config.names import parse_environment
from llm_config.server.errors import HTTPError
from llm_config.server.routes.schemas import ErrorBody
from llm_config.server.telemetry import observe_operation
from llm_config.values import loads_strict

__all__ = [
    "CLIENT_IP_KEY",
    "PRINCIPAL_KEY",
    "REQUEST_ID_KEY",
    "ROUTE_KEY",
    "JSONBytes",
    "authorize_before_body",
    "call",
    "caller",
    "entry_etag",
    "error_responses",
    "etag_matches",
    "etag_matches_strong",
    "json_response",
    "manager_of",
    "parse_json_bytes",
    "principal_of",
    "read_body",
    "refuse_if_match",
    "request_id_of",
    "run_blocking",
    "source_ip_of",
    "strict_query",
]

T = TypeVar("T")

REQUEST_ID_KEY: Final = "llm_config.request_id"
"""ASGI scope key under which the edge middleware stores the request id."""
PRINCIPAL_KEY: Final = "llm_config.principal"
"""ASGI scope key of the authenticated `Principal`."""
CLIENT_IP_KEY: Final = "llm_config.client_ip"
"""ASGI scope key of the real client address (trusted proxies resolved)."""
ROUTE_KEY: Final = "llm_config.route"
"""ASGI scope key of the route template of a request answered outside the router."""

JSON_TYPES: Final = ("application/json",)


class JSONBytes(Response):
    """A JSON response serialised with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONBytes(content, status_code=status_code, headers=headers)


def manager_of(request: Request) -> ConfigManager:
    manager: ConfigManager = request.app.state.manager
    return manager


async def run_blocking(request: Request, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking manager call in the app's bounded thread pool (ARCHITECTURE decision 1)."""
    executor: ThreadPoolExecutor = request.app.state.executor
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, tracing.carry(functools.partial(fn, *args, **kwargs)))


def source_ip_of(request: Request) -> str | None:
    """The real client address the edge resolved (X-Forwarded-For only from trusted proxies)."""
    ip = request.scope.get(CLIENT_IP_KEY)
    if isinstance(ip, str):
        return ip
    return request.client.host if request.client else None


def principal_of(request: Request) -> Principal:
    """The authenticated caller (the edge refuses unauthenticated `/api` requests before routing)."""
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise AuthenticationError("API key missing")
    return principal


def caller(request: Request) -> Caller:
    """The manager's methods run as this request's caller: its principal, client address and request id."""
    return manager_of(request).as_caller(
        CallContext(principal_of(request), source_ip_of(request), request_id_of(request)))


async def call(request: Request, operation: str, env: object, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> T:
    """Run a manager call in the thread pool, counted in the metrics as `operation` in `env`."""
    return await observe_operation(operation, env, lambda: run_blocking(request, fn, *args, **kwargs))


async def authorize_before_body(
    request: Request, operation: str, permission: str, namespace: str | None = None, env: str | None = None
) -> Environment | None:
    """Refuse (403, audited, counted as a denial of `operation`) before a single body byte is read: role
    and namespace always, and the environment when it comes from the query. Returns that environment.

    An allowed request stays on the event loop; only a refusal goes to the pool, for its audit event.
    """
    principal = principal_of(request)
    environment = parse_environment(env) if env is not None else None
    if environment is not None:
        if rbac.allowed(principal, permission, namespace, environment):
            return environment
    elif rbac.allowed_before_body(principal, permission, namespace):
        return None
    manager = manager_of(request)
    await call(request, operation, environment, manager.authorize, principal, permission, namespace, environment,
               before_body=environment is None, source_ip=source_ip_of(request), request_id=request_id_of(request))
    return environment  # not reached: the manager raised after auditing the refusal


_QUERY_NAMES: Final = "_llm_config_query_names"


def _query_names(route: object) -> frozenset[str]:
    """The query parameters a route declares (its own and its dependencies'), computed once and kept
    on the route object itself (each app has route objects of its own; routes are not hashable)."""
    if route is None:
        return frozenset()
    names: frozenset[str] | None = getattr(route, _QUERY_NAMES, None)
    if names is None:
        found: set[str] = set()
        todo = [getattr(route, "dependant", None)]
        while todo:
            dependant = todo.pop()
            if dependant is None:
                continue
            found.update(param.alias for param in dependant.query_params)
            todo.extend(dependant.dependencies)
        names = frozenset(found)
        setattr(route, _QUERY_NAMES, names)
    return names


async def strict_query(request: Request) -> None:
    """Unknown, inapplicable or repeated query parameters are 400 on every route (SPEC §8): a user who
    wrote `DELETE …?version=3` must never lose the current value instead."""
    if not request.scope.get("query_string"):
        return
    allowed = _query_names(request.scope.get("route"))
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) if allowed else "none"
            raise ValidationError(f"Unknown query parameter {name[:40]!a} for this route (it takes: {takes})")
        if name in seen:
            raise ValidationError(f"Query parameter {name[:40]!a} given more than once")
        seen.add(name)


def request_id_of(request: Request) -> str | None:
    rid = request.scope.get(REQUEST_ID_KEY)
    return rid if isinstance(rid, str) else None


def etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison of an If-None-Match header against our ETag."""
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def etag_matches_strong(tag: str, entry: Entry) -> bool:
    """Strong comparison of one If-Match tag with the ETags this entry is served with (either reveal state)."""
    return tag in (entry_etag(entry, False), entry_etag(entry, True))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, accepted: tuple[str, ...] = JSON_TYPES) -> tuple[bytes, str]:
    """The raw body and its media type; 415 if the type is not accepted."""
    media = _media_type(request)
    if media not in accepted and not (media.endswith("+json") and "application/json" in accepted):
        raise HTTPError(415, f"Content-Type must be {' or '.join(accepted)}")
    return await request.body(), media


def refuse_if_match(request: Request) -> None:
    """Templates and schemas take compare-and-set as `expected_version` only: an `If-Match` is refused rather
    than ignored (a write the caller meant to be conditional must never happen unconditionally)."""
    if "if-match" in request.headers:
        raise ValidationError("If-Match is not supported here: send expected_version (in the body or the query)")


def parse_json_bytes(raw: bytes) -> Any:
    """Parse a JSON body strictly (NaN/Infinity/huge integers refused).

    Two envelope levels (a write body, an import document) do not count against the value depth
    limit, so a value is accepted over REST exactly as through the library, which checks it again.
    """
    if not raw.strip():
        raise ValidationError("Request body is required")
    return loads_strict(raw, wrapper_depth=2)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for our error shape."""
    descriptions = {
        400: "Bad input: malformed JSON, bad names, unknown environment, missing or unknown fields",
        401: "Missing, invalid, expired or revoked API key",
        403: "Not allowed for this key (role, namespace or environment limits), or client address refused",
        404: "Not found (or no such route)",
        408: "Request body not received within --body-timeout",
        409: "Conflict with the current state: compare-and-set (expected_version), a name already in use, or a "
             "plain value over a secret without secret=false",
        412: "Compare-and-set conflict (If-Match)",
        413: "Request body too large",
        415: "Unsupported content type",
        422: "A value breaks a JSON Schema of its key: the message names key, path and rule, never the value",
        429: "Rate limit exceeded (see Retry-After)",
        503: "Storage or master key unavailable",
    }
    # any path can miss the router (e.g. a name holding a newline), any query name be unknown (400)
    wanted = sorted({*statuses, 400, 404})
    return {s: {"model": ErrorBody, "description": descriptions.get(s, "Error")} for s in wanted}
