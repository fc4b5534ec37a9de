"""The per-request state every step of the edge reads and writes: one object, filled in one pass."""

from __future__ import annotations

import re
import secrets
import time
from typing import Final

from starlette.types import Receive, Scope, Send

from llm_config.models import Principal
from llm_config.server.limits import LimitResult
from llm_config.server.routes.common import CLIENT_IP_KEY, REQUEST_ID_KEY
from llm_config.server.security import Network, client_address

__all__ = ["BODYLESS", "EdgeRequest"]

BODYLESS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class EdgeRequest:
    """One request as the edge sees it: its id, the client's address (`X-Forwarded-For` only from
    `--trusted-proxy` peers), the headers the steps decide by, who asks, and what was answered.

    `receive` and `send` are the ASGI callables the next step uses: a step may wrap them (CORS wraps
    `send`, the body step wraps `receive`). `status` is the response's, 0 until it has started.
    """

    __slots__ = ("auth", "content_length", "id", "if_none_match", "ip", "limit", "method", "origin", "path",
                 "principal", "receive", "repeated_credentials", "scope", "send", "started_at",
                 "status", "transfer_encoding", "x_api_key")

    def __init__(self, scope: Scope, receive: Receive, send: Send, trusted_proxies: tuple[Network, ...]) -> None:
        self.started_at = time.perf_counter()
        self.scope = scope
        self.receive = receive
        self.send = send
        self.auth: bytes | None = None
        self.x_api_key: bytes | None = None
        self.content_length: bytes | None = None
        self.transfer_encoding: bytes | None = None
        self.if_none_match: bytes | None = None
        self.origin: bytes | None = None
        self.repeated_credentials = False
        forwarded: list[bytes] = []
        incoming: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.repeated_credentials |= self.auth is not None
                self.auth = value
            elif name == b"x-api-key":
                self.repeated_credentials |= self.x_api_key is not None
                self.x_api_key = value
            elif name == b"x-request-id":
                incoming = value
            elif name == b"content-length":
                self.content_length = value
            elif name == b"transfer-encoding":
                self.transfer_encoding = value
            elif name == b"if-none-match":
                self.if_none_match = value
            elif name == b"x-forwarded-for":
                forwarded.append(value)
            elif name == b"origin":
                self.origin = value
        text = incoming.decode("latin-1") if incoming else ""
        self.id = text if text and _REQUEST_ID.fullmatch(text) else secrets.token_hex(16)
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        client = scope.get("client")
        self.ip: str | None = client_address(client[0] if client else None, forwarded, trusted_proxies)
        scope[REQUEST_ID_KEY] = self.id  # for the routes (routes/common.py)
        scope[CLIENT_IP_KEY] = self.ip
        self.principal: Principal | None = None
        self.limit: LimitResult | None = None
        self.status = 0

    @property
    def has_body(self) -> bool:
        """Whether a body may follow the headers (a method that takes one, or a declared length or coding)."""
        return self.method not in BODYLESS or self.content_length is not None or self.transfer_encoding is not None
