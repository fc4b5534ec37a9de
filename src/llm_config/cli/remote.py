"""`--server URL` (`LLM_CONFIG_SERVER`): the CLI's commands against a service, through the SDK.

The API key comes from `LLM_CONFIG_API_KEY` (or the `api_key` setting of a `--config` file) — never a
flag, so it stays out of shell history and process listings; it is sent only as the `Authorization` header
and appears in no message.

`open_manager` (cli/commands/_common.py) returns a `RemoteManager` when a service is configured: the manager
methods the commands call, with the same signatures and return types, over the REST API — so each command's
code is the same in both modes. Reads and writes of values go through the SDK's `Client` methods (the
`ConfigAPI` Protocol); the other routes through `Client.request`, their bodies read with `llm_config.wire`:

    get set list namespaces delete history     Client methods (/api/v1/configs/…, /api/v1/namespaces)
    set_template get_template list_templates   Client methods (/api/v1/templates/{ns…}/-/…: PUT, GET, …/render,
    template_history rollback_template         …/history, …/rollback/N, DELETE)
    delete_template render
    set_schema get_schema list_schemas         Client methods (/api/v1/schemas/{ns…}/-/{pattern}…;
    schema_history rollback_schema             /api/v1/schemas/builtins)
    delete_schema schema_builtins
    diff promote                               Client methods (/api/v1/namespaces/{ns…}/-/diff, …/-/promote)
    rollback                                   Client.rollback; with secret=False POST …/rollback/N?secret=false
    export_text / import_                      GET /api/v1/namespaces/{ns…}/-/export, POST …/-/import
    create_api_key / list_api_keys / revoke    POST, GET /api/v1/keys, DELETE /api/v1/keys/{id}
    audit_events / audit_verify / audit_head   GET /api/v1/audit (every page; without a query: /audit/export),
                                               /api/v1/audit/verify, /api/v1/audit/head
    backup                                     GET /api/v1/admin/backup, streamed out and checked on the way
    check_backup                               locally: the file's format, digest and counts (no store needed;
                                               the service checks the master key when it restores)
    restore                                    POST /api/v1/admin/restore (202), then GET /api/v1/admin/jobs/{id}
    doctor                                     GET /health with the key (details need system:read)

Commands without a REST route (`init`, `purge`, `migrate`, `upgrade`, `rotate-key`, `serve`) refuse
`--server` with one line naming the command (`_common.refuse_remote`).
"""

from __future__ import annotations

import builtins
import io
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import quote

import click

from llm_config import wire
from llm_config.cli.commands._common import state_of
from llm_config.errors import (
    AuthenticationError,
    IntegrityError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from llm_config.models import Entry, Environment, HistoryItem
from llm_config.names import parse_environment, validate_key, validate_namespace

if TYPE_CHECKING:
    import httpx

    from llm_config.audit import VerifyReport
    from llm_config.client import Client
    from llm_config.core.backups import BackupSummary, RestoreSummary
    from llm_config.core.transfer import ImportPlan
    from llm_config.documents import EnvDiff, Promotion, Schema, Template
    from llm_config.models import ApiKey, AuditEvent, Role
    from llm_config.storage.backup import BackupInfo
    from llm_config.types import AuditQuery

__all__ = ["RemoteManager", "ServiceLocation", "open_client", "open_remote_manager"]

API: Final = "/api/v1"
CHUNK: Final = 1 << 16
AUDIT_PAGE: Final = 10_000
"""The largest page `GET /api/v1/audit` serves."""
CLI_TIMEOUT: Final = 60.0
"""Seconds a one-shot command waits for an answer (a backup or a full `audit verify` can take a while)."""
_DEV: Final = Environment.DEVELOPMENT
_YAML: Final = "application/yaml"


def open_client(ctx: click.Context, *, watch: bool = False, timeout: float | None = None) -> Client:
    """A `Client` for the configured service (one-shot commands: no cache; `watch`: the stream too)."""
    settings = state_of(ctx).settings
    if not settings.server:
        raise ValidationError("No service configured: give --server URL or set LLM_CONFIG_SERVER")
    if not settings.api_key:
        raise ValidationError("--server needs an API key: set LLM_CONFIG_API_KEY")
    from llm_config.client import Client

    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout, "connect_timeout": 5.0, "retries": 2}
    try:
        return Client(settings.server, api_key=settings.api_key, watch=watch, ttl=0.0, **options)
    except ValueError as exc:  # its messages name the setting, never the key
        text = str(exc)
        if text.startswith("api_key:"):
            raise ValidationError(f"Invalid LLM_CONFIG_API_KEY: {text.removeprefix('api_key: ')}") from None
        # the URL is not repeated: whatever was put in it by mistake stays out of the terminal and logs
        raise ValidationError(f"Invalid --server URL: {text.removeprefix('url: ')}") from None


def open_remote_manager(ctx: click.Context) -> RemoteManager:
    """The `RemoteManager` of the configured service (what `open_manager` returns with `--server`)."""
    client = open_client(ctx, timeout=CLI_TIMEOUT)
    return RemoteManager(client, client.status().url)


@dataclass(frozen=True, slots=True)
class ServiceLocation:
    """Where a `RemoteManager`'s commands run, as the commands print it (`manager.storage.url`)."""

    url: str


class RemoteManager:
    """The manager methods the CLI's commands call, over a service's REST API (see the module docstring).

    Every call runs as the API key's principal: its role and scope decide, the service audits it. Errors are
    the library's exceptions (`Client.request` maps each error answer), so the CLI's exit codes hold.
    """

    def __init__(self, client: Client, url: str) -> None:
        self._client = client
        self.storage = ServiceLocation(url)

    def __repr__(self) -> str:
        return f"RemoteManager({self.storage.url!r})"

    def __enter__(self) -> RemoteManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ values (the SDK's methods)

    def get(self, namespace: str, key: str, *, env: str | Environment = _DEV, version: int | None = None,
            with_overrides: bool = False, reveal: bool = False) -> Entry:
        return self._client.get(namespace, key, env=env, version=version, with_overrides=with_overrides,
                                reveal=reveal)

    def set(self, namespace: str, key: str, value: Any, *, env: str | Environment = _DEV,
            secret: bool | None = None, description: str | None = None, tags: Sequence[str] | None = None,
            message: str | None = None, expected_version: int | None = None) -> Entry:
        return self._client.set(namespace, key, value, env=env, secret=secret, description=description, tags=tags,
                                message=message, expected_version=expected_version)

    def list(self, namespace: str, *, env: str | Environment = _DEV, prefix: str = "",
             recursive: bool = False) -> builtins.list[Entry]:
        return self._client.list(namespace, env=env, prefix=prefix, recursive=recursive)

    def namespaces(self, prefix: str = "") -> builtins.list[str]:
        return self._client.namespaces(prefix)

    def delete(self, namespace: str, key: str, *, env: str | Environment = _DEV,
               expected_version: int | None = None) -> Entry:
        return self._client.delete(namespace, key, env=env, expected_version=expected_version)

    def history(self, namespace: str, key: str, *, env: str | Environment = _DEV,
                limit: int | None = None) -> builtins.list[HistoryItem]:
        return self._client.history(namespace, key, env=env, limit=limit)

    def rollback(self, namespace: str, key: str, version: int, *, env: str | Environment = _DEV,
                 secret: bool | None = None) -> Entry:
        """`secret=False` lets a secret roll back to a plain version (`?secret=false`, which the SDK's
        `rollback` does not send); otherwise the SDK's `rollback`."""
        if secret is not False:
            return self._client.rollback(namespace, key, version, env=env)
        environment = _names(namespace, key, env)
        path = f"{_config_path(namespace, key)}/rollback/{int(version)}"
        response = self._client.request("POST", path, params={"env": environment.value, "secret": "false"})
        return wire.entry_from_json(_json(response), _revision(response))

    # ------------------------------------------------------------------ templates, schemas, environments (the SDK's)

    def set_template(self, namespace: str, name: str, content: str, *, env: str | Environment = _DEV,
                     description: str | None = None, defaults: Mapping[str, Any] | None = None,
                     expected_version: int | None = None, message: str | None = None) -> Template:
        return self._client.set_template(namespace, name, content, env=env, description=description,
                                         defaults=defaults, expected_version=expected_version, message=message)

    def get_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                     version: int | None = None) -> Template:
        return self._client.get_template(namespace, name, env=env, version=version)

    def list_templates(self, namespace: str, *, env: str | Environment = _DEV) -> builtins.list[Template]:
        return self._client.list_templates(namespace, env=env)

    def template_history(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                         limit: int | None = None) -> builtins.list[HistoryItem]:
        return self._client.template_history(namespace, name, env=env, limit=limit)

    def rollback_template(self, namespace: str, name: str, version: int, *,
                          env: str | Environment = _DEV) -> Template:
        return self._client.rollback_template(namespace, name, version, env=env)

    def delete_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                        expected_version: int | None = None) -> None:
        self._client.delete_template(namespace, name, env=env, expected_version=expected_version)

    def render(self, namespace: str, name: str, variables: Mapping[str, Any] | None = None, *,
               env: str | Environment = _DEV, allow_extra: bool = False) -> str:
        return self._client.render(namespace, name, variables, env=env, allow_extra=allow_extra)

    def set_schema(self, namespace: str, pattern: str, schema: Mapping[str, Any] | None = None, *,
                   builtin: str | None = None, description: str | None = None,
                   expected_version: int | None = None) -> Schema:
        return self._client.set_schema(namespace, pattern, schema, builtin=builtin, description=description,
                                       expected_version=expected_version)

    def get_schema(self, namespace: str, pattern: str, *, version: int | None = None) -> Schema:
        return self._client.get_schema(namespace, pattern, version=version)

    def list_schemas(self, namespace: str) -> builtins.list[Schema]:
        return self._client.list_schemas(namespace)

    def schema_history(self, namespace: str, pattern: str, *, limit: int | None = None) -> builtins.list[HistoryItem]:
        return self._client.schema_history(namespace, pattern, limit=limit)

    def rollback_schema(self, namespace: str, pattern: str, version: int) -> Schema:
        return self._client.rollback_schema(namespace, pattern, version)

    def delete_schema(self, namespace: str, pattern: str, *, expected_version: int | None = None) -> None:
        self._client.delete_schema(namespace, pattern, expected_version=expected_version)

    def schema_builtins(self) -> builtins.list[dict[str, str]]:
        """The service's built-in schemas (`[{"name", "description"}]`)."""
        return self._client.schema_builtins()

    def diff(self, namespace: str, *, from_env: str | Environment, to_env: str | Environment) -> EnvDiff:
        return self._client.diff(namespace, from_env=from_env, to_env=to_env)

    def promote(self, namespace: str, *, from_env: str | Environment, to_env: str | Environment,
                keys: Sequence[str] | None = None, prune: bool = False, dry_run: bool = False,
                plan: Promotion | None = None, secret: bool | None = None) -> Promotion:
        return self._client.promote(namespace, from_env=from_env, to_env=to_env, keys=keys, prune=prune,
                                    dry_run=dry_run, plan=plan, secret=secret)

    # ------------------------------------------------------------------ export and import

    def export_text(self, namespace: str, *, env: str | Environment = _DEV, fmt: str = "json",
                    reveal: bool = False) -> str:
        environment = _names(namespace, None, env)
        if fmt not in ("json", "yaml", "dotenv"):
            raise ValidationError(f"Unknown export format {fmt!r}: use json, yaml or dotenv")
        response = self._client.request("GET", f"{_namespace_path(namespace)}/-/export", params={
            "env": environment.value, "format": fmt, "reveal": reveal or None})
        return response.content.decode("utf-8")

    def import_(self, namespace: str, document: str, *, env: str | Environment = _DEV, fmt: str | None = None,
                prune: bool = False, dry_run: bool = False, secret: bool | None = None) -> ImportPlan:
        """The document goes as it is, as JSON or YAML (`fmt`, else guessed as the manager guesses it)."""
        from llm_config.core.transfer import ImportPlan

        environment = _names(namespace, None, env)
        if fmt is None:
            fmt = "json" if document.lstrip()[:1] in ("{", "[") else "yaml"
        if fmt not in ("json", "yaml"):
            raise ValidationError(f"Unknown import format {fmt!r}: use json or yaml")
        response = self._client.request(
            "POST", f"{_namespace_path(namespace)}/-/import",
            params={"env": environment.value, "prune": prune or None, "dry_run": dry_run or None, "secret": secret},
            content=document.encode("utf-8"),
            headers={"Content-Type": "application/json" if fmt == "json" else _YAML},
        )
        return ImportPlan(**wire.import_plan_from_json(_json(response)))

    # ------------------------------------------------------------------ API keys

    def create_api_key(self, name: str, role: str | Role, *, namespaces: Sequence[str] = (),
                       environments: Sequence[str | Environment] = (),
                       expires_days: float | None = None) -> tuple[ApiKey, str]:
        body = wire.KeyCreateBody(name, str(role), tuple(namespaces), tuple(str(e) for e in environments),
                                  expires_days)
        response = self._client.request("POST", f"{API}/keys", json=body.to_json())
        return wire.created_api_key_from_json(_json(response))

    def list_api_keys(self) -> builtins.list[ApiKey]:
        return [wire.api_key_from_json(item) for item in _array(self._client.request("GET", f"{API}/keys"))]

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """`DELETE /api/v1/keys/{id}` (204); the record as the key listing shows it after (or before, when the
        key revoked itself and may list nothing more)."""
        before = self._key_record(key_id)
        self._client.request("DELETE", f"{API}/keys/{quote(key_id, safe='')}")
        try:
            after = self._key_record(key_id)
        except AuthenticationError:
            after = None
        record = after or before
        if record is None:  # revoking needs the same role and scope as seeing the key: not expected
            raise NotFoundError(f"API key not found: {key_id[:40]}")
        return record

    def _key_record(self, key_id: str) -> ApiKey | None:
        return next((record for record in self.list_api_keys() if record.id == key_id), None)

    # ------------------------------------------------------------------ audit

    def audit_events(self, query: AuditQuery | None = None) -> builtins.list[AuditEvent]:
        """With a query: `GET /api/v1/audit`, page after page. Without one (`audit export`): the whole trail
        with its MACs, from `GET /api/v1/audit/export` (unscoped keys with `audit_log:export`)."""
        if query is None:
            text = self._client.request("GET", f"{API}/audit/export").content
            return [wire.audit_event_from_json(_loads(line)) for line in text.splitlines() if line.strip()]
        events: builtins.list[AuditEvent] = []
        cursor = query.after_seq or None
        while True:
            wanted = AUDIT_PAGE if query.limit is None else min(AUDIT_PAGE, query.limit - len(events))
            response = self._client.request("GET", f"{API}/audit", params={
                "since": query.since, "until": query.until, "user": query.actor, "type": query.type,
                "namespace": query.namespace, "limit": wanted, "cursor": cursor})
            events += [wire.audit_event_from_json(item) for item in _array(response)]
            cursor = response.headers.get("x-next-cursor")
            if not cursor or (query.limit is not None and len(events) >= query.limit):
                return events

    def audit_verify(self, anchor: str | None = None) -> VerifyReport:
        from llm_config.audit import VerifyReport

        response = self._client.request("GET", f"{API}/audit/verify", params={"anchor": anchor or None})
        return VerifyReport(**wire.verify_report_from_json(_json(response)))

    def audit_head(self) -> str | None:
        body = _json(self._client.request("GET", f"{API}/audit/head"))
        head = body.get("head") if isinstance(body, dict) else None
        if head is not None and not isinstance(head, str):
            raise ValidationError("Invalid response from the service: 'head' must be a string or null")
        return head

    # ------------------------------------------------------------------ backup and restore

    def backup(self, out: IO[bytes]) -> BackupSummary:
        """Stream `GET /api/v1/admin/backup` into `out`, checking the file on the way (gzip, format, digest,
        counts — `storage.backup.scan`); the summary is its manifest's, and its digest must be the one the
        service announced (`X-Backup-SHA256`)."""
        from llm_config.core.backups import BackupSummary
        from llm_config.storage.backup import scan

        with self._client.stream("GET", f"{API}/admin/backup") as response:
            tee = _Tee(response.iter_bytes(CHUNK), out)
            try:
                info = scan(io.BufferedReader(tee, CHUNK))
            except ValidationError as exc:
                why = exc.message.removeprefix("Backup file refused: ").removesuffix("; nothing was restored")
                raise IntegrityError(f"The backup sent by {self.storage.url} is damaged: {why}") from None
            tee.drain()
            announced = response.headers.get("x-backup-sha256")
        if announced is not None and announced != info.sha256:
            raise IntegrityError(f"The backup sent by {self.storage.url} is not the one it announced "
                                 f"(sha256 {info.sha256}, announced {announced})")
        return BackupSummary(info.sha256, info.rows, info.revision, info.epoch)

    def check_backup(self, stream: IO[bytes]) -> BackupInfo:
        """Check the file whole here (format, digest, counts: no store needed) before anything is sent; that
        the service's master key opens it is checked there, before the restore replaces anything."""
        from llm_config.storage.backup import scan

        return scan(stream)

    def restore(self, stream: IO[bytes], *, force: bool = False) -> RestoreSummary:
        """`POST /api/v1/admin/restore` with the file as the body (streamed), then poll the job it starts."""
        from llm_config.core.backups import RestoreSummary

        start = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)

        def chunks() -> Iterator[bytes]:
            while chunk := stream.read(CHUNK):
                yield chunk

        response = self._client.request(
            "POST", f"{API}/admin/restore", params={"force": force or None}, content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        job = self._finished(wire.Job.from_json(_json(response)))
        if job.status == "failed":
            raise job.exception()
        return RestoreSummary(**wire.restore_summary_from_json(job.result))

    def _finished(self, job: wire.Job) -> wire.Job:
        """Poll `/api/v1/admin/jobs/{id}` until the job is no longer running."""
        delay = 0.05
        while job.status == "running":
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                response = self._client.request("GET", f"{API}/admin/jobs/{quote(job.id, safe='')}")
            except NotFoundError:
                raise StorageError(
                    f"The {job.kind} job {job.id} is no longer known to the service (it restarted, or another "
                    "replica answered): look for its event with 'audit list'") from None
            except AuthenticationError:
                raise AuthenticationError(
                    f"The {job.kind} job {job.id} started, but the service no longer accepts this API key (the "
                    "restored store has the API keys of the backup): read its outcome with a key of that store"
                ) from None
            job = wire.Job.from_json(_json(response))
        return job

    # ------------------------------------------------------------------ health

    def doctor(self) -> dict[str, Any]:
        """The service's `/health` (sent with the key: a key with `system:read` sees each check's message and
        counts; without it each message says so). `{"status", "service", "version", "checks"}`."""
        response = self._client.request("GET", "/health", raise_for_status=False)
        data = _loads(response.content) if response.content else None
        if response.status_code not in (200, 503) or not isinstance(data, dict) or "checks" not in data:
            status = response.status_code if response.status_code >= 400 else 502
            raise wire.error_for(status, wire.ErrorBody.from_json(data, status))
        checks = data.get("checks")
        if data.get("status") not in ("healthy", "degraded", "unhealthy") or not isinstance(checks, dict) \
                or not all(isinstance(c, dict) and isinstance(c.get("status"), str) for c in checks.values()):
            raise ValidationError("Invalid response from the service: not a health report")
        for check in checks.values():
            if not isinstance(check.get("message"), str):
                check["message"] = "(details need an API key with system:read)"
        return data


# ---------------------------------------------------------------------------------------------- helpers

class _Tee(io.RawIOBase):
    """A readable stream over a response's chunks that also writes every chunk it passes to `out`."""

    def __init__(self, chunks: Iterator[bytes], out: IO[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._out = out
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._out.write(chunk)
            self._pending = memoryview(chunk)
        target = memoryview(buffer).cast("B")
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        """Pass on whatever the reader left unread (nothing, for an intact backup)."""
        if self._pending:
            self._out.write(self._pending)
            self._pending = memoryview(b"")
        for chunk in self._chunks:
            self._out.write(chunk)


def _names(namespace: str, key: str | None, env: str | Environment) -> Environment:
    """Check names here, so a bad one fails with the same words as on a local store."""
    validate_namespace(namespace)
    if key is not None:
        validate_key(key)
    return parse_environment(env)


def _namespace_path(namespace: str) -> str:
    return f"{API}/namespaces/" + "/".join(quote(s, safe="") for s in namespace.split("/"))


def _config_path(namespace: str, key: str) -> str:
    return f"{API}/configs/" + "/".join(quote(s, safe="") for s in namespace.split("/")) + f"/-/{quote(key, safe='')}"


def _loads(content: bytes) -> Any:
    import orjson

    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ValidationError("Invalid response from the service: not JSON") from None


def _json(response: httpx.Response) -> Any:
    return _loads(response.content)


def _array(response: httpx.Response) -> builtins.list[Any]:
    data = _json(response)
    if not isinstance(data, builtins.list):
        raise ValidationError("Invalid response from the service: expected a JSON array")
    return data


def _revision(response: httpx.Response) -> int:
    text = response.headers.get("x-config-revision", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else 0
