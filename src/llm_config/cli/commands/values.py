"""Value commands: get, set, list, namespaces, delete, history, rollback, purge (SPEC §3, §4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llm_config.cli.commands._common import (
    EXPECTED_VERSION,
    LIMIT,
    VERSION,
    ValueCommand,
    confirm,
    env_option,
    format_option,
    open_local_manager,
    open_manager,
    read_value_arg,
    yes_option,
)
from llm_config.cli.output import emit, err, history_table, out, render_table, value_text

if TYPE_CHECKING:
    from llm_config.models import Entry

__all__ = ["COMMANDS"]


def _where(namespace: str, key: str, env: str) -> str:
    from llm_config.names import parse_environment

    return f"{namespace}/{key} [{parse_environment(env).value}]"


def _entry_block(entry: Entry) -> str:
    meta = entry.metadata
    rows = [
        ("namespace", entry.namespace),
        ("key", entry.key),
        ("value", value_text(entry.value)),
        ("environment", entry.environment.value),
        ("version", str(entry.version)),
        ("secret", "true" if entry.secret else "false"),
        ("updated_at", meta.updated_at),
        ("updated_by", meta.updated_by),
    ]
    if meta.description:
        rows.append(("description", meta.description))
    if meta.tags:
        rows.append(("tags", ", ".join(meta.tags)))
    return "\n".join(f"{name + ':':<13}{text}" for name, text in rows)


@click.command("get")
@click.argument("namespace")
@click.argument("key")
@env_option
@click.option("-o", "--with-overrides", is_flag=True,
              help="Resolve: the environment's value, else base's; print only the value.")
@click.option("--version", "version", type=VERSION, metavar="N", help="A past version instead of the current one.")
@click.option("--reveal", is_flag=True, help="Decrypt a secret (audited).")
@format_option("text", "json", "yaml")
@click.pass_context
def get_cmd(
    ctx: click.Context, namespace: str, key: str, env: str, with_overrides: bool,
    version: int | None, reveal: bool, fmt: str,
) -> None:
    """Show one value: a text block, or the ConfigResponse with --format json."""
    with open_manager(ctx, create=False) as manager:
        entry = manager.get(
            namespace, key, env=env, version=version, with_overrides=with_overrides, reveal=reveal
        )
    if with_overrides and fmt == "text":
        out(value_text(entry.value))
    else:
        emit(entry.to_json(), fmt, lambda: _entry_block(entry))


@click.command("set", cls=ValueCommand)
@click.argument("namespace")
@click.argument("key")
@click.argument("value", metavar="VALUE")
@env_option
@click.option("--secret/--no-secret", "secret", default=None,
              help="Store encrypted / in plain text (needed to turn a secret into a plain value).")
@click.option("--description", metavar="TEXT", help="Describe the entry.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the entry (repeatable; replaces tags).")
@click.option("--message", metavar="TEXT", help="Change description recorded in the history.")
@click.option("--expect-version", type=EXPECTED_VERSION, metavar="N",
              help="Compare-and-set: write only if the current version is N (0: must not exist).")
@format_option("text", "json", "yaml")
@click.pass_context
def set_cmd(
    ctx: click.Context, namespace: str, key: str, value: str, env: str, secret: bool | None,
    description: str | None, tags: tuple[str, ...], message: str | None, expect_version: int | None,
    fmt: str,
) -> None:
    """Write a new version of a value.

    VALUE is parsed as JSON if it can be, else kept as a string; '-' reads stdin (one trailing newline
    dropped) and '@FILE' a file (byte-exact). A VALUE starting with '-' (-1, -5e2, -likeprod) is a value
    unless it is exactly one of the options below; '--' ends the options.
    """
    parsed = read_value_arg(value)
    with open_manager(ctx, create=True) as manager:
        entry = manager.set(
            namespace, key, parsed, env=env, secret=secret, description=description,
            tags=list(tags) if tags else None, message=message, expected_version=expect_version,
        )
    emit(entry.to_json(), fmt, lambda: f"version {entry.version}")


def _list_table(entries: list[Entry], recursive: bool) -> str:
    if not entries:
        return ""
    headers = ["NAMESPACE"] if recursive else []
    headers += ["KEY", "VALUE", "VERSION", "SECRET", "UPDATED_AT"]
    rows = [
        ([e.namespace] if recursive else [])
        + [e.key, value_text(e.value), str(e.version), "yes" if e.secret else "", e.metadata.updated_at]
        for e in entries
    ]
    return render_table(headers, rows)


@click.command("list")
@click.argument("namespace")
@env_option
@click.option("--prefix", default="", metavar="P", help="Only keys starting with P.")
@click.option("--recursive", is_flag=True, help="Include sub-namespaces.")
@format_option("table", "json", "yaml")
@click.pass_context
def list_cmd(ctx: click.Context, namespace: str, env: str, prefix: str, recursive: bool, fmt: str) -> None:
    """List the values of a namespace, ordered by key (secrets stay encrypted)."""
    with open_manager(ctx, create=False) as manager:
        entries = manager.list(namespace, env=env, prefix=prefix, recursive=recursive)
    if not entries and fmt == "table":
        err(f"no values in {namespace}")
        return
    emit([e.to_json() for e in entries], fmt, lambda: _list_table(entries, recursive))


@click.command("namespaces")
@click.option("--prefix", default="", metavar="P", help="Only namespaces starting with P.")
@format_option("text", "json", "yaml")
@click.pass_context
def namespaces_cmd(ctx: click.Context, prefix: str, fmt: str) -> None:
    """List every namespace holding at least one value."""
    with open_manager(ctx, create=False) as manager:
        names = manager.namespaces(prefix)
    emit(names, fmt, lambda: "\n".join(names))


@click.command("delete")
@click.argument("namespace")
@click.argument("key")
@env_option
@yes_option
@click.pass_context
def delete_cmd(ctx: click.Context, namespace: str, key: str, env: str, yes: bool) -> None:
    """Delete a value (writes a tombstone version; 'rollback' undeletes)."""
    with open_manager(ctx, create=True) as manager:
        current = manager.get(namespace, key, env=env)  # missing → exit 1 before asking
        where = _where(namespace, key, env)
        confirm(f"Delete {where} (version {current.version})?", yes)
        tombstone = manager.delete(namespace, key, env=env)
    out(f"deleted {where}: version {tombstone.version}")


@click.command("history")
@click.argument("namespace")
@click.argument("key")
@env_option
@click.option("--limit", type=LIMIT, metavar="N", help="At most N versions (newest first).")
@format_option("text", "json", "yaml")
@click.pass_context
def history_cmd(ctx: click.Context, namespace: str, key: str, env: str, limit: int | None, fmt: str) -> None:
    """Show every version of a value, newest first."""
    with open_manager(ctx, create=False) as manager:
        items = manager.history(namespace, key, env=env, limit=limit)
    emit([i.to_json() for i in items], fmt, lambda: history_table(items))


@click.command("rollback")
@click.argument("namespace")
@click.argument("key")
@click.argument("version", type=VERSION)
@env_option
@click.option("--no-secret", "no_secret", is_flag=True,
              help="Allow rolling a secret back to a version that was a plain value.")
@yes_option
@format_option("text", "json", "yaml")
@click.pass_context
def rollback_cmd(
    ctx: click.Context, namespace: str, key: str, version: int, env: str, no_secret: bool, yes: bool, fmt: str
) -> None:
    """Write a new version holding VERSION's value (after a delete: an undelete)."""
    with open_manager(ctx, create=True) as manager:
        confirm(f"Roll {_where(namespace, key, env)} back to version {version}?", yes)
        entry = manager.rollback(namespace, key, version, env=env, secret=False if no_secret else None)
    emit(entry.to_json(), fmt, lambda: f"version {entry.version}")


@click.command("purge")
@click.argument("namespace")
@click.argument("key")
@click.option("--version", "version", type=VERSION, required=True, metavar="N", help="The version to destroy.")
@env_option
@yes_option
@click.pass_context
def purge_cmd(ctx: click.Context, namespace: str, key: str, version: int, env: str, yes: bool) -> None:
    """Destroy one past version's value for good (history keeps a marker)."""
    with open_local_manager(ctx, create=True) as manager:
        confirm(f"Destroy version {version} of {_where(namespace, key, env)} for good?", yes)
        manager.purge(namespace, key, version, env=env)
    out(f"purged version {version} of {_where(namespace, key, env)}")


COMMANDS: tuple[click.Command, ...] = (
    get_cmd, set_cmd, list_cmd, namespaces_cmd, delete_cmd, history_cmd, rollback_cmd, purge_cmd,
)
