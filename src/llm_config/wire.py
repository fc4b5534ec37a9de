"""The REST API's bodies as plain dataclasses with to/from JSON (SPEC §8) — the server and the client share it.

Pure: no I/O, no FastAPI, no HTTP library. The server reads request bodies with `SetBody.from_json` and
writes entries with `Entry.to_json`; the client (`llm_config.client`) builds the same bodies and reads
entries, history items, errors and watch events back with the `*_from_json` functions here, so a field
is named and checked in one place. `from_json` checks shape and types only; values, names and limits are
validated once, in the core, whatever the entry point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from llm_config.errors import (
    AuthenticationError,
    ConflictError,
    LLMConfigError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    SchemaViolationError,
    StorageError,
    StorageUnavailableError,
    ValidationError,
)
from llm_config.models import ApiKey, AuditEvent, Entry, Environment, HistoryItem, Metadata, Role
from llm_config.names import parse_environment

if TYPE_CHECKING:
    from llm_config.documents import Promotion

__all__ = [
    "MAX_VERSION",
    "KEY_CREATE_FIELDS",
    "MASTER_KEY_ID_PATTERN",
    "ROTATE_FIELDS",
    "PROMOTE_FIELDS",
    "RENDER_FIELDS",
    "SCHEMA_FIELDS",
    "SET_FIELDS",
    "TEMPLATE_FIELDS",
    "ErrorBody",
    "PromoteBody",
    "RenderBody",
    "SchemaBody",
    "TemplateBody",
    "KeyCreateBody",
    "RotateBody",
    "Job",
    "SetBody",
    "WatchChange",
    "WatchHello",
    "WatchKind",
    "WatchResync",
    "api_key_from_json",
    "audit_event_from_json",
    "created_api_key_from_json",
    "entry_from_json",
    "error_for",
    "history_item_from_json",
    "import_plan_from_json",
    "restore_summary_from_json",
    "verify_report_from_json",
]

MAX_VERSION: Final = 2**63 - 1
"""The largest version (and revision) the API accepts: a signed 64-bit integer."""

_TEXT_LIMIT: Final = 1000


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(f"Invalid {what}: expected a JSON object")
    return data


def _int(data: Mapping[str, Any], name: str, what: str, *, minimum: int = 0) -> int:
    value = data.get(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema: 3.0 is the integer 3
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_VERSION:
        raise ValidationError(f"Invalid {what}: field '{name}' must be an integer >= {minimum}")
    return value


def _str(data: Mapping[str, Any], name: str, what: str, *, optional: bool = False) -> str:
    value = data.get(name)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"Invalid {what}: field '{name}' must be a string")
    return value


# ---------------------------------------------------------------------------------------------- writes

SET_FIELDS: Final = frozenset({"value", "env", "secret", "description", "tags", "message", "expected_version"})

@dataclass(frozen=True, slots=True)
class SetBody:
    """The body of `PUT`/`POST /api/v1/configs/…/{key}`."""

    value: Any
    env: str = "development"
    secret: bool | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    message: str | None = None
    expected_version: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> SetBody:
        """Check a parsed body's shape: only known fields, each of its type (mass assignment refused, names
        not echoed raw)."""
        body = _object_with(body, SET_FIELDS, "a 'value' field")
        if "value" not in body:
            raise ValidationError("Missing field 'value' (use null to store null)")
        env = body.get("env")
        if env is not None:
            parse_environment(env)
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, bool):
            raise ValidationError("Invalid field 'secret': must be true, false or null")
        tags = body.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise ValidationError("Invalid field 'tags': must be an array of strings")
            tags = tuple(tags)
        expected = body.get("expected_version")
        if expected is not None:
            expected = _int(body, "expected_version", "field 'expected_version'")
        return cls(
            value=body["value"], env=env or "development", secret=secret,
            description=_text(body, "description"), tags=tags, message=_text(body, "message"),
            expected_version=expected,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"value": self.value, "env": self.env}
        if self.secret is not None:
            body["secret"] = self.secret
        if self.description is not None:
            body["description"] = self.description
        if self.tags is not None:
            body["tags"] = list(self.tags)
        if self.message is not None:
            body["message"] = self.message
        if self.expected_version is not None:
            body["expected_version"] = self.expected_version
        return body


def _text(body: Mapping[str, Any], name: str) -> str | None:
    """An optional text field's type; its content and length are checked by the core (`values.check_text`)."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"Invalid field '{name}': must be a string")
    return value


KEY_CREATE_FIELDS: Final = frozenset({"name", "role", "namespaces", "environments", "expires_days"})
_MAX_SCOPE: Final = 50


def _object_with(body: Any, allowed: frozenset[str], expected: str) -> dict[str, Any]:
    """A JSON object with only `allowed` fields (mass assignment refused, names not echoed raw)."""
    if not isinstance(body, dict):
        raise ValidationError(f"Invalid body: expected a JSON object with {expected}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        shown = ", ".join(ascii(name[:40]) for name in unknown[:5])
        raise ValidationError(f"Unknown field(s) in body: {shown}; allowed: {', '.join(sorted(allowed))}")
    return body


def _scope_list(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > _MAX_SCOPE:
        raise ValidationError(f"Invalid field '{name}': must be an array of at most {_MAX_SCOPE} strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class KeyCreateBody:
    """The body of `POST /api/v1/keys`; names, role and scope are checked by the core."""

    name: str
    role: str
    namespaces: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    expires_days: float | None = None

    @classmethod
    def from_json(cls, body: Any) -> KeyCreateBody:
        fields = _object_with(body, KEY_CREATE_FIELDS, "'name' and 'role'")
        name, role = fields.get("name"), fields.get("role")
        if not isinstance(name, str):
            raise ValidationError("Missing or invalid field 'name': a string of 1-100 printable characters")
        if not isinstance(role, str) or len(role) > 32:
            raise ValidationError("Missing or invalid field 'role': admin, editor, viewer or auditor")
        expires = fields.get("expires_days")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
            raise ValidationError("Invalid field 'expires_days': a number of days")
        return cls(name, role, _scope_list(fields, "namespaces"), _scope_list(fields, "environments"),
                   float(expires) if expires is not None else None)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "role": self.role, "namespaces": list(self.namespaces),
                                "environments": list(self.environments)}
        if self.expires_days is not None:
            body["expires_days"] = self.expires_days
        return body


ROTATE_FIELDS: Final = frozenset({"new_key_id"})
MASTER_KEY_ID_PATTERN: Final = r"^[0-9a-f]{16}$"


@dataclass(frozen=True, slots=True)
class RotateBody:
    """The body of `POST /api/v1/admin/rotate-key`: the id of a key the server's keyring already holds."""

    new_key_id: str

    @classmethod
    def from_json(cls, body: Any) -> RotateBody:
        key_id = _object_with(body, ROTATE_FIELDS, "'new_key_id'").get("new_key_id")
        if not isinstance(key_id, str) or not re.fullmatch(MASTER_KEY_ID_PATTERN, key_id):
            raise ValidationError("Missing or invalid field 'new_key_id': the 16 hex digits of a key id")
        return cls(key_id)

    def to_json(self) -> dict[str, str]:
        return {"new_key_id": self.new_key_id}


# ---------------------------------------------------------------------------------------------- reads

def entry_from_json(data: Any, revision: int = 0) -> Entry:
    """An `Entry` from a ConfigResponse body (`revision` from its `X-Config-Revision` header)."""
    body = _object(data, "ConfigResponse")
    meta = _object(body.get("metadata"), "ConfigResponse metadata")
    try:
        tags = tuple(str(t) for t in meta.get("tags") or ())
        description = meta.get("description")
        return Entry(
            id=_str(body, "id", "ConfigResponse"),
            namespace=_str(body, "namespace", "ConfigResponse"),
            key=_str(body, "key", "ConfigResponse"),
            value=body.get("value"),
            environment=parse_environment(_str(body, "environment", "ConfigResponse")),
            version=_int(body, "version", "ConfigResponse"),
            secret=bool(body.get("secret")),
            metadata=Metadata(
                created_at=_str(meta, "created_at", "metadata"), created_by=_str(meta, "created_by", "metadata"),
                updated_at=_str(meta, "updated_at", "metadata"), updated_by=_str(meta, "updated_by", "metadata"),
                tags=tags, description=description if isinstance(description, str) else None,
            ),
            revision=revision,
        )
    except (TypeError, KeyError) as exc:
        raise ValidationError(f"Invalid ConfigResponse: {type(exc).__name__}") from None


def history_item_from_json(data: Any) -> HistoryItem:
    """A `HistoryItem` from one element of a history response."""
    body = _object(data, "history item")
    return HistoryItem(
        version=_int(body, "version", "history item", minimum=1),
        value=body.get("value"),
        deleted=bool(body.get("deleted")),
        created_at=_str(body, "created_at", "history item"),
        created_by=_str(body, "created_by", "history item"),
        change_description=_str(body, "change_description", "history item", optional=True),
    )


# ---------------------------------------------------------------------------------------------- errors

@dataclass(frozen=True, slots=True)
class ErrorBody:
    """`{"error": "<reason phrase>", "message": "<text>"}` — every error response (SPEC §8)."""

    error: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}

    @classmethod
    def from_json(cls, data: Any, status: int) -> ErrorBody:
        """Lenient: whatever a proxy in between answered still becomes an error with its status."""
        if isinstance(data, Mapping):
            error, message = data.get("error"), data.get("message")
            if isinstance(error, str) and isinstance(message, str):
                return cls(error, message)
        return cls(f"HTTP {status}", f"The service answered HTTP {status}")


_BY_STATUS: Final[dict[int, type[LLMConfigError]]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: ConflictError,
    413: ValidationError,
    415: ValidationError,
    422: SchemaViolationError,
    429: RateLimitedError,
    503: StorageUnavailableError,
}


def error_for(status: int, body: ErrorBody, retry_after: float | None = None) -> LLMConfigError:
    """The library's exception for an error response: the same tree the embedded manager raises."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = StorageError if status >= 500 else ValidationError
    if cls is StorageUnavailableError:
        return StorageUnavailableError(body.message, retry_after=int(retry_after or 1))
    if cls is RateLimitedError:
        return RateLimitedError(body.message, retry_after=retry_after or 1.0)
    return cls(body.message)


# ------------------------------------------------------------------------------- templates, schemas, promotion

TEMPLATE_FIELDS: Final = frozenset({"content", "env", "description", "defaults", "message", "expected_version"})
RENDER_FIELDS: Final = frozenset({"env", "variables", "allow_extra"})
SCHEMA_FIELDS: Final = frozenset({"schema", "builtin", "description", "expected_version"})
PROMOTE_FIELDS: Final = frozenset({"from", "to", "keys", "prune", "dry_run", "plan", "secret"})


def _opt_env(body: Mapping[str, Any], name: str = "env") -> str:
    env = body.get(name)
    if env is None:
        return "development"
    parse_environment(env)
    return str(env)


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"Invalid field '{name}': must be true or false")
    return value


def _json_object(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise ValidationError(f"Invalid field '{name}': must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class TemplateBody:
    """The body of `PUT /api/v1/templates/{ns…}/-/{name}`."""

    content: str
    env: str = "development"
    description: str | None = None
    defaults: dict[str, Any] | None = None
    message: str | None = None
    expected_version: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> TemplateBody:
        body = _object_with(body, TEMPLATE_FIELDS, "a 'content' field")
        return cls(content=_str(body, "content", "template body"), env=_opt_env(body),
                   description=_text(body, "description"), defaults=_json_object(body, "defaults"),
                   message=_text(body, "message"),
                   expected_version=_opt_int(body, "expected_version", "field 'expected_version'"))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"content": self.content, "env": self.env}
        for name in ("description", "defaults", "message", "expected_version"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


@dataclass(frozen=True, slots=True)
class RenderBody:
    """The body of `POST /api/v1/templates/{ns…}/-/{name}/render` (the answer is `{"text": ...}`)."""

    env: str = "development"
    variables: dict[str, Any] | None = None
    allow_extra: bool = False

    @classmethod
    def from_json(cls, body: Any) -> RenderBody:
        body = _object_with(body, RENDER_FIELDS, "'env', 'variables', 'allow_extra'")
        return cls(env=_opt_env(body), variables=_json_object(body, "variables"),
                   allow_extra=_flag(body, "allow_extra"))

    def to_json(self) -> dict[str, Any]:
        return {"env": self.env, "variables": self.variables or {}, "allow_extra": self.allow_extra}


@dataclass(frozen=True, slots=True)
class SchemaBody:
    """The body of `PUT /api/v1/schemas/{ns…}/-/{pattern}`: a JSON Schema (`schema`) or a built-in's name."""

    schema: dict[str, Any] | None = None
    builtin: str | None = None
    description: str | None = None
    expected_version: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> SchemaBody:
        body = _object_with(body, SCHEMA_FIELDS, "a 'schema' or a 'builtin' field")
        schema, builtin = _json_object(body, "schema"), _text(body, "builtin")
        if (schema is None) == (builtin is None):
            raise ValidationError("Give exactly one of 'schema' (a JSON Schema) and 'builtin' (a built-in's name)")
        return cls(schema=schema, builtin=builtin, description=_text(body, "description"),
                   expected_version=_opt_int(body, "expected_version", "field 'expected_version'"))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name in ("schema", "builtin", "description", "expected_version"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


@dataclass(frozen=True, slots=True)
class PromoteBody:
    """The body of `POST /api/v1/namespaces/{ns…}/-/promote`; `plan` is a dry run's answer, applied only if
    nothing moved since."""

    source: str
    target: str
    keys: tuple[str, ...] | None = None
    prune: bool = False
    dry_run: bool = False
    plan: Promotion | None = None
    secret: bool | None = None

    @classmethod
    def from_json(cls, body: Any) -> PromoteBody:
        body = _object_with(body, PROMOTE_FIELDS, "'from' and 'to' fields")
        keys = body.get("keys")
        if keys is not None:
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(keys) > 10_000:
                raise ValidationError("Invalid field 'keys': must be an array of at most 10000 key names")
            keys = tuple(keys)
        from llm_config.documents import Promotion  # only a promotion's body needs it (the CLI starts fast)

        plan, secret = body.get("plan"), body.get("secret")
        if secret is not None and not isinstance(secret, bool):
            raise ValidationError("Invalid field 'secret': must be false (a plain value may replace a secret) or null")
        return cls(source=_str(body, "from", "promote body"), target=_str(body, "to", "promote body"),
                   keys=keys, prune=_flag(body, "prune"), dry_run=_flag(body, "dry_run"),
                   plan=Promotion.from_json(plan) if plan is not None else None, secret=secret)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"from": self.source, "to": self.target, "prune": self.prune,
                                "dry_run": self.dry_run}
        if self.keys is not None:
            body["keys"] = list(self.keys)
        if self.plan is not None:
            body["plan"] = self.plan.to_json()
        if self.secret is not None:
            body["secret"] = self.secret
        return body


# ---------------------------------------------------------------------------------------------- watch

WatchKind = Literal["set", "delete", "rollback", "purge", "template", "schema"]
"""A config entry's change is its write's kind; a template's or a schema's (any write) is "template" or "schema",
with `key` its name or pattern and `version` its new version."""
_KINDS: Final = frozenset({"set", "delete", "rollback", "purge", "template", "schema"})
CONFIG_KINDS: Final = frozenset({"set", "delete", "rollback", "purge"})
"""The kinds of change events about config entries (the others name a template or a schema)."""


@dataclass(frozen=True, slots=True)
class WatchHello:
    """The first event of a watch stream: which store epoch and revision it starts from."""

    epoch: str
    revision: int

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "revision": self.revision}

    @classmethod
    def from_json(cls, data: Any) -> WatchHello:
        body = _object(data, "hello event")
        return cls(_str(body, "epoch", "hello event"), _int(body, "revision", "hello event"))


@dataclass(frozen=True, slots=True)
class WatchResync:
    """The stream cannot continue from the asked revision — `reason` "epoch" (another store epoch), "ahead" (of
    the store) or "expired" (older than the change feed's history, which a restore starts again): reload
    everything, then continue from `revision`."""

    reason: str
    epoch: str
    revision: int

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "epoch": self.epoch, "revision": self.revision}

    @classmethod
    def from_json(cls, data: Any) -> WatchResync:
        body = _object(data, "resync event")
        return cls(_str(body, "reason", "resync event"), _str(body, "epoch", "resync event"),
                   _int(body, "revision", "resync event"))


@dataclass(frozen=True, slots=True)
class WatchChange:
    """One change: a write, delete, rollback or purge of one key in one environment, at one revision — or
    any change of a template (`kind` "template", `key` its name) or a schema ("schema", `key` its pattern)."""

    revision: int
    namespace: str
    key: str
    environment: Environment
    version: int
    kind: WatchKind

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "namespace": self.namespace, "key": self.key,
                "environment": self.environment.value, "version": self.version, "kind": self.kind}

    @classmethod
    def from_json(cls, data: Any) -> WatchChange:
        body = _object(data, "change event")
        kind = body.get("kind")
        if kind not in _KINDS:
            raise ValidationError("Invalid change event: unknown kind")
        return cls(
            revision=_int(body, "revision", "change event", minimum=1),
            namespace=_str(body, "namespace", "change event"),
            key=_str(body, "key", "change event"),
            environment=parse_environment(_str(body, "environment", "change event")),
            version=_int(body, "version", "change event"),
            kind=kind,
        )


# ---------------------------------------------------------------------------------------------- keys, audit, admin
# What the CLI reads back over `--server` (`llm_config.cli.remote`), mirroring the server's `to_json()` of
# each type. Types of layers above this one (`ImportPlan`, `VerifyReport`, `RestoreSummary`) are returned as
# the keyword arguments of their constructors, checked here; the caller builds them.


def _opt_str(data: Mapping[str, Any], name: str, what: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"Invalid {what}: field '{name}' must be a string or null")
    return value


def _opt_int(data: Mapping[str, Any], name: str, what: str) -> int | None:
    return None if data.get(name) is None else _int(data, name, what)


def _bool(data: Mapping[str, Any], name: str, what: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise ValidationError(f"Invalid {what}: field '{name}' must be true or false")
    return value


def _strings(data: Mapping[str, Any], name: str, what: str) -> list[str]:
    value = data.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"Invalid {what}: field '{name}' must be an array of strings")
    return list(value)


def _counts(data: Mapping[str, Any], name: str, what: str) -> dict[str, int]:
    value = _object(data.get(name), f"{what} field '{name}'")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise ValidationError(f"Invalid {what}: field '{name}' must map names to counts")
    return {str(k): int(v) for k, v in value.items()}


def _role(data: Mapping[str, Any], what: str) -> Role:
    try:
        return Role(_str(data, "role", what))
    except ValueError:
        raise ValidationError(f"Invalid {what}: unknown role") from None


def api_key_from_json(data: Any) -> ApiKey:
    """An `ApiKey` from one element of `GET /api/v1/keys` (`ApiKey.to_json`); the stored hash is never sent
    (`key_hash` is empty)."""
    what = "API key"
    body = _object(data, what)
    return ApiKey(
        id=_str(body, "id", what), name=_str(body, "name", what), role=_role(body, what),
        namespaces=tuple(_strings(body, "namespaces", what)),
        environments=tuple(parse_environment(e) for e in _strings(body, "environments", what)),
        key_hash="", created_at=_str(body, "created_at", what), created_by=_str(body, "created_by", what),
        expires_at=_opt_str(body, "expires_at", what), revoked_at=_opt_str(body, "revoked_at", what),
        parent_id=_opt_str(body, "parent_id", what),
    )


def created_api_key_from_json(data: Any) -> tuple[ApiKey, str]:
    """`(record, key)` from the 201 body of `POST /api/v1/keys` (`{"id", "name", "role", "namespaces",
    "environments", "expires_at", "key"}`): the record has no creation time or creator (`""`), which that body
    does not carry."""
    what = "created API key"
    body = _object(data, what)
    record = ApiKey(
        id=_str(body, "id", what), name=_str(body, "name", what), role=_role(body, what),
        namespaces=tuple(_strings(body, "namespaces", what)),
        environments=tuple(parse_environment(e) for e in _strings(body, "environments", what)),
        key_hash="", created_at="", created_by="", expires_at=_opt_str(body, "expires_at", what), revoked_at=None,
    )
    return record, _str(body, "key", what)


def audit_event_from_json(data: Any) -> AuditEvent:
    """An `AuditEvent` from its SPEC §7 JSON (`AuditEvent.to_json`, an element of `GET /api/v1/audit`), or from
    a line of `GET /api/v1/audit/export` (`audit.export_record`: also `subject`, `prev_mac` and `mac`, which
    are empty / None when absent)."""
    what = "audit event"
    body = _object(data, what)
    details = body.get("details")
    if not isinstance(details, Mapping):
        raise ValidationError(f"Invalid {what}: field 'details' must be an object")
    return AuditEvent(
        seq=_int(body, "seq", what, minimum=1), id=_str(body, "id", what), timestamp=_str(body, "timestamp", what),
        type=_str(body, "type", what), actor=_str(body, "actor", what),
        namespace=_opt_str(body, "namespace", what), key=_opt_str(body, "key", what),
        environment=_opt_str(body, "environment", what),
        old_version=_opt_int(body, "old_version", what), new_version=_opt_int(body, "new_version", what),
        outcome=_str(body, "outcome", what), source_ip=_opt_str(body, "source_ip", what),
        request_id=_opt_str(body, "request_id", what), details=dict(details),
        prev_mac=_str(body, "prev_mac", what, optional=True), mac=_str(body, "mac", what, optional=True),
        subject=_opt_str(body, "subject", what),
    )


def verify_report_from_json(data: Any) -> dict[str, Any]:
    """The keyword arguments of `audit.VerifyReport` from `GET /api/v1/audit/verify` (`{"ok", "events",
    "head": "SEQ:MAC" | null, "problems"}`)."""
    what = "verify report"
    body = _object(data, what)
    head_text = _opt_str(body, "head", what)
    head: tuple[int, str] | None = None
    if head_text is not None:
        seq, sep, mac = head_text.partition(":")
        if not sep or not seq.isascii() or not seq.isdigit() or len(seq) > 19 or not mac:
            raise ValidationError(f"Invalid {what}: field 'head' must look like SEQ:MAC")
        head = (int(seq), mac)
    return {"ok": _bool(body, "ok", what), "events": _int(body, "events", what), "head": head,
            "problems": _strings(body, "problems", what)}


def import_plan_from_json(data: Any) -> dict[str, Any]:
    """The keyword arguments of `core.transfer.ImportPlan` from `POST /api/v1/namespaces/{ns…}/-/import`
    (`{"created", "updated", "unchanged", "deleted", "dry_run"}`)."""
    what = "import plan"
    body = _object(data, what)
    plan: dict[str, Any] = {name: _strings(body, name, what) for name in ("created", "updated", "unchanged", "deleted")}
    plan["dry_run"] = _bool(body, "dry_run", what)
    return plan


def restore_summary_from_json(data: Any) -> dict[str, Any]:
    """The keyword arguments of `core.backups.RestoreSummary` from a finished restore job's `result`
    (`{"sha256", "rows", "revision", "previous_epoch", "epoch", "verified", "problems"}`)."""
    what = "restore summary"
    body = _object(data, what)
    return {"sha256": _str(body, "sha256", what), "rows": _counts(body, "rows", what),
            "revision": _int(body, "revision", what), "previous_epoch": _opt_str(body, "previous_epoch", what),
            "epoch": _str(body, "epoch", what), "verified": _bool(body, "verified", what),
            "problems": tuple(_strings(body, "problems", what))}


JobStatus = Literal["running", "succeeded", "failed"]
_JOB_STATUSES: Final = frozenset({"running", "succeeded", "failed"})


@dataclass(frozen=True, slots=True)
class Job:
    """A long admin job (`restore`, `rotate-key`) as `/api/v1/admin/jobs/{id}` shows it (202 answers too).

    `result` is the job's summary once it `succeeded`; `error` (`{"error", "message", "status"}`) once it
    `failed` — `error_for(status, ErrorBody(error, message))` is the exception it stands for."""

    id: str
    kind: str
    status: JobStatus
    started_by: str
    started_at: str
    finished_at: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "started_by": self.started_by,
                "started_at": self.started_at, "finished_at": self.finished_at, "result": self.result,
                "error": self.error}

    @classmethod
    def from_json(cls, data: Any) -> Job:
        what = "job"
        body = _object(data, what)
        status = body.get("status")
        if status not in _JOB_STATUSES:
            raise ValidationError(f"Invalid {what}: unknown status")
        result, error = body.get("result"), body.get("error")
        if result is not None and not isinstance(result, Mapping):
            raise ValidationError(f"Invalid {what}: field 'result' must be an object or null")
        if error is not None and not isinstance(error, Mapping):
            raise ValidationError(f"Invalid {what}: field 'error' must be an object or null")
        return cls(id=_str(body, "id", what), kind=_str(body, "kind", what), status=status,
                   started_by=_str(body, "started_by", what), started_at=_str(body, "started_at", what),
                   finished_at=_opt_str(body, "finished_at", what),
                   result=dict(result) if result is not None else None,
                   error=dict(error) if error is not None else None)

    def exception(self) -> LLMConfigError:
        """The library's exception for a failed job (its `error` mapped as an error answer would be)."""
        error = self.error or {}
        status = error.get("status")
        code = status if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599 else 500
        return error_for(code, ErrorBody.from_json(error, code))
