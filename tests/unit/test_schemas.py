"""JSON Schemas on keys (SPEC §6): patterns, compiling, checking, and messages that never echo the value."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_config.core import schemas
from llm_config.core.schemas import (
    BUILTIN_NAMES,
    CompiledSchema,
    builtin_descriptions,
    builtin_schema,
    check_all,
    compile_schema,
    matches,
    validate_pattern,
)
from llm_config.errors import SchemaViolationError, ValidationError, http_status_for

CANARY = "canary-7f3a9c"
PI = 3.14159
E = 271828


def violation(schema: CompiledSchema, value: Any, key: str = "openai.params") -> SchemaViolationError:
    with pytest.raises(SchemaViolationError) as info:
        schema.check("acme/chat", key, "production", value)
    return info.value


def fresh(document: dict[str, Any]) -> dict[str, Any]:
    """A document no other test compiled (the compile cache is keyed by content)."""
    return {**document, "$comment": uuid.uuid4().hex}


# --- patterns -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["openai.api_key", "openai.*", "*", "?", "*.params", "?penai.*", "a-b_c.d9", "openai.*.model", "x" * 197],
)
def test_valid_patterns(pattern: str) -> None:
    assert validate_pattern(pattern) == pattern


@pytest.mark.parametrize(
    "pattern",
    ["", ".x", "-x", "_x", "a/b", "a[bc]", "a]", "a b", "é", "x" * 201, "a\nb", "a{b}", "!a", None, 5],
)
def test_invalid_patterns(pattern: object) -> None:
    with pytest.raises(ValidationError, match=r"^Invalid schema pattern"):
        validate_pattern(pattern)


def test_compile_refuses_an_invalid_pattern() -> None:
    with pytest.raises(ValidationError, match="Invalid schema pattern"):
        compile_schema("a/b", {"type": "object"})


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("openai.params", "openai.params", True),
        ("openai.params", "openai.paramsx", False),
        ("openai.*", "openai.chat.params", True),  # `*` crosses dots
        ("openai.*", "openai.model", True),
        ("openai.*", "openai", False),
        ("openai.*", "xopenai.model", False),
        ("openai.*", "OpenAI.model", False),  # case-sensitive, like fnmatchcase
        ("*.params", "anthropic.params", True),
        ("*", "anything.at.all", True),
        ("?penai.x", "openai.x", True),
        ("?penai.x", "oopenai.x", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a*b*c", "a.x.b.y.c", True),
        ("a[b]", "a[b]", True),  # never a character class
        ("a[b]", "ab", False),
    ],
)
def test_matching(pattern: str, key: str, expected: bool) -> None:
    assert matches(pattern, key) is expected


def test_matching_does_not_backtrack_catastrophically() -> None:
    pattern = "*a" * 20 + "*b"
    assert matches(pattern, "a" * 200) is False  # returns at once: fnmatch's translation is linear here


# --- invalid schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "where", "problem"),
    [
        ({"type": 5}, "at /type:", "is not valid"),
        ({"minimum": "a"}, "at /minimum:", "'a' is not of type 'number'"),
        ({"properties": {"t": {"maximum": "x"}}}, "at /properties/t/maximum:", "not of type"),
        ({"required": "model"}, "at /required:", "not of type 'array'"),
        ({"pattern": "("}, "at /pattern:", "regex"),
        (5, "at (root):", "is not of type"),
        ({"$schema": "https://example.com/my-meta"}, "at /$schema:", "unknown metaschema"),
        ({"$schema": 7}, "at /$schema:", "unknown metaschema"),
        ({"properties": {"x": {"$ref": "https://example.com/s.json"}}}, "at /properties/x/$ref:",
         "only local references"),
        ({"$ref": "other.json#/a"}, "at /$ref:", "only local references"),
        ({"properties": {"x": {"$ref": "#/$defs/missing"}}}, "at /properties/x/$ref:", "does not point into"),
    ],
)
def test_invalid_json_schema_is_refused_with_where_and_what(document: Any, where: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        compile_schema("openai.*", document)
    message = str(info.value)
    assert message.startswith(f"Invalid JSON Schema for openai.*: {where} ")
    assert problem in message
    assert not isinstance(info.value, SchemaViolationError)


@pytest.mark.parametrize(
    ("document", "problem"),
    [({"maximum": float("nan")}, "NaN"), ({"maximum": float("inf")}, "NaN and Infinity"), ({1: {}}, "keys")],
)
def test_a_document_that_is_not_strict_json_is_refused(document: Any, problem: str) -> None:
    with pytest.raises(ValidationError, match=f"^Invalid JSON Schema for p: .*{problem}"):
        compile_schema("p", document)


def test_older_drafts_follow_their_own_metaschema() -> None:
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 2, "exclusiveMaximum": True}
    schema = compile_schema("p", draft4)  # boolean exclusiveMaximum: valid in draft 4 only
    schema.check("n", "p", "base", 1.5)
    with pytest.raises(SchemaViolationError):
        schema.check("n", "p", "base", 2)
    with pytest.raises(ValidationError, match="at /exclusiveMaximum"):
        compile_schema("p", {"maximum": 2, "exclusiveMaximum": True})  # 2020-12: a number


def test_nothing_is_ever_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import urllib.request

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    # a bundled metaschema is resolved offline; anything else is refused before validation
    schema = compile_schema("p", fresh({"properties": {"s": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}}))
    schema.check("n", "p", "base", {"s": {"type": "string"}})
    with pytest.raises(SchemaViolationError, match="/s"):
        schema.check("n", "p", "base", {"s": {"type": 5}})
    with pytest.raises(ValidationError, match="only local references"):
        compile_schema("p", {"$ref": "http://example.com/schema"})


def test_a_reference_rebased_by_a_nested_id_that_does_not_resolve_fails_as_a_broken_schema() -> None:
    # a nested $id rebases "#/…" references, so compile cannot resolve them statically; the check can
    document = fresh({"properties": {"x": {"$id": "https://example.com/x", "$ref": "#/$defs/missing"}}})
    schema = compile_schema("p", document)
    with pytest.raises(ValidationError, match="cannot be applied: a \\$ref in it does not resolve") as info:
        schema.check("n", "p", "base", {"x": 1})
    assert not isinstance(info.value, SchemaViolationError)


# --- violations: key, pattern, path, rule — never the value ----------------------------------------


def test_violation_names_key_pattern_path_and_rule_but_never_the_value() -> None:
    schema = compile_schema("openai.*", {
        "type": "object",
        "required": ["model", "max_tokens"],
        "properties": {
            "model": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
            "temperature": {"type": "number", "maximum": 2},
            "name": {"type": "string", "maxLength": 3},
            "stop": {"type": "array", "items": {"type": "string"}},
        },
    })
    value = {"model": CANARY.upper(), "temperature": PI + 1, "name": CANARY, "stop": ["ok", E]}
    exc = violation(schema, value)
    message = str(exc)
    assert message.startswith("acme/chat/openai.params [production]: value breaks schema 'openai.*' at ")
    for part in ("(root): required max_tokens", "/model: pattern ^[a-z0-9.-]+$", "/temperature: maximum 2",
                 "/name: maxLength 3", "/stop/1: type string"):
        assert part in message
    for leaked in (CANARY, CANARY.upper(), str(PI + 1), "4.14159", str(E)):
        assert leaked not in message
    assert (exc.namespace, exc.key, exc.environment) == ("acme/chat", "openai.params", "production")
    assert http_status_for(exc) == 422
    assert isinstance(exc, ValidationError)


def test_keys_the_schema_does_not_name_are_not_shown() -> None:
    schema = compile_schema("p", fresh({
        "type": "object",
        "properties": {"metadata": {"type": "object", "additionalProperties": {"type": "string"}}},
        "propertyNames": {"maxLength": 10},
        "additionalProperties": False,
    }))
    exc = violation(schema, {"metadata": {CANARY: E}, f"{CANARY}-extra": PI})
    message = str(exc)
    assert "/metadata/*: type string" in message
    assert "(root): additionalProperties false (1 property the schema does not name)" in message
    assert "(root): property name maxLength 10" in message
    for leaked in (CANARY, str(E), str(PI)):
        assert leaked not in message


def test_at_most_five_violations_in_a_deterministic_order() -> None:
    names = [f"p{i}" for i in range(8)]
    schema = compile_schema("p", fresh({"properties": {n: {"maximum": 0} for n in names}}))
    forward = str(violation(schema, {n: PI for n in names}))
    backward = str(violation(schema, {n: PI for n in reversed(names)}))
    assert forward == backward
    assert forward.count("maximum 0") == 1  # paths that share a rule share a line
    assert "/p0, /p1, /p2, /p3, /p4, /p5, /p6, /p7: maximum 0" in forward

    rules = {f"q{i}": {"maximum": i} for i in range(8)}
    many = str(violation(compile_schema("p", fresh({"properties": rules})), {n: 100 for n in rules}))
    assert many.count("; at ") == 4  # five shown
    assert many.endswith("(and 3 more)")
    assert "/q0: maximum 0" in many and "/q5" not in many


def test_a_false_subschema_reads_as_not_allowed_at_its_property() -> None:
    schema = compile_schema("p", fresh({"properties": {"legacy": False, "other": {"not": {}}}}))
    message = str(violation(schema, {"legacy": CANARY, "other": PI}))
    assert "/legacy, /other: not allowed" in message
    assert CANARY not in message and str(PI) not in message


def test_a_conditional_rule_says_why_it_applies() -> None:
    titled = compile_schema("p", fresh({"allOf": [{
        "title": "o-series models take no temperature",
        "if": {"properties": {"model": {"pattern": "^o[1-9]"}}, "required": ["model"]},
        "then": {"properties": {"temperature": False}},
    }]}))
    message = str(violation(titled, {"model": "o3", "temperature": PI}))
    assert "/temperature: not allowed (o-series models take no temperature)" in message
    titled.check("n", "p", "base", {"model": "gpt-4o", "temperature": PI})

    untitled = compile_schema("p", fresh({"if": {"required": ["a"]}, "then": {"required": ["b"]}}))
    assert "(root): required b (when the condition at (root)/if holds)" in str(violation(untitled, {"a": 1}))


def test_alternatives_say_what_each_branch_wanted() -> None:
    schema = compile_schema("p", fresh({"properties": {
        "choice": {"anyOf": [{"enum": ["none", "auto"]}, {"type": "object"}]},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": 2}]},
        "one": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    }}))
    message = str(violation(schema, {"choice": CANARY, "stop": ["a", "b", "c"], "one": 2}))
    assert '/choice: enum ["none","auto"] or type object' in message
    assert "/stop: maxItems 2" in message  # only one branch had the value's type: its rule is the one
    assert "/one: oneOf: more than one alternative matches" in message
    assert CANARY not in message


def test_several_schemas_on_one_key_are_all_enforced() -> None:
    temperature = compile_schema("openai.*", fresh({"properties": {"temperature": {"maximum": 2}}}))
    model = compile_schema("openai.params", fresh({"required": ["model"]}))
    objects = compile_schema("*", fresh({"type": "object"}))
    other = compile_schema("anthropic.*", fresh({"required": ["max_tokens"]}))  # does not match: not applied
    all_four = [temperature, model, objects, other]

    check_all(all_four, "acme/chat", "openai.params", "production", {"model": "gpt-4o", "temperature": 1})
    with pytest.raises(SchemaViolationError) as info:
        check_all(all_four, "acme/chat", "openai.params", "production", {"temperature": PI})
    message = str(info.value)
    assert "breaks schema 'openai.*' at /temperature: maximum 2" in message
    assert "breaks schema 'openai.params' at (root): required model" in message
    assert "anthropic" not in message and str(PI) not in message
    with pytest.raises(SchemaViolationError, match="breaks schema '\\*' at \\(root\\): type object"):
        check_all(all_four, "acme/chat", "openai.other", "production", [PI])
    check_all(all_four, "acme/chat", "anthropic.params", "production", {"max_tokens": 1})  # openai.* not applied
    check_all([], "acme/chat", "anything", "production", PI)


def test_check_applies_the_schema_whatever_the_key() -> None:
    schema = compile_schema("openai.*", fresh({"type": "string"}))
    with pytest.raises(SchemaViolationError, match=r"^n/other \[base\]: value breaks schema 'openai\.\*'"):
        schema.check("n", "other", "base", 1)


# --- compile once ----------------------------------------------------------------------------------


def test_a_document_is_compiled_once_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    from jsonschema import validators  # type: ignore[import-untyped]

    calls: list[object] = []
    original = validators.Draft202012Validator.check_schema.__func__

    def counting(cls: type, document: object, *args: object, **kwargs: object) -> None:
        calls.append(document)
        original(cls, document, *args, **kwargs)

    monkeypatch.setattr(validators.Draft202012Validator, "check_schema", classmethod(counting))
    marker = uuid.uuid4().hex
    first = {"$comment": marker, "type": "object", "properties": {"a": {"maximum": 1}}}
    same_in_another_order = {"properties": {"a": {"maximum": 1}}, "type": "object", "$comment": marker}
    a = compile_schema("a.*", first)
    b = compile_schema("b.*", same_in_another_order)
    assert len(calls) == 1
    assert (a.pattern, b.pattern) == ("a.*", "b.*")
    first["properties"]["a"]["maximum"] = 100  # the compiled schema keeps its own copy
    with pytest.raises(SchemaViolationError):
        a.check("n", "a.x", "base", {"a": 5})
    compile_schema("c.*", {**same_in_another_order, "$comment": marker + "-2"})
    assert len(calls) == 2


def test_a_checked_document_skips_the_metaschema_and_is_fast_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from jsonschema import validators

    calls: list[object] = []
    monkeypatch.setattr(validators.Draft202012Validator, "check_schema", classmethod(lambda cls, d: calls.append(d)))
    schema = compile_schema("p", fresh({"properties": {"t": {"maximum": 2}}}), checked=True)
    assert calls == []
    assert schema._compiled.fast is not None  # no FAST_AFTER warm-up for a stored schema
    schema.check("n", "p", "base", {"t": 1})
    with pytest.raises(SchemaViolationError, match="/t: maximum 2"):
        schema.check("n", "p", "base", {"t": PI})
    with pytest.raises(ValidationError, match="only local references"):  # still never fetched
        compile_schema("p", {"$ref": "https://example.com/s"}, checked=True)


def test_a_checked_document_that_is_broken_after_all_fails_cleanly() -> None:
    broken = compile_schema("p", fresh({"type": 5}), checked=True)
    with pytest.raises(ValidationError, match=r"^Schema p cannot be applied") as info:
        broken.check("n", "p", "base", "x")
    assert not isinstance(info.value, SchemaViolationError)
    unknown = compile_schema("p", fresh({"$schema": "https://example.com/meta"}), checked=True)
    with pytest.raises(ValidationError, match=r"cannot be applied: at /\$schema: unknown metaschema"):
        unknown.check("n", "p", "base", "x")


def test_a_one_shot_write_with_a_stored_schema_imports_jsonschema_only_to_refuse() -> None:
    code = """if True:
        import sys
        from llm_config.core.schemas import builtin_schema, compile_schema
        from llm_config.errors import SchemaViolationError
        schema = compile_schema("openai.*", builtin_schema("openai-chat"), checked=True)
        schema.check("n", "openai.p", "base", {"model": "gpt-4o", "temperature": 0.2})
        assert "jsonschema" not in sys.modules
        try:
            schema.check("n", "openai.p", "base", {"model": "gpt-4o", "temperature": 3})
        except SchemaViolationError as exc:
            assert "/temperature: maximum 2" in str(exc), exc
        else:
            raise SystemExit("not refused")
    """
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_the_module_imports_no_validator() -> None:
    code = ("import sys, llm_config.core.schemas; "
            "assert not {'jsonschema', 'fastjsonschema'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the fast path may only accept what jsonschema accepts -----------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0, 1, 0.0, 1.0, -2, 2, 2.5, 1024, 8193]),
    st.text(max_size=6), st.sampled_from(["o3", "o1-mini", "o4-mini", "gpt-4o", "json_schema", "enabled", "abc\n",
                                          "bedrock-2023-05-31", "text", "auto", "none"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


def _names(document: Any) -> list[str]:
    found = set()
    for _, node in schemas._schema_nodes(document):
        if isinstance(node.get("properties"), dict):
            found.update(node["properties"])
    return sorted(found)


EQUIVALENCE_DOCS = [
    *(builtin_schema(name) for name in BUILTIN_NAMES),
    {"properties": {"a": {"pattern": "^abc$"}, "b": {"format": "email"}, "c": {"const": 1}, "d": {"enum": [0, True]}}},
    {"properties": {"a": {"type": "integer"}, "b": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "number"}}},
]


@pytest.mark.parametrize("document", EQUIVALENCE_DOCS, ids=[*BUILTIN_NAMES, "edge-keywords", "refs"])
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_the_fast_path_never_accepts_what_jsonschema_refuses(document: Any, data: st.DataObject) -> None:
    compiled = compile_schema("p", document)._compiled  # the invariant lives below the public API
    fast = compiled.warm()
    assert fast is not None
    names = _names(document)
    value = data.draw(st.dictionaries(st.sampled_from(names), json_values, max_size=6) | json_values)
    try:
        fast(value)
    except Exception:
        return  # refused (or unsure): jsonschema decides, which is always right
    assert compiled.validator.is_valid(value), value


@pytest.mark.parametrize(
    "document",
    [
        {"prefixItems": [{"type": "string"}]},  # 2020-12 only
        {"$schema": "https://json-schema.org/draft/2019-09/schema", "items": [{"type": "string"}]},
        {"dependentRequired": {"a": ["b"]}},
        {"unevaluatedProperties": False},
        {"$ref": "#/$defs/a", "maximum": 1, "$defs": {"a": {}}},  # draft 7 ignores $ref's siblings
        {"$schema": "http://json-schema.org/draft-04/schema#"},
        {"properties": {"a": {"multipleOf": 0.1}}},
        {"uniqueItems": True},
    ],
)
def test_documents_the_fast_path_would_misread_use_jsonschema_only(document: Any) -> None:
    compiled = compile_schema("p", document)._compiled
    assert not compiled.eligible and compiled.warm() is None


def test_the_fast_path_comes_only_once_a_schema_is_hot() -> None:
    schema = compile_schema("p", fresh({"properties": {"t": {"maximum": 2}}}))
    compiled = schema._compiled
    for _ in range(schemas.FAST_AFTER - 1):
        schema.check("n", "p", "base", {"t": 1})
    assert compiled.fast is None  # a one-shot CLI write never pays for code generation
    schema.check("n", "p", "base", {"t": 1})
    assert compiled.fast is not None
    with pytest.raises(SchemaViolationError, match="/t: maximum 2"):  # refusals still come from jsonschema
        schema.check("n", "p", "base", {"t": PI})


# --- built-ins -------------------------------------------------------------------------------------


def test_builtin_schema_returns_a_fresh_copy_and_refuses_unknown_names() -> None:
    doc = builtin_schema("openai-chat")
    doc["properties"].clear()
    assert builtin_schema("openai-chat")["properties"]
    with pytest.raises(ValidationError, match=r"^Unknown built-in schema 'openai'") as info:
        builtin_schema("openai")
    for name in BUILTIN_NAMES:
        assert name in str(info.value)


def test_builtin_descriptions_are_one_line_each() -> None:
    descriptions = builtin_descriptions()
    assert tuple(descriptions) == BUILTIN_NAMES
    for text in descriptions.values():
        assert text and "\n" not in text and len(text) <= 120


# --- bounded checking: no schema pins a writer -----------------------------------------------------

_TIMED_CHECK = """if True:
    import json, sys, time
    from llm_config.core.schemas import compile_schema
    from llm_config.errors import SchemaViolationError
    document, value = json.loads(sys.stdin.read())
    stored = sys.argv[1] == "stored"
    schema = compile_schema("p", document, checked=stored)  # stored: the fast path at once, if eligible
    fast = schema._compiled.fast is not None
    start = time.perf_counter()
    try:
        schema.check("acme", "p", "base", value)
    except SchemaViolationError:
        pass
    print(json.dumps({"seconds": time.perf_counter() - start, "fast": fast}))
"""
EVIL = "a" * 40 + "!"  # ~2**40 steps for a backtracking engine against the patterns below


def timed_check(document: Any, value: Any, *, stored: bool = False) -> dict[str, Any]:
    """One check in a child process (a backtracking regex holds the GIL: no thread could be abandoned),
    killed after 30 s whatever happens; what the check itself took, measured in the child."""
    import json
    import os
    from pathlib import Path

    import llm_config

    source = str(Path(llm_config.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", _TIMED_CHECK, "stored" if stored else "set"]
    try:
        done = subprocess.run(args, input=json.dumps([document, value]), capture_output=True, text=True, env=env,
                              timeout=30, check=False)
    except subprocess.TimeoutExpired:  # (subprocess.run kills the child)
        pytest.fail("the check was still running after 30 s")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


BACKTRACKING_CASES = {
    "pattern": ({"type": "string", "pattern": "^(a+)+$"}, EVIL),
    "propertyNames": ({"propertyNames": {"pattern": "^(a+)+$"}}, {EVIL: 1}),
    "patternProperties": ({"patternProperties": {"^(a|aa)+$": {"type": "integer"}}}, {EVIL: "x"}),
    "additionalProperties": ({"patternProperties": {"^(a|aa)+$": {}}, "additionalProperties": False}, {EVIL: 1}),
    "unevaluatedProperties": ({"allOf": [{"patternProperties": {"^(a|aa)+$": {}}}], "unevaluatedProperties": False},
                              {EVIL: 1}),
    "draft-2019-09": ({"$schema": "https://json-schema.org/draft/2019-09/schema", "unevaluatedProperties": False,
                       "allOf": [{"patternProperties": {"^(a|aa)+$": {}}}]}, {EVIL: 1}),
    "draft-04": ({"$schema": "http://json-schema.org/draft-04/schema#", "additionalProperties": False,
                  "patternProperties": {"^(a|aa)+$": {}}, "properties": {"p": {"pattern": "^(a+)+$"}}},
                 {EVIL: 1, "p": EVIL}),
    "uniqueItems": ({"uniqueItems": True}, [{"n": i} for i in range(20_000)]),  # was pairwise: ~15 minutes
}


@pytest.mark.parametrize("case", sorted(BACKTRACKING_CASES))
def test_a_catastrophic_regex_or_rule_checks_an_adversarial_value_in_well_under_a_second(case: str) -> None:
    document, value = BACKTRACKING_CASES[case]
    assert timed_check(document, value)["seconds"] < 1.0


@pytest.mark.parametrize("case", ["pattern", "propertyNames"])
def test_the_fast_path_matches_patterns_on_re2_too(case: str) -> None:
    document, value = BACKTRACKING_CASES[case]
    result = timed_check(document, value, stored=True)
    assert result["fast"] is True  # `pattern` keeps the fast path: its regexes are RE2 ones
    assert result["seconds"] < 1.0


def test_a_schema_pattern_is_an_unanchored_search_with_re2_semantics() -> None:
    schema = compile_schema("p", fresh({"properties": {"a": {"pattern": "b"}, "b": {"pattern": "^abc$"}}}))
    fast = compile_schema("p", fresh({"properties": {"a": {"pattern": "b"}, "b": {"pattern": "^abc$"}}}),
                          checked=True)
    for compiled in (schema, fast):
        compiled.check("n", "p", "base", {"a": "abc", "b": "abc"})  # `b` anywhere in "abc"
        with pytest.raises(SchemaViolationError, match="/b: pattern"):
            compiled.check("n", "p", "base", {"b": "abc\n"})  # `$` is the end of the text (ECMA-262, RE2)
        with pytest.raises(SchemaViolationError, match="/a: pattern b"):
            compiled.check("n", "p", "base", {"a": "xyz"})


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"pattern": "^(?=.*[0-9]).{8,}$"}, "/pattern"),
        ({"properties": {"pw": {"pattern": "(?<!x)y"}}}, "/properties/pw/pattern"),
        ({"propertyNames": {"pattern": "(a)\\1"}}, "/propertyNames/pattern"),
        ({"$defs": {"unused": {"pattern": "a(?!b)"}}}, "/$defs/unused/pattern"),  # walked, even if never applied
        ({"patternProperties": {"^(?=x)": {}}}, "/patternProperties/^(?=x)"),
        ({"properties": {"default": {"pattern": "a(?=b)"}}}, "/properties/default/pattern"),  # a name, not data
    ],
)
def test_a_pattern_re2_cannot_compile_is_refused_when_the_schema_is_set(document: Any, where: str) -> None:
    for checked in (False, True):  # a stored one too (set before patterns were checked): refused, not run
        with pytest.raises(ValidationError) as info:
            compile_schema("openai.*", fresh(document), checked=checked)
        assert str(info.value) == (f"Invalid JSON Schema for openai.*: at {where}: "
                                   "pattern not supported (RE2 syntax: no lookaround or backreferences)")


def test_a_refused_pattern_is_never_quoted_unbounded() -> None:
    long_pattern = "(a)\\1" + "x" * 5000
    with pytest.raises(ValidationError) as info:
        compile_schema("p", {"patternProperties": {long_pattern: {}}})
    message = str(info.value)
    assert "pattern not supported" in message and len(message) < 250


def test_a_pattern_too_large_for_the_budget_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"at /pattern: pattern too complex \(its RE2 program exceeds 10000"):
        compile_schema("p", {"pattern": "^[^\\s]{1,1000}$"})  # fine in Python, ~11,000 RE2 instructions


def fanout(levels: int, *, under: str | None = None) -> dict[str, Any]:
    """`$defs` each referencing the next twice: 2**levels schema nodes per value node once expanded."""
    defs: dict[str, Any] = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(levels)}
    defs[f"d{levels}"] = {"type": "string"}
    root: dict[str, Any] = {"$ref": "#/$defs/d0"} if under is None else {"properties": {under: {"$ref": "#/$defs/d0"}}}
    return {"$defs": defs, **root}


@pytest.mark.parametrize("checked", [False, True])
def test_a_reference_fan_out_is_refused_when_the_schema_is_set(checked: bool) -> None:
    import time

    start = time.perf_counter()
    for document in (fanout(26), fanout(26, under="deep"), fanout(14)):
        with pytest.raises(ValidationError) as info:
            compile_schema("prompt.*", fresh(document), checked=checked)
        assert str(info.value) == "Invalid JSON Schema for prompt.*: references expand to more than 10000 schema nodes"
    assert time.perf_counter() - start < 5  # computed once per target, never expanded
    compile_schema("prompt.*", fresh(fanout(8)), checked=checked).check("n", "prompt.x", "base", "x")  # 256: fine


def test_a_recursive_reference_that_doubles_per_level_is_refused() -> None:
    # counted once, the cycle looks small; a value 32 levels deep would meet it 2**32 times
    doubling = {"$defs": {"n": {"type": "object", "properties": {"a": {"allOf": [{"$ref": "#/$defs/n"}] * 2}}}},
                "$ref": "#/$defs/n"}
    with pytest.raises(ValidationError, match="references expand to more than 10000 schema nodes"):
        compile_schema("p", doubling)


def test_nested_unevaluated_properties_are_costed_as_re_evaluations() -> None:
    def nested(levels: int) -> dict[str, Any]:
        document: dict[str, Any] = {"properties": {"x": {"type": "integer"}}}
        for _ in range(levels):
            document = {"allOf": [document], "unevaluatedProperties": False}
        return document

    compile_schema("p", fresh(nested(4))).check("n", "p", "base", {"x": 1})
    with pytest.raises(ValidationError, match="references expand to more than 10000"):
        compile_schema("p", nested(12))  # ~2.8x per level in jsonschema: 12 levels took 2 s, 14 took 16 s


TREE = {"type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}}}
RECURSIVE_DOCS = {
    "tree": (TREE, {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]},
             {"name": "a", "children": [{"name": "b", "children": [{}]}]}, "/children/0/children/0: required name"),
    "binary": ({"type": "object", "properties": {"v": {"type": "integer"}, "left": {"$ref": "#"},
                                                 "right": {"$ref": "#"}}},
               {"v": 1, "left": {"right": {"v": 2}}}, {"left": {"left": {"v": "x"}}}, "/left/left/v: type integer"),
    "filter": ({"$defs": {"f": {"anyOf": [
                    {"type": "object", "required": ["and"], "properties": {"and": {"items": {"$ref": "#/$defs/f"}}}},
                    {"type": "object", "required": ["not"], "properties": {"not": {"$ref": "#/$defs/f"}}},
                    {"type": "object", "required": ["eq"], "properties": {"eq": {"type": "string"}}}]}},
                "$ref": "#/$defs/f"},
               {"and": [{"eq": "a"}, {"not": {"eq": "b"}}]}, {"and": [{"not": {"eq": 5}}]}, "/and/0"),
    "json-value": ({"$defs": {"j": {"anyOf": [{"type": ["string", "number", "boolean", "null"]},
                                              {"type": "array", "items": {"$ref": "#/$defs/j"}},
                                              {"type": "object", "additionalProperties": {"$ref": "#/$defs/j"}}]}},
                    "$ref": "#/$defs/j", "type": "object"},
                   {"a": [1, {"b": None}]}, [1], "(root): type object"),
    "dynamic": ({"$dynamicAnchor": "node", "type": "object",
                 "properties": {"kids": {"type": "array", "items": {"$dynamicRef": "#node"}}}},
                {"kids": [{"kids": []}]}, {"kids": [{"kids": 1}]}, "/kids/0/kids: type array"),
}


@pytest.mark.parametrize("name", sorted(RECURSIVE_DOCS))
def test_a_legitimately_recursive_schema_still_works(name: str) -> None:
    document, valid, invalid, problem = RECURSIVE_DOCS[name]
    schema = compile_schema("p", fresh(document))
    deep = valid
    for _ in range(12):  # as deep as a value may go, nearly
        deep = {"name": "n", "children": [deep]} if name == "tree" else deep
    schema.check("n", "p", "base", deep)
    with pytest.raises(SchemaViolationError) as info:
        schema.check("n", "p", "base", invalid)
    assert problem in str(info.value)


def test_a_reference_loop_on_the_same_value_fails_cleanly() -> None:
    loop = compile_schema("p", fresh({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}))
    with pytest.raises(ValidationError, match=r"^Schema p cannot be applied: its references loop back") as info:
        loop.check("n", "p", "base", 1)
    assert not isinstance(info.value, SchemaViolationError)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_builtin_is_within_the_budget_and_keeps_its_fast_path(name: str) -> None:
    cost = schemas._Cost(builtin_schema(name))
    cost.check()
    assert cost.nodes  # walked
    assert compile_schema("p", builtin_schema(name))._compiled.warm() is not None
    assert compile_schema("p", builtin_schema(name), checked=True)._compiled.fast is not None


@pytest.mark.parametrize(
    "document",
    [
        {"patternProperties": {"^x": {"type": "integer"}}},  # fastjsonschema would run it on `re`
        {"properties": {"a": {"patternProperties": {"^x": {}}}}},
        {"enum": list(range(65))},  # a linear scan per check there: jsonschema hashes it
    ],
)
def test_documents_whose_fast_path_would_be_unbounded_use_jsonschema_only(document: Any) -> None:
    compiled = compile_schema("p", fresh(document))._compiled
    assert not compiled.eligible and compiled.warm() is None


@settings(max_examples=300, deadline=None)
@given(items=st.lists(json_values, max_size=8))
def test_unique_items_in_linear_time_agrees_with_jsonschema(items: list[Any]) -> None:
    from jsonschema._utils import uniq

    assert schemas._uniq(items) is bool(uniq(items))


ENUM = [0, 1, 2.5, True, False, None, "a", "b", "1", [1], [True], {"a": 1}, {"a": [1.0]}, 1024, -2, "", "abc\n"]


@settings(max_examples=300, deadline=None)
@given(value=json_values | st.sampled_from(ENUM))
def test_a_long_enum_hashed_agrees_with_jsonschema(value: Any) -> None:
    from jsonschema import validators

    assert len(ENUM) >= schemas._ENUM_HASHED_FROM
    ours = schemas._bounded_class(validators.Draft202012Validator)({"enum": ENUM})
    theirs = validators.Draft202012Validator({"enum": ENUM})
    assert ours.is_valid(value) is theirs.is_valid(value)


def test_a_refusal_message_stays_short_whatever_the_value() -> None:
    schema = compile_schema("p", fresh({"items": {"enum": list(range(20_000))}}))
    schema.check("n", "p", "base", list(range(20_000)))
    message = str(violation(schema, list(range(20_000, 25_000))))
    assert "/0, /1, /2, /3, /4, /5, /6, /7, /8, /9 and more: enum [0,1,2," in message  # stopped at 1,000
    assert len(message) < 400
    few = str(violation(schema, [-1] * 12))
    assert "/9 and 2 more: enum" in few


@settings(max_examples=300, deadline=None)
@given(pattern=st.sampled_from(["b", "^abc$", "^[0-9]+$", "é+", "^$", "a|", "[^a]", "^o[1-9]", "\\d"]),
       text=st.text(max_size=8) | st.sampled_from(["abc", "abc\n", "", "0", "o3", "éé", "١"]))
def test_the_boolean_re2_search_agrees_with_google_re2(pattern: str, text: str) -> None:
    import re2  # type: ignore[import-untyped,unused-ignore]

    assert schemas._re2(pattern).search(text) is (re2.search(pattern, text) is not None)


@pytest.mark.parametrize("draft", ["draft-03", "draft-04", "draft-06", "draft-07", "2019-09", "2020-12"])
def test_no_keyword_of_any_draft_can_reach_pythons_re(draft: str) -> None:
    import re
    import types

    from jsonschema import validators

    base = {"draft-03": validators.Draft3Validator, "draft-04": validators.Draft4Validator,
            "draft-06": validators.Draft6Validator, "draft-07": validators.Draft7Validator,
            "2019-09": validators.Draft201909Validator, "2020-12": validators.Draft202012Validator}[draft]
    pending = list(schemas._bounded_class(base).VALIDATORS.values())
    seen: set[int] = set()
    while pending:  # every keyword function, and every jsonschema function it calls by name
        function = pending.pop()
        if (id(function) in seen or not isinstance(function, types.FunctionType)
                or not function.__module__.startswith("jsonschema")):
            continue
        seen.add(id(function))
        assert function.__globals__.get("re") is not re, function.__qualname__
        pending.extend(function.__globals__.get(name) for name in schemas._global_names(function.__code__))
    assert len(seen) > 20
