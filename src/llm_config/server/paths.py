"""Every path the server decides by, in one place: the routes register with these, the edge matches with them.

- path templates in Starlette's syntax (`{ns}` one segment, `{ns:path}` any namespace path, always
  followed by the separator segment `-`, SPEC §8), and the prefixes the edge tests;
- `match_entry`: the cached-GET matcher, compiled by Starlette's own `compile_path` from the templates
  the config routes register, so the edge and the router can never disagree on what a path means;
- `body_limits`: the routes whose request body has limits of its own (path → limit and timeout)
  instead of `--max-body` / `--body-timeout`, which the edge's body step applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from starlette.routing import compile_path

from llm_config.settings import ServeOptions

__all__ = [
    "API_PREFIX",
    "BACKUP_PATH",
    "CONFIGS_NS",
    "CONFIGS_NS_PATH",
    "CONFIGS_PREFIX",
    "CONFIG_ENTRY",
    "CONFIG_ENTRY_PATH",
    "DOCS_PATH",
    "DOCS_REDIRECT_PATH",
    "HEALTH_PATH",
    "METRICS_PATH",
    "NAMESPACES_NS_PATH",
    "PUBLIC_DOCS",
    "RESTORE_PATH",
    "RESTORE_TIMEOUT_S",
    "SCHEMAS_BUILTINS",
    "SCHEMAS_NS_PATH",
    "SCHEMAS_PREFIX",
    "SCHEMA_ENTRY_PATH",
    "TEMPLATES_NS_PATH",
    "TEMPLATES_PREFIX",
    "TEMPLATE_ENTRY_PATH",
    "WATCH_PATH",
    "WATCH_PREFIX",
    "BodyLimit",
    "body_limits",
    "match_entry",
]

API_PREFIX: Final = "/api/"
"""Everything under it needs an API key and is never cached by a browser or proxy."""
HEALTH_PATH: Final = "/health"
METRICS_PATH: Final = "/metrics"
DOCS_PATH: Final = "/docs"
DOCS_REDIRECT_PATH: Final = DOCS_PATH + "/oauth2-redirect"  # FastAPI's default next to `docs_url`
PUBLIC_DOCS: Final = (DOCS_PATH, DOCS_REDIRECT_PATH)
"""Swagger UI's pages: they load scripts from a CDN, so they get no Content-Security-Policy."""

CONFIGS_PREFIX: Final = "/api/v1/configs/"
CONFIGS_NS: Final = CONFIGS_PREFIX + "{ns}"
"""One namespace segment (the original's form): the list route, and the prefix of the entry routes."""
CONFIGS_NS_PATH: Final = CONFIGS_PREFIX + "{ns:path}/-"
"""Any namespace path and the separator segment: the prefix of the entry routes (`+ "/"`: the list)."""
CONFIG_ENTRY: Final = CONFIGS_NS + "/{key}"
CONFIG_ENTRY_PATH: Final = CONFIGS_NS_PATH + "/{key}"

NAMESPACES_NS_PATH: Final = "/api/v1/namespaces/{ns:path}/-"
"""Any namespace path and the separator: the prefix of resolve, export, import, diff and promote."""

TEMPLATES_PREFIX: Final = "/api/v1/templates/"
TEMPLATES_NS_PATH: Final = TEMPLATES_PREFIX + "{ns:path}/-"
"""The templates of a namespace path (`+ "/"`: the list), always with the separator segment."""
TEMPLATE_ENTRY_PATH: Final = TEMPLATES_NS_PATH + "/{name}"

SCHEMAS_PREFIX: Final = "/api/v1/schemas/"
SCHEMAS_BUILTINS: Final = SCHEMAS_PREFIX + "builtins"
"""The built-in schemas' names (no namespace: it cannot hold the separator segment, so no clash)."""
SCHEMAS_NS_PATH: Final = SCHEMAS_PREFIX + "{ns:path}/-"
SCHEMA_ENTRY_PATH: Final = SCHEMAS_NS_PATH + "/{pattern}"
"""A schema's key pattern may hold `*` and `?` (sent percent-encoded as %3F): one decoded path segment."""

BACKUP_PATH: Final = "/api/v1/admin/backup"
RESTORE_PATH: Final = "/api/v1/admin/restore"
RESTORE_TIMEOUT_S: Final = 600.0

WATCH_PREFIX: Final = "/api/v1/watch/"
WATCH_PATH: Final = WATCH_PREFIX + "{ns:path}"
"""Server-Sent Events: a response that streams until the client leaves."""


_ENTRY_REGEX, _ENTRY_LABEL, _ = compile_path(CONFIG_ENTRY)  # what the router compiles for the same templates
_ENTRY_PATH_REGEX, _ENTRY_PATH_LABEL, _ = compile_path(CONFIG_ENTRY_PATH)
_match_entry, _match_entry_path = _ENTRY_REGEX.match, _ENTRY_PATH_REGEX.match


def match_entry(path: str) -> tuple[str, str, str] | None:
    """`(namespace, key, route template)` when `path` names one config entry, in either form; else None.

    The template is the metrics label (`/api/v1/configs/{ns}/-/{key}`: `:path` dropped, as Starlette
    formats it). A match says nothing of validity: the names are checked where they are used.
    """
    match = _match_entry(path)
    if match is not None:
        return match.group(1), match.group(2), _ENTRY_LABEL
    match = _match_entry_path(path)
    if match is not None:
        return match.group(1), match.group(2), _ENTRY_PATH_LABEL
    return None


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The request-body limits of a route: at most `max_body` bytes, all of them within `timeout` seconds.

    `subject` and `option` word the 413 and 408 answers. `declared_at_edge`: a `Content-Length` over
    the limit is refused (413) before routing; False for a route that authorizes the caller before a
    single body byte is read and then checks the declared length itself (its body is still read
    under this limit and timeout).
    """

    max_body: int
    timeout: float
    subject: str = "Request body"
    option: str = ""
    declared_at_edge: bool = True

    @property
    def too_large(self) -> str:
        return f"{self.subject} larger than {self.max_body} bytes" + (f" ({self.option})" if self.option else "")

    @property
    def too_slow(self) -> str:
        return f"{self.subject} not received within {self.timeout:g} s"


def body_limits(options: ServeOptions) -> dict[str, BodyLimit]:
    """The routes whose request body has limits of its own: path → limits (others: `--max-body`)."""
    return {
        RESTORE_PATH: BodyLimit(options.max_restore_body, RESTORE_TIMEOUT_S, subject="Backup",
                                option="--max-restore-body", declared_at_edge=False),
    }
