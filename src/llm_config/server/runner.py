"""`serve`: open the store, refuse non-loopback hosts, run uvicorn or granian.

Until the security layer (authentication, RBAC, rate limits) exists, the API has no access control,
so it only listens on loopback. With several workers each process opens its own manager through
the import-string factory `llm_config.server.app:app_from_env`, configured by `LLM_CONFIG_*`
variables this module sets for them. Never logs a key or a password.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from llm_config.core.manager import ConfigManager
from llm_config.errors import ValidationError
from llm_config.settings import ServeOptions, Settings

__all__ = [
    "APP_FACTORY",
    "SERVER_IMPLS",
    "ensure_loopback",
    "is_loopback",
    "serve",
    "uvicorn_options",
    "worker_environment",
]

log = logging.getLogger("llm_config.server")

APP_FACTORY: Final = "llm_config.server.app:app_from_env"
SERVER_IMPLS: Final = ("uvicorn", "granian")


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


def ensure_loopback(host: str) -> None:
    if not is_loopback(host):
        raise ValidationError(
            f"Refusing to bind {host}: authentication arrives with the security layer; "
            "until then the server only listens on loopback"
        )


def _check_options(options: ServeOptions) -> None:
    ensure_loopback(options.host)
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


def worker_environment(settings: Settings, options: ServeOptions) -> dict[str, str]:
    """The `LLM_CONFIG_*` variables from which `app_from_env` rebuilds these settings in a worker."""
    env = {
        "LLM_CONFIG_STORAGE": settings.storage,
        "LLM_CONFIG_CACHE_TTL": repr(float(options.cache_ttl)),
        "LLM_CONFIG_AUDIT_READS": "1" if options.audit_reads else "0",
        "LLM_CONFIG_MAX_BODY": str(options.max_body),
        "LLM_CONFIG_HOST": options.host,
        "LLM_CONFIG_PORT": str(options.port),
    }
    # workers find the key through find_keyring's own lookup (SPEC §2 order): a key given by flag
    # travels as LLM_CONFIG_KEY; a key file given by flag travels as LLM_CONFIG_KEY_FILE with
    # LLM_CONFIG_KEY blanked, so an inherited LLM_CONFIG_KEY cannot outrank the flag
    if settings.encryption_key:
        env["LLM_CONFIG_KEY"] = settings.encryption_key
    elif settings.key_file:
        env["LLM_CONFIG_KEY"] = ""
        env["LLM_CONFIG_KEY_FILE"] = settings.key_file
    optional = {
        "LLM_CONFIG_REDIS_URL": settings.redis_url,
        "LLM_CONFIG_TLS_CERT": options.tls_cert,
        "LLM_CONFIG_TLS_KEY": options.tls_key,
    }
    env.update({name: value for name, value in optional.items() if value})
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


def _announce(url: str, options: ServeOptions, storage_url: str) -> None:
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    log.info(
        "llm-config API listening on %s (%s, %d worker%s, store %s); docs at %s/docs",
        url, options.server_impl, options.workers, "" if options.workers == 1 else "s", storage_url, url,
    )


def serve(settings: Settings, options: ServeOptions) -> None:
    """Run the REST API until interrupted."""
    _check_options(options)
    manager = ConfigManager.open(
        settings.storage, encryption_key=settings.encryption_key, key_file=settings.key_file,
        redis_url=settings.redis_url, create=True, cache_ttl=options.cache_ttl, audit_reads=options.audit_reads,
    )
    tls = bool(options.tls_cert)
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"{'https' if tls else 'http'}://{shown_host}:{options.port}"
    _announce(url, options, manager.storage.url)
    if options.server_impl == "uvicorn" and options.workers == 1:
        _run_uvicorn_single(manager, options)
        return
    manager.close()  # the store exists and the key opens it; every worker opens its own manager
    with _environ(worker_environment(settings, options)):
        if options.server_impl == "uvicorn":
            _run_uvicorn_workers(options)
        else:
            _run_granian(options)


def uvicorn_options(options: ServeOptions) -> dict[str, object]:
    return {
        "host": options.host,
        "port": options.port,
        "proxy_headers": False,  # trusted proxies arrive with the security layer
        "server_header": False,
        "ws": "none",
        "lifespan": "on",
        "access_log": False,
        "log_level": "info",
        "ssl_certfile": options.tls_cert,
        "ssl_keyfile": options.tls_key,
    }


def _run_uvicorn_single(manager: ConfigManager, options: ServeOptions) -> None:
    import uvicorn

    from llm_config.server.app import create_app

    app = create_app(manager, options)
    app.state.close_manager = True
    uvicorn.Server(uvicorn.Config(app, **uvicorn_options(options))).run()  # type: ignore[arg-type]


def _run_uvicorn_workers(options: ServeOptions) -> None:
    import uvicorn

    uvicorn.run(APP_FACTORY, factory=True, workers=options.workers, **uvicorn_options(options))  # type: ignore[arg-type]


def _run_granian(options: ServeOptions) -> None:
    from granian import Granian
    from granian.constants import Interfaces

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
    ).serve()
