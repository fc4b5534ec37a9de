"""`template set|get|list|render|history|rollback|delete` (SPEC §6): prompt templates of a namespace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from llm_config.cli.commands._common import (
    EXPECTED_VERSION,
    LIMIT,
    VERSION,
    confirm,
    env_option,
    format_option,
    open_manager,
    read_text,
    yes_option,
)
from llm_config.cli.output import emit, history_table, out, out_raw, render_table, value_text
from llm_config.errors import ValidationError

if TYPE_CHECKING:
    from llm_config.documents import Template

__all__ = ["COMMANDS"]


def _where(namespace: str, name: str, env: str) -> str:
    from llm_config.names import parse_environment

    return f"template {namespace}/{name} [{parse_environment(env).value}]"


def _assignment(text: str, what: str) -> tuple[str, str]:
    """`VAR=VALUE`: the value is the text as typed (`1.10` stays `1.10`; typed values come from --vars-file)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValidationError(f"Invalid {what} {text[:40]!r}: expected VAR=VALUE")
    return name, value


def _assignments(items: tuple[str, ...], what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        name, value = _assignment(item, what)
        if name in found:
            raise ValidationError(f"Invalid {what}: {name} given twice")
        found[name] = value
    return found


def _block(t: Template) -> str:
    rows = [
        ("namespace", t.namespace), ("name", t.name), ("environment", t.environment.value),
        ("version", str(t.version)), ("variables", ", ".join(t.variables) or "-"),
        ("defaults", value_text(dict(t.defaults)) if t.defaults else "-"),
        ("updated_at", t.updated_at), ("updated_by", t.updated_by),
    ]
    if t.description:
        rows.append(("description", t.description))
    return "\n".join(f"{name + ':':<13}{text}" for name, text in rows) + "\n\n" + t.content


@click.group("template")
def template_group() -> None:
    """Prompt templates: `{{ var }}`, `{{ config:KEY }}`, `{{ secret:KEY }}`, `{{ template:NAME }}`."""


@template_group.command("set")
@click.argument("namespace")
@click.argument("name")
@click.argument("content", metavar="(TEXT | @FILE | -)")
@env_option
@click.option("--description", help="What the template is for.")
@click.option("--default", "defaults", multiple=True, metavar="VAR=VALUE",
              help="A default for a variable of this template (VALUE as typed, a string); repeatable.")
@click.option("--message", help="Change description recorded in the history.")
@click.option("--expect-version", "expected_version", type=EXPECTED_VERSION, metavar="N",
              help="Compare-and-set: only if the current version is N (0: must not exist).")
@format_option("text", "json", "yaml")
@click.pass_context
def set_cmd(ctx: click.Context, namespace: str, name: str, content: str, env: str, description: str | None,
            defaults: tuple[str, ...], message: str | None, expected_version: int | None, fmt: str) -> None:
    """Store a new version of a template; a syntax error (with its position) stores nothing.

    TEXT is the template itself; @FILE reads a file byte-exact; '-' reads stdin (minus exactly one trailing
    newline, as for a value). A default applies to a variable of this template, not of the ones it includes.
    """
    if content == "-":
        text = read_text("-", "Template")
        text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    elif content.startswith("@") and len(content) > 1:
        text = read_text(content[1:], "Template")
    else:
        text = content
    with open_manager(ctx, create=True) as manager:
        template = manager.set_template(namespace, name, text, env=env, description=description,
                                        defaults=_assignments(defaults, "--default"), message=message,
                                        expected_version=expected_version)
    emit(template.to_json(), fmt, lambda: f"version {template.version}")


@template_group.command("get")
@click.argument("namespace")
@click.argument("name")
@env_option
@click.option("--version", "version", type=VERSION, metavar="N", help="A past version.")
@format_option("text", "json", "yaml")
@click.pass_context
def get_cmd(ctx: click.Context, namespace: str, name: str, env: str, version: int | None, fmt: str) -> None:
    """Show a template: its text, variables (in order of first appearance) and defaults."""
    with open_manager(ctx, create=False) as manager:
        template = manager.get_template(namespace, name, env=env, version=version)
    emit(template.to_json(), fmt, lambda: _block(template))


@template_group.command("list")
@click.argument("namespace")
@env_option
@format_option("table", "json", "yaml")
@click.pass_context
def list_cmd(ctx: click.Context, namespace: str, env: str, fmt: str) -> None:
    """The environment's own templates, by name."""
    with open_manager(ctx, create=False) as manager:
        templates = manager.list_templates(namespace, env=env)
    emit([t.to_json() for t in templates], fmt, lambda: render_table(
        ["NAME", "VERSION", "VARIABLES", "DESCRIPTION"],
        [[t.name, str(t.version), ", ".join(t.variables), t.description or ""] for t in templates],
    ) if templates else "")


@template_group.command("render")
@click.argument("namespace")
@click.argument("name")
@env_option
@click.option("--var", "variables", multiple=True, metavar="VAR=VALUE",
              help="A variable (VALUE as typed, a string); repeatable; beats --vars-file.")
@click.option("--vars-file", metavar="F.json",
              help="A JSON object of variables, any JSON values ('-' reads stdin).")
@click.option("--allow-extra", is_flag=True, help="Ignore variables the template does not use.")
@click.pass_context
def render_cmd(ctx: click.Context, namespace: str, name: str, env: str, variables: tuple[str, ...],
               vars_file: str | None, allow_extra: bool) -> None:
    """Render a template to stdout, exactly (no newline added); missing (and, without --allow-extra, unknown)
    variables are an error naming all of them."""
    supplied: dict[str, Any] = {}
    if vars_file is not None:
        from llm_config.values import loads_strict

        loaded = loads_strict(read_text(vars_file, "Variables"))
        if not isinstance(loaded, dict):
            raise ValidationError(f"Invalid variables file {vars_file}: expected a JSON object")
        supplied.update(loaded)
    supplied.update(_assignments(variables, "--var"))
    with open_manager(ctx, create=False) as manager:
        text = manager.render(namespace, name, supplied, env=env, allow_extra=allow_extra)
    out_raw(text)


@template_group.command("history")
@click.argument("namespace")
@click.argument("name")
@env_option
@click.option("--limit", type=LIMIT, metavar="N", help="At most N versions (newest first).")
@format_option("text", "json", "yaml")
@click.pass_context
def history_cmd(ctx: click.Context, namespace: str, name: str, env: str, limit: int | None, fmt: str) -> None:
    """Every version of a template, newest first."""
    with open_manager(ctx, create=False) as manager:
        items = manager.template_history(namespace, name, env=env, limit=limit)
    emit([i.to_json() for i in items], fmt, lambda: history_table(items))


@template_group.command("rollback")
@click.argument("namespace")
@click.argument("name")
@click.argument("version", type=VERSION)
@env_option
@yes_option
@format_option("text", "json", "yaml")
@click.pass_context
def rollback_cmd(ctx: click.Context, namespace: str, name: str, version: int, env: str, yes: bool, fmt: str) -> None:
    """Write a new version holding VERSION's text and defaults (after a delete: an undelete)."""
    with open_manager(ctx, create=True) as manager:
        confirm(f"Roll {_where(namespace, name, env)} back to version {version}?", yes)
        template = manager.rollback_template(namespace, name, version, env=env)
    emit(template.to_json(), fmt, lambda: f"version {template.version}")


@template_group.command("delete")
@click.argument("namespace")
@click.argument("name")
@env_option
@click.option("--expect-version", "expected_version", type=EXPECTED_VERSION, metavar="N",
              help="Compare-and-set: only if the current version is N.")
@yes_option
@click.pass_context
def delete_cmd(ctx: click.Context, namespace: str, name: str, env: str, expected_version: int | None,
               yes: bool) -> None:
    """Delete a template (its history stays; rollback undeletes it)."""
    with open_manager(ctx, create=True) as manager:
        confirm(f"Delete {_where(namespace, name, env)}?", yes)
        manager.delete_template(namespace, name, env=env, expected_version=expected_version)
    out(f"deleted {_where(namespace, name, env)}")


COMMANDS: tuple[click.Command, ...] = (template_group,)
