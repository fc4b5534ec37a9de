"""Every error the REST API sends has one shape: `{"error": "<reason phrase>", "message": "<text>"}`.

Messages come from our own exception tree (which never quotes a value) or are fixed sentences;
FastAPI's validation errors are rewritten without the submitted input; anything unexpected is a
500 with `message: "internal error"`, logged by type and frames only (no exception text, which
could carry a value).
"""

from __future__ import annotations

import traceback
from http import HTTPStatus
from typing import Final

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from llm_config.errors import LLMConfigError, StorageUnavailableError, http_status_for
from llm_config.names import parse_environment
from llm_config.server.logs import get_logger

__all__ = [
    "CLIENT_CLOSED",
    "HTTPError",
    "client_gone",
    "error_body",
    "error_response",
    "install_error_handlers",
    "log_unexpected",
    "reason",
    "status_and_message",
]

log = get_logger()

_DEFAULT_MESSAGES: Final = {
    404: "No such route",
    405: "Method not allowed on this route",
    413: "Request body too large",
    415: "Unsupported content type",
    500: "internal error",
}


class HTTPError(Exception):
    """An error decided at the HTTP edge (412, 413, 415 …), with a message that quotes no input."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def reason(status: int) -> str:
    """The HTTP reason phrase of a status code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


LOGGED_KEY: Final = "llm_config.error_logged"
CLIENT_CLOSED: Final = 499
"""Status recorded (never sent) for a request whose client went away before the answer: nginx's."""


def client_gone(request_id: str | None, where: str) -> None:
    """A client that hangs up mid-request is not an error of ours: one info line and its own counter."""
    from llm_config import metrics

    metrics.CLIENT_DISCONNECTS.inc()
    log.info("client_disconnected", where=where, request_id=request_id)


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error": reason(status), "message": message})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, message), status_code=status, headers=headers,
                    media_type="application/json")


def status_and_message(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """Map any exception to (status, message, extra headers) without echoing input."""
    if isinstance(exc, HTTPError):
        return exc.status, exc.message, exc.headers
    if isinstance(exc, StorageUnavailableError):
        return http_status_for(exc), exc.message, {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, LLMConfigError):
        return http_status_for(exc), exc.message, {}
    if isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else ""
        message = _DEFAULT_MESSAGES.get(status, reason(status)) if not detail or detail == reason(status) \
            else detail
        return status, message, dict(exc.headers or {})
    return 500, "internal error", {}


def log_unexpected(exc: BaseException, where: str) -> None:
    """Log an unexpected exception by type and stack frames only: its text could hold a value."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected_error", error_type=type(exc).__name__, where=where, frames=frames)


_GRAMMAR: Final = {
    "ns": "Invalid namespace: 1-8 '/'-separated segments of 1-64 letters, digits, '_', '.', '-', each starting "
          "with a letter or digit",
    "key": "Invalid key: 1-200 letters, digits, '_', '.', '-', starting with a letter or digit",
    "namespace": "Invalid namespace: 1-8 '/'-separated segments of 1-64 letters, digits, '_', '.', '-'",
    "since": "Invalid since: expected an RFC 3339 time like 2026-01-31T12:00:00Z or a date like 2026-01-31",
    "until": "Invalid until: expected an RFC 3339 time like 2026-01-31T12:00:00Z or a date like 2026-01-31",
    "anchor": "Invalid anchor: expected SEQ:MAC as printed by 'audit head'",
    "cursor": "Invalid cursor: use the X-Next-Cursor of a previous page",
    "prefix": "Invalid prefix: letters, digits, '_', '.', '-' only",
}


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's validation errors in our words: a grammar named in plain language, never a regex or
    the submitted input."""
    parts: list[str] = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ())]
        name = loc[-1] if loc else ""
        if err.get("type") == "string_pattern_mismatch" and name == "env":
            try:
                parse_environment(err.get("input"))
            except LLMConfigError as unknown:  # the SPEC's own words: "Unknown environment: <s>"
                if len(exc.errors()) == 1:
                    return unknown.message
                parts.append(unknown.message)
                continue
        if err.get("type") == "string_pattern_mismatch" and name in _GRAMMAR:
            parts.append(_GRAMMAR[name])
            continue
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else "request"
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "string_pattern_mismatch":
            msg = "not in the form the API documents (see /openapi.json)"
        parts.append(f"{where}: {msg[:160]}")
    return "Invalid request: " + "; ".join(parts) if parts else "Invalid request"


_SEPARATOR: Final = "No such route. A namespace path is followed by the separator segment '-': "
_PATH_HINTS: Final = {
    "/api/v1/configs/": _SEPARATOR + "/api/v1/configs/acme/chatbot/-/openai.model (a one-segment namespace "
                        "may omit it: /api/v1/configs/acme/openai.model)",
    "/api/v1/namespaces/": _SEPARATOR + "/api/v1/namespaces/acme/chatbot/-/resolve",
    "/api/v1/templates/": _SEPARATOR + "/api/v1/templates/acme/chatbot/-/system (always, even for one segment)",
    "/api/v1/schemas/": _SEPARATOR + "/api/v1/schemas/acme/chatbot/-/openai.* (always, even for one segment)",
}
"""The hint a 404 under each namespaced prefix gives (how its paths are spelled)."""


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette names only the first route's)."""
    routes = getattr(request.app.state, "routes", None)
    methods = routes.methods(request.url.path) if routes is not None else frozenset()
    return ", ".join(sorted(methods))


async def _handle_ours(request: Request, exc: Exception) -> Response:
    status, message, headers = status_and_message(exc)
    if isinstance(exc, StarletteHTTPException):
        hint = next((h for p, h in _PATH_HINTS.items() if request.url.path.startswith(p)), None)
        if status == 404 and hint is not None and message == _DEFAULT_MESSAGES[404]:
            message = hint
        elif status == 405:
            headers = {**headers, "Allow": _allowed_methods(request)}
    return error_response(status, message, headers)


async def _handle_disconnect(request: Request, exc: Exception) -> Response:
    client_gone(request.scope.get("llm_config.request_id"), request.method)
    return Response(status_code=CLIENT_CLOSED)  # nobody reads it; the access log and metrics do


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    """Starlette's ServerErrorMiddleware calls this for anything unhandled (then re-raises it)."""
    status, message, headers = status_and_message(exc)
    if status == 500:
        log_unexpected(exc, request.method)
        request.scope[LOGGED_KEY] = True  # the edge sees it re-raised: it must not log it twice
    return error_response(status, message, headers)


async def _handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, _validation_message(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Register our error shape for our exceptions, HTTP errors and request validation."""
    app.add_exception_handler(LLMConfigError, _handle_ours)
    app.add_exception_handler(HTTPError, _handle_ours)
    app.add_exception_handler(StarletteHTTPException, _handle_ours)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(ClientDisconnect, _handle_disconnect)
    app.add_exception_handler(Exception, _handle_unexpected)
