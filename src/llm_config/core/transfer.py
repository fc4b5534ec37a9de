"""Export and import documents (SPEC §5). Pure: parsing, validation and formatting only.

An export without reveal has no `secrets` section at all, so no import can overwrite a secret
with a placeholder or store it in plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_config.core.resolve import env_var_names
from llm_config.errors import ValidationError
from llm_config.names import validate_key
from llm_config.values import MAX_DEPTH, MAX_DOCUMENT_BYTES, loads_strict, validate_value

__all__ = [
    "EXPORT_FIELDS", "EXPORT_FORMATS", "IMPORT_FORMATS", "ImportDocument", "ImportPlan", "format_export",
    "parse_import",
]

EXPORT_FORMATS = ("json", "yaml", "dotenv")
IMPORT_FORMATS = ("json", "yaml")


@dataclass(frozen=True, slots=True)
class ImportDocument:
    """Validated content of an import file: plain values and (revealed) secrets by key."""

    values: dict[str, Any]
    secrets: dict[str, Any] | None  # None: the document had no secrets section


@dataclass(slots=True)
class ImportPlan:
    """What an import does or did, by key."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "dry_run": self.dry_run,
        }


EXPORT_FIELDS = ("namespace", "environment", "values", "secrets")
_DOCUMENT_DEPTH = MAX_DEPTH + 2  # the document and its values/secrets object around each value


def _yaml_loader() -> Any:
    """A safe loader (libyaml's C one when present) that refuses duplicate keys, keeps dates as text
    and, through `_walk_events`, is never handed anything deeper than the document allows."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str) and key in seen:
                    # no key text: it may sit inside a secret value (SPEC §8: values are never echoed)
                    raise yaml.constructor.ConstructorError(None, None, "duplicate key", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # JSON has no date type: `2026-01-01` stays the string it was written as
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    return Loader


def _walk_events(text: str, loader: Any) -> None:
    """Refuse aliases and excess nesting from the parser's event stream, before anything is built.

    With libyaml the events come from C and the walk stops at the first excess level, so a document
    of nothing but `[` costs microseconds, not the minutes PyYAML's pure-Python parser needs.
    """
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > _DOCUMENT_DEPTH:
                raise ValidationError(f"Invalid YAML: more than {MAX_DEPTH} nested arrays/objects in a value")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            raise ValidationError("Invalid YAML: anchors and aliases are not allowed")


def _load_yaml(text: str) -> Any:
    import yaml

    loader = _yaml_loader()
    try:
        _walk_events(text, loader)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader (or CSafeLoader) subclass
    except ValidationError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        if isinstance(problem, str) and "nesting depth" in problem:
            raise ValidationError(f"Invalid YAML: more than {MAX_DEPTH} nested arrays/objects in a value") from None
        # only our own problem texts: a parser's may quote a character of the document
        why = f": {problem}" if isinstance(problem, str) and problem.startswith("duplicate key") else ""
        raise ValidationError(f"Invalid YAML{where}{why}") from None
    except RecursionError:
        raise ValidationError(f"Invalid YAML: more than {MAX_DEPTH} nested arrays/objects in a value") from None


def _sections(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(values, secrets) of a document: an export document if it uses any of `EXPORT_FIELDS`, else a
    flat `{KEY: VALUE}` mapping of plain values (SPEC §5)."""
    if not any(name in data for name in EXPORT_FIELDS):
        return data, None
    unknown = sorted(set(data) - set(EXPORT_FIELDS))
    if unknown:
        shown = ", ".join(ascii(str(name)[:40]) for name in unknown[:5])
        raise ValidationError(
            f"Invalid import document: unknown top-level field(s) {shown}; an export document has only "
            "namespace, environment, values and secrets (a flat {KEY: VALUE} mapping uses none of them)"
        )
    for name in ("namespace", "environment"):
        if name in data and not isinstance(data[name], str):
            raise ValidationError(f"Invalid import document: '{name}' must be a string")
    values = data.get("values", {})
    secrets = data.get("secrets")
    if not isinstance(values, dict):
        raise ValidationError("Invalid import document: 'values' must be an object of KEY: VALUE")
    if "secrets" in data and not isinstance(secrets, dict):
        raise ValidationError("Invalid import document: 'secrets' must be an object of KEY: VALUE")
    return values, secrets


def parse_import(text: str, fmt: str | None = None) -> ImportDocument:
    """Parse and validate a whole document; every problem is reported before anything is written."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"Invalid import document: larger than {MAX_DOCUMENT_BYTES} bytes")
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    if fmt == "json":
        data = loads_strict(text, wrapper_depth=2)
    elif fmt == "yaml":
        data = _load_yaml(text)
    else:
        raise ValidationError(f"Unknown import format {fmt!r}: use json or yaml")
    if not isinstance(data, dict):
        raise ValidationError("Invalid import document: expected an object")
    values, secrets = _sections(data)
    problems: list[str] = []
    for section in (values, secrets or {}):
        for key, value in section.items():
            try:
                validate_key(key)
            except ValidationError as exc:
                problems.append(exc.message)
                continue
            try:
                validate_value(value)
            except ValidationError as exc:
                problems.append(f"{key}: {exc.message}")
    if secrets:
        problems.extend(f"Key {k!r} is in both values and secrets" for k in sorted(set(values) & set(secrets)))
    if problems:
        shown = "; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
        raise ValidationError(f"Invalid import document, nothing imported: {shown}")
    return ImportDocument(values=dict(values), secrets=dict(secrets) if secrets is not None else None)


def format_export(doc: dict[str, Any], fmt: str) -> str:
    """Render an export document as json, yaml or dotenv text (ending with a newline)."""
    if fmt == "json":
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False))
    if fmt == "dotenv":
        flat = dict(doc.get("values", {}))
        flat.update(doc.get("secrets", {}) or {})
        names = env_var_names(sorted(flat))
        lines = []
        for name, key in names.items():
            value = flat[key]
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            lines.append(f"{name}={_dotenv_quote(name, text)}")
        return "\n".join(lines) + ("\n" if lines else "")
    raise ValidationError(f"Unknown export format {fmt!r}: use json, yaml or dotenv")


def _dotenv_quote(name: str, text: str) -> str:
    """Quote a dotenv value so that `. file` in a POSIX shell runs nothing and python-dotenv reads back
    the same value; refuse the few values no quoting can carry to both (SPEC §5).

    Single quotes are inert in a shell, but python-dotenv still expands `${...}` and reads `\\'` and
    `\\\\` as escapes inside them. Double quotes carry `'` and `\\` (with `"` and `\\` escaped alike for
    both readers), but a shell expands `$` and backticks in them, while python-dotenv keeps those escapes.
    """
    if text and all(c.isalnum() or c in "_-./:@+,%" for c in text):
        return text
    if "\x00" in text:
        raise ValidationError(f"Cannot export {name} as dotenv: its value holds a NUL byte (use json or yaml)")
    if "'" not in text and "${" not in text and "\\" not in text:
        return f"'{text}'"
    if "$" not in text and "`" not in text:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise ValidationError(
        f"Cannot export {name} as dotenv: its value holds '$' or '`' together with a quote, a backslash or '${{', "
        "which no dotenv quoting keeps inert for a shell and unchanged for python-dotenv (use json or yaml)"
    )
