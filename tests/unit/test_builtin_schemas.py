"""The built-in provider schemas (SPEC §6), checked against examples from each provider's SDK docstrings and
docs, and against the SDKs' own typed request parameters (so a name we check is a name the SDK sends)."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from llm_config.core import schemas
from llm_config.core.schemas import BUILTIN_NAMES, builtin_schema, compile_schema
from llm_config.errors import SchemaViolationError

BUILTIN_DIR = Path(schemas.__file__).parent / "builtin_schemas"
SDK_VERSIONS = {pkg: importlib.metadata.version(pkg) for pkg in
                ("openai", "anthropic", "google-genai", "mistralai", "ollama")}


def check(name: str, value: Any) -> None:
    compile_schema("llm.params", builtin_schema(name)).check("acme/chat", "llm.params", "production", value)


def refused(name: str, value: Any) -> str:
    with pytest.raises(SchemaViolationError) as info:
        check(name, value)
    return str(info.value)


# --- examples ----------------------------------------------------------------------------------------
# Values come from the SDK docstrings (openai/types/chat/completion_create_params.py,
# anthropic/types/message_create_params.py and thinking_config_enabled_param.py, google/genai/types.py,
# mistralai/models/chatcompletionrequest.py, ollama/_types.py), Mistral's openapi.yaml examples
# (mistralai/platform-docs-public: mistral-small-latest, max_tokens 512, random_seed 1337) and the Amazon
# Bedrock parameter pages cited in each schema's description.

OPENAI_VALID: list[dict[str, Any]] = [
    {"model": "gpt-4o", "temperature": 1.5, "max_tokens": 512},  # 0..2: "between 0 and 2"
    {"model": "gpt-4o", "temperature": 0.2, "top_p": 0.1, "n": 1, "stop": ["\n", "END", "###", "Q:"],
     "frequency_penalty": -2.0, "presence_penalty": 2.0, "seed": 42, "logprobs": True, "top_logprobs": 20,
     "logit_bias": {"50256": -100}, "response_format": {"type": "json_object"}, "modalities": ["text", "audio"],
     "metadata": {"team": "search"}, "service_tier": "flex", "verbosity": "low", "tool_choice": "required"},
    {"model": "gpt-4o", "stop": "\n", "tool_choice": {"type": "function", "function": {"name": "my_function"}}},
    {"model": "gpt-4o", "response_format": {"type": "json_schema",
                                            "json_schema": {"name": "answer_v1", "schema": {}, "strict": True}}},
    {"model": "o3", "max_completion_tokens": 2048, "reasoning_effort": "high"},  # "like gpt-4o or o3"
    {"model": "o1-mini", "max_completion_tokens": 500},
    {"model": "o3-mini", "stop": ["END"], "max_completion_tokens": 500},  # stop is refused for o3, o4-mini
    {"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 100},  # not an o-series model
]
OPENAI_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"model": "gpt-4o", "temperature": 2.5}, "/temperature: maximum 2"),
    ({"model": "gpt-4o", "temperature": -0.1}, "/temperature: minimum 0"),
    ({"model": "gpt-4o", "temperature": "hot"}, "/temperature: type number or null"),
    ({"model": "gpt-4o", "frequency_penalty": 2.5}, "/frequency_penalty: maximum 2"),
    ({"model": "gpt-4o", "presence_penalty": -3}, "/presence_penalty: minimum -2"),
    ({"model": "gpt-4o", "stop": ["a", "b", "c", "d", "e"]}, "/stop: maxItems 4"),
    ({"model": "gpt-4o", "logprobs": True, "top_logprobs": 21}, "/top_logprobs: maximum 20"),
    ({"model": "gpt-4o", "top_logprobs": 5}, "(root): required logprobs (top_logprobs needs logprobs: true)"),
    ({"model": "gpt-4o", "top_logprobs": 5, "logprobs": False}, "/logprobs: const true"),
    ({"model": "gpt-4o", "logit_bias": {"50256": 101}}, "/logit_bias/*: maximum 100"),
    ({"model": "o1", "temperature": 0.2, "max_completion_tokens": 100}, "/temperature: not allowed (o-series"),
    ({"model": "o3", "top_p": 0.9}, "/top_p: not allowed (o-series"),
    ({"model": "o4-mini", "max_tokens": 100}, "/max_tokens: not allowed (o-series"),
    ({"model": "o3", "stop": ["END"]}, "/stop: not allowed (o3 and o4-mini do not support stop sequences)"),
    ({"model": "o4-mini-2025-04-16", "stop": "END"}, "/stop: not allowed"),
    ({"model": "gpt-4o", "response_format": {"type": "json_schema"}}, "/response_format: required json_schema"),
    ({"model": "gpt-4o", "response_format": {"type": "json_schema", "json_schema": {"name": "bad name!"}}},
     "/response_format/json_schema/name: pattern"),
    ({"model": "gpt-4o", "reasoning_effort": "extreme"}, "/reasoning_effort: enum"),
    ({"model": "gpt-4o", "service_tier": "gold"}, "/service_tier: enum"),
    ({"model": "gpt-4o", "metadata": {f"k{i}": "v" for i in range(17)}}, "/metadata: maxProperties 16"),
    ({"model": "gpt-4o", "metadata": {"k": "v" * 513}}, "/metadata/*: maxLength 512"),
    ({"model": "gpt-4o", "safety_identifier": "x" * 65}, "/safety_identifier: maxLength 64"),
    ({"model": "gpt-4o", "n": 0}, "/n: minimum 1"),
    ({"model": ""}, "/model: minLength 1"),
]


@pytest.mark.parametrize("name", ["openai-chat", "azure-openai-chat"])
@pytest.mark.parametrize("value", OPENAI_VALID)
def test_openai_valid(name: str, value: dict[str, Any]) -> None:
    check(name, value)


@pytest.mark.parametrize("name", ["openai-chat", "azure-openai-chat"])
@pytest.mark.parametrize(("value", "rule"), OPENAI_INVALID)
def test_openai_invalid(name: str, value: dict[str, Any], rule: str) -> None:
    assert rule in refused(name, value)


def test_o_series_refusals_read_well() -> None:
    message = refused("openai-chat", {"model": "o1", "temperature": 0.31415, "top_p": 0.27, "max_tokens": 1234})
    assert message == (
        "acme/chat/llm.params [production]: value breaks schema 'llm.params' at /max_tokens, /temperature, /top_p: "
        "not allowed (o-series reasoning models take max_completion_tokens, not temperature, top_p or max_tokens)"
    )


ANTHROPIC_VALID: list[dict[str, Any]] = [
    {"model": "claude-sonnet-4-5", "max_tokens": 1024, "temperature": 0.0},  # "Ranges from 0.0 to 1.0"
    {"model": "claude-sonnet-4-5", "max_tokens": 1024, "temperature": 1.0},
    {"max_tokens": 0},  # "Set to 0 to populate the prompt cache without generating a response"
    {"max_tokens": 16000, "thinking": {"type": "enabled", "budget_tokens": 10000}},  # "Must be ≥1024"
    {"max_tokens": 1024, "thinking": {"type": "adaptive", "display": "omitted"}},
    {"max_tokens": 1024, "thinking": {"type": "disabled"}},
    {"max_tokens": 1024, "top_k": 40, "top_p": 0.9, "stop_sequences": ["\n\nHuman:"], "system": "Be brief.",
     "metadata": {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"}, "service_tier": "standard_only",
     "tool_choice": {"type": "any"}, "cache_control": {"type": "ephemeral", "ttl": "1h"},
     "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}}},
]
ANTHROPIC_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"model": "claude-sonnet-4-5", "max_tokens": 1024, "temperature": 1.5}, "/temperature: maximum 1"),
    ({"model": "claude-sonnet-4-5", "temperature": 0.5}, "(root): required max_tokens"),
    ({"max_tokens": -1}, "/max_tokens: minimum 0"),
    ({"max_tokens": 1.5}, "/max_tokens: type integer"),
    ({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1000}},
     "/thinking/budget_tokens: minimum 1024"),
    ({"max_tokens": 4096, "thinking": {"type": "enabled"}}, "/thinking: required budget_tokens"),
    ({"max_tokens": 4096, "service_tier": "priority"}, "/service_tier: enum"),
    ({"max_tokens": 4096, "tool_choice": {"type": "required"}}, "/tool_choice/type: enum"),
    ({"max_tokens": 4096, "cache_control": {"type": "ephemeral", "ttl": "2h"}}, "/cache_control/ttl: enum"),
]


@pytest.mark.parametrize("value", ANTHROPIC_VALID)
def test_anthropic_valid(value: dict[str, Any]) -> None:
    check("anthropic-messages", value)


@pytest.mark.parametrize(("value", "rule"), ANTHROPIC_INVALID)
def test_anthropic_invalid(value: dict[str, Any], rule: str) -> None:
    assert rule in refused("anthropic-messages", value)


def test_temperature_ranges_differ_by_provider() -> None:
    check("openai-chat", {"model": "gpt-4o", "temperature": 1.5})
    assert "/temperature: maximum 1" in refused("anthropic-messages", {"max_tokens": 10, "temperature": 1.5})
    assert "/temperature: maximum 1" in refused("bedrock-anthropic", {"max_tokens": 10, "temperature": 1.5})


BEDROCK_ANTHROPIC_VALID: list[dict[str, Any]] = [
    {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1024, "temperature": 0.5, "top_k": 250},
    {"model": "anthropic.claude-3-5-sonnet-20240620-v1:0", "max_tokens": 512},  # AnthropicBedrock adds the version
]
BEDROCK_ANTHROPIC_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"anthropic_version": "2023-06-01", "max_tokens": 10}, '/anthropic_version: const "bedrock-2023-05-31"'),
    ({"anthropic_version": "bedrock-2023-05-31"}, "(root): required max_tokens"),
    ({"max_tokens": 10, "temperature": 1.2}, "/temperature: maximum 1"),
]


@pytest.mark.parametrize("value", BEDROCK_ANTHROPIC_VALID)
def test_bedrock_anthropic_valid(value: dict[str, Any]) -> None:
    check("bedrock-anthropic", value)


@pytest.mark.parametrize(("value", "rule"), BEDROCK_ANTHROPIC_INVALID)
def test_bedrock_anthropic_invalid(value: dict[str, Any], rule: str) -> None:
    assert rule in refused("bedrock-anthropic", value)


GEMINI_VALID: list[dict[str, Any]] = [
    {"model": "gemini-2.5-flash", "temperature": 0.9, "top_p": 0.95, "top_k": 40, "max_output_tokens": 8192,
     "candidate_count": 1, "stop_sequences": ["END"], "seed": 7, "presence_penalty": 0.5},
    {"model": "gemini-2.5-flash", "maxOutputTokens": 1024, "topP": 0.5, "responseMimeType": "application/json",
     "responseSchema": {"type": "OBJECT"}},  # the SDK takes its camelCase aliases too
    {"thinking_config": {"thinking_budget": 1024, "include_thoughts": True},
     "media_resolution": "MEDIA_RESOLUTION_LOW"},
    {"response_json_schema": {"type": "object"}, "response_mime_type": "application/json"},
    {"safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}]},
]
GEMINI_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"temperature": -1}, "/temperature: minimum 0"),
    ({"candidate_count": 9}, "/candidate_count: maximum 8"),  # "must be between [1, 8]"
    ({"stop_sequences": ["1", "2", "3", "4", "5", "6"]}, "/stop_sequences: maxItems 5"),  # "up to 5"
    ({"model": "gemini-2.5-flash", "max_tokens": 100}, "(root): additionalProperties false"),  # an OpenAI name
    ({"topP": 1.5}, "/topP: maximum 1"),
    ({"response_schema": {"type": "OBJECT"}}, "(root): required response_mime_type or required responseMimeType"),
    ({"response_json_schema": {}, "response_schema": {}, "response_mime_type": "application/json"},
     "/response_schema: not allowed (response_json_schema needs response_mime_type and no response_schema)"),
    ({"thinking_config": {"budget": 5}}, "/thinking_config: additionalProperties false"),
    ({"media_resolution": "HIGH"}, "/media_resolution: enum"),
]


@pytest.mark.parametrize("value", GEMINI_VALID)
def test_gemini_valid_and_accepted_by_the_sdk(value: dict[str, Any]) -> None:
    from google.genai import types

    check("gemini-generate", value)
    types.GenerateContentConfig(**{k: v for k, v in value.items() if k != "model"})


@pytest.mark.parametrize(("value", "rule"), GEMINI_INVALID)
def test_gemini_invalid(value: dict[str, Any], rule: str) -> None:
    assert rule in refused("gemini-generate", value)


def test_gemini_refuses_what_the_sdk_refuses() -> None:
    import pydantic
    from google.genai import types

    with pytest.raises(pydantic.ValidationError):  # extra="forbid": the schema is closed for the same reason
        types.GenerateContentConfig(max_tokens=100)


BEDROCK_LLAMA_VALID: list[dict[str, Any]] = [{"temperature": 0.5, "top_p": 0.9, "max_gen_len": 512},
                                             {"model": "meta.llama3-70b-instruct-v1:0", "max_gen_len": 2048}]
BEDROCK_LLAMA_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"max_gen_len": 4096}, "/max_gen_len: maximum 2048"),
    ({"max_gen_len": 0}, "/max_gen_len: minimum 1"),
    ({"temperature": 1.5}, "/temperature: maximum 1"),
]
BEDROCK_TITAN_VALID: list[dict[str, Any]] = [
    {"textGenerationConfig": {"temperature": 0.7, "topP": 0.9, "maxTokenCount": 512, "stopSequences": ["|"]}},
    {"model": "amazon.titan-text-express-v1", "textGenerationConfig": {"maxTokenCount": 8192}},
]
BEDROCK_TITAN_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"textGenerationConfig": {"temperature": 1.5}}, "/textGenerationConfig/temperature: maximum 1"),
    ({"textGenerationConfig": {"maxTokenCount": 10000}}, "/textGenerationConfig/maxTokenCount: maximum 8192"),
    ({"textGenerationConfig": {"top_p": 0.9}}, "/textGenerationConfig: additionalProperties false"),
]


@pytest.mark.parametrize(("name", "value"), [*(("bedrock-llama", v) for v in BEDROCK_LLAMA_VALID),
                                             *(("bedrock-titan", v) for v in BEDROCK_TITAN_VALID)])
def test_bedrock_families_valid(name: str, value: dict[str, Any]) -> None:
    check(name, value)


@pytest.mark.parametrize(("name", "value", "rule"), [*(("bedrock-llama", *c) for c in BEDROCK_LLAMA_INVALID),
                                                     *(("bedrock-titan", *c) for c in BEDROCK_TITAN_INVALID)])
def test_bedrock_families_invalid(name: str, value: dict[str, Any], rule: str) -> None:
    assert rule in refused(name, value)


MISTRAL_VALID: list[dict[str, Any]] = [
    {"model": "mistral-small-latest", "temperature": 0.7, "top_p": 1, "max_tokens": 512, "random_seed": 1337,
     "safe_prompt": False, "response_format": {"type": "json_object"}, "tool_choice": "any", "stop": ["\n"]},
    {"model": "mistral-large-latest", "temperature": 0.2, "n": 2, "prompt_mode": "reasoning", "stop": "END",
     "presence_penalty": 0.1, "frequency_penalty": 0.1, "parallel_tool_calls": True},
]
MISTRAL_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"model": "mistral-small-latest", "temperature": 1.5}, "/temperature: maximum 1"),
    ({"model": "mistral-small-latest", "top_p": 1.2}, "/top_p: maximum 1"),
    ({"model": "mistral-small-latest", "max_tokens": -1}, "/max_tokens: minimum 0"),
    ({"model": "mistral-small-latest", "tool_choice": "sometimes"}, "/tool_choice: enum"),
    ({"model": "mistral-small-latest", "response_format": {"type": "xml"}}, "/response_format/type: enum"),
]


@pytest.mark.parametrize("value", MISTRAL_VALID)
def test_mistral_valid_and_accepted_by_the_sdk(value: dict[str, Any]) -> None:
    from mistralai.models import ChatCompletionRequest

    check("mistral-chat", value)
    ChatCompletionRequest(messages=[], **value)


@pytest.mark.parametrize(("value", "rule"), MISTRAL_INVALID)
def test_mistral_invalid(value: dict[str, Any], rule: str) -> None:
    assert rule in refused("mistral-chat", value)


OLLAMA_VALID: list[dict[str, Any]] = [
    {"model": "llama3.2", "options": {"temperature": 0.8, "num_ctx": 4096, "top_k": 40, "top_p": 0.9, "seed": 42,
                                      "stop": ["<|eot_id|>"], "num_predict": 256}, "keep_alive": "5m",
     "format": "json", "think": True},
    {"model": "llama3.2", "format": {"type": "object"}, "keep_alive": 300, "top_logprobs": 20, "logprobs": True},
    {"model": "gpt-oss", "think": "high", "options": {"min_p": 0.05}},  # options stays open: the server knows more
]
OLLAMA_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"model": "llama3.2", "temperature": 0.8}, "(root): additionalProperties false"),  # belongs in options
    ({"model": ""}, "/model: minLength 1"),
    ({"model": "llama3.2", "top_logprobs": 21}, "/top_logprobs: maximum 20"),  # "(0-20)"
    ({"model": "llama3.2", "format": "yaml"}, '/format: enum ["","json",null] or type object'),
    ({"model": "llama3.2", "options": {"num_ctx": "big"}}, "/options/num_ctx: type integer or null"),
]


@pytest.mark.parametrize("value", OLLAMA_VALID)
def test_ollama_valid_and_accepted_by_the_sdk(value: dict[str, Any]) -> None:
    from ollama import Options
    from ollama._types import ChatRequest  # the request model chat() builds (not re-exported)

    check("ollama-chat", value)
    ChatRequest(**value)
    Options(**value.get("options", {}))


@pytest.mark.parametrize(("value", "rule"), OLLAMA_INVALID)
def test_ollama_invalid(value: dict[str, Any], rule: str) -> None:
    assert rule in refused("ollama-chat", value)


# --- every property we name is a parameter the SDK sends ----------------------------------------------


def typed_dict_keys(cls: type) -> set[str]:
    return set(typing.get_type_hints(cls, include_extras=False))


def pydantic_names(cls: Any) -> set[str]:
    """Field names and their aliases (the SDKs accept either)."""
    return {n for name, field in cls.model_fields.items() for n in (name, field.alias) if n}


def literal_values(hint: Any) -> set[Any]:
    """Every Literal value inside a (possibly Optional / Union) type hint; None for NoneType."""
    if hint is type(None):
        return {None}
    if typing.get_origin(hint) is typing.Literal:
        return set(typing.get_args(hint))
    return set().union(*(literal_values(arg) for arg in typing.get_args(hint))) if typing.get_args(hint) else set()


def props(name: str, *path: str) -> dict[str, Any]:
    node = builtin_schema(name)
    for part in path:
        node = node["properties"][part]
    return dict(node["properties"])


def sdk_params() -> dict[str, set[str]]:
    from anthropic.types.message_create_params import MessageCreateParamsBase
    from google.genai import types as genai
    from mistralai.models import ChatCompletionRequest
    from ollama import Client
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    openai_params = typed_dict_keys(CompletionCreateParamsBase)
    anthropic_params = typed_dict_keys(MessageCreateParamsBase)
    return {
        "openai-chat": openai_params,
        "azure-openai-chat": openai_params,  # AzureOpenAI sends the same request, model = deployment
        "anthropic-messages": anthropic_params,
        "bedrock-anthropic": anthropic_params | {"anthropic_version"},  # set by anthropic/lib/bedrock
        "gemini-generate": pydantic_names(genai.GenerateContentConfig) | {"model"},  # model: generate_content's
        "mistral-chat": pydantic_names(ChatCompletionRequest),
        "ollama-chat": set(inspect.signature(Client.chat).parameters) - {"self"},
    }


# bedrock-llama and bedrock-titan are exempt: no SDK types those InvokeModel bodies (boto3 sends bytes, and
# is not installed here); their parameters come from the Amazon Bedrock pages their descriptions cite.
SDK_CHECKED = ("openai-chat", "azure-openai-chat", "anthropic-messages", "bedrock-anthropic", "gemini-generate",
               "mistral-chat", "ollama-chat")


@pytest.mark.parametrize("name", SDK_CHECKED)
def test_every_named_property_is_an_sdk_parameter(name: str) -> None:
    named = set(props(name))
    unknown = named - sdk_params()[name]
    assert not unknown, f"{name} names parameters its SDK does not send: {sorted(unknown)}"


@pytest.mark.parametrize("name", ["gemini-generate", "ollama-chat"])
def test_closed_schemas_name_all_of_the_sdks_parameters(name: str) -> None:
    # closed (additionalProperties false) only because the SDK's own set is closed: then it must be complete
    assert builtin_schema(name)["additionalProperties"] is False
    assert set(props(name)) == sdk_params()[name]


def test_nested_objects_match_the_sdk() -> None:
    from anthropic.types import (
        CacheControlEphemeralParam,
        MetadataParam,
        OutputConfigParam,
        ThinkingConfigAdaptiveParam,
        ThinkingConfigDisabledParam,
        ThinkingConfigEnabledParam,
    )
    from google.genai import types as genai
    from ollama import Options
    from openai.types.shared_params.response_format_json_schema import JSONSchema

    thinking = set().union(*(typed_dict_keys(c) for c in (
        ThinkingConfigEnabledParam, ThinkingConfigDisabledParam, ThinkingConfigAdaptiveParam)))
    for name in ("anthropic-messages", "bedrock-anthropic"):
        assert set(props(name, "thinking")) <= thinking
    assert set(props("anthropic-messages", "metadata")) <= typed_dict_keys(MetadataParam)
    assert set(props("anthropic-messages", "output_config")) <= typed_dict_keys(OutputConfigParam)
    assert set(props("anthropic-messages", "cache_control")) <= typed_dict_keys(CacheControlEphemeralParam)
    assert set(props("openai-chat", "response_format", "json_schema")) <= typed_dict_keys(JSONSchema)
    assert set(props("ollama-chat", "options")) == set(Options.model_fields)
    assert set(props("gemini-generate", "thinking_config")) == pydantic_names(genai.ThinkingConfig)


def test_enums_match_the_sdks_literals() -> None:
    from anthropic.types import OutputConfigParam
    from anthropic.types.message_create_params import MessageCreateParamsBase
    from google.genai import types as genai
    from mistralai.models import ResponseFormats, ToolChoiceEnum
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    openai_hints = typing.get_type_hints(CompletionCreateParamsBase)
    openai_props = props("openai-chat")
    for param in ("reasoning_effort", "verbosity", "service_tier", "prompt_cache_retention"):
        assert set(openai_props[param]["enum"]) == literal_values(openai_hints[param]), param
    assert set(openai_props["modalities"]["items"]["enum"]) == literal_values(openai_hints["modalities"]) - {None}

    anthropic_hints = typing.get_type_hints(MessageCreateParamsBase)
    assert set(props("anthropic-messages")["service_tier"]["enum"]) == literal_values(anthropic_hints["service_tier"])
    effort = typing.get_type_hints(OutputConfigParam)["effort"]
    assert set(props("anthropic-messages", "output_config")["effort"]["enum"]) == literal_values(effort)

    assert set(props("mistral-chat")["tool_choice"]["anyOf"][0]["enum"]) == set(typing.get_args(ToolChoiceEnum))
    assert set(props("mistral-chat", "response_format")["type"]["enum"]) == set(typing.get_args(ResponseFormats))

    gemini = props("gemini-generate")
    assert set(gemini["media_resolution"]["enum"]) == {m.value for m in genai.MediaResolution} | {None}
    assert set(gemini["service_tier"]["enum"]) == {t.value for t in genai.ServiceTier} | {None}


def test_azure_mirrors_openai() -> None:
    openai, azure = builtin_schema("openai-chat"), builtin_schema("azure-openai-chat")
    for doc in (openai, azure):
        doc.pop("title"), doc.pop("description"), doc["properties"]["model"].pop("description")
    assert azure == openai


# --- the files themselves ---------------------------------------------------------------------------


def test_builtin_names_are_the_files_present() -> None:
    assert sorted(p.stem for p in BUILTIN_DIR.glob("*.json")) == sorted(BUILTIN_NAMES)
    assert len(set(BUILTIN_NAMES)) == len(BUILTIN_NAMES)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_each_builtin_is_a_valid_2020_12_schema_citing_its_source(name: str) -> None:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    document = builtin_schema(name)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)
    assert document["type"] == "object"
    description = document["description"]
    cited = [(pkg, version) for pkg, version in re.findall(r"\b(openai|anthropic|google-genai|mistralai|ollama) "
                                                            r"(\d+\.\d+\.\d+)", description)]
    if name.startswith(("bedrock-llama", "bedrock-titan")):
        assert "https://docs.aws.amazon.com/bedrock/" in description
    else:
        assert cited, f"{name} cites no SDK and version"
        for pkg, version in cited:
            assert SDK_VERSIONS[pkg] == version, f"{name} cites {pkg} {version}, installed {SDK_VERSIONS[pkg]}"
        assert re.search(r"[a-z_/]+\.py\b", description), f"{name} cites no SDK file"


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_unverified_range_says_why(name: str) -> None:
    marked = 0
    for _, node in schemas._schema_nodes(builtin_schema(name)):
        if node.get("x-unverified") is not None:
            assert node["x-unverified"] is True
            assert "nverified" in node.get("description", "") or "x-unverified" in node.get("description", ""), node
            marked += 1
    if name == "bedrock-llama":
        assert marked == 3  # nothing on that page could be checked
