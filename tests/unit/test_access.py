"""RBAC inside the manager, API keys and read auditing — the same checks for every front end."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import time_machine

from llm_config import AuthenticationError, ConfigManager, NotFoundError, PermissionDeniedError, rbac
from llm_config.core.context import CallContext, Caller
from llm_config.crypto.apikeys import looks_like_api_key
from llm_config.models import Environment, Principal, Role


def principal(role: Role, namespaces: tuple[str, ...] = (), envs: tuple[Environment, ...] = ()) -> Principal:
    return Principal(actor=f"key:{role.value}", role=role, namespaces=namespaces, environments=envs)


def as_(manager: ConfigManager, who: Principal) -> Caller:
    """The manager's methods run as `who` (as the REST routes run them for a request's key)."""
    return manager.as_caller(CallContext(who))


def test_role_matrix_matches_spec() -> None:
    admin, editor, viewer, auditor = (rbac.permissions_of(r) for r in Role)
    assert len(admin) == 7 * 8
    assert "secret:read" in editor and "config:rollback" in editor
    # editors move files in and out of their own scope (a CI pipeline importing a file needs no admin)
    assert {"config:export", "config:import", "secret:export", "secret:import"} <= editor
    assert "audit_log:read" in editor and "audit_log:export" not in editor
    assert viewer == {"config:read", "config:list", "history:read", "history:list"}
    assert "secret:read" not in auditor and "audit_log:export" in auditor and "system:read" in auditor
    assert "config:create" not in auditor


@pytest.mark.parametrize(("limit", "namespace", "covered"), [
    ("acme", "acme", True), ("acme", "acme/chatbot", True), ("acme", "acmex", False),
    ("acme/chatbot", "acme", False), ("acme", "other", False),
])
def test_namespace_limits_cover_sub_namespaces_only(limit: str, namespace: str, covered: bool) -> None:
    assert rbac.covers_namespace(limit, namespace) is covered


def test_narrower_keys_only() -> None:
    scoped_admin = principal(Role.ADMIN, ("acme",))
    assert rbac.is_narrower(scoped_admin, Role.VIEWER, ("acme/x",), ())
    assert not rbac.is_narrower(scoped_admin, Role.VIEWER, (), ())  # unlimited is wider
    assert not rbac.is_narrower(scoped_admin, Role.VIEWER, ("other",), ())
    assert not rbac.is_narrower(principal(Role.EDITOR), Role.ADMIN, (), ())
    assert not rbac.is_narrower(principal(Role.VIEWER), Role.AUDITOR, (), ())


OPERATIONS: dict[str, tuple[str, Callable[[Caller, str, str], object]]] = {
    "get": ("config:read", lambda c, ns, env: c.get(ns, "k", env=env)),
    "reveal": ("secret:read", lambda c, ns, env: c.get(ns, "s", env=env, reveal=True)),
    "set": ("config:create", lambda c, ns, env: c.set(ns, "k", 2, env=env)),
    "set secret": ("secret:create", lambda c, ns, env: c.set(ns, "s", "x", env=env, secret=True)),
    "delete": ("config:delete", lambda c, ns, env: c.delete(ns, "k", env=env)),
    "rollback": ("config:rollback", lambda c, ns, env: c.rollback(ns, "k", 1, env=env)),
    "history": ("history:read", lambda c, ns, env: c.history(ns, "k", env=env)),
    "list": ("config:list", lambda c, ns, env: c.list(ns, env=env)),
    "export": ("config:export", lambda c, ns, env: c.export(ns, env=env)),
    "import": ("config:import", lambda c, ns, env: c.import_(ns, {"n": 1}, env=env)),
}
PRINCIPALS = [
    principal(role, ns, envs)
    for role, ns, envs in itertools.product(Role, [(), ("acme",)], [(), (Environment.DEVELOPMENT,)])
]
TARGETS = [("acme", "development"), ("acme/sub", "production"), ("acmex", "development"), ("other", "production")]


@pytest.fixture
def seeded(manager: ConfigManager) -> ConfigManager:
    for ns, env in TARGETS:
        manager.set(ns, "k", 1, env=env)
        manager.set(ns, "s", "sk-1", env=env, secret=True)
    return manager


@pytest.mark.parametrize("who", PRINCIPALS, ids=lambda p: f"{p.role.value}-{'/'.join(p.namespaces) or '*'}-"
                         f"{'/'.join(e.value for e in p.environments) or '*'}")
def test_generated_matrix(seeded: ConfigManager, who: Principal) -> None:
    for name, (permission, call) in OPERATIONS.items():
        for ns, env in TARGETS:
            expected = rbac.allowed(who, permission, ns, Environment(env))
            if name == "reveal":  # needs config:read too
                expected = expected and rbac.allowed(who, "config:read", ns, Environment(env))
            denied_before = len([e for e in seeded.audit_events() if e.type == "access_denied"])
            try:
                call(as_(seeded, who), ns, env)
                outcome = True
            except PermissionDeniedError:
                outcome = False
            except NotFoundError:
                outcome = True  # allowed, but (e.g. after a delete) nothing there
            denied_after = len([e for e in seeded.audit_events() if e.type == "access_denied"])
            assert outcome is expected, (name, ns, env)
            assert denied_after - denied_before == (0 if expected else 1), (name, ns, env)
    assert seeded.audit_verify().ok


def test_denied_events_name_the_principal_not_the_value(seeded: ConfigManager) -> None:
    viewer = principal(Role.VIEWER)
    with pytest.raises(PermissionDeniedError):
        as_(seeded, viewer).set("acme", "k", "sk-do-not-log", env="development")
    event = seeded.audit_events()[-1]
    assert event.type == "access_denied" and event.actor == "key:viewer" and event.outcome == "denied"
    assert "sk-do-not-log" not in str(event.to_json())


def test_a_caller_view_binds_principal_address_and_request_id_once(seeded: ConfigManager) -> None:
    editor = principal(Role.EDITOR, ("acme",))
    view = seeded.as_caller(CallContext(editor, "198.51.100.4", "req-7", actor="ignored"))
    view.set("acme", "k", 3, env="development")
    with pytest.raises(PermissionDeniedError):
        view.delete("other", "k", env="production")
    written, denied = seeded.audit_events()[-2:]
    assert (written.type, written.actor, written.source_ip, written.request_id) == \
        ("config_updated", "key:editor", "198.51.100.4", "req-7")
    assert (denied.type, denied.actor, denied.source_ip, denied.request_id) == \
        ("access_denied", "key:editor", "198.51.100.4", "req-7")
    owner = seeded.as_caller(CallContext(actor="ops"))  # no principal: the local owner, recorded as `actor`
    assert owner.set("other", "k", 4, env="production").metadata.updated_by == "ops"
    assert seeded.get("other", "k", env="production").value == 4


def test_namespaces_and_audit_are_filtered_to_scope(seeded: ConfigManager) -> None:
    scoped = principal(Role.AUDITOR, ("acme",))
    assert as_(seeded, scoped).namespaces() == ["acme", "acme/sub"]
    events = as_(seeded, scoped).audit_events()
    assert events and all(e.namespace in ("acme", "acme/sub") for e in events)


def test_api_key_lifecycle(make_manager: Callable[..., ConfigManager]) -> None:
    mgr = make_manager()
    first = mgr.ensure_initial_admin_key()
    assert first is not None and looks_like_api_key(first) and mgr.ensure_initial_admin_key() is None
    admin = mgr.authenticate(first)
    assert admin.role is Role.ADMIN and admin.actor == f"key:initial-admin#{admin.key_id}"
    record, key = as_(mgr, admin).create_api_key("ci", "editor", namespaces=["acme"], environments=["dev"])
    assert key not in str(mgr.storage.list_api_keys()) and record.key_hash != key
    ci = mgr.authenticate(key)
    assert ci.namespaces == ("acme",) and ci.environments == (Environment.DEVELOPMENT,)
    as_(mgr, ci).set("acme/bot", "model", "gpt", env="dev")
    assert mgr.history("acme/bot", "model", env="dev")[0].created_by == f"key:ci#{record.id}"
    as_(mgr, admin).revoke_api_key(record.id)
    with pytest.raises(AuthenticationError):
        mgr.authenticate(key)
    other = make_manager()  # another process's view: its cache never saw the key
    with pytest.raises(AuthenticationError):
        other.authenticate(key)
    types = [e.type for e in mgr.audit_events()]
    assert types.count("key_created") == 2 and "key_revoked" in types and "auth_failed" in types


@pytest.mark.parametrize("token", [None, "", "llmc_short", "Bearer x", "llmc_" + "A" * 43])
def test_bad_tokens_are_refused_and_audited(manager: ConfigManager, token: str | None) -> None:
    with pytest.raises(AuthenticationError):
        manager.authenticate(token, source_ip="203.0.113.7")
    event = manager.audit_events()[-1]
    assert event.type == "auth_failed" and event.source_ip == "203.0.113.7"


def test_expired_keys_stop_working(make_manager: Callable[..., ConfigManager]) -> None:
    manager = make_manager()
    with time_machine.travel("2026-01-01T00:00:00Z", tick=False):
        _, key = manager.create_api_key("short", "viewer", expires_days=1)
        assert manager.authenticate(key).role is Role.VIEWER
    # a process whose principal cache never held it (the cache keeps a key for AUTH_CACHE_SECONDS)
    with time_machine.travel("2026-01-03T00:00:00Z", tick=False), pytest.raises(AuthenticationError):
        make_manager().authenticate(key)


def test_a_scoped_admin_cannot_mint_wider_keys(manager: ConfigManager) -> None:
    scoped = principal(Role.ADMIN, ("acme",))
    with pytest.raises(PermissionDeniedError, match="equal or narrower"):
        as_(manager, scoped).create_api_key("wide", "viewer")
    _, key = as_(manager, scoped).create_api_key("narrow", "viewer", namespaces=["acme/x"])
    assert manager.authenticate(key).namespaces == ("acme/x",)


def test_audit_reads_are_batched_and_chained(make_manager: Callable[..., ConfigManager]) -> None:
    writer = make_manager()
    writer.set("ns", "k", 1)
    mgr = make_manager(audit_reads=True)
    for _ in range(3):
        mgr.get("ns", "k")  # one miss, two L1 hits
    assert mgr.peek("ns", "k", "development") is not None
    mgr.close()
    accessed = [e for e in writer.audit_events() if e.type == "config_accessed"]
    assert len(accessed) == 4 and {e.actor for e in accessed} == {"tester"}
    assert writer.audit_verify().ok
