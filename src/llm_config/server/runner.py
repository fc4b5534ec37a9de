"""`serve`: open the store, show the first admin key once, run uvicorn or granian.

Every `/api` request is authenticated (see `edge/auth.py`), so any address may be bound; the
default stays 127.0.0.1, and a non-loopback address without TLS gets a warning in the log.

On a store that never had an API key, `serve` creates an unrestricted admin key (SPEC §9) and writes it
to a new 0600 file — `<store dir>/initial-admin-key` for a directory store,
`$XDG_CONFIG_HOME/llm-config/initial-admin-key` for a URL store — whose path, never the key, goes to
the log; on a terminal the key is shown as well. Before announcing anything, `serve` checks that it
has a master key that opens the store, that the port is free and that the TLS material loads.

With several workers (or granian, whose workers are processes) each process opens its own manager
through the import-string factory `llm_config.server.runner:app_from_env`, configured by `LLM_CONFIG_*`
variables set here, and Prometheus runs in multiprocess mode over a fresh private directory
(`PROMETHEUS_MULTIPROC_DIR`) removed at exit. Never logs a key or a password.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import ssl
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from llm_config import tracing
from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import HOW_TO_SUPPLY
from llm_config.errors import KeyMissingError, ValidationError
from llm_config.server.limits import parse_rate
from llm_config.server.logs import configure as configure_logging
from llm_config.server.logs import get_logger
from llm_config.server.security import parse_networks, parse_origins
from llm_config.settings import ServeOptions, Settings, load_settings
from llm_config.storage.base import INITIAL_KEY_FILE, initial_key_path, parse_target

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "APP_FACTORY",
    "INITIAL_KEY_FILE",
    "SERVER_IMPLS",
    "app_from_env",
    "initial_key_path",
    "is_loopback",
    "open_manager",
    "serve",
    "show_initial_key",
    "uvicorn_options",
    "worker_environment",
]

log = get_logger()

APP_FACTORY: Final = "llm_config.server.runner:app_from_env"
SERVER_IMPLS: Final = ("uvicorn", "granian")
GRACEFUL_SHUTDOWN_SECONDS: Final = 10
_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` are loopback; everything else (0.0.0.0 included) is not."""
    name = host.strip()
    if name.lower() == "localhost":
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_options(options: ServeOptions) -> None:
    if options.server_impl not in SERVER_IMPLS:
        raise ValidationError(f"Unknown server implementation {options.server_impl!r}: use uvicorn or granian")
    if options.workers < 1:
        raise ValidationError("Invalid workers: must be at least 1")
    if not 0 <= options.port <= 65535:
        raise ValidationError("Invalid port: must be 0-65535")
    if bool(options.tls_cert) != bool(options.tls_key):
        raise ValidationError("--tls-cert and --tls-key must be given together")
    for path in (options.tls_cert, options.tls_key):
        if path and not Path(path).is_file():
            raise ValidationError(f"TLS file not found: {path}")
    if options.max_body < 1:
        raise ValidationError("Invalid max-body: must be positive")
    if options.header_timeout < 0 or options.body_timeout <= 0:
        raise ValidationError("Invalid header-timeout/body-timeout: seconds, header >= 0 and body > 0")
    if options.max_connections_per_ip < 0:
        raise ValidationError("Invalid max-connections-per-ip: must be 0 (off) or more")
    parse_rate(options.rate_limit_key, "rate-limit-key")
    parse_rate(options.rate_limit_ip, "rate-limit-ip")
    parse_networks(options.allow_cidr, "allow-cidr")
    parse_networks(options.deny_cidr, "deny-cidr")
    parse_networks(options.trusted_proxy, "trusted-proxy")
    parse_origins(options.cors_origin)
    if options.tracing:  # refused here, before anything is announced, not in every worker later
        tracing.check_env()


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def worker_environment(settings: Settings, options: ServeOptions) -> dict[str, str]:
    """The `LLM_CONFIG_*` variables from which `app_from_env` rebuilds these settings in a worker."""
    env = {"LLM_CONFIG_STORAGE": settings.storage}
    for f in fields(ServeOptions):
        value = getattr(options, f.name)
        if value is not None:
            env["LLM_CONFIG_" + f.name.upper()] = _env_value(value)
    # workers find the key through find_keyring's own lookup (SPEC §2 order): a key given by flag
    # travels as LLM_CONFIG_KEY; a key file given by flag travels as LLM_CONFIG_KEY_FILE with
    # LLM_CONFIG_KEY blanked, so an inherited LLM_CONFIG_KEY cannot outrank the flag
    if settings.encryption_key:
        env["LLM_CONFIG_KEY"] = settings.encryption_key
    elif settings.key_file:
        env["LLM_CONFIG_KEY"] = ""
        env["LLM_CONFIG_KEY_FILE"] = settings.key_file
    if settings.redis_url:
        env["LLM_CONFIG_REDIS_URL"] = settings.redis_url
    return env


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextmanager
def _metrics_dir() -> Iterator[str]:
    """A fresh private directory for prometheus-client's multiprocess files, removed afterwards."""
    path = tempfile.mkdtemp(prefix="llm-config-metrics-")  # 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def show_initial_key(manager: ConfigManager, storage: str, *, interactive: bool | None = None,
                     bootstrap_file: str | None = None) -> Path | None:
    """Create the first admin key of a store that never had one, write it to its 0600 file and, on a
    terminal, show it too (SPEC §9). Returns the file (None when the store already had keys).

    On a server database (several replicas may start at once) a key is created only with `bootstrap_file`
    (`--bootstrap-admin-key-file`), under the database's migration lock, and written there.
    """
    if parse_target(storage).server_url is not None:
        if bootstrap_file is None:
            if not manager.has_api_keys():
                log.warning("no_admin_key", note="this server database has no API key yet and none is created "
                            "without --bootstrap-admin-key-file PATH; or run 'llm-config -s URL keys create "
                            "--role admin --name NAME' once")
            return None
        key = manager.bootstrap_admin_key()
        path = Path(bootstrap_file)
    else:
        key = manager.ensure_initial_admin_key()
        path = initial_key_path(storage)
    if key is None:
        return None
    _write_private(path, key + "\n")
    log.warning("initial_admin_key_written", path=str(path),
                note="first start: an admin API key was created and written (mode 0600) to this file; "
                     "read it, store it safely and delete the file ('llm-config doctor' warns while it exists)")
    if interactive is None:
        interactive = sys.stderr.isatty()
    if interactive:
        sys.stderr.write(
            "\n  First start: an admin API key was created for this store:\n\n"
            f"      {key}\n\n"
            f"  It is also in {path} (mode 0600): store it safely, then delete that file.\n"
            "  Use it as 'Authorization: Bearer <key>' (or X-API-Key); create narrower keys with\n"
            "  'llm-config keys create' or POST /api/v1/keys, and revoke this one when done.\n\n"
        )
        sys.stderr.flush()
    elif parse_target(storage).directory is None:
        sys.stderr.write(f"llm-config: the first admin API key was written to {path} (mode 0600)\n")
    return path


def open_manager(settings: Settings, options: ServeOptions) -> ConfigManager:
    """Open the store for serving; refuses without a master key that opens it (SPEC §2: a server that
    cannot authenticate anybody would answer 503 to everything). Redis (when configured) carries the
    cache's invalidations and L2 records (cache/), and shares rate limits and bans (server/)."""
    l2_reads = {"on": True, "off": False}.get(options.cache_l2)
    manager = ConfigManager.open(
        settings.storage, encryption_key=settings.encryption_key, key_file=settings.key_file, create=True,
        cache_ttl=options.cache_ttl, audit_reads=options.audit_reads, upgrade=not options.no_upgrade,
        redis_url=settings.redis_url, l2_reads=l2_reads,
    )
    if not manager.has_key:
        why = manager.key_warning or HOW_TO_SUPPLY
        manager.close()
        raise KeyMissingError(f"serve needs the master key: {why}")
    return manager


def _check_listen(options: ServeOptions) -> None:
    """Bind the address once and load the TLS material before announcing anything, so a busy port or a
    swapped certificate is one clear line (exit 1), not a server's traceback."""
    try:
        infos = socket.getaddrinfo(options.host, options.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ValidationError(f"Cannot listen on {options.host}: {getattr(exc, 'strerror', None) or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValidationError(
                    f"Port {options.port} on {options.host} is already in use: stop the other server or choose "
                    "another --port"
                ) from None
            raise ValidationError(f"Cannot listen on {options.host}:{options.port}: {exc.strerror}") from None
    if options.tls_cert and options.tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(options.tls_cert, options.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ValidationError(
                f"TLS certificate {options.tls_cert} and key {options.tls_key} do not load together "
                f"({type(exc).__name__}): check that the certificate (PEM) is --tls-cert and its private key "
                "--tls-key"
            ) from None


def serve(settings: Settings, options: ServeOptions) -> None:
    """Run the REST API until interrupted."""
    _check_options(options)
    configure_logging()
    in_process = options.server_impl == "uvicorn" and options.workers == 1
    if in_process:
        _serve(settings, options, in_process=True)
        return
    # before prometheus-client is imported here: granian forks its workers from this process
    with _metrics_dir() as metrics_dir, _environ({_MULTIPROC_ENV: metrics_dir}):
        _serve(settings, options, in_process=False)


def _serve(settings: Settings, options: ServeOptions, *, in_process: bool) -> None:
    _check_listen(options)
    manager = open_manager(settings, options)
    try:
        show_initial_key(manager, settings.storage, bootstrap_file=options.bootstrap_admin_key_file)
    except BaseException:
        manager.close()
        raise
    tls = bool(options.tls_cert)
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"{'https' if tls else 'http'}://{shown_host}:{options.port}"
    log.info("listening", message=f"llm-config API listening on {url}; docs at {url}/docs",
             server=options.server_impl, workers=options.workers, store=manager.storage.url)
    if not tls and not is_loopback(options.host):
        log.warning("plain_http_on_network", host=options.host,
                    note="API keys travel in clear text: use --tls-cert/--tls-key or a TLS-terminating proxy")
    if in_process:
        _run_uvicorn_single(manager, options, settings.redis_url)
        return
    manager.close()  # the store exists and the key opens it; every worker opens its own manager
    with _environ(worker_environment(settings, options)):
        if options.server_impl == "uvicorn":
            _run_uvicorn_workers(options)
        else:
            _run_granian(options)


def uvicorn_options(options: ServeOptions) -> dict[str, object]:
    from llm_config.server.connections import PROTOCOL, configure

    configure(options)  # this process; workers configure themselves in app_from_env
    return {
        "http": PROTOCOL,  # header read timeout and per-address connection cap (connections.py)
        "host": options.host,
        "port": options.port,
        "proxy_headers": False,  # X-Forwarded-For is resolved by the edge, only from --trusted-proxy peers
        "server_header": False,
        "ws": "none",
        "lifespan": "on",
        "access_log": False,  # ours, with route templates and without query strings (logs.py)
        "log_level": "info",
        "ssl_certfile": options.tls_cert,
        "ssl_keyfile": options.tls_key,
        # with several workers open watch streams hold a worker's shutdown until this many seconds
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }


def app_from_env() -> FastAPI:
    """App factory for worker processes: settings from `LLM_CONFIG_*` (set by `serve`), own manager."""
    from llm_config.server.app import create_app
    from llm_config.server.connections import configure as configure_connections

    configure_logging()
    settings = load_settings(Settings, {})
    options = load_settings(ServeOptions, {})
    configure_connections(options)
    manager = open_manager(settings, options)  # the key: LLM_CONFIG_KEY / LLM_CONFIG_KEY_FILE as `serve` set them
    app = create_app(manager, options, redis_url=settings.redis_url)
    app.state.close_manager = True
    return app


def _run_uvicorn_single(manager: ConfigManager, options: ServeOptions, redis_url: str | None) -> None:
    import uvicorn

    from llm_config.server.app import create_app
    from llm_config.server.streams import close_all

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            close_all()  # watch streams never end by themselves: end them first, clients reconnect elsewhere
            await super().shutdown(sockets)

    app = create_app(manager, options, redis_url=redis_url)
    app.state.close_manager = True
    Server(uvicorn.Config(app, **uvicorn_options(options))).run()  # type: ignore[arg-type]


def _run_uvicorn_workers(options: ServeOptions) -> None:
    import uvicorn

    uvicorn.run(APP_FACTORY, factory=True, workers=options.workers, **uvicorn_options(options))  # type: ignore[arg-type]


def _run_granian(options: ServeOptions) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    Granian(
        APP_FACTORY,
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGI,
        workers=options.workers,
        factory=True,
        websockets=False,
        log_access=False,
        ssl_cert=Path(options.tls_cert) if options.tls_cert else None,
        ssl_key=Path(options.tls_key) if options.tls_key else None,
        http1_settings=HTTP1Settings(header_read_timeout=max(1, int(options.header_timeout * 1000))),
        workers_kill_timeout=GRACEFUL_SHUTDOWN_SECONDS,  # a worker still serving watch streams is stopped
    ).serve()
