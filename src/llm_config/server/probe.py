"""`python -m llm_config.server.probe`: is the server in this container alive? (a HEALTHCHECK without curl)

Reads the address the way `serve` does (`LLM_CONFIG_HOST`, `LLM_CONFIG_PORT`, `LLM_CONFIG_TLS_CERT`,
or the TOML file in `LLM_CONFIG_CONFIG`), asks `/health/live` on it — on loopback when the server
listens on every address — and exits 0 on 200, 1 otherwise with one line on stderr. Liveness, not
`/health`: a data problem must not get the container restarted. Standard library only, so the
probe costs one interpreter start and no web stack.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request
from typing import Final

from llm_config.settings import ServeOptions, load_settings

__all__ = ["main", "probe_url"]

TIMEOUT_SECONDS: Final = 3.0
_WILDCARDS: Final = {"", "0.0.0.0", "::", "[::]", "*"}  # noqa: S104 - names the wildcard, binds nothing


def probe_url(options: ServeOptions) -> str:
    """The liveness URL of a server started with `options`."""
    host = options.host.strip()
    if host in _WILDCARDS:
        host = "::1" if ":" in host else "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if options.tls_cert else "http"
    return f"{scheme}://{host}:{options.port}/health/live"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer (not 200: unhealthy), never a hop to another address."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    del argv
    try:
        options = load_settings(ServeOptions, {})
    except Exception as exc:  # a probe reports, it never raises
        _say(f"unhealthy: settings: {exc}")
        return 1
    url = probe_url(options)
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirect()]
    if url.startswith("https:"):  # our own certificate on our own address: liveness, not identity
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    # straight to our own server: no HTTP(S)_PROXY from the environment, no redirect to elsewhere
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=TIMEOUT_SECONDS) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        _say(f"unhealthy: {url}: {getattr(exc, 'reason', None) or exc}")
        return 1
    if status == 403:
        _say(f"unhealthy: {url} answered 403: this probe calls from loopback; add 127.0.0.1/32 (and ::1/128) to "
             "--allow-cidr (LLM_CONFIG_ALLOW_CIDR) or take it out of --deny-cidr")
        return 1
    if status != 200:
        _say(f"unhealthy: {url} answered {status}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
