"""Pydantic models of the REST edge: OpenAPI documentation only (responses are serialised by orjson).

The domain never sees these; routes build plain dicts with the domain's `to_json()` methods.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from llm_config import names, times

__all__ = [
    "JobModel",
    "KEY_PATTERN",
    "NAMESPACE_PATH_PATTERN",
    "NAMESPACE_SEGMENT_PATTERN",
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
