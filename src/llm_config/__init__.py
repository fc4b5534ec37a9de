"""llm-config-manager: versioned configuration and encrypted secrets for LLM applications.

    from llm_config import ConfigManager
    with ConfigManager.open(".llm-config") as mgr:
        mgr.set("acme/chatbot", "openai.model", "gpt-4o", env="production")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llm_config.errors import (
    AuditError,
    AuthenticationError,
    ConflictError,
    IntegrityError,
    KeyMissingError,
    LLMConfigError,
    MissingDependencyError,
    NotFoundError,
    PermissionDeniedError,
    SchemaViolationError,
    SecretKeyError,
    SecretOverwriteError,
    StorageError,
    StoreMissingError,
    ValidationError,
)

if TYPE_CHECKING:
    from llm_config.client import AsyncClient, Client, ClientStatus
    from llm_config.core.manager import ConfigManager
    from llm_config.core.transfer import ImportPlan
    from llm_config.crypto.keys import generate_key
    from llm_config.models import AuditEvent, Entry, Environment, HistoryItem, Metadata
    from llm_config.types import AuditQuery

# Imported on first use, so `import llm_config.errors` (every CLI command) does not pay for the
# manager, storage and cryptography stack.
_LAZY = {
    "AsyncClient": "llm_config.client",
    "Client": "llm_config.client",
    "ClientStatus": "llm_config.client",
    "ConfigManager": "llm_config.core.manager",
    "ImportPlan": "llm_config.core.transfer",
    "generate_key": "llm_config.crypto.keys",
    "AuditEvent": "llm_config.models",
    "Entry": "llm_config.models",
    "Environment": "llm_config.models",
    "HistoryItem": "llm_config.models",
    "Metadata": "llm_config.models",
    "AuditQuery": "llm_config.types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_config' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AuditError",
    "AuditEvent",
    "AuditQuery",
    "AuthenticationError",
    "Client",
    "ClientStatus",
    "ConfigManager",
    "ConflictError",
    "Entry",
    "Environment",
    "HistoryItem",
    "ImportPlan",
    "IntegrityError",
    "KeyMissingError",
    "LLMConfigError",
    "Metadata",
    "MissingDependencyError",
    "NotFoundError",
    "PermissionDeniedError",
    "SchemaViolationError",
    "SecretKeyError",
    "SecretOverwriteError",
    "StorageError",
    "StoreMissingError",
    "ValidationError",
    "__version__",
    "generate_key",
]
