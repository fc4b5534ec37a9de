"""The `llm-config` command line: a click app over `ConfigManager` (SPEC §4).

Owns argument parsing, output formatting and exit codes; never talks to storage directly.
Heavy modules (the manager, cryptography, YAML, rich) are imported inside commands so that
`llm-config get` starts fast.
"""
