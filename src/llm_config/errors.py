"""The one exception tree of llm-config, and the one table mapping it to HTTP and CLI codes.

    LLMConfigError
    ├── ValidationError          bad name, environment, value, size, JSON   (HTTP 400, exit 1)
    │   ├── SchemaViolationError value breaks a JSON Schema                 (HTTP 422, exit 1)
    │   └── SecretOverwriteError a plain value would replace a secret      (HTTP 409, exit 1)
    ├── NotFoundError            no such entry / version / namespace        (HTTP 404, exit 1)
    ├── ConflictError            compare-and-set mismatch                   (HTTP 409, exit 3)
    ├── PermissionDeniedError    RBAC said no                               (HTTP 403, exit 1)
    ├── AuthenticationError      missing / bad API key                      (HTTP 401, exit 1)
    ├── RateLimitedError         too many requests: retry after `retry_after` s (HTTP 429, exit 1)
    ├── KeyMissingError          operation needs the master key             (HTTP 503, exit 1)
    ├── SecretKeyError           wrong / weak key, or a ciphertext that fails to open
    │                                                                       (HTTP 500→503, exit 1)
    ├── StoreMissingError        reading command on a store that does not exist (exit 1)
    ├── StorageError             the database failed or is unreachable      (HTTP 503, exit 1)
    │   ├── StorageUnavailableError    unreachable right now: retry            (503 + Retry-After)
    │   ├── AuditError           the audit event could not be written       (HTTP 503, exit 1)
    │   └── IntegrityError       a stored row fails its MAC: never served    (HTTP 503, exit 1)
    └── MissingDependencyError   an optional extra is not installed         (exit 1)

Messages never contain a value (plain or secret): they name namespace, key, environment and
version only, which are also kept as attributes for callers.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuthenticationError",
    "ConflictError",
    "IntegrityError",
    "KeyMissingError",
    "LLMConfigError",
    "MissingDependencyError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "SchemaViolationError",
    "SecretKeyError",
    "SecretOverwriteError",
    "StorageError",
    "StorageUnavailableError",
    "StoreMissingError",
    "ValidationError",
    "exit_code_for",
    "http_status_for",
]


class LLMConfigError(Exception):
    """Root of every error this package raises on purpose."""

    http_status = 500
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        namespace: str | None = None,
        key: str | None = None,
        environment: str | None = None,
        version: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.namespace = namespace
        self.key = key
        self.environment = environment
        self.version = version

    def __str__(self) -> str:
        return self.message


class ValidationError(LLMConfigError):
    """Input that breaks the grammar or the limits of SPEC §3."""

    http_status = 400


class SchemaViolationError(ValidationError):
    """A value that breaks the JSON Schema registered for its key."""

    http_status = 422


class SecretOverwriteError(ValidationError):
    """A plain value would replace a live secret without `--no-secret` (`secret=False`): the request is
    well formed, the entry's current state refuses it (409, like a conflict; exit 1, nothing changed)."""

    http_status = 409


class NotFoundError(LLMConfigError):
    """No such entry, version, namespace or object."""

    http_status = 404


class ConflictError(LLMConfigError):
    """A compare-and-set write whose expected version was not the current one."""

    http_status = 409
    exit_code = 3

    def __init__(self, message: str, *, current_version: int | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.current_version = current_version


class PermissionDeniedError(LLMConfigError):
    """The caller's role or scope does not allow the operation."""

    http_status = 403


class AuthenticationError(LLMConfigError):
    """Missing, unknown, expired or revoked credentials."""

    http_status = 401


class KeyMissingError(LLMConfigError):
    """The operation needs the master key and none was supplied."""

    http_status = 503


class SecretKeyError(LLMConfigError):
    """A key that is malformed or weak, or a ciphertext that no key in the keyring opens."""

    http_status = 503


class StoreMissingError(LLMConfigError):
    """A reading command was pointed at a store that does not exist."""

    http_status = 503


class RateLimitedError(LLMConfigError):
    """A rate limit refused the request (a remote service's 429); nothing was changed."""

    http_status = 429

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageError(LLMConfigError):
    """The storage backend failed or is unreachable."""

    http_status = 503


class StorageUnavailableError(StorageError):
    """The database cannot be reached right now (down, restarting, pool exhausted): worth retrying.
    REST adds `Retry-After`; nothing was changed."""

    retry_after = 1

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class AuditError(StorageError):
    """The audit event could not be written, so the operation did not happen."""


class IntegrityError(StorageError):
    """A stored row failed its keyed MAC or is an older copy of itself: it was changed outside
    llm-config, so it is not served (SPEC §2). The message names the row, never its value."""


class MissingDependencyError(LLMConfigError):
    """An optional extra is not installed; the message names the pip extra."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed: pip install 'llm-config-manager[{extra}]'"
        )


def http_status_for(exc: BaseException) -> int:
    """HTTP status for an error (500 for anything that is not ours)."""
    return exc.http_status if isinstance(exc, LLMConfigError) else 500


def exit_code_for(exc: BaseException) -> int:
    """CLI exit code for an error: 3 for conflicts, 1 for everything else."""
    return exc.exit_code if isinstance(exc, LLMConfigError) else 1
