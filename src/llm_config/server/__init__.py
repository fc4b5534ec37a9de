"""The REST API (SPEC §8): a FastAPI app over one `ConfigManager`, and the runner behind `serve`.

Only this package imports the web stack. `create_app` builds the app for a manager you own;
`serve` opens the store, refuses non-loopback hosts (until the security layer arrives) and runs
uvicorn or granian.
"""

from __future__ import annotations

from llm_config.server.app import create_app
from llm_config.server.runner import serve

__all__ = ["create_app", "serve"]
