"""llm-config-manager: versioned configuration and encrypted secrets for LLM applications.

    from llm_config import ConfigManager
    with ConfigManager.open(".llm-config") as mgr:
        mgr.set("acme/chatbot", "openai.model", "gpt-4o", env="production")
"""

from llm_config.core.manager import ConfigManager
from llm_config.core.transfer import ImportPlan
from llm_config.crypto.keys import generate_key
from llm_config.errors import (
    AuditError,
    AuthenticationError,
    ConflictError,
    KeyMissingError,
    LLMConfigError,
    MissingDependencyError,
    NotFoundError,
    PermissionDeniedError,
    SchemaViolationError,
    SecretKeyError,
    StorageError,
    StoreMissingError,
    ValidationError,
)
from llm_config.models import AuditEvent, Entry, Environment, HistoryItem, Metadata
from llm_config.types import AuditQuery

__version__ = "0.1.0"

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditQuery",
    "AuthenticationError",
    "ConfigManager",
    "ConflictError",
    "Entry",
    "Environment",
    "HistoryItem",
    "ImportPlan",
    "KeyMissingError",
    "LLMConfigError",
    "Metadata",
    "MissingDependencyError",
    "NotFoundError",
    "PermissionDeniedError",
    "SchemaViolationError",
    "SecretKeyError",
    "StorageError",
    "StoreMissingError",
    "ValidationError",
    "__version__",
    "generate_key",
]
