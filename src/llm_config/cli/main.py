"""Entry point of `llm-config`: the root group, its global options, and the one error boundary.

Built on click (the layer under Typer) rather than Typer itself: Typer 0.2x coerces every
parameter through a pydantic TypeAdapter, which would put pydantic's import (~55 ms here) on
every command, `get` included. Every `LLMConfigError` becomes one `error: ...` line on stderr
with the exit code of `exit_code_for` (3 for conflicts); nothing ever prints a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from llm_config.cli.commands import (
    audit,
    doctor,
    environments,
    init,
    keys,
    running,
    schemas,
    serve,
    store,
    templates,
    transfer,
    values,
    watching,
)
from llm_config.cli.commands._common import CLIState
from llm_config.cli.output import err, route_library_warnings
from llm_config.errors import LLMConfigError, exit_code_for

__all__ = ["cli", "main"]


@click.group(
    "llm-config",
    context_settings={"max_content_width": 110},
    epilog="Every global option can also come from LLM_CONFIG_<NAME> or a --config TOML file.",
)
@click.option("-s", "--storage", metavar="DIR|URL",
              help="Store: a directory or a sqlite:///, postgresql:// or mysql:// URL.  [default: .llm-config]")
@click.option("-k", "--encryption-key", metavar="B64",
              help="Master key (visible in ps: prefer --key-file or LLM_CONFIG_KEY).")
@click.option("--key-file", metavar="FILE", help="File holding the master key.")
@click.option("--redis-url", metavar="URL", help="Redis for the shared cache.")
@click.option("--server", metavar="URL", help="Run the command against a service (LLM_CONFIG_SERVER).")
@click.option("--config", "config_file", metavar="FILE", help="TOML settings file.")
@click.version_option(package_name="llm-config-manager", prog_name="llm-config", message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context, storage: str | None, encryption_key: str | None, key_file: str | None,
    redis_url: str | None, server: str | None, config_file: str | None,
) -> None:
    """Versioned configuration and encrypted secrets for LLM applications."""
    ctx.obj = CLIState(
        flags={
            "storage": storage,
            "encryption_key": encryption_key,
            "key_file": key_file,
            "redis_url": redis_url,
            "server": server,
        },
        config_file=config_file,
    )


for _module in (init, values, transfer, environments, templates, schemas, running, keys, audit, doctor, store, serve,
                watching):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (for tests and `main`)."""
    route_library_warnings()
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="llm-config",
                          standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            return 130
        err("Aborted.")
        return 1
    except click.ClickException as exc:  # usage errors: exit 2
        exc.show()
        return exc.exit_code
    except LLMConfigError as exc:
        err(f"error: {exc.message}")
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _broken_pipe()
    except Exception as exc:  # the last resort: one line, never a traceback
        err(f"error: unexpected {type(exc).__name__}: {exc}")
        return 1
    return result if isinstance(result, int) else 0


def _broken_pipe() -> int:
    # the reader went away (`| head`): stop quietly, and keep Python from complaining at exit
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return 1


def main() -> None:
    """Console script `llm-config`."""
    code = run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _broken_pipe()
    sys.exit(code)


if __name__ == "__main__":
    main()
