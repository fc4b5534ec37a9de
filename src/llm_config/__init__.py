"""llm-config-manager: versioned configuration and encrypted secrets for LLM applications."""
