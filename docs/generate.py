"""Write the generated parts of docs/cli.md, docs/rest.md and docs/configuration.md from the code itself.

    .venv/bin/python docs/generate.py          # rewrite the generated sections
    .venv/bin/python docs/generate.py --check  # exit 1 if a page is out of date (tests/unit/test_docs.py)

Each page keeps its hand-written text; only what sits between `<!-- generated:begin -->` and
`<!-- generated:end -->` is replaced: the CLI's commands and flags from click, the REST API's routes,
parameters and answers from the OpenAPI document the server publishes, and every setting from the
settings dataclasses. A command, flag, route or setting cannot exist without its entry.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

DOCS = Path(__file__).resolve().parent
BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ----------------------------------------------------------------------------- CLI


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _option_row(param: click.Option) -> str:
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    if param.is_flag and not param.secondary_opts:
        kind = "flag"
    elif isinstance(param.type, click.Choice):
        kind = "|".join(str(c) for c in param.type.choices)
    else:
        kind = param.metavar or param.type.name.upper()
    unset = param.default in (None, False, ()) or "Sentinel" in repr(param.default) or param.is_flag
    default = "" if unset else f"`{param.default}`"
    repeat = " (repeatable)" if param.multiple else ""
    return f"| {names} | {_cell(kind)}{repeat} | {default} | {_cell(param.help or '')} |"


def cli_reference() -> str:
    from llm_config.cli.main import cli

    out = ["### Global options", "", "| option | value | default | |", "|---|---|---|---|"]
    out += [_option_row(p) for p in cli.params if isinstance(p, click.Option) and p.name != "version"]
    out += ["| `--version` | flag | | Print the version and exit. |", ""]
    for path, command in _commands(cli):
        ctx = click.Context(command, info_name=f"llm-config {path}")
        usage = command.collect_usage_pieces(ctx)
        out += [f"### `llm-config {path}`", "", f"`llm-config {path} {' '.join(usage)}`", ""]
        out += [(command.help or "").strip().replace("\b\n", ""), ""]
        args = [p for p in command.params if isinstance(p, click.Argument)]
        if args:
            out += ["Arguments: " + ", ".join(f"`{(a.metavar or a.name or '').upper()}`" for a in args), ""]
        options = [p for p in command.params if isinstance(p, click.Option)]
        if options:
            out += ["| option | value | default | |", "|---|---|---|---|"]
            out += [_option_row(p) for p in options]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------- REST


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    parts: list[str] = []
    if "anyOf" in schema:
        parts.append(" or ".join(_schema_text(s) for s in schema["anyOf"] if s.get("type") != "null"))
    if "type" in schema:
        parts.append(str(schema["type"]))
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "const" in schema:
        parts.append(f"`{schema['const']}`")
    if "format" in schema:
        parts.append(str(schema["format"]))
    for key, label in (("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">"), ("minLength", "length ≥"),
                       ("maxLength", "length ≤")):
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    if "pattern" in schema and len(schema["pattern"]) <= 80:
        parts.append(f"pattern `{schema['pattern']}`")
    elif "pattern" in schema:
        parts.append("pattern (see /openapi.json)")
    if "default" in schema and schema["default"] not in (None, ""):
        parts.append(f"default `{schema['default']}`")
    return ", ".join(p for p in parts if p) or "any"


def rest_reference() -> str:
    from llm_config.server.app import create_app
    from llm_config.settings import ServeOptions
    from llm_config.testing import temporary_manager

    with temporary_manager() as manager:
        spec = create_app(manager, ServeOptions()).openapi()
    out: list[str] = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            auth = "API key" if op.get("security") else "public"
            out += [f"### `{method.upper()} {path}`", "", f"{op.get('summary', '')} ({auth})", ""]
            if op.get("description"):
                out += [op["description"], ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | required | schema | |", "|---|---|---|---|---|"]
                for p in params:
                    out.append(f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else ''} | "
                               f"{_cell(_schema_text(p.get('schema', {})))} | {_cell(p.get('description', ''))} |")
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            if body:
                out += ["Body: " + ", ".join(f"`{t}` ({_schema_text(c.get('schema', {}))})" for t, c in body.items())
                        .replace("(any)", "(see /openapi.json)"), ""]
            answers = ", ".join(f"{code} {resp.get('description', '')}".strip()
                                for code, resp in sorted(op.get("responses", {}).items()))
            out += [f"Answers: {_cell(answers)}", ""]
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------- settings


def configuration_reference() -> str:
    from llm_config.cli.main import cli
    from llm_config.settings import ServeOptions, Settings

    serve = cli.commands["serve"]
    flags: dict[str, str] = {}
    for command in (cli, serve):
        for p in command.params:
            if isinstance(p, click.Option) and p.name:
                flags[p.name] = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
    env_names = {"encryption_key": "`LLM_CONFIG_KEY`", "key_file": "`LLM_CONFIG_KEY_FILE`"}
    out = ["| setting (TOML key) | flag | environment variable | default | scope |", "|---|---|---|---|---|"]
    for cls, scope in ((Settings, "every command"), (ServeOptions, "`serve`")):
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            shown = "" if default in (None, [], "") else f"`{default}`"
            env = env_names.get(f.name, f"`LLM_CONFIG_{f.name.upper()}`")
            out.append(f"| `{f.name}` | {flags.get(f.name, '—')} | {env} | {shown} | {scope} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- pages

PAGES = {"cli.md": cli_reference, "rest.md": rest_reference, "configuration.md": configuration_reference}


def render(page: str, text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + PAGES[page]() + text[end:]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale: list[str] = []
    for page in PAGES:
        path = DOCS / page
        current = path.read_text()
        fresh = render(page, current)
        if fresh != current:
            stale.append(page)
            if not check:
                path.write_text(fresh)
    if check and stale:
        print(f"out of date: {', '.join(stale)} (run .venv/bin/python docs/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
