"""Role × operation × namespace × environment over HTTP, generated — not hand-picked.

Principals: every role (admin, editor, viewer, auditor), unscoped, limited to namespace `acme`,
and limited to environment `development`. Targets: `acme`, `acme/sub`, `acmex`, `other` ×
development/production. The expected status of each request is computed from `rbac.allowed`
and the SPEC §8 rules (an unscoped operation is allowed on the role's permission and filtered
afterwards; server-wide state needs an unscoped key; a key may only create or revoke keys of
equal or narrower role and scope). Every 403 must leave exactly one `access_denied` event with
the request's id and the key's actor; no other request may leave one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from llm_config import rbac
from llm_config.models import Environment, Principal, Role
from llm_config.types import AuditQuery
from tests.e2e.conftest import LiveServer

C = "/api/v1/configs"
N = "/api/v1/namespaces"
NAMESPACES = ("acme", "acme/sub", "acmex", "other")
ENVIRONMENTS = ("development", "production")
TARGETS = list(itertools.product(NAMESPACES, ENVIRONMENTS))
SCOPES: dict[str, dict[str, list[str]]] = {
    "all": {},
    "acme": {"namespaces": ["acme"]},
    "dev": {"environments": ["development"]},
}
VICTIM_SCOPE = {"namespaces": ["acme"], "environments": ["development"]}


@dataclass(frozen=True)
class Who:
    index: int
    label: str
    principal: Principal
    key: str
    victim_id: str  # a narrow key this principal tries to revoke


Request = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class TargetOp:
    """An operation on one namespace and environment: allowed iff every permission is (in order)."""

    name: str
    permissions: tuple[str, ...]
    ok: int
    build: Callable[[Who, str, str], Request]
    env_scoped: bool = True  # False: checked on the namespace alone (audit queries)


@dataclass(frozen=True)
class GlobalOp:
    """An operation without a target namespace; `decide` gives the expected verdict."""

    name: str
    ok: int
    decide: Callable[[Principal], bool]
    build: Callable[[Who], Request]


def unscoped(permission: str) -> Callable[[Principal], bool]:
    """SPEC §8: an operation over everything is allowed on the role's permission, then filtered."""
    return lambda p: rbac.allowed(p, permission) or permission in rbac.permissions_of(p.role)


def server_wide(permission: str) -> Callable[[Principal], bool]:
    """Server-wide state (bans): the permission on an unscoped key."""
    return lambda p: rbac.allowed(p, permission, None, None)


def narrower(permission: str, role: Role, namespaces: tuple[str, ...], envs: tuple[Environment, ...]
             ) -> Callable[[Principal], bool]:
    return lambda p: unscoped(permission)(p) and rbac.is_narrower(p, role, namespaces, envs)


def one(ns: str, key: str) -> str:
    return f"{C}/{ns}/-/{key}"


TARGET_OPS = [
    TargetOp("get", ("config:read",), 200, lambda w, ns, env: ("GET", one(ns, "k"), {"params": {"env": env}})),
    TargetOp("get_reveal", ("config:read", "secret:read"), 200,
             lambda w, ns, env: ("GET", one(ns, "s"), {"params": {"env": env, "reveal": "true"}})),
    TargetOp("put_plain", ("config:create",), 200,
             lambda w, ns, env: ("PUT", one(ns, "k"), {"json": {"value": w.index, "env": env}})),
    TargetOp("put_secret", ("secret:create",), 200,
             lambda w, ns, env: ("PUT", one(ns, "s"), {"json": {"value": f"sk-{w.index}", "env": env,
                                                                "secret": True}})),
    TargetOp("delete", ("config:delete",), 204,
             lambda w, ns, env: ("DELETE", one(ns, f"d{w.index}"), {"params": {"env": env}})),
    TargetOp("history", ("history:read",), 200,
             lambda w, ns, env: ("GET", one(ns, "k") + "/history", {"params": {"env": env}})),
    TargetOp("rollback", ("config:rollback",), 200,
             lambda w, ns, env: ("POST", one(ns, "k") + "/rollback/1", {"params": {"env": env}})),
    TargetOp("list", ("config:list",), 200, lambda w, ns, env: ("GET", f"{C}/{ns}/-/", {"params": {"env": env}})),
    TargetOp("resolve", ("config:read",), 200,
             lambda w, ns, env: ("GET", f"{N}/{ns}/-/resolve", {"params": {"env": env}})),
    TargetOp("export", ("config:export",), 200,
             lambda w, ns, env: ("GET", f"{N}/{ns}/-/export", {"params": {"env": env}})),
    TargetOp("export_reveal", ("config:export", "secret:read"), 200,
             lambda w, ns, env: ("GET", f"{N}/{ns}/-/export", {"params": {"env": env, "reveal": "true"}})),
    TargetOp("import", ("config:import",), 200,
             lambda w, ns, env: ("POST", f"{N}/{ns}/-/import", {"params": {"env": env},
                                                               "json": {"imported": w.index}})),
    TargetOp("audit_list_ns", ("audit_log:list",), 200,
             lambda w, ns, env: ("GET", "/api/v1/audit", {"params": {"namespace": ns, "limit": 5}}),
             env_scoped=False),
]
_VICTIM = (Role.VIEWER, ("acme",), (Environment.DEVELOPMENT,))
GLOBAL_OPS = [
    GlobalOp("namespaces", 200, unscoped("config:list"), lambda w: ("GET", N, {})),
    GlobalOp("audit_list", 200, unscoped("audit_log:list"),
             lambda w: ("GET", "/api/v1/audit", {"params": {"limit": 5}})),
    GlobalOp("audit_verify", 200, unscoped("audit_log:read"), lambda w: ("GET", "/api/v1/audit/verify", {})),
    GlobalOp("keys_list", 200, unscoped("users:list"), lambda w: ("GET", "/api/v1/keys", {})),
    GlobalOp("keys_create", 201, narrower("users:create", *_VICTIM),
             lambda w: ("POST", "/api/v1/keys", {"json": {"name": f"made-by-{w.index}", "role": "viewer",
                                                          **VICTIM_SCOPE}})),
    GlobalOp("keys_create_wider", 201, narrower("users:create", Role.ADMIN, (), ()),
             lambda w: ("POST", "/api/v1/keys", {"json": {"name": f"wide-by-{w.index}", "role": "admin"}})),
    GlobalOp("keys_revoke", 204, narrower("users:delete", *_VICTIM),
             lambda w: ("DELETE", f"/api/v1/keys/{w.victim_id}", {})),
    GlobalOp("bans_list", 200, server_wide("system:list"), lambda w: ("GET", "/api/v1/admin/bans", {})),
]


def expected_target(op: TargetOp, p: Principal, ns: str, env: str) -> int:
    environment = Environment(env) if op.env_scoped else None
    ok = all(rbac.allowed(p, perm, ns, environment) for perm in op.permissions)
    return op.ok if ok else 403


def _principals(server: LiveServer) -> list[Who]:
    out = []
    for index, (role, (scope_name, scope)) in enumerate(itertools.product(Role, SCOPES.items())):
        record, key = server.manager.create_api_key(f"{role.value}-{scope_name}", role, **scope)  # type: ignore[arg-type]
        victim, _ = server.manager.create_api_key(f"victim-{index}", "viewer", **VICTIM_SCOPE)  # type: ignore[arg-type]
        principal = Principal(actor=record.actor, role=role, namespaces=record.namespaces,
                              environments=record.environments, key_id=record.id)
        out.append(Who(index, f"{role.value}-{scope_name}", principal, key, victim.id))
    return out


def _seed(server: LiveServer, people: list[Who]) -> None:
    m = server.manager
    for ns, env in TARGETS:
        m.set(ns, "k", "v1", env=env)
        m.set(ns, "s", "sk-seed", env=env, secret=True)
        for who in people:
            m.set(ns, f"d{who.index}", 0, env=env)


def test_generated_role_operation_namespace_matrix(live_server: LiveServer) -> None:
    people = _principals(live_server)
    _seed(live_server, people)
    results: list[tuple[str, str, int, int]] = []  # (request id, actor, expected, got)
    mismatches: list[str] = []
    with httpx.Client(base_url=live_server.url, timeout=30) as client:

        def send(who: Who, label: str, request: Request, expected: int) -> None:
            method, url, kw = request
            rid = f"m{who.index}.{label}".replace("/", "_")
            response = client.request(method, url, headers={"Authorization": f"Bearer {who.key}", "X-Request-ID": rid},
                                      **kw)
            results.append((rid, who.principal.actor, expected, response.status_code))
            if response.status_code != expected:
                mismatches.append(f"{who.label} {label}: expected {expected}, got {response.status_code} "
                                  f"{response.text[:120]}")
            if response.status_code == 403:
                assert set(response.json()) == {"error", "message"}
            if label.startswith("namespaces") and response.status_code == 200 and who.principal.namespaces:
                assert all(any(rbac.covers_namespace(p, ns) for p in who.principal.namespaces)
                           for ns in response.json()), response.json()

        for who in people:
            for op in TARGET_OPS:
                for ns, env in TARGETS:
                    send(who, f"{op.name}.{ns}.{env}", op.build(who, ns, env),
                         expected_target(op, who.principal, ns, env))
            for gop in GLOBAL_OPS:
                send(who, gop.name, gop.build(who), gop.ok if gop.decide(who.principal) else 403)

    assert not mismatches, f"{len(mismatches)} of {len(results)} requests differ:\n" + "\n".join(mismatches[:40])
    # sanity: every operation succeeds for someone, and is refused to someone (every role may list)
    for name, ok in [(op.name, op.ok) for op in TARGET_OPS] + [(op.name, op.ok) for op in GLOBAL_OPS]:
        statuses = {got for rid, _, _, got in results if rid.split(".")[1] == name}
        assert ok in statuses, (name, statuses)
        assert (403 in statuses) is (name != "namespaces"), (name, statuses)

    denied = Counter(
        (e.request_id, e.actor) for e in live_server.manager.storage.audit_events(AuditQuery(type="access_denied"))
    )
    wrong = [(rid, got, denied[(rid, actor)]) for rid, actor, _, got in results
             if denied[(rid, actor)] != (1 if got == 403 else 0)]
    assert not wrong, f"access_denied events per request (id, status, events): {wrong[:20]}"
    assert sum(denied.values()) == sum(1 for *_, got in results if got == 403)
    assert live_server.manager.audit_verify().ok
