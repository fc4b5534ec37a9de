"""The SDK's templates, schemas, diff and promotion against a live server (uvicorn in a thread, a fresh store).

Each method round-trips and gives what the embedded manager gives on the same store; one scenario run
through the `Client` and through a local `ConfigManager` on a fresh store has the same outcomes, errors
included (422 → SchemaViolationError, 409 → ConflictError on a stale plan); the async twin and the CLI's
`RemoteManager` say the same; an applied promotion is read back at once through the client's cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_config import AsyncClient, Client, errors
from llm_config.cli.remote import RemoteManager
from llm_config.core.manager import ConfigManager
from llm_config.core.schemas import BUILTIN_NAMES
from llm_config.documents import EnvDiff, Promotion, Schema, Template
from llm_config.errors import (
    ConflictError,
    LLMConfigError,
    NotFoundError,
    PermissionDeniedError,
    SchemaViolationError,
    ValidationError,
)
from llm_config.models import HistoryItem
from tests.e2e.conftest import LiveServer

NS = "acme/chat/bot"
GREETING = "Hi {{ who }} at {{ config:org }}, model {{ config:openai.model }}"


@pytest.fixture
def server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    return make_live_server()


@pytest.fixture
def make_client(server: LiveServer) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**kw: Any) -> Client:
        kw.setdefault("api_key", server.admin_key)
        client = Client(server.url, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def seed(api: Any) -> None:
    """Values in base, staging and production; a secret; a value a schema added later refuses."""
    api.set(NS, "org", "ACME", env="base")
    api.set(NS, "openai.model", "gpt-4o", env="staging")
    api.set(NS, "openai.model", "gpt-3.5", env="production")
    api.set(NS, "openai.api_key", "sk-stage-1", env="staging", secret=True)
    api.set(NS, "limits.rpm", 100, env="staging")
    api.set(NS, "limits.rpm", 100, env="production")
    api.set(NS, "limits.burst", 5000, env="staging")
    api.set(NS, "legacy", True, env="production")


def _shape(result: Any) -> Any:
    """What two stores share after the same calls (not times, actors or promotion ids)."""
    if isinstance(result, Template | Schema):
        data = result.to_json()
        data.pop("updated_at"), data.pop("updated_by")
        return data
    if isinstance(result, Promotion):
        data = result.to_json()
        data.pop("id")
        return data
    if isinstance(result, EnvDiff):
        return result.to_json()
    if isinstance(result, HistoryItem):
        return (result.version, result.value, result.deleted, result.change_description.split(" (")[0])
    if isinstance(result, list):
        return [_shape(item) for item in result]
    return getattr(result, "value", result)


def _public(exc: LLMConfigError) -> str:
    """The class of the public tree (`llm_config.errors`) an error is: a subclass the core keeps to itself
    (`TemplateSyntaxError`, a ValidationError with a position) arrives over REST as its public parent."""
    cls = next(c for c in type(exc).__mro__ if c.__module__ == errors.__name__)
    return cls.__name__


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", _shape(fn()))
    except LLMConfigError as exc:
        return ("raise", _public(exc))


def scenario(api: Any) -> list[tuple[str, Any]]:
    """The same calls, whatever `api` is (a `ConfigManager` or a `Client`: the same signatures)."""
    seed(api)
    out: list[tuple[str, Any]] = []

    def step(name: str, fn: Callable[[], Any]) -> Any:
        out.append((name, _outcome(fn)))
        return out[-1][1]

    step("schema set", lambda: api.set_schema(NS, "limits.*", {"type": "integer", "maximum": 1000},
                                              description="rate limits"))
    step("schema set builtin", lambda: api.set_schema(NS, "openai.params", builtin="openai-chat"))
    step("schema set unknown builtin", lambda: api.set_schema(NS, "x", builtin="no-such-thing"))
    step("schema violation on set", lambda: api.set(NS, "limits.rpm", 5000, env="production"))
    step("schema violation on set (builtin)", lambda: api.set(NS, "openai.params", {"temperature": 9},
                                                                  env="production"))
    step("template set", lambda: api.set_template(NS, "greet", GREETING, env="production",
                                                  defaults={"who": "you"}, description="hello"))
    step("template set staging", lambda: api.set_template(NS, "greet", GREETING + " key {{ secret:openai.api_key }}",
                                                          env="staging"))
    step("template set base include", lambda: api.set_template(NS, "wrap", "[{{ template:greet }}]", env="base"))
    step("template parse error", lambda: api.set_template(NS, "bad", "{{ unclosed", env="production"))
    step("template cas conflict", lambda: api.set_template(NS, "greet", "x", env="production", expected_version=0))
    step("template update", lambda: api.set_template(NS, "greet", GREETING + "!", env="production",
                                                     defaults={"who": "you"}, expected_version=1, message="excited"))
    step("template get", lambda: api.get_template(NS, "greet", env="production"))
    step("template get v1", lambda: api.get_template(NS, "greet", env="prod", version=1))
    step("template get missing", lambda: api.get_template(NS, "nope", env="production"))
    step("template list", lambda: api.list_templates(NS, env="production"))
    step("template history", lambda: api.template_history(NS, "greet", env="production"))
    step("template history limit", lambda: api.template_history(NS, "greet", env="production", limit=1))
    step("render", lambda: api.render(NS, "greet", {"who": "Ada"}, env="production"))
    step("render defaults", lambda: api.render(NS, "greet", env="production"))
    step("render unknown variable", lambda: api.render(NS, "greet", {"who": "A", "extra": 1}, env="production"))
    step("render allow extra", lambda: api.render(NS, "greet", {"extra": 1}, env="production", allow_extra=True))
    step("render missing variable", lambda: api.render(NS, "greet", env="staging"))
    step("render with a secret", lambda: api.render(NS, "greet", {"who": "B"}, env="staging"))
    step("render include from base", lambda: api.render(NS, "wrap", {"who": "C"}, env="production"))
    step("render missing template", lambda: api.render(NS, "nope", env="production"))
    step("template rollback", lambda: api.rollback_template(NS, "greet", 1, env="production"))
    step("template delete stale", lambda: api.delete_template(NS, "greet", env="production", expected_version=1))
    step("template delete", lambda: api.delete_template(NS, "greet", env="production", expected_version=3))
    step("template get deleted", lambda: api.get_template(NS, "greet", env="production"))
    step("template undelete", lambda: api.rollback_template(NS, "greet", 3, env="production"))
    step("template history after", lambda: api.template_history(NS, "greet", env="production"))
    step("schema get", lambda: api.get_schema(NS, "limits.*"))
    step("schema list", lambda: api.list_schemas(NS))
    step("schema update", lambda: api.set_schema(NS, "limits.*", {"type": "integer", "maximum": 10_000},
                                                 expected_version=1))
    step("schema history", lambda: api.schema_history(NS, "limits.*"))
    step("schema get v1", lambda: api.get_schema(NS, "limits.*", version=1))
    step("diff", lambda: api.diff(NS, from_env="staging", to_env="production"))
    step("diff same env", lambda: api.diff(NS, from_env="prod", to_env="production"))
    step("diff bad env", lambda: api.diff(NS, from_env="qa", to_env="production"))
    step("schema rollback", lambda: api.rollback_schema(NS, "limits.*", 1))
    step("promote violates schema", lambda: api.promote(NS, from_env="staging", to_env="production",
                                                        keys=["limits.burst"]))
    step("schema delete stale", lambda: api.delete_schema(NS, "limits.*", expected_version=1))
    step("schema delete", lambda: api.delete_schema(NS, "limits.*", expected_version=3))
    step("schema get deleted", lambda: api.get_schema(NS, "limits.*"))
    plan = api.promote(NS, from_env="staging", to_env="production", prune=True, dry_run=True)
    out.append(("promote dry run", ("ok", _shape(plan))))
    api.set(NS, "openai.model", "gpt-4.1", env="staging")  # the source moves after the plan was shown
    step("promote stale plan", lambda: api.promote(NS, from_env="staging", to_env="production", prune=True,
                                                   plan=plan))
    step("promote stale plan dry run", lambda: api.promote(NS, from_env="staging", to_env="production",
                                                           prune=True, dry_run=True, plan=plan))
    plan = api.promote(NS, from_env="staging", to_env="production", prune=True, dry_run=True)
    step("promote plan", lambda: api.promote(NS, from_env="staging", to_env="production", prune=True, plan=plan))
    step("promote again", lambda: api.promote(NS, from_env="staging", to_env="production"))
    step("diff after", lambda: api.diff(NS, from_env="staging", to_env="production"))
    step("promoted values", lambda: api.resolve(NS, env="production", reveal=True))
    step("promoted history", lambda: api.history(NS, "openai.model", env="production"))
    step("promote bad key", lambda: api.promote(NS, from_env="staging", to_env="production", keys=["a b"]))
    return out


# ---------------------------------------------------------------------------------------------- parity


def test_the_client_and_a_local_manager_have_the_same_outcomes(
        server: LiveServer, client: Client, make_manager: Callable[..., ConfigManager], tmp_path: Path) -> None:
    remote = scenario(client)
    local = scenario(make_manager(storage=tmp_path / "local"))
    assert [name for name, _ in remote] == [name for name, _ in local]
    for (name, got), (_, want) in zip(remote, local, strict=True):
        assert got == want, name
    outcomes = dict(remote)  # and the scenario means what it says
    assert outcomes["schema violation on set"] == ("raise", "SchemaViolationError")
    assert outcomes["promote violates schema"] == ("raise", "SchemaViolationError")
    assert outcomes["promote stale plan"] == ("raise", "ConflictError")
    assert outcomes["render"] == ("ok", "Hi Ada at ACME, model gpt-3.5!")
    assert outcomes["render defaults"] == outcomes["render allow extra"] == ("ok", "Hi you at ACME, model gpt-3.5!")
    assert outcomes["render unknown variable"] == outcomes["render missing variable"] == ("raise", "ValidationError")
    assert outcomes["render with a secret"] == ("ok", "Hi B at ACME, model gpt-4o key sk-stage-1")
    assert outcomes["promote plan"][1]["applied"] is True
    assert outcomes["diff after"][1]["changed"] == [] and outcomes["diff after"][1]["removed"] == []


def test_each_method_gives_what_the_manager_gives_on_the_same_store(server: LiveServer, client: Client) -> None:
    mgr = server.manager
    seed(mgr)
    mgr.set_schema(NS, "limits.*", {"type": "integer"})
    mgr.set_schema(NS, "m?del", builtin="openai-chat")
    mgr.set_template(NS, "greet", GREETING, env="production", defaults={"who": "you"})
    mgr.set_template(NS, "greet", GREETING + ".", env="production")
    mgr.set_template(NS, "other", "{{ a }}{{ b }}", env="production", description="two")
    assert client.get_template(NS, "greet", env="prod") == mgr.get_template(NS, "greet", env="production")
    assert client.get_template(NS, "greet", env="prod", version=1) == mgr.get_template(
        NS, "greet", env="production", version=1)
    assert client.list_templates(NS, env="production") == mgr.list_templates(NS, env="production")
    assert client.list_templates(NS) == mgr.list_templates(NS) == []
    assert client.template_history(NS, "greet", env="production") == mgr.template_history(
        NS, "greet", env="production")
    assert client.render(NS, "other", {"a": 1, "b": [2]}, env="production") == mgr.render(
        NS, "other", {"a": 1, "b": [2]}, env="production") == "1[2]"
    for pattern in ("limits.*", "m?del"):
        assert client.get_schema(NS, pattern) == mgr.get_schema(NS, pattern)
        assert client.schema_history(NS, pattern) == mgr.schema_history(NS, pattern)
    assert client.list_schemas(NS) == mgr.list_schemas(NS)
    assert [b["name"] for b in client.schema_builtins()] == list(BUILTIN_NAMES)
    for source, target in (("staging", "production"), ("production", "staging"), ("base", "development")):
        assert client.diff(NS, from_env=source, to_env=target) == mgr.diff(NS, from_env=source, to_env=target)
        remote = client.promote(NS, from_env=source, to_env=target, dry_run=True, prune=True)
        local = mgr.promote(NS, from_env=source, to_env=target, dry_run=True, prune=True)
        assert dataclasses.replace(remote, id="") == dataclasses.replace(local, id="")


def test_every_write_round_trips(server: LiveServer, client: Client) -> None:
    mgr = server.manager
    written = client.set_template(NS, "t", "Dear {{ name }}", env="staging", description="d",
                                  defaults={"name": "all"}, expected_version=0, message="first")
    assert written == mgr.get_template(NS, "t", env="staging") and written.variables == ("name",)
    assert written.updated_by == server.admin_actor  # the key's principal, never a body field
    assert mgr.template_history(NS, "t", env="staging")[0].change_description == "first"
    assert client.rollback_template(NS, "t", 1, env="staging").version == 2
    assert client.delete_template(NS, "t", env="staging") is None
    with pytest.raises(NotFoundError):
        mgr.get_template(NS, "t", env="staging")
    schema = client.set_schema(NS, "a.*", {"type": "string"}, description="strings", expected_version=0)
    assert schema == mgr.get_schema(NS, "a.*") and schema.description == "strings"
    assert client.set_schema(NS, "a.*", builtin="ollama-chat").builtin == "ollama-chat"
    assert client.rollback_schema(NS, "a.*", 1).document == {"type": "string"}
    with pytest.raises(SchemaViolationError):
        client.set(NS, "a.b", 1)
    assert client.delete_schema(NS, "a.*") is None
    assert mgr.list_schemas(NS) == []
    assert client.set(NS, "a.b", 1).value == 1


# ---------------------------------------------------------------------------------------------- errors


def test_errors_are_the_managers_exception_types(server: LiveServer, client: Client,
                                                 make_client: Callable[..., Client]) -> None:
    mgr = server.manager
    mgr.set(NS, "limits.rpm", 50_000, env="staging")
    mgr.set_schema(NS, "limits.*", {"type": "integer", "maximum": 1000})
    with pytest.raises(SchemaViolationError) as caught:  # 422, naming key and rule, never the value
        client.promote(NS, from_env="staging", to_env="production")
    assert "limits.rpm" in caught.value.message and "50000" not in caught.value.message
    mgr.set(NS, "limits.rpm", 500, env="staging")
    plan = client.promote(NS, from_env="staging", to_env="production", dry_run=True)
    mgr.set(NS, "limits.rpm", 600, env="production")  # the target moves after the plan
    with pytest.raises(ConflictError) as conflict:  # 409: nothing written
        client.promote(NS, from_env="staging", to_env="production", plan=plan)
    assert "may have been applied" not in conflict.value.message
    assert mgr.get(NS, "limits.rpm", env="production").value == 600
    with pytest.raises(ConflictError):
        mgr.promote(NS, from_env="staging", to_env="production", plan=plan)
    with pytest.raises(NotFoundError):
        client.get_template(NS, "missing")
    with pytest.raises(NotFoundError):
        client.rollback_schema(NS, "limits.*", 7)
    with pytest.raises(ValidationError):
        client.diff(NS, from_env="staging", to_env="stage")
    viewer = make_client(api_key=server.new_key("viewer", namespaces=["acme"]))
    with pytest.raises(PermissionDeniedError):
        viewer.set_schema(NS, "x", {"type": "string"})
    with pytest.raises(PermissionDeniedError):
        viewer.promote(NS, from_env="staging", to_env="production", dry_run=True)
    mgr.set(NS, "openai.api_key", "sk-1", env="staging", secret=True)
    mgr.set_template(NS, "k", "{{ secret:openai.api_key }}", env="staging")
    with pytest.raises(PermissionDeniedError):  # a render using a secret needs secret read
        viewer.render(NS, "k", env="staging")
    assert viewer.diff(NS, from_env="staging", to_env="production").not_compared == ("openai.api_key",)
    assert client.render(NS, "k", env="staging") == "sk-1"


# ---------------------------------------------------------------------------------------------- the cache


def test_an_applied_promotion_is_read_back_at_once(server: LiveServer, make_client: Callable[..., Client]) -> None:
    mgr = server.manager
    mgr.set(NS, "openai.model", "gpt-4o", env="staging")
    mgr.set(NS, "openai.model", "gpt-3.5", env="production")
    for watch in (False, True):
        client = make_client(watch=watch, ttl=300)
        mgr.set(NS, "openai.model", f"new-{watch}", env="staging")
        assert client.get(NS, "openai.model", env="production").value != f"new-{watch}"
        assert client.resolve(NS, env="production")["openai.model"] != f"new-{watch}"
        client.promote(NS, from_env="staging", to_env="production")
        assert client.get(NS, "openai.model", env="production").value == f"new-{watch}"
        assert client.resolve(NS, env="production")["openai.model"] == f"new-{watch}"


# ---------------------------------------------------------------------------------------------- the async twin


def test_the_async_client_round_trips(server: LiveServer) -> None:
    mgr = server.manager
    seed(mgr)

    async def main() -> None:
        async with AsyncClient(server.url, api_key=server.admin_key) as api:
            template = await api.set_template(NS, "greet", GREETING, env="production", defaults={"who": "x"})
            assert template == mgr.get_template(NS, "greet", env="production")
            assert await api.get_template(NS, "greet", env="production") == template
            assert await api.list_templates(NS, env="production") == [template]
            assert await api.render(NS, "greet", env="production") == mgr.render(NS, "greet", env="production")
            assert len(await api.template_history(NS, "greet", env="production")) == 1
            assert (await api.rollback_template(NS, "greet", 1, env="production")).version == 2
            await api.delete_template(NS, "greet", env="production", expected_version=2)
            schema = await api.set_schema(NS, "limits.*", {"type": "integer"})
            assert await api.get_schema(NS, "limits.*") == schema == mgr.get_schema(NS, "limits.*")
            assert await api.list_schemas(NS) == [schema]
            assert len(await api.schema_history(NS, "limits.*")) == 1
            assert (await api.rollback_schema(NS, "limits.*", 1)).version == 2
            await api.delete_schema(NS, "limits.*")
            assert len(await api.schema_builtins()) == len(BUILTIN_NAMES)
            assert await api.diff(NS, from_env="staging", to_env="production") == mgr.diff(
                NS, from_env="staging", to_env="production")
            plan = await api.promote(NS, from_env="staging", to_env="production", dry_run=True)
            done = await api.promote(NS, from_env="staging", to_env="production", plan=plan)
            assert done.applied and done.steps == plan.steps and done.id == plan.id
            mgr.set(NS, "limits.rpm", 1, env="staging")
            with pytest.raises(ConflictError):
                await api.promote(NS, from_env="staging", to_env="production", plan=plan)
            await api.set_schema(NS, "limits.*", {"type": "integer", "minimum": 10})
            with pytest.raises(SchemaViolationError):
                await api.promote(NS, from_env="staging", to_env="production")

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- the CLI's view


def test_the_remote_manager_runs_the_same_methods(server: LiveServer, make_client: Callable[..., Client]) -> None:
    mgr = server.manager
    seed(mgr)
    remote = RemoteManager(make_client(watch=False, ttl=0.0), server.url)
    assert remote.set_template(NS, "t", "{{ x }}", env="production") == mgr.get_template(NS, "t", env="production")
    assert remote.get_template(NS, "t", env="production").content == "{{ x }}"
    assert [t.name for t in remote.list_templates(NS, env="production")] == ["t"]
    assert remote.render(NS, "t", {"x": "y"}, env="production") == "y"
    assert remote.template_history(NS, "t", env="production")[0].version == 1
    assert remote.rollback_template(NS, "t", 1, env="production").version == 2
    remote.delete_template(NS, "t", env="production")
    assert remote.set_schema(NS, "p", builtin="mistral-chat").builtin == "mistral-chat"
    assert remote.get_schema(NS, "p").version == 1 and len(remote.list_schemas(NS)) == 1
    assert remote.schema_history(NS, "p")[0].version == 1 and remote.rollback_schema(NS, "p", 1).version == 2
    remote.delete_schema(NS, "p", expected_version=2)
    assert [b["name"] for b in remote.schema_builtins()] == list(BUILTIN_NAMES)
    assert remote.diff(NS, from_env="staging", to_env="production") == mgr.diff(
        NS, from_env="staging", to_env="production")
    plan = remote.promote(NS, from_env="staging", to_env="production", keys=["openai.model"], dry_run=True)
    assert remote.promote(NS, from_env="staging", to_env="production", keys=["openai.model"], plan=plan).applied
    assert mgr.get(NS, "openai.model", env="production").value == "gpt-4o"
