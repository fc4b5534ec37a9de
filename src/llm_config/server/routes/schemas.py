"""Pydantic models of the REST edge: OpenAPI documentation only (responses are serialised by orjson).

The domain never sees these; routes build plain dicts with the domain's `to_json()` methods.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from llm_config import names, times
from llm_config.core.schemas import BUILTIN_NAMES

__all__ = [
    "JobModel",
    "KEY_PATTERN",
    "NAMESPACE_PATH_PATTERN",
    "NAMESPACE_SEGMENT_PATTERN",
    "SCHEMA_KEY_PATTERN",
    "TEMPLATE_NAME_PATTERN",
    "VARIABLE_PATTERN",
    "BuiltinSchemaModel",
    "EnvDiffModel",
    "PromoteRequest",
    "PromotionModel",
    "PromotionStepModel",
    "RenderRequest",
    "RenderedText",
    "SchemaModel",
    "SchemaWrite",
    "TemplateModel",
    "TemplateWrite",
    "request_body_schemas",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyModel",
    "AuditEventModel",
    "AuditHead",
    "BanModel",
    "ConfigResponse",
    "ConfigWrite",
    "ErrorBody",
    "ExportDocument",
    "HealthCheck",
    "HealthResponse",
    "HistoryItemModel",
    "LiveResponse",
    "ImportPlanModel",
    "MetadataModel",
    "ReadyResponse",
    "VerifyReportModel",
]

# every pattern comes from the grammar in `names.py`: what the schema calls valid is what the server takes
NAMESPACE_SEGMENT_PATTERN: Final = rf"^{names.SEGMENT_PATTERN}$"
NAMESPACE_PATH_PATTERN: Final = rf"^{names.NAMESPACE_PATTERN}$"
KEY_PATTERN: Final = rf"^{names.KEY_PATTERN}$"
SCHEMA_KEY_PATTERN: Final = rf"^{names.SCHEMA_PATTERN}$"
TEMPLATE_NAME_PATTERN: Final = rf"^{names.TEMPLATE_NAME_PATTERN}$"
"""A schema's key pattern: a key, or a glob of one with `*` and `?` (a client sends `?` as %3F)."""
VARIABLE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,200}$"
"""A template variable's name (`core.templates`: letters, digits, `_`, `-`)."""
ENV_PATTERN: Final = rf"^(?:{names.ENVIRONMENT_PATTERN})$"
LABEL_PATTERN: Final = rf"^{names.LABEL_PATTERN}$"
TIME_PATTERN: Final = rf"^{times.TIME_PATTERN}$"
ANCHOR_PATTERN: Final = r"^[0-9]{1,19}:[0-9a-fA-F]{64}$"
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_.~/-]{1,1024}$"
PREFIX_PATTERN: Final = r"^[A-Za-z0-9_.-]{0,200}$"
TIME_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
    "pattern": TIME_PATTERN,
}
_RESERVED: Final = ["namespace", "environment", "values", "secrets"]
_KEYED_VALUES: Final[dict[str, Any]] = {
    "type": "object", "maxProperties": 100_000,
    "propertyNames": {"pattern": rf"^{names.KEY_PATTERN}$"},
    "additionalProperties": {"$ref": "#/components/schemas/JSONValue"},
}
IMPORT_DOCUMENT_SCHEMA: Final[dict[str, Any]] = {
    "description": "An export document (namespace and environment are informational; secrets are sealed) or "
                   "a flat {KEY: VALUE} mapping of plain values that uses none of the export fields as a key",
    "oneOf": [
        {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
            "namespace": {"type": "string"}, "environment": {"type": "string"},
            "values": _KEYED_VALUES, "secrets": _KEYED_VALUES,
        }},
        {**_KEYED_VALUES, "propertyNames": {"pattern": rf"^{names.KEY_PATTERN}$", "not": {"enum": _RESERVED}}},
    ],
}
ENV_DOC: Final = "Environment: base, development (default), staging, production, edge; aliases dev, stage, prod " \
                 "(any case)"

JSON_VALUE_SCHEMA: Final[dict[str, Any]] = {
    "description": "Any JSON value: integers within 64 bits, finite numbers, at most 32 nested arrays/objects "
                   "and 1 MiB serialized",
    "anyOf": [
        {"type": "string"}, {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}, {"type": "number"},
        {"type": "boolean"}, {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JSONValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JSONValue"}},
    ],
}

EnvironmentName = Literal["base", "development", "staging", "production", "edge"]
RoleName = Literal["admin", "editor", "viewer", "auditor"]


class ErrorBody(BaseModel):
    """Every error response."""

    error: str = Field(description="HTTP reason phrase")
    message: str = Field(description="What went wrong; never quotes a submitted value")


class MetadataModel(BaseModel):
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    tags: list[str]
    description: str | None


class ConfigResponse(BaseModel):
    """One value of one key in one environment (secrets read `<encrypted>` unless revealed)."""

    id: str
    namespace: str
    key: str
    value: Any = Field(description="Any JSON value")
    environment: EnvironmentName
    version: int
    secret: bool
    metadata: MetadataModel


class ConfigWrite(BaseModel):
    """Body of POST/PUT on a config. Unknown fields are refused; the actor comes from the caller."""

    model_config = ConfigDict(extra="forbid")

    value: Any = Field(description="Any JSON value (null allowed); required")  # documented as JSONValue
    env: str | None = Field(None, pattern=ENV_PATTERN, description=ENV_DOC + "; default development")
    secret: bool | None = Field(None, description="Seal the value; false stores a former secret in plain text")
    description: str | None = Field(None, max_length=1000)
    tags: list[Annotated[str, Field(pattern=LABEL_PATTERN)]] | None = Field(
        None, max_length=50, description="Replaces the tags: 1-100 characters each, no control characters")
    message: str | None = Field(None, max_length=1000, description="Change description for the history")
    expected_version: int | None = Field(None, ge=0, le=2**63 - 1,
                                         description="Compare-and-set: current version, or 0 for 'must not exist'")


class HistoryItemModel(BaseModel):
    version: int
    value: Any
    deleted: bool
    created_at: str
    created_by: str
    change_description: str


class AuditEventModel(BaseModel):
    seq: int
    id: str
    timestamp: str
    type: str
    actor: str
    namespace: str | None
    key: str | None
    environment: str | None
    old_version: int | None
    new_version: int | None
    outcome: str
    source_ip: str | None
    request_id: str | None
    details: dict[str, Any]


class VerifyReportModel(BaseModel):
    ok: bool
    events: int
    head: str | None
    problems: list[str]


class AuditHead(BaseModel):
    head: str | None = Field(description="`SEQ:MAC` of the newest event, null for an empty trail")


class ImportPlanModel(BaseModel):
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    deleted: list[str]
    dry_run: bool


class ExportDocument(BaseModel):
    namespace: str
    environment: str
    values: dict[str, Any]
    secrets: dict[str, Any] | None = None


class HealthCheck(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    message: str | None = Field(None, description="Only for a key with system:read")


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    service: str
    version: str
    checks: dict[str, HealthCheck]


class LiveResponse(BaseModel):
    status: Literal["alive"]


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]


class ApiKeyCreate(BaseModel):
    """Body of POST /api/v1/keys. Unknown fields (id, created_by, key …) are refused."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=LABEL_PATTERN, description="A label for the key, unique among live keys: 1-100 "
                      "characters, no control characters")
    role: RoleName
    namespaces: list[Annotated[str, Field(pattern=NAMESPACE_PATH_PATTERN)]] | None = Field(
        None, max_length=50, description="Namespace limits (sub-namespaces included); empty or absent = every "
        "namespace the caller may use")
    environments: list[Annotated[str, Field(pattern=ENV_PATTERN)]] | None = Field(
        None, max_length=50, description="Environment limits (" + ENV_DOC + ")")
    expires_days: float | None = Field(None, gt=0, le=36500, description="Expire after this many days")


class ApiKeyModel(BaseModel):
    """An API key's record (never the key itself)."""

    id: str
    name: str
    role: RoleName
    namespaces: list[str]
    environments: list[EnvironmentName]
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None


class ApiKeyCreated(BaseModel):
    """A new key: `key` is shown in this answer only."""

    id: str
    name: str
    role: RoleName
    namespaces: list[str]
    environments: list[EnvironmentName]
    expires_at: str | None
    key: str = Field(description="The API key (llmc_…): store it now, it is not shown again")


class JobModel(BaseModel):
    """A long admin job (restore, rotate-key) of this server process."""

    id: str
    kind: str
    status: Literal["running", "succeeded", "failed"]
    started_by: str
    started_at: str
    finished_at: str | None
    result: dict[str, Any] | None = Field(description="The job's summary once it succeeded (restore: rows, "
                                          "sha256, epochs, verified; rotate-key: new_key_id, resealed, "
                                          "by_key_id, instance_secret, batches, remaining, problems, complete)")
    error: dict[str, Any] | None = Field(description="`{error, message, status}` once it failed")


class BanModel(BaseModel):
    """A client address banned after repeated failed authentications."""

    ip: str
    banned_at: str
    expires_at: str
    failures: int


# ------------------------------------------------------------------------------- templates, schemas, promotion
# Request bodies are read by the routes themselves (`wire.*Body.from_json` over the strict parser); these
# models only document them. A JSON value inside one is marked here and becomes a `JSONValue` reference in
# `request_body_schemas` (pydantic cannot emit a reference to a component it does not own).

_JSON_VALUE_MARK: Final = "x-llm-config-json-value"
JSONValueField = Annotated[Any, WithJsonSchema({_JSON_VALUE_MARK: True})]
_TEXT_DOC: Final = "at most 1000 characters"
_VERSION_FIELD_DOC: Final = "Compare-and-set: current version, or 0 for 'must not exist'"


class TemplateModel(BaseModel):
    """One version of a prompt template (SPEC §6)."""

    namespace: str
    name: str
    environment: EnvironmentName
    version: int
    content: str
    variables: list[str] = Field(description="Variables in order of first appearance; references excluded")
    defaults: dict[str, Any] = Field(description="Declared defaults of variables")
    description: str | None
    updated_at: str
    updated_by: str


class TemplateWrite(BaseModel):
    """Body of PUT on a template: its text (`{{ var }}`, `{{ config:KEY }}`, `{{ secret:KEY }}`,
    `{{ template:NAME }}`; `\\{{` is a literal `{{`). A syntax error stores nothing (400, with its position)."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(description="The template text; required")
    env: str | None = Field(None, pattern=ENV_PATTERN, description=ENV_DOC + "; default development")
    description: str | None = Field(None, max_length=1000, description=_TEXT_DOC)
    defaults: dict[Annotated[str, Field(pattern=VARIABLE_PATTERN)], JSONValueField] | None = Field(
        None, max_length=200, description="Defaults of variables the template uses (at most 200)")
    message: str | None = Field(None, max_length=1000, description="Change description for the history")
    expected_version: int | None = Field(None, ge=0, le=2**63 - 1, description=_VERSION_FIELD_DOC)


class RenderRequest(BaseModel):
    """Body of POST …/render: every variable the template uses must be given or defaulted; unknown ones
    are refused unless `allow_extra`."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = Field(None, pattern=ENV_PATTERN, description=ENV_DOC + "; default development")
    variables: dict[str, JSONValueField] | None = Field(
        None, description="NAME: VALUE (strings inserted raw, anything else as compact JSON)")
    allow_extra: bool = Field(False, description="Accept variables the template does not use")


class RenderedText(BaseModel):
    """A rendered template (may hold secrets: answered with Cache-Control: no-store)."""

    text: str


class SchemaModel(BaseModel):
    """One version of the JSON Schema that keys matching `pattern` must satisfy (every environment)."""

    namespace: str
    pattern: str
    version: int
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON Schema (a built-in's document, as "
                                    "this version ships it, when `builtin` is set)")
    builtin: str | None
    description: str | None
    updated_at: str
    updated_by: str


class SchemaWrite(BaseModel):
    """Body of PUT on a schema: exactly one of `schema` (a JSON Schema document) and `builtin`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["schema"], "properties": {"schema": {"type": "object"}, "builtin": {"type": "null"}}},
        {"required": ["builtin"], "properties": {"builtin": {"type": "string"}, "schema": {"type": "null"}}},
    ]})

    schema_: dict[str, Any] | None = Field(None, alias="schema", description="A JSON Schema (draft 2020-12); "
                                           "references only inside the document")
    builtin: Literal[BUILTIN_NAMES] | None = Field(  # type: ignore[valid-type]
        None, description="A built-in schema's name (GET /api/v1/schemas/builtins)")
    description: str | None = Field(None, max_length=1000, description=_TEXT_DOC)
    expected_version: int | None = Field(None, ge=0, le=2**63 - 1, description=_VERSION_FIELD_DOC)


class BuiltinSchemaModel(BaseModel):
    name: str
    description: str


class EnvDiffModel(BaseModel):
    """Each environment's own entries compared, by key: added (only in `from`), removed (only in `to`),
    changed, unchanged, not_compared (secrets the caller may not read on both sides; never shown)."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: list[str]
    not_compared: list[str]


class PromotionStepModel(BaseModel):
    """One key of a promotion: what happens in the target, the source version copied (null for a delete)
    and the target version expected (0: none there). As a plan's step it is compared, not trusted: a step
    that differs from a new plan aborts the promotion (409)."""

    key: str
    action: Literal["create", "update", "delete"]
    source_version: int | None = Field(ge=-(2**63), le=2**63 - 1)
    target_version: int = Field(ge=-(2**63), le=2**63 - 1)
    secret: bool


class PromotionModel(BaseModel):
    """A promotion's plan (`applied` false: a dry run) or its result."""

    id: str = Field(pattern="^[0-9a-f]{24}$")
    namespace: str
    from_: str = Field(alias="from", pattern=ENV_PATTERN, description="Source environment")
    to: str = Field(pattern=ENV_PATTERN, description="Target environment")
    applied: bool
    steps: list[PromotionStepModel]
    unchanged: list[str] = Field(description="Keys already equal in the target")


class PromoteRequest(BaseModel):
    """Body of POST …/promote. `plan`: a dry run's answer, applied only if nothing moved since (else 409)."""

    model_config = ConfigDict(extra="forbid")

    from_: str = Field(alias="from", pattern=ENV_PATTERN, description="Source environment (" + ENV_DOC + ")")
    to: str = Field(pattern=ENV_PATTERN, description="Target environment, not the source")
    keys: list[Annotated[str, Field(pattern=KEY_PATTERN)]] | None = Field(
        None, max_length=10_000, description="Only these keys (default: every key of the source)")
    prune: bool = Field(False, description="Also delete target keys the source lacks")
    dry_run: bool = Field(False, description="Plan only, write nothing")
    plan: PromotionModel | None = Field(None, description="The plan a dry run returned")
    secret: Literal[False] | None = Field(None, description="false: a plain value may replace a target secret "
                                          "(refused otherwise, as with a write)")


def _json_values(node: Any) -> Any:
    """Every marked JSON value of a generated schema as a `JSONValue` reference, and a map with constrained
    names (pydantic's `patternProperties`, which would let any other name through) as `propertyNames`."""
    if isinstance(node, dict):
        if node.get(_JSON_VALUE_MARK):
            return {"$ref": "#/components/schemas/JSONValue"}
        node = dict(node)
        by_pattern = node.get("patternProperties")
        if isinstance(by_pattern, dict) and len(by_pattern) == 1 and "additionalProperties" not in node:
            [(pattern, values)] = by_pattern.items()
            del node["patternProperties"]
            node["propertyNames"] = {"pattern": pattern}
            node["additionalProperties"] = values
        return {k: _json_values(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_values(v) for v in node]
    return node


def request_body_schemas() -> dict[str, dict[str, Any]]:
    """OpenAPI components of the request bodies documented here (by model name, their `$defs` included)."""
    out: dict[str, dict[str, Any]] = {}
    for model in (TemplateWrite, RenderRequest, SchemaWrite, PromoteRequest):
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(doc.pop("$defs", {}))
        out[model.__name__] = doc
    return {name: _json_values(doc) for name, doc in out.items()}
