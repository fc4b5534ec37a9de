"""The public API is what __all__ says, sorted, and every name in it exists."""

import llm_config


def test_all_is_sorted_and_complete() -> None:
    assert llm_config.__all__ == sorted(llm_config.__all__)
    for name in llm_config.__all__:
        assert hasattr(llm_config, name), name


def test_public_api_is_frozen() -> None:
    assert set(llm_config.__all__) == {
        "AsyncClient", "AuditError", "AuditEvent", "AuditQuery", "AuthenticationError", "Client", "ClientStatus",
        "ConfigManager",
        "ConflictError", "Entry", "Environment", "HistoryItem", "ImportPlan", "IntegrityError", "KeyMissingError",
        "LLMConfigError", "Metadata", "MissingDependencyError", "NotFoundError",
        "PermissionDeniedError", "SchemaViolationError", "SecretKeyError", "SecretOverwriteError", "StorageError",
        "StoreMissingError", "ValidationError", "__version__", "generate_key",
    }


def test_every_error_derives_from_the_root() -> None:
    for name in llm_config.__all__:
        obj = getattr(llm_config, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, llm_config.LLMConfigError)
