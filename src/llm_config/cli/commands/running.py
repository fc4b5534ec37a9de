"""`run NS [-e ENV] [--only PREFIX] [--prefix P] -- CMD…`: CMD with the resolved namespace in its environment.

The namespace is resolved (the environment's values over base) from the local store or, with `--server`,
from the service, keys filtered by `--only`, and the secrets among those decrypted (each an audited read;
secrets left out are never decrypted); every key becomes a variable with the mapping of
dotenv export (`core.resolve.env_var_names`: `openai.api_key` → `OPENAI_API_KEY`), a string value raw and
anything else as compact JSON. Everything is checked before anything runs: a collision, a name that is
not a valid variable name, a name that decides what runs or loads (`PATH`, `LD_PRELOAD`, `PYTHONPATH`,
`NODE_OPTIONS`, … — whoever writes the namespace must not choose them for whoever runs it), a value
holding a NUL byte, or a namespace with no values at all is one error line naming the keys (never a
value), exit 1, and CMD does not run.

Then the store or the client is closed and this process *becomes* CMD (`os.execve` of the program found
with the caller's PATH, like `aws-vault exec` or `env`): the same pid, so CMD's exit status and any
signal that ends it reach the caller exactly, a signal sent to the pid reaches CMD itself, and no parent
stays around holding decrypted secrets.
Python's own start-up changes that exec would carry over (SIGPIPE and SIGXFSZ ignored) are undone first.
The credentials llm-config itself reads from the environment (`LLM_CONFIG_KEY`, `LLM_CONFIG_KEY_FILE`,
`LLM_CONFIG_API_KEY`, `LLM_CONFIG_STORAGE`, `LLM_CONFIG_REDIS_URL`) are not passed on: CMD gets its
namespace's values, not the key that opens every namespace.
A CMD that cannot be found is exit 127, one that cannot be executed 126 (as in a POSIX shell).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import click

from llm_config.cli.commands._common import env_option, state_of
from llm_config.cli.output import err, value_text
from llm_config.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from llm_config.types import ConfigReader

__all__ = ["COMMANDS", "child_environment"]

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A POSIX environment variable name (what a shell can `export` and read back)."""
WITHHELD: Final = ("LLM_CONFIG_KEY", "LLM_CONFIG_KEY_FILE", "LLM_CONFIG_API_KEY", "LLM_CONFIG_STORAGE",
                    "LLM_CONFIG_REDIS_URL")
"""llm-config's own credentials (and where the master key and the store are) in the caller's environment:
not passed on (a storage or Redis URL may hold a password)."""
_HIJACKING: Final = re.compile(
    r"PATH|IFS|ENV|BASH_ENV|BASH_FUNC_.*|LD_.*|DYLD_.*|PYTHON(PATH|HOME|STARTUP|INSPECT|USERBASE)|NODE_OPTIONS"
    r"|NODE_PATH|PERL5OPT|PERL5LIB|PERLLIB|RUBYOPT|RUBYLIB|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|GCONV_PATH|MALLOC_.*"
)
"""Variables that change which program runs or what it loads before its own code (the dynamic loader,
interpreters' start-up hooks, the shell's): whoever may write the namespace must not choose them for
whoever runs it. A key that maps to one is refused without --prefix."""


class RunCommand(click.Command):
    """NS, then our options, then CMD: the first argument after NS (or everything after `--`) starts CMD, and
    nothing from there on is read as one of our options — `run NS python app.py -e x` gives `-e x` to the app.

    Before CMD, a token starting with `-` is an option as click reads it (an unknown one is a usage error)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        options: list[str] = []
        positional: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                positional.extend(args[i + 1:])
                break
            if len(positional) < 2 and arg.startswith("-") and arg != "-":
                options.append(arg)
                attached = "=" in arg if arg.startswith("--") else len(arg) > 2
                if takes_value.get(arg) and not attached and i + 1 < len(args):
                    options.append(args[i + 1])
                    i += 1
            else:
                positional.append(arg)
                if len(positional) == 2:  # CMD has started: the rest is CMD's
                    positional.extend(args[i + 1:])
                    break
            i += 1
        return super().parse_args(ctx, [*options, "--", *positional])


def _check_prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value and not _NAME.fullmatch(value):
        raise click.BadParameter("must be letters, digits and '_', not starting with a digit", ctx, param)
    return value


def child_environment(values: Mapping[str, Any], *, prefix: str = "",
                      inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment CMD gets: `inherited` (default `os.environ`) without `WITHHELD`, then one variable
    per key of `values`. Raises `ValidationError` naming the keys (never a value) when a key has no
    valid variable name, two keys map to one name, or a value holds a NUL byte."""
    from llm_config.core.resolve import env_var_names

    names = env_var_names(sorted(values), prefix)  # name -> key; a collision names both keys
    added: dict[str, str] = {}
    for name, key in names.items():
        if not _NAME.fullmatch(name):
            raise ValidationError(
                f"Key {key!r} maps to {name!r}, which is not a valid environment variable name "
                "(letters, digits and '_', not starting with a digit): use --prefix or --only")
        if _HIJACKING.fullmatch(name):
            raise ValidationError(
                f"Key {key!r} maps to {name}, which decides what the command runs or loads before its own code: "
                "refused (use --prefix, or --only to leave it out)")
        text = value_text(values[key])
        if "\x00" in text:
            raise ValidationError(f"Key {key!r} cannot be an environment variable: its value holds a NUL byte")
        added[name] = text
    base = os.environ if inherited is None else inherited
    environ = {k: v for k, v in base.items() if k not in WITHHELD}
    environ.update(added)
    return environ


def _resolve(ctx: click.Context, namespace: str, env: str, only: str) -> dict[str, Any]:
    """The namespace resolved, keys starting with `only`, and only those secrets revealed (each reveal is
    audited, and a key that may not read a secret it does not pass on still runs); the store or the client
    is closed on return."""
    if state_of(ctx).settings.server:
        from llm_config.cli.remote import CLI_TIMEOUT, open_client

        with open_client(ctx, timeout=CLI_TIMEOUT) as client:
            return _revealed(client, namespace, env, only)
    from llm_config.cli.commands._common import open_local_manager

    with open_local_manager(ctx, create=False) as manager:
        return _revealed(manager, namespace, env, only)


def _revealed(api: ConfigReader, namespace: str, env: str, only: str) -> dict[str, Any]:
    from llm_config.models import ENCRYPTED_PLACEHOLDER

    values = {k: v for k, v in api.resolve(namespace, env=env).items() if k.startswith(only)}
    hidden = [k for k, v in values.items() if v == ENCRYPTED_PLACEHOLDER]
    if hidden:  # a plain value that reads "<encrypted>" is revealed as itself: get says which it is
        for key in hidden:
            entry = api.get(namespace, key, env=env, with_overrides=True, reveal=True)
            values[key] = entry.value
    return values


def _exec(argv: list[str], environ: dict[str, str]) -> int:
    """Replace this process with `argv`; only returns (126 or 127, after one line on stderr) if it cannot."""
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    # Python starts with SIGPIPE and SIGXFSZ ignored, and an ignored signal stays ignored across exec
    # (`subprocess` undoes this too: restore_signals); handlers return to the default by themselves.
    restored = {}
    for name in ("SIGPIPE", "SIGXFSZ"):
        number = getattr(signal, name, None)
        if number is not None:
            restored[number] = signal.signal(number, signal.SIG_DFL)
    import shutil

    # found with the caller's PATH (as `env` and a shell do), not with one the namespace might set
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0]) or argv[0]
    try:
        os.execve(program, argv, environ)  # noqa: S606 - the point: the user's command, no shell
    except OSError as exc:
        for number, handler in restored.items():
            signal.signal(number, handler)
        searched = os.sep not in argv[0]  # looked up in PATH, as a shell does
        if searched and isinstance(exc, FileNotFoundError | NotADirectoryError):
            err(f"llm-config run: {argv[0]}: command not found")
            return 127
        err(f"llm-config run: {argv[0]}: {exc.strerror or type(exc).__name__}")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    raise AssertionError("unreachable")  # pragma: no cover - execvpe returns only by raising


@click.command("run", cls=RunCommand)
@click.argument("namespace")
@click.argument("command", nargs=-1, required=True, metavar="[--] CMD [ARG]...")
@env_option
@click.option("--only", default="", metavar="PREFIX",
              help="Only keys starting with PREFIX (kept in the name: --only openai. gives OPENAI_API_KEY).")
@click.option("--prefix", default="", metavar="P", callback=_check_prefix,
              help="Prepend P to every variable name (--prefix APP_ gives APP_OPENAI_API_KEY).")
@click.pass_context
def run_cmd(ctx: click.Context, namespace: str, command: tuple[str, ...], env: str, only: str, prefix: str) -> None:
    """Run CMD with NAMESPACE's values as environment variables (secrets decrypted, audited).

    Each key becomes a variable: upper-case, '.' and '-' become '_' (openai.api_key -> OPENAI_API_KEY);
    strings as they are, other values as compact JSON; the environment's values over base. The caller's
    environment is kept (without llm-config's own LLM_CONFIG_KEY, _KEY_FILE, _API_KEY, _STORAGE and
    _REDIS_URL) and these variables override it; a key mapping to PATH, LD_*, PYTHONPATH, NODE_OPTIONS and
    the like is refused.
    A collision, an invalid name, a NUL byte or a namespace with no values is an error and nothing runs.
    llm-config then becomes CMD (exec): its exit status and signals pass through unchanged; a CMD that
    is not found exits 127, one that cannot be executed 126. The first argument after NAMESPACE, or
    everything after '--', is CMD.
    """
    from llm_config.names import parse_environment

    environment = parse_environment(env).value
    values = _resolve(ctx, namespace, env, only)
    if not values:
        keys = f" with keys starting with {only!r}" if only else ""
        raise NotFoundError(f"No configuration in {namespace} [{environment}]{keys}: nothing was run")
    environ = child_environment(values, prefix=prefix)
    ctx.exit(_exec(list(command), environ))


COMMANDS: tuple[click.Command, ...] = (run_cmd,)
