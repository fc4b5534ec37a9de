"""Roles → permissions → decisions (SPEC §8). Pure: no I/O, default deny.

A permission is `resource:action`. A principal may act when its role grants the permission and
the target namespace and environment are inside its limits (a namespace limit covers its
sub-namespaces: `acme` covers `acme/chatbot`, not `acmex`). An environment limit always lets a
principal *read* `base` — it is every environment's default, so resolution reads it anyway —
while writing `base` needs `base` in the limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from llm_config.models import Environment, Principal, Role

__all__ = [
    "ACTIONS",
    "RESOURCES",
    "ROLE_PERMISSIONS",
    "READ_ACTIONS",
    "allowed",
    "allowed_before_body",
    "covers_namespace",
    "in_scope",
    "is_narrower",
    "permissions_of",
]

RESOURCES: Final = ("config", "secret", "history", "audit_log", "system", "users", "roles")
ACTIONS: Final = ("read", "create", "update", "delete", "list", "rollback", "export", "import")


def _grid(resources: Iterable[str], actions: Iterable[str]) -> frozenset[str]:
    acts = tuple(actions)
    return frozenset(f"{r}:{a}" for r in resources for a in acts)


READ_ACTIONS: Final = frozenset({"read", "list", "export"})
"""Actions that only read: allowed on `base` under any environment limit."""

ROLE_PERMISSIONS: Final[dict[Role, frozenset[str]]] = {
    Role.ADMIN: _grid(RESOURCES, ACTIONS),
    Role.EDITOR: _grid(("config", "secret", "history"), ACTIONS) | _grid(("audit_log",), ("read", "list")),
    Role.VIEWER: _grid(("config", "history"), ("read", "list")),
    Role.AUDITOR: _grid(("config", "history", "audit_log", "system"), ("read", "list"))
    | frozenset({"audit_log:export"}),
}


def permissions_of(role: Role) -> frozenset[str]:
    """Every permission a role grants."""
    return ROLE_PERMISSIONS[role]


def covers_namespace(limit: str, namespace: str) -> bool:
    """`acme` covers `acme` and `acme/…`, never `acmex`."""
    return namespace == limit or namespace.startswith(limit + "/")


def _namespace_in_scope(principal: Principal, namespace: str | None) -> bool:
    return not principal.namespaces or (
        namespace is not None and any(covers_namespace(p, namespace) for p in principal.namespaces)
    )


def in_scope(
    principal: Principal, namespace: str | None, env: Environment | None, *, reading: bool = False
) -> bool:
    """Whether a namespace/environment lies inside the principal's limits (None = not scoped).

    `reading`: the operation only reads, so `base` is inside every environment limit.
    """
    if not _namespace_in_scope(principal, namespace):
        return False
    if not principal.environments:
        return True
    if env is None:
        return False
    return env in principal.environments or (reading and env is Environment.BASE)


def allowed(
    principal: Principal, permission: str, namespace: str | None = None, env: Environment | None = None
) -> bool:
    """Default-deny decision: the role grants `permission` and the target is in scope."""
    if permission not in ROLE_PERMISSIONS[principal.role]:
        return False
    if principal.unrestricted:
        return True
    return in_scope(principal, namespace, env, reading=permission.partition(":")[2] in READ_ACTIONS)


def allowed_before_body(principal: Principal, permission: str, namespace: str | None) -> bool:
    """What can be decided before a request body is read: the role and the namespace limit.

    The environment may come from the body, so its limit is checked once the body is parsed; with no
    namespace (keys, server-wide operations) only the role is checked here.
    """
    return permission in ROLE_PERMISSIONS[principal.role] and (
        namespace is None or _namespace_in_scope(principal, namespace)
    )


def is_narrower(
    creator: Principal, role: Role, namespaces: tuple[str, ...], environments: tuple[Environment, ...]
) -> bool:
    """A key may only create keys of equal or narrower role (a subset of its permissions) and scope."""
    if not ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[creator.role]:
        return False
    if creator.namespaces and (
        not namespaces or not all(any(covers_namespace(c, n) for c in creator.namespaces) for n in namespaces)
    ):
        return False
    return not creator.environments or (bool(environments) and set(environments) <= set(creator.environments))
