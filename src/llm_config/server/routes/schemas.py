"""Pydantic models of the REST edge: OpenAPI documentation only (responses are serialised by orjson).

The domain never sees these; routes build plain dicts with the domain's `to_json()` methods.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
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

_SEGMENT: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
NAMESPACE_SEGMENT_PATTERN: Final = rf"^{_SEGMENT}$"
NAMESPACE_PATH_PATTERN: Final = rf"^{_SEGMENT}(/{_SEGMENT}){{0,7}}$"
KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"

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

    value: Any = Field(description="Any JSON value (null allowed); required")
    env: str | None = Field(None, description="Environment (default: the `env` query parameter, "
                                              "else development)")
    secret: bool | None = Field(None, description="Seal the value; false stores a former secret in plain text")
    description: str | None = Field(None, max_length=1000)
    tags: list[str] | None = Field(None, max_length=50)
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

    name: str = Field(min_length=1, max_length=100, description="A label for the key (printable text)")
    role: RoleName
    namespaces: list[str] | None = Field(None, max_length=50, description="Namespace limits (sub-namespaces "
                                         "included); empty or absent = every namespace the caller may use")
    environments: list[EnvironmentName] | None = Field(None, max_length=5, description="Environment limits")
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


class BanModel(BaseModel):
    """A client address banned after repeated failed authentications."""

    ip: str
    banned_at: str
    expires_at: str
    failures: int
