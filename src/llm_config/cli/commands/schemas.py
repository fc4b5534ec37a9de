"""`schema set|get|list|delete|history|rollback|builtins` (SPEC §6): JSON Schemas that keys must satisfy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llm_config.cli.commands._common import (
    EXPECTED_VERSION,
    LIMIT,
    VERSION,
    confirm,
    format_option,
    open_manager,
    read_text,
    yes_option,
)
from llm_config.cli.output import dump_json, emit, history_table, out, render_table
from llm_config.errors import ValidationError

if TYPE_CHECKING:
    from llm_config.documents import Schema

__all__ = ["COMMANDS"]


def _block(s: Schema) -> str:
    rows = [("namespace", s.namespace), ("pattern", s.pattern), ("version", str(s.version)),
            ("builtin", s.builtin or "-"), ("updated_at", s.updated_at), ("updated_by", s.updated_by)]
    if s.description:
        rows.append(("description", s.description))
    return "\n".join(f"{name + ':':<13}{text}" for name, text in rows) + "\n\n" + dump_json(dict(s.document))


@click.group("schema")
def schema_group() -> None:
    """JSON Schemas for keys or key patterns (`openai.*`), enforced on every write (admins change them)."""


@schema_group.command("set")
@click.argument("namespace")
@click.argument("pattern")
@click.argument("source", metavar="[@FILE | -]", required=False)
@click.option("--builtin", metavar="NAME", help="A built-in schema (see 'schema builtins') instead of a file.")
@click.option("--description", help="What the schema is for.")
@click.option("--expect-version", "expected_version", type=EXPECTED_VERSION, metavar="N",
              help="Compare-and-set: only if the current version is N (0: must not exist).")
@format_option("text", "json", "yaml")
@click.pass_context
def set_cmd(ctx: click.Context, namespace: str, pattern: str, source: str | None, builtin: str | None,
            description: str | None, expected_version: int | None, fmt: str) -> None:
    """Attach a JSON Schema (@FILE, '-' for stdin) or a built-in to the keys matching PATTERN.

    PATTERN is a key or a glob of one ('openai.*'; quote it for the shell). Existing values are not
    re-checked; every later write, import, rollback and promotion of a matching key is.
    """
    if (source is None) == (builtin is None):
        raise click.UsageError("give either @FILE (or -) or --builtin NAME")
    document = None
    if source is not None:
        if source != "-" and not (source.startswith("@") and len(source) > 1):
            raise click.UsageError("the schema is read from @FILE or '-' (stdin)")
        from llm_config.values import loads_strict

        document = loads_strict(read_text("-" if source == "-" else source[1:], "Schema"))
        if not isinstance(document, dict):
            raise ValidationError("Invalid JSON Schema: must be a JSON object")
    with open_manager(ctx, create=True) as manager:
        schema = manager.set_schema(namespace, pattern, document, builtin=builtin, description=description,
                                    expected_version=expected_version)
    emit(schema.to_json(), fmt, lambda: f"version {schema.version}")


@schema_group.command("get")
@click.argument("namespace")
@click.argument("pattern")
@click.option("--version", "version", type=VERSION, metavar="N", help="A past version.")
@format_option("text", "json", "yaml")
@click.pass_context
def get_cmd(ctx: click.Context, namespace: str, pattern: str, version: int | None, fmt: str) -> None:
    """Show the schema attached to PATTERN."""
    with open_manager(ctx, create=False) as manager:
        schema = manager.get_schema(namespace, pattern, version=version)
    emit(schema.to_json(), fmt, lambda: _block(schema))


@schema_group.command("list")
@click.argument("namespace")
@format_option("table", "json", "yaml")
@click.pass_context
def list_cmd(ctx: click.Context, namespace: str, fmt: str) -> None:
    """The namespace's schemas, by pattern."""
    with open_manager(ctx, create=False) as manager:
        schemas = manager.list_schemas(namespace)
    emit([s.to_json() for s in schemas], fmt, lambda: render_table(
        ["PATTERN", "VERSION", "BUILTIN", "DESCRIPTION"],
        [[s.pattern, str(s.version), s.builtin or "", s.description or ""] for s in schemas],
    ) if schemas else "")


@schema_group.command("history")
@click.argument("namespace")
@click.argument("pattern")
@click.option("--limit", type=LIMIT, metavar="N", help="At most N versions (newest first).")
@format_option("text", "json", "yaml")
@click.pass_context
def history_cmd(ctx: click.Context, namespace: str, pattern: str, limit: int | None, fmt: str) -> None:
    """Every version of a schema, newest first."""
    with open_manager(ctx, create=False) as manager:
        items = manager.schema_history(namespace, pattern, limit=limit)
    emit([i.to_json() for i in items], fmt, lambda: history_table(items))


@schema_group.command("rollback")
@click.argument("namespace")
@click.argument("pattern")
@click.argument("version", type=VERSION)
@yes_option
@format_option("text", "json", "yaml")
@click.pass_context
def rollback_cmd(ctx: click.Context, namespace: str, pattern: str, version: int, yes: bool, fmt: str) -> None:
    """Write a new version holding VERSION's schema."""
    with open_manager(ctx, create=True) as manager:
        confirm(f"Roll the schema {namespace}/{pattern} back to version {version}?", yes)
        schema = manager.rollback_schema(namespace, pattern, version)
    emit(schema.to_json(), fmt, lambda: f"version {schema.version}")


@schema_group.command("delete")
@click.argument("namespace")
@click.argument("pattern")
@click.option("--expect-version", "expected_version", type=EXPECTED_VERSION, metavar="N",
              help="Compare-and-set: only if the current version is N.")
@yes_option
@click.pass_context
def delete_cmd(ctx: click.Context, namespace: str, pattern: str, expected_version: int | None, yes: bool) -> None:
    """Detach the schema of PATTERN (its history stays)."""
    with open_manager(ctx, create=True) as manager:
        confirm(f"Delete the schema {namespace}/{pattern}?", yes)
        manager.delete_schema(namespace, pattern, expected_version=expected_version)
    out(f"deleted the schema {namespace}/{pattern}")


@schema_group.command("builtins")
@format_option("text", "json")
def builtins_cmd(fmt: str) -> None:
    """The built-in model-parameter schemas, one name per line."""
    from llm_config.core.schemas import BUILTIN_NAMES, builtin_descriptions

    descriptions = builtin_descriptions()
    emit([{"name": n, "description": descriptions.get(n, "")} for n in BUILTIN_NAMES], fmt,
         lambda: "\n".join(BUILTIN_NAMES))


COMMANDS: tuple[click.Command, ...] = (schema_group,)
