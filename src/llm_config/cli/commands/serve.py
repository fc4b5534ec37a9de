"""`serve`: run the REST API on this store (SPEC §4, §8, §9).

Only resolves `ServeOptions` (flag > env > `--config` > default) and hands over to
`llm_config.server.runner`; the web stack is imported there, never on other commands' path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from llm_config.cli.commands._common import refuse_remote, state_of
from llm_config.cli.output import release_library_logging
from llm_config.errors import LLMConfigError, MissingDependencyError, ValidationError

__all__ = ["COMMANDS"]

_SERVER_IMPLS = ("granian", "uvicorn")


@click.command("serve")
@click.option("--host", metavar="HOST", help="Address to listen on.  [default: 127.0.0.1]")
@click.option("-p", "--port", type=click.IntRange(0, 65535), help="Port.  [default: 8080]")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes.  [default: 1]")
@click.option("--server-impl", type=click.Choice(_SERVER_IMPLS), help="HTTP server.")
@click.option("--tls-cert", metavar="FILE", help="TLS certificate (PEM); needs --tls-key.")
@click.option("--tls-key", metavar="FILE", help="TLS private key (PEM); needs --tls-cert.")
@click.option("--cache-ttl", type=click.FloatRange(min=0), help="L1 cache TTL in seconds.  [default: 5]")
@click.option("--cache-l2", type=click.Choice(("auto", "on", "off")),
              help="Read through the Redis L2 cache (needs --redis-url; auto: on for PostgreSQL/MySQL, off for "
                   "SQLite, where invalidation still goes through Redis).  [default: auto]")
@click.option("--audit-reads/--no-audit-reads", default=None, help="Also audit plain reads (config_accessed).")
@click.option("--max-body", metavar="SIZE", help="Largest request body, e.g. 512KiB.  [default: 2MiB]")
@click.option("--rate-limit-key", metavar="RATE:BURST",
              help="Per-API-key token bucket (requests/s:bucket size; 0 = off).  [default: 100:50]")
@click.option("--rate-limit-ip", metavar="RATE:BURST",
              help="Per-client-IP bucket for requests without a valid key (0 = off).  [default: 10:10]")
@click.option("--allow-cidr", multiple=True, metavar="CIDR", help="Only accept clients in CIDR (repeatable).")
@click.option("--deny-cidr", multiple=True, metavar="CIDR", help="Refuse clients in CIDR (repeatable).")
@click.option("--trusted-proxy", multiple=True, metavar="CIDR",
              help="Trust X-Forwarded-For from proxies in CIDR (repeatable).")
@click.option("--cors-origin", multiple=True, metavar="ORIGIN", help="Allow CORS from ORIGIN (repeatable).")
@click.option("--metrics-auth", is_flag=True, default=None,
              help="Require an API key with system:read (admin, auditor) for /metrics.")
@click.option("--ban-loopback", is_flag=True, default=None,
              help="Ban loopback clients too after 10 failed authentications (exempt by default).")
@click.option("--access-log/--no-access-log", default=None, help="One log line per request.  [default: on]")
@click.option("--header-timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Close a connection whose request headers take longer (0 = off).  [default: 10]")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Answer 408 to a request whose body takes longer.  [default: 30]")
@click.option("--max-restore-body", metavar="SIZE",
              help="Largest backup accepted by POST /api/v1/admin/restore (admins only).  [default: 1GiB]")
@click.option("--no-upgrade", is_flag=True, default=None,
              help="Refuse to start while schema migrations are pending (run 'llm-config upgrade' first).")
@click.option("--bootstrap-admin-key-file", metavar="PATH",
              help="Server databases: create the first admin key (only if none exists) and write it to PATH.")
@click.option("--max-connections-per-ip", type=click.IntRange(min=0), metavar="N",
              help="Connections one client address may hold (uvicorn; trusted proxies exempt; 0 = off).  "
                   "[default: 100]")
@click.option("--tracing/--no-tracing", default=None,
              help="OpenTelemetry spans (needs the otel extra), exported as the standard OTEL_* variables say.  "
                   "[default: off]")
@click.pass_context
def serve_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Serve the REST API (needs the master key)."""
    state = state_of(ctx)
    refuse_remote(ctx)
    from llm_config.settings import ServeOptions, load_settings

    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in flags.items()}
    options = load_settings(ServeOptions, given, state.config_file)
    if options.cache_l2 not in ("auto", "on", "off"):
        raise ValidationError(f"Invalid cache_l2 {options.cache_l2!r}: use auto, on or off")
    if options.server_impl not in _SERVER_IMPLS:
        raise ValidationError(f"Invalid server_impl {options.server_impl!r}: use granian or uvicorn")
    if bool(options.tls_cert) != bool(options.tls_key):
        raise ValidationError("TLS needs both --tls-cert and --tls-key")
    encryption_key, key_file = state.key_arguments()
    settings = dataclasses.replace(state.settings, encryption_key=encryption_key, key_file=key_file)
    try:
        from llm_config.server.runner import serve
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing != "llm_config":
            raise MissingDependencyError(missing, "server") from None
        raise LLMConfigError("The REST server is not part of this installation yet") from None
    release_library_logging()  # the server logs JSON lines of its own
    serve(settings, options)


COMMANDS: tuple[click.Command, ...] = (serve_cmd,)
