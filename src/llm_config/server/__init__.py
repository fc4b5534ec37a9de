"""The REST API (SPEC §8): a FastAPI app over one `ConfigManager`, and the runner behind `serve`.

Only this package imports the web stack. `create_app` builds the app for a manager you own —
every `/api` request authenticated by API key, authorised by the manager's RBAC, rate limited
and counted; `serve` opens the store, shows the first admin key once and runs uvicorn or granian.

Both are imported lazily: `serve` must set up Prometheus' multiprocess directory before anything
imports prometheus-client (granian forks its workers from the process that calls `serve`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_config.server.app import create_app
    from llm_config.server.runner import serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from llm_config.server.app import create_app

        return create_app
    if name == "serve":
        from llm_config.server.runner import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
