"""Authentication at the edge: API key from `Authorization: Bearer` or `X-API-Key` → `Principal`.

The manager owns the decision (`ConfigManager.authenticate`: peppered HMAC lookup, expiry,
revocation, a 0.5 s principal cache, `auth_failed` audit events) and RBAC. This module only reads
the headers, answers principal-cache hits on the event loop and sends everything else — a cache
miss is a storage read, a failure an audit write — to the thread pool.

Server-owned resources (bans, metrics) are checked here with `rbac.allowed` on the unscoped
`system:*` permissions, and a refusal is audited as `access_denied` through the manager like any other.
"""

from __future__ import annotations

from typing import Final

from llm_config.core.manager import ConfigManager
from llm_config.models import Principal

__all__ = ["WWW_AUTHENTICATE", "require_unscoped", "cached_principal", "extract_token"]

WWW_AUTHENTICATE: Final = 'Bearer realm="llm-config"'
_MAX_TOKEN: Final = 512


def extract_token(authorization: bytes | None, api_key: bytes | None) -> tuple[str | None, bool]:
    """`(token, malformed)`: the presented key, and whether a credential header was unusable.

    `Authorization` must be `Bearer <key>`; `X-API-Key` holds the key alone. When both are sent
    the Authorization header wins. Nothing here logs or echoes the token.
    """
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(b" ")
        token = rest.strip()
        if scheme.lower() != b"bearer" or not token or len(token) > _MAX_TOKEN:
            return None, True
        return token.decode("latin-1"), False
    if api_key is not None:
        token = api_key.strip()
        if not token or len(token) > _MAX_TOKEN:
            return None, True
        return token.decode("latin-1"), False
    return None, False


def cached_principal(manager: ConfigManager, token: str) -> Principal | None:
    """The principal of `token` if the manager's principal cache holds it (no I/O), else None."""
    return manager.cached_principal(token)


def require_unscoped(
    manager: ConfigManager, principal: Principal, permission: str, *, source_ip: str | None,
    request_id: str | None,
) -> None:
    """Allow `permission` on server-wide state (unscoped keys only), or raise PermissionDeniedError
    after auditing the refusal. Blocking (the audit write): run it in the pool."""
    manager.authorize(principal, permission, require_unscoped=True, source_ip=source_ip, request_id=request_id)
