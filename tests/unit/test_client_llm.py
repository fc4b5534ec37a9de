"""The SDK's templates, schemas, diff and promotion, without a server: the paths (nested namespaces, patterns
percent-encoded), the bodies, the retry classification, the parsing of answers, and both clients over an
`httpx.MockTransport` (what they send, what they raise, what they retry)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import orjson
import pytest

from llm_config import AsyncClient, Client, errors
from llm_config.client._base import (
    Call,
    ClientCore,
    RetryPolicy,
    diff_path,
    env_diff_of,
    promote_path,
    promotion_of,
    render_text_of,
    schema_builtins_of,
    schema_list_path,
    schema_of,
    schema_path,
    schemas_of,
    template_list_path,
    template_of,
    template_path,
    templates_of,
    write_failure,
)
from llm_config.documents import EnvDiff, Promotion, PromotionStep, Schema, Template
from llm_config.models import Environment, build_entry

PROD, STAGE, DEV, BASE = Environment.PRODUCTION, Environment.STAGING, Environment.DEVELOPMENT, Environment.BASE
KEY = "llmc_test_key_0123456789"
NS = "acme/chat/bot"

TEMPLATE = {"namespace": NS, "name": "greet", "environment": "production", "version": 3,
            "content": "Hi {{ who }} from {{ config:org }}", "variables": ["who"], "defaults": {"who": "you"},
            "description": "a greeting", "updated_at": "2025-01-01T00:00:00Z", "updated_by": "key:ci#1"}
SCHEMA = {"namespace": NS, "pattern": "openai.*", "version": 2, "schema": {"type": "object"}, "builtin": None,
          "description": None, "updated_at": "2025-01-01T00:00:00Z", "updated_by": "key:admin#1"}
PLAN = Promotion(id="p1", namespace=NS, source=STAGE, target=PROD, steps=(
    PromotionStep("a", "create", 1, 0, False), PromotionStep("b", "update", 4, 2, True),
    PromotionStep("c", "delete", None, 5, False)), unchanged=("d",), applied=False)
DIFF = {"added": ["a"], "removed": ["c"], "changed": ["b"], "unchanged": ["d"], "not_compared": ["s"]}
HISTORY = [{"version": 2, "value": {"content": "x", "defaults": {}}, "deleted": False,
            "created_at": "2025-01-01T00:00:00Z", "created_by": "u", "change_description": "Updated"}]


def body(call: Call) -> Any:
    assert call.body is not None
    assert dict(call.headers)["Content-Type"] == "application/json"
    return orjson.loads(call.body)


# ---------------------------------------------------------------------------------------------- paths

def test_template_paths_keep_nested_namespaces_before_the_separator() -> None:
    assert template_list_path(NS) == "/api/v1/templates/acme/chat/bot/-/"
    assert template_path(NS, "greet.v2") == "/api/v1/templates/acme/chat/bot/-/greet.v2"
    assert template_path("one", "t") == "/api/v1/templates/one/-/t"


def test_schema_paths_percent_encode_the_glob_characters() -> None:
    assert schema_list_path(NS) == "/api/v1/schemas/acme/chat/bot/-/"
    assert schema_path(NS, "openai.*") == "/api/v1/schemas/acme/chat/bot/-/openai.%2A"
    assert schema_path("a", "m?del.*-x_y") == "/api/v1/schemas/a/-/m%3Fdel.%2A-x_y"
    assert schema_path("a", "*") == "/api/v1/schemas/a/-/%2A"
    assert ClientCore.schema_builtins_call() == Call("GET", "/api/v1/schemas/builtins")


def test_environment_paths() -> None:
    assert diff_path(NS) == "/api/v1/namespaces/acme/chat/bot/-/diff"
    assert promote_path("x") == "/api/v1/namespaces/x/-/promote"


# ---------------------------------------------------------------------------------------------- calls

def test_template_calls() -> None:
    core = ClientCore
    assert core.template_list_call(NS, "prod") == Call("GET", template_list_path(NS), (("env", "production"),))
    assert core.template_get_call(NS, "greet", "dev", None) == Call(
        "GET", template_path(NS, "greet"), (("env", "development"),))
    assert core.template_get_call(NS, "greet", BASE, 2).params == (("env", "base"), ("version", "2"))
    assert core.template_history_call(NS, "greet", PROD, 5) == Call(
        "GET", template_path(NS, "greet") + "/history", (("env", "production"), ("limit", "5")))
    rollback = core.template_rollback_call(NS, "greet", 2, "stage")
    assert rollback == Call("POST", template_path(NS, "greet") + "/rollback/2", (("env", "staging"),), retry=False)


def test_template_writes_are_retried_only_as_compare_and_set() -> None:
    blind = ClientCore.template_set_call(NS, "greet", "Hi {{ who }}", "prod", None, None, None, None)
    assert (blind.method, blind.path, blind.retry) == ("PUT", template_path(NS, "greet"), False)
    assert body(blind) == {"content": "Hi {{ who }}", "env": "production"}
    cas = ClientCore.template_set_call(NS, "greet", "x", DEV, "d", {"who": "me", "n": [1]}, 0, "first")
    assert cas.retry is True
    assert body(cas) == {"content": "x", "env": "development", "description": "d", "defaults": {"who": "me", "n": [1]},
                         "message": "first", "expected_version": 0}
    delete = ClientCore.template_delete_call(NS, "greet", PROD, None)
    assert delete == Call("DELETE", template_path(NS, "greet"), (("env", "production"),), retry=False)
    delete = ClientCore.template_delete_call(NS, "greet", PROD, 4)
    assert delete.params == (("env", "production"), ("expected_version", "4")) and delete.retry is True


def test_render_is_a_post_retried_like_a_read() -> None:
    call = ClientCore.render_call(NS, "greet", {"who": "Ada", "n": 2}, "prod", True)
    assert (call.method, call.path, call.params, call.retry) == ("POST", template_path(NS, "greet") + "/render", (),
                                                                 True)
    assert body(call) == {"env": "production", "variables": {"who": "Ada", "n": 2}, "allow_extra": True}
    assert body(ClientCore.render_call(NS, "greet", None, DEV, False)) == {
        "env": "development", "variables": {}, "allow_extra": False}
    policy = RetryPolicy(retries=2)
    assert policy.decide(call, 0, status=503) is not None and policy.decide(call, 0) is not None


def test_schema_calls() -> None:
    core = ClientCore
    assert core.schema_list_call(NS) == Call("GET", schema_list_path(NS))
    assert core.schema_get_call(NS, "openai.*", None) == Call("GET", schema_path(NS, "openai.*"))
    assert core.schema_get_call(NS, "k", 3).params == (("version", "3"),)
    assert core.schema_history_call(NS, "openai.*", 1) == Call(
        "GET", schema_path(NS, "openai.*") + "/history", (("limit", "1"),))
    assert core.schema_rollback_call(NS, "a?", 2) == Call("POST", "/api/v1/schemas/acme/chat/bot/-/a%3F/rollback/2",
                                                          retry=False)
    by_doc = core.schema_set_call(NS, "openai.*", {"type": "object"}, None, "params", None)
    assert (by_doc.method, by_doc.path, by_doc.retry) == ("PUT", schema_path(NS, "openai.*"), False)
    assert body(by_doc) == {"schema": {"type": "object"}, "description": "params"}
    by_name = core.schema_set_call(NS, "openai.params", None, "openai-chat", None, 2)
    assert body(by_name) == {"builtin": "openai-chat", "expected_version": 2} and by_name.retry is True
    assert core.schema_delete_call(NS, "x*", None) == Call("DELETE", schema_path(NS, "x*"), retry=False)
    cas = core.schema_delete_call(NS, "x*", 0)
    assert cas.params == (("expected_version", "0"),) and cas.retry is True


def test_diff_and_promote_calls() -> None:
    assert ClientCore.diff_call(NS, "stage", "prod") == Call(
        "GET", diff_path(NS), (("from", "staging"), ("to", "production")))
    blind = ClientCore.promote_call(NS, STAGE, "prod", None, False, False, None)
    assert (blind.method, blind.path, blind.retry) == ("POST", promote_path(NS), False)
    assert body(blind) == {"from": "staging", "to": "production", "prune": False, "dry_run": False}
    dry = ClientCore.promote_call(NS, "staging", "production", ["a", "b"], True, True, None)
    assert dry.retry is True
    assert body(dry) == {"from": "staging", "to": "production", "prune": True, "dry_run": True, "keys": ["a", "b"]}
    planned = ClientCore.promote_call(NS, "staging", "production", None, False, False, PLAN)
    assert planned.retry is True and body(planned)["plan"] == PLAN.to_json()
    assert Promotion.from_json(body(planned)["plan"]) == PLAN
    policy = RetryPolicy(retries=2)
    assert policy.decide(blind, 0, status=503) is None and policy.decide(blind, 0) is None
    assert policy.decide(planned, 0, status=502) is not None


@pytest.mark.parametrize("build", [
    lambda: ClientCore.template_get_call("bad ns", "t", DEV, None),
    lambda: ClientCore.template_get_call(NS, "a/b", DEV, None),
    lambda: ClientCore.template_get_call(NS, "../x", DEV, None),
    lambda: ClientCore.template_get_call(NS, "t", "qa", None),
    lambda: ClientCore.template_get_call(NS, "t", DEV, 0),
    lambda: ClientCore.template_history_call(NS, "t", DEV, 0),
    lambda: ClientCore.template_set_call(NS, "t", "x", DEV, None, None, -1, None),
    lambda: ClientCore.template_set_call(NS, "t", "x", DEV, None, {"v": object()}, None, None),
    lambda: ClientCore.template_set_call(NS, "t", "x", DEV, None, ["v"], None, None),  # type: ignore[arg-type]
    lambda: ClientCore.template_rollback_call(NS, "t", True, DEV),
    lambda: ClientCore.render_call(NS, "t", {"v": object()}, DEV, False),
    lambda: ClientCore.render_call(NS, "t", "who=x", DEV, False),  # type: ignore[arg-type]
    lambda: ClientCore.render_call(NS, "t", None, DEV, "yes"),  # type: ignore[arg-type]
    lambda: ClientCore.schema_get_call(NS, "a b", None),
    lambda: ClientCore.schema_get_call(NS, "a/b", None),
    lambda: ClientCore.schema_get_call(NS, "", None),
    lambda: ClientCore.schema_set_call(NS, "k", "{}", None, None, None),  # type: ignore[arg-type]
    lambda: ClientCore.schema_rollback_call(NS, "k", 0),
    lambda: ClientCore.diff_call(NS, "qa", "prod"),
    lambda: ClientCore.promote_call(NS, "dev", "prod", "abc", False, False, None),
    lambda: ClientCore.promote_call(NS, "dev", "prod", ["bad key"], False, False, None),
    lambda: ClientCore.promote_call(NS, "dev", "prod", None, 1, False, None),  # type: ignore[arg-type]
    lambda: ClientCore.promote_call(NS, "dev", "prod", None, False, False, PLAN.to_json()),  # type: ignore[arg-type]
])
def test_bad_arguments_are_refused_before_anything_is_sent(build: Any) -> None:
    with pytest.raises(errors.ValidationError):
        build()


# ---------------------------------------------------------------------------------------------- answers

def test_answers_are_parsed_into_the_documents() -> None:
    template = template_of(orjson.dumps(TEMPLATE))
    assert isinstance(template, Template) and template.to_json() == TEMPLATE and template.environment is PROD
    assert templates_of(orjson.dumps([TEMPLATE, TEMPLATE])) == [template, template]
    schema = schema_of(orjson.dumps(SCHEMA))
    assert isinstance(schema, Schema) and schema.to_json() == SCHEMA
    assert schemas_of(b"[]") == []
    assert env_diff_of(orjson.dumps(DIFF)) == EnvDiff(("a",), ("c",), ("b",), ("d",), ("s",))
    assert promotion_of(orjson.dumps(PLAN.to_json())) == PLAN
    assert render_text_of(b'{"text": "Hi Ada"}') == "Hi Ada"
    assert schema_builtins_of(b'[{"name": "openai-chat", "description": "OpenAI chat", "extra": 1}]') == [
        {"name": "openai-chat", "description": "OpenAI chat"}]


@pytest.mark.parametrize(("parse", "content"), [
    (template_of, b"[]"), (template_of, b"not json"), (templates_of, b"{}"), (schema_of, b'{"pattern": 1}'),
    (env_diff_of, b'{"added": "a"}'), (promotion_of, b'{"steps": {}}'), (render_text_of, b'{"text": 1}'),
    (render_text_of, b'"text"'), (schema_builtins_of, b'[{"name": "x"}]'), (schema_builtins_of, b"{}"),
])
def test_a_malformed_answer_is_a_validation_error(parse: Any, content: bytes) -> None:
    with pytest.raises(errors.ValidationError):
        parse(content)


def test_a_conflict_after_a_lost_answer_says_the_write_may_have_been_applied() -> None:
    plain = errors.ConflictError("Promotion aborted: moved", namespace=NS)
    assert write_failure(plain, False) is plain
    said = write_failure(plain, True)
    assert type(said) is errors.ConflictError and "may have been applied" in said.message and said.namespace == NS
    other = errors.SchemaViolationError("no")
    assert write_failure(other, True) is other


def test_an_applied_promotion_makes_what_it_wrote_stale_in_the_cache() -> None:
    core = ClientCore("http://127.0.0.1:9", KEY, watch=False, ttl=60)

    def cached(key: str, env: Environment) -> None:
        e = build_entry(f"id-{key}", NS, key, "v", env, 1, False, "t", "u", "t", "u", (), None, 1)
        core.install((NS, key, env, None, False, False), e, None, core.begin_write(NS, key))

    for key in ("a", "b", "c", "d"):
        cached(key, PROD)
    cached("a", STAGE)
    core.promoted(PLAN)  # a plan (not applied) changes nothing
    assert all(core.hits[(NS, k, PROD, None, False, False)].fresh_until > core.clock() for k in "abcd")
    core.promoted(dataclasses.replace(PLAN, applied=True))
    stale = {k for k in "abcd" if core.hits[(NS, k, PROD, None, False, False)].fresh_until <= core.clock()}
    assert stale == {"a", "b", "c"}  # the steps' keys in the target; `d` was unchanged
    assert core.hits[(NS, "a", STAGE, None, False, False)].fresh_until > core.clock()  # the source is untouched


# ---------------------------------------------------------------------------------------------- the clients

class Service:
    """A stand-in service: records requests, answers from a script (a list of (status, json) per call)."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        status, data = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(data, Exception):
            raise data
        return httpx.Response(status, json=data) if data is not None else httpx.Response(status)

    def sent(self, i: int = -1) -> tuple[str, str, dict[str, str], Any]:
        r = self.requests[i]
        return r.method, r.url.raw_path.decode().split("?")[0], dict(r.url.params), \
            orjson.loads(r.content) if r.content else None


def client(service: Service) -> Client:
    return Client("http://127.0.0.1:9", api_key=KEY, watch=False, ttl=0.0, backoff=0.001,
                  transport=httpx.MockTransport(service))


def test_the_client_sends_each_call_and_parses_its_answer() -> None:
    svc = Service((200, TEMPLATE))
    with client(svc) as api:
        assert api.set_template(NS, "greet", "Hi", env="prod", defaults={"who": "you"}).to_json() == TEMPLATE
        assert svc.sent() == ("PUT", "/api/v1/templates/acme/chat/bot/-/greet", {},
                              {"content": "Hi", "env": "production", "defaults": {"who": "you"}})
        assert api.get_template(NS, "greet", env="prod", version=3).version == 3
        assert svc.sent()[:3] == ("GET", "/api/v1/templates/acme/chat/bot/-/greet",
                                  {"env": "production", "version": "3"})
        assert api.rollback_template(NS, "greet", 1).name == "greet"
        assert svc.sent()[:3] == ("POST", "/api/v1/templates/acme/chat/bot/-/greet/rollback/1",
                                  {"env": "development"})
        svc.answers = [(200, [TEMPLATE])]
        assert [t.name for t in api.list_templates(NS, env="prod")] == ["greet"]
        svc.answers = [(200, HISTORY)]
        assert api.template_history(NS, "greet", limit=1)[0].version == 2
        assert api.schema_history(NS, "openai.*")[0].change_description == "Updated"
        assert svc.sent()[:2] == ("GET", "/api/v1/schemas/acme/chat/bot/-/openai.%2A/history")
        svc.answers = [(200, {"text": "Hi Ada"})]
        assert api.render(NS, "greet", {"who": "Ada"}, env="prod") == "Hi Ada"
        assert svc.sent() == ("POST", "/api/v1/templates/acme/chat/bot/-/greet/render", {},
                              {"env": "production", "variables": {"who": "Ada"}, "allow_extra": False})
        svc.answers = [(204, None)]
        assert api.delete_template(NS, "greet", env="prod", expected_version=3) is None
        assert svc.sent()[:3] == ("DELETE", "/api/v1/templates/acme/chat/bot/-/greet",
                                  {"env": "production", "expected_version": "3"})
        assert api.delete_schema(NS, "m?del") is None
        assert svc.sent()[:3] == ("DELETE", "/api/v1/schemas/acme/chat/bot/-/m%3Fdel", {})
        svc.answers = [(200, SCHEMA)]
        assert api.set_schema(NS, "openai.*", builtin="openai-chat").pattern == "openai.*"
        assert svc.sent() == ("PUT", "/api/v1/schemas/acme/chat/bot/-/openai.%2A", {}, {"builtin": "openai-chat"})
        assert api.get_schema(NS, "openai.*", version=2).version == 2
        assert api.rollback_schema(NS, "openai.*", 1).version == 2
        assert svc.sent()[:2] == ("POST", "/api/v1/schemas/acme/chat/bot/-/openai.%2A/rollback/1")
        svc.answers = [(200, [SCHEMA])]
        assert api.list_schemas(NS)[0].document == {"type": "object"}
        svc.answers = [(200, [{"name": "openai-chat", "description": "d"}])]
        assert api.schema_builtins() == [{"name": "openai-chat", "description": "d"}]
        assert svc.sent()[:2] == ("GET", "/api/v1/schemas/builtins")
        svc.answers = [(200, DIFF)]
        assert api.diff(NS, from_env="stage", to_env="prod").not_compared == ("s",)
        assert svc.sent()[:3] == ("GET", "/api/v1/namespaces/acme/chat/bot/-/diff",
                                  {"from": "staging", "to": "production"})
        svc.answers = [(200, PLAN.to_json())]
        assert api.promote(NS, from_env="staging", to_env="production", dry_run=True) == PLAN
        assert svc.sent()[1:] == ("/api/v1/namespaces/acme/chat/bot/-/promote", {},
                                  {"from": "staging", "to": "production", "prune": False, "dry_run": True})


@pytest.mark.parametrize(("status", "cls"), [
    (400, errors.ValidationError), (403, errors.PermissionDeniedError), (404, errors.NotFoundError),
    (409, errors.ConflictError), (422, errors.SchemaViolationError),
])
def test_errors_are_the_library_exceptions(status: int, cls: type[errors.LLMConfigError]) -> None:
    svc = Service((status, {"error": "x", "message": "said so"}))
    with client(svc) as api:
        for call in (lambda: api.render(NS, "t"), lambda: api.set_schema(NS, "k", {"type": "string"}),
                     lambda: api.promote(NS, from_env="dev", to_env="prod", plan=PLAN),
                     lambda: api.set_template(NS, "t", "x")):
            with pytest.raises(cls) as caught:
                call()
            assert type(caught.value) is cls and caught.value.message == "said so"
            assert caught.value.namespace == NS


def test_what_is_retried() -> None:
    busy = (503, {"error": "Service Unavailable", "message": "busy"})
    svc = Service(busy)
    with client(svc) as api:
        for call, attempts in [
            (lambda: api.render(NS, "t"), 4), (lambda: api.get_template(NS, "t"), 4),
            (lambda: api.list_schemas(NS), 4), (lambda: api.diff(NS, from_env="dev", to_env="prod"), 4),
            (lambda: api.promote(NS, from_env="dev", to_env="prod", dry_run=True), 4),
            (lambda: api.promote(NS, from_env="dev", to_env="prod", plan=PLAN), 4),
            (lambda: api.set_template(NS, "t", "x", expected_version=1), 4),
            (lambda: api.delete_schema(NS, "k", expected_version=1), 4),
            (lambda: api.promote(NS, from_env="dev", to_env="prod"), 1),
            (lambda: api.set_template(NS, "t", "x"), 1), (lambda: api.rollback_template(NS, "t", 1), 1),
            (lambda: api.delete_template(NS, "t"), 1), (lambda: api.set_schema(NS, "k", builtin="x"), 1),
            (lambda: api.rollback_schema(NS, "k", 1), 1),
        ]:
            svc.requests.clear()
            with pytest.raises(errors.StorageUnavailableError):
                call()
            assert len(svc.requests) == attempts, svc.requests[0]


def test_a_plan_applied_twice_after_a_lost_answer_says_it_may_have_been_applied() -> None:
    svc = Service((0, httpx.ReadTimeout("lost")), (409, {"error": "Conflict", "message": "Promotion aborted"}))
    with client(svc) as api:
        with pytest.raises(errors.ConflictError, match="may have been applied"):
            api.promote(NS, from_env="staging", to_env="production", plan=PLAN)
        assert len(svc.requests) == 2
        svc.answers = [(0, httpx.ReadTimeout("lost")), (409, {"error": "Conflict", "message": "stale plan"})]
        svc.requests.clear()
        with pytest.raises(errors.ConflictError) as caught:  # a dry run writes nothing: its conflict is plain
            api.promote(NS, from_env="staging", to_env="production", plan=PLAN, dry_run=True)
        assert caught.value.message == "stale plan"


def test_an_applied_promotion_refetches_what_it_wrote() -> None:
    entry = {"id": "i", "namespace": NS, "key": "a", "value": "old", "environment": "production", "version": 1,
             "secret": False, "metadata": {"created_at": "2025-01-01T00:00:00Z", "created_by": "u",
                                           "updated_at": "2025-01-01T00:00:00Z", "updated_by": "u", "tags": [],
                                           "description": None}}
    applied = {**PLAN.to_json(), "applied": True}
    svc = Service((200, entry))
    with Client("http://127.0.0.1:9", api_key=KEY, watch=False, ttl=60, transport=httpx.MockTransport(svc)) as api:
        assert api.get(NS, "a", env="prod").value == "old"
        assert api.get(NS, "a", env="prod").value == "old" and len(svc.requests) == 1  # cached
        svc.answers = [(200, applied)]
        api.promote(NS, from_env="staging", to_env="production", plan=PLAN)
        svc.answers = [(200, {**entry, "value": "new", "version": 2})]
        assert api.get(NS, "a", env="prod").value == "new" and len(svc.requests) == 3


def test_the_async_client_sends_and_retries_the_same() -> None:
    busy = (503, {"error": "Service Unavailable", "message": "busy"})

    async def main() -> None:
        svc = Service((200, {"text": "Hi"}))
        async with AsyncClient("http://127.0.0.1:9", api_key=KEY, watch=False, ttl=0.0, backoff=0.001,
                               transport=httpx.MockTransport(svc)) as api:
            assert await api.render(NS, "greet", {"who": "x"}, env="prod", allow_extra=True) == "Hi"
            assert svc.sent() == ("POST", "/api/v1/templates/acme/chat/bot/-/greet/render", {},
                                  {"env": "production", "variables": {"who": "x"}, "allow_extra": True})
            svc.answers = [(200, DIFF)]
            assert (await api.diff(NS, from_env="dev", to_env="prod")).added == ("a",)
            svc.answers = [(200, PLAN.to_json())]
            assert await api.promote(NS, from_env="staging", to_env="prod", keys=["a"], dry_run=True) == PLAN
            assert svc.sent()[3] == {"from": "staging", "to": "production", "prune": False, "dry_run": True,
                                     "keys": ["a"]}
            svc.answers = [(200, TEMPLATE)]
            assert (await api.get_template(NS, "greet")).to_json() == TEMPLATE
            assert (await api.set_template(NS, "greet", "x")).name == "greet"
            assert (await api.rollback_template(NS, "greet", 2)).name == "greet"
            svc.answers = [(200, [TEMPLATE])]
            assert len(await api.list_templates(NS)) == 1
            svc.answers = [(200, HISTORY)]
            assert len(await api.template_history(NS, "greet")) == 1
            assert len(await api.schema_history(NS, "a*")) == 1
            svc.answers = [(200, SCHEMA)]
            assert (await api.set_schema(NS, "openai.*", {"type": "object"})).version == 2
            assert (await api.get_schema(NS, "openai.*")).version == 2
            assert (await api.rollback_schema(NS, "openai.*", 1)).version == 2
            svc.answers = [(200, [SCHEMA])]
            assert len(await api.list_schemas(NS)) == 1
            svc.answers = [(200, [])]
            assert await api.schema_builtins() == []
            svc.answers = [(204, None)]
            await api.delete_template(NS, "greet")
            await api.delete_schema(NS, "openai.*", expected_version=2)
            assert svc.sent()[:3] == ("DELETE", "/api/v1/schemas/acme/chat/bot/-/openai.%2A",
                                      {"expected_version": "2"})
            svc.answers = [busy]
            svc.requests.clear()
            with pytest.raises(errors.StorageUnavailableError):
                await api.render(NS, "t")
            assert len(svc.requests) == 4
            svc.requests.clear()
            with pytest.raises(errors.StorageUnavailableError):
                await api.promote(NS, from_env="dev", to_env="prod")
            assert len(svc.requests) == 1
            svc.answers = [(422, {"error": "Unprocessable Entity", "message": "k: 'temperature' > 2"})]
            with pytest.raises(errors.SchemaViolationError):
                await api.promote(NS, from_env="dev", to_env="prod")

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- signatures

LLM_METHODS = ("set_template", "get_template", "list_templates", "template_history", "rollback_template",
               "delete_template", "render", "set_schema", "get_schema", "list_schemas", "schema_history",
               "rollback_schema", "delete_schema", "diff", "promote")


@pytest.mark.parametrize("name", LLM_METHODS)
def test_the_clients_and_the_remote_manager_take_the_managers_parameters_less_actor(name: str) -> None:
    """`--server` runs the CLI's commands on a `RemoteManager` with the manager's method names and arguments."""
    import inspect

    from llm_config.cli.remote import RemoteManager
    from llm_config.core.manager import ConfigManager

    def params(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()
                if p.name not in ("self", "actor")]

    want = params(getattr(ConfigManager, name))
    for owner in (Client, AsyncClient, RemoteManager):
        assert params(getattr(owner, name)) == want, owner
        assert "actor" not in inspect.signature(getattr(owner, name)).parameters
    assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
