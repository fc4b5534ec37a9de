"""`watch NS [-e ENV]`: print changes as they happen — from a service (`--server`) or a local store.

Against a service it reads the SSE stream through the SDK (`llm_config.client`), which resumes after a
dropped connection without missing or repeating a change. On a local store it follows the store's change
feed (every write takes the next revision in commit order), looking every `--interval` seconds.
One line per change (`--format json`: one JSON object per line); never a value, so nothing secret is
printed. Runs until interrupted (Ctrl-C: exit 0).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from llm_config.cli.commands._common import ENVIRONMENT_HELP, open_local_manager, state_of
from llm_config.cli.output import dump_json, out
from llm_config.errors import AuthenticationError, ValidationError

__all__ = ["COMMANDS"]


def _line(change: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return dump_json(change, compact=True)
    return (f"{change['revision']}\t{change['kind']}\t{change['namespace']}\t{change['key']}\t"
            f"{change['environment']}\tv{change['version']}")


def _show(change: dict[str, Any], fmt: str) -> None:
    """One line per change, flushed at once (stdout to a pipe is block-buffered: `watch NS | …` would wait)."""
    out(_line(change, fmt))
    sys.stdout.flush()


@click.command("watch")
@click.argument("namespace")
@click.option("-e", "--env", "env", default=None, metavar="ENV",
              help=ENVIRONMENT_HELP.replace("development (default)", "development") + " Default: every environment "
              "(with -e, base changes are shown too).")
@click.option("--recursive", is_flag=True, help="Include sub-namespaces (local store only).")
@click.option("--since", type=click.IntRange(0, 2**63 - 1), metavar="REVISION",
              help="Also show changes after this revision (local store only; a service streams from now).")
@click.option("--interval", type=click.FloatRange(0.01, 60), default=0.1, show_default=True, metavar="SECONDS",
              help="How often a local store is looked at.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output: tab-separated lines (revision, kind, namespace, key, environment, version) or JSON lines.")
@click.pass_context
def watch_cmd(ctx: click.Context, namespace: str, env: str | None, recursive: bool, since: int | None,
              interval: float, fmt: str) -> None:
    """Print each change of NAMESPACE as it happens (never values) until interrupted."""
    from llm_config.core.watch import WatchScope

    scope = WatchScope.of(namespace, env, recursive=recursive, principal=None)
    try:
        if state_of(ctx).settings.server:
            if recursive or since is not None:
                raise ValidationError("--recursive and --since work on a local store only")
            _watch_remote(ctx, scope, fmt)
        else:
            _watch_local(ctx, scope, since, interval, fmt)
    except KeyboardInterrupt:
        return


def _watch_local(ctx: click.Context, scope: Any, since: int | None, interval: float, fmt: str) -> None:
    from llm_config.core.watch import PAGE, to_wire

    with open_local_manager(ctx, create=False) as manager:
        feed = manager.feed
        after = feed.current() if since is None else since
        while True:
            changes, _ = feed.read(after, PAGE)
            for change in changes:
                if scope.sees(change):
                    _show(to_wire(change).to_json(), fmt)
            if changes:
                after = changes[-1].revision
            if len(changes) < PAGE:
                time.sleep(interval)


def _watch_remote(ctx: click.Context, scope: Any, fmt: str) -> None:
    from llm_config.cli.remote import open_client

    def show(change: Any, entry: Any) -> None:
        if scope.environments is None or change.environment in scope.environments:
            _show(change.to_json(), fmt)

    with open_client(ctx, watch=True) as client:
        client.on_change(scope.namespace, "*", show)
        while True:  # the stream runs on the client's thread; it stops for good only if the service ends it
            time.sleep(0.5)
            stopped = dict(client.status().watch_errors).get(scope.namespace)
            if stopped is not None:
                raise AuthenticationError(f"The service ended the watch stream: {stopped}")


COMMANDS = [watch_cmd]
