"""What every command shares: the global settings, opening the manager, common options, prompts.

The manager (and with it cryptography and the storage drivers) is imported only when a command
actually opens a store, so `--help` and `keygen` stay cheap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from llm_config.errors import LLMConfigError, ValidationError

if TYPE_CHECKING:
    from llm_config.cli.remote import RemoteManager
    from llm_config.core.manager import ConfigManager
    from llm_config.settings import Settings

__all__ = [
    "ENVIRONMENT_HELP",
    "EXPECTED_VERSION",
    "LIMIT",
    "VERSION",
    "CLIState",
    "ValueCommand",
    "confirm",
    "env_option",
    "format_option",
    "open_local_manager",
    "open_manager",
    "read_text",
    "read_value_arg",
    "refuse_remote",
    "state_of",
    "yes_option",
]

F = TypeVar("F", bound=Callable[..., Any])

ENVIRONMENT_HELP = (
    "Environment: base, development (default), staging, production, edge; aliases dev, stage, prod."
)
_INT64_MAX = 2**63 - 1
VERSION = click.IntRange(1, _INT64_MAX)
"""A version number given to a flag or an argument (out of range: a usage error, exit 2)."""
EXPECTED_VERSION = click.IntRange(0, _INT64_MAX)
LIMIT = click.IntRange(1, 10_000_000)
"""How many items at most (history, audit list)."""


class ValueCommand(click.Command):
    """A command whose VALUE may start with `-` (SPEC §4): `set ns k -1` stores -1.

    click would read `-1` or `-likeprod` as options (and with `ignore_unknown_options`, split
    `-likeprod` into `-l -i -k -e prod`). Here, once the positional arguments before VALUE are given,
    a token that is not exactly one of the command's options (`-e`, `--env`, `--env=prod`, …) is the
    value; `--` ends the options as usual. Attached short forms (`-eprod`) are not options here.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):  # with click's own --help, which is not in self.params
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        leading = sum(1 for p in self.params if isinstance(p, click.Argument)) - 1  # arguments before VALUE
        options: list[str] = []
        positional: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                positional.extend(args[i + 1:])
                break
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg
            if arg.startswith("-") and arg != "-" and (name in takes_value or len(positional) < leading):
                options.append(arg)
                if takes_value.get(name) and "=" not in arg and i + 1 < len(args):
                    options.append(args[i + 1])
                    i += 1
            else:
                positional.append(arg)
            i += 1
        return super().parse_args(ctx, [*options, "--", *positional])


@dataclass(slots=True)
class CLIState:
    """The global options as given on the command line; settings are resolved on first use."""

    flags: dict[str, Any]
    config_file: str | None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """Global settings: flag > `LLM_CONFIG_*` env > `--config` TOML > default."""
        if self._settings is None:
            from llm_config.settings import Settings, load_settings

            self._settings = load_settings(Settings, self.flags, self.config_file)
        return self._settings

    def key_arguments(self) -> tuple[str | None, str | None]:
        """`(encryption_key, key_file)` for `ConfigManager.open`, keeping SPEC §2's lookup order.

        The key lookup itself (flags, `LLM_CONFIG_KEY`, `LLM_CONFIG_KEY_FILE`, default file) belongs
        to `find_keyring`; we only add what the `--config` file says, and only when no flag and no
        key environment variable is set, so env beats file and `LLM_CONFIG_KEY` stays ahead of
        `LLM_CONFIG_KEY_FILE`.
        """
        encryption_key = self.flags.get("encryption_key")
        key_file = self.flags.get("key_file")
        if encryption_key or key_file:
            return encryption_key, key_file
        if os.environ.get("LLM_CONFIG_KEY") or os.environ.get("LLM_CONFIG_KEY_FILE"):
            return None, None
        settings = self.settings
        return settings.encryption_key, settings.key_file


def state_of(ctx: click.Context) -> CLIState:
    """The CLIState the root group stored (a bare one when a command runs on its own)."""
    state = ctx.find_object(CLIState)
    if state is None:
        state = CLIState(flags={}, config_file=None)
        ctx.obj = state
    return state


def refuse_remote(ctx: click.Context) -> None:
    """Refuse `--server` / `LLM_CONFIG_SERVER` for a command that has no REST route (one line naming it)."""
    if state_of(ctx).settings.server:
        raise LLMConfigError(f"'{ctx.info_name}' has no REST route: run it against the store (without --server)")


def open_manager(ctx: click.Context, *, create: bool, redis: bool | None = None) -> ConfigManager | RemoteManager:
    """The configured store's manager, or with `--server` / `LLM_CONFIG_SERVER` a `RemoteManager` offering the
    same methods over the service's REST API (`llm_config.cli.remote`); see `open_local_manager`."""
    if state_of(ctx).settings.server:
        from llm_config.cli.remote import open_remote_manager

        return open_remote_manager(ctx)
    return open_local_manager(ctx, create=create, redis=redis)


def open_local_manager(ctx: click.Context, *, create: bool, redis: bool | None = None) -> ConfigManager:
    """Open the configured store (commands without a REST route: `--server` is refused); reading commands
    pass `create=False` so nothing is created.

    Writing commands (`create`) pass `--redis-url` / `LLM_CONFIG_REDIS_URL` on, so their writes reach
    every server's cache at once through Redis (without it, servers notice them by their revision poll);
    a one-shot command neither reads through Redis nor listens to it. `redis` overrides (doctor checks it).
    """
    refuse_remote(ctx)
    state = state_of(ctx)
    from llm_config.core.manager import ConfigManager

    encryption_key, key_file = state.key_arguments()
    return ConfigManager.open(
        state.settings.storage, encryption_key=encryption_key, key_file=key_file, create=create,
        redis_url=state.settings.redis_url if (create if redis is None else redis) else None, l2_reads=False,
        cache_listen=False,
    )


def env_option(func: F) -> F:
    """`-e/--env ENV` (default development)."""
    return click.option(
        "-e", "--env", "env", default="development", show_default=True, metavar="ENV", help=ENVIRONMENT_HELP
    )(func)


def yes_option(func: F) -> F:
    """`-y/--yes`: skip the confirmation."""
    return click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")(func)


def format_option(*choices: str, default: str | None = None) -> Callable[[F], F]:
    """`--format` limited to `choices` (the first is the default)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices, case_sensitive=False),
        default=default or choices[0],
        show_default=True,
        help="Output format.",
    )


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal unless `-y`; scripts (stdin not a TTY) are not asked. Declining aborts."""
    if yes or not sys.stdin.isatty():
        return
    click.confirm(question, abort=True, err=True)


def read_text(path: str, what: str) -> str:
    """The UTF-8 text of `path` (`-` is stdin); `what` names it in errors ("Value", "Import").

    Reads at most `MAX_DOCUMENT_BYTES`: anything larger is refused before a parser sees it.
    """
    from llm_config.values import MAX_DOCUMENT_BYTES

    if path == "-":
        raw, source = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1), "stdin"
    else:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_DOCUMENT_BYTES + 1)
        except FileNotFoundError:
            raise ValidationError(f"{what} file not found: {path}") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ValidationError(f"{what} file {path} cannot be read: {why}") from None
        source = f"{what.lower()} file {path}"
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"Invalid {what.lower()}: {source} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"Invalid {what.lower()}: {source} is not UTF-8 text") from None


def read_value_arg(text: str) -> Any:
    """A VALUE argument: `-` reads stdin (minus exactly one trailing newline, as `echo` adds one),
    `@FILE` a file (byte-exact); then JSON if it parses, else the string."""
    from llm_config.values import parse_cli_value

    if text == "-":
        value = read_text("-", "Value")
        return parse_cli_value(value[:-2] if value.endswith("\r\n") else value.removesuffix("\n"))
    if text.startswith("@") and len(text) > 1:
        path = text[1:]
        return parse_cli_value(read_text("./-" if path == "-" else path, "Value"))  # @- names a file
    return parse_cli_value(text)
