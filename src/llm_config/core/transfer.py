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
from llm_config.values import loads_strict, validate_value

__all__ = ["EXPORT_FORMATS", "IMPORT_FORMATS", "ImportDocument", "ImportPlan", "format_export", "parse_import"]

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


def _load_yaml(text: str) -> Any:
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        """Refuses anchors/aliases: a few lines of them expand to billions of nodes."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases are not allowed", event.start_mark
                )
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        why = f": {problem}" if problem == "YAML aliases are not allowed" else ""
        raise ValidationError(f"Invalid YAML{where}{why}") from None


def parse_import(text: str, fmt: str | None = None) -> ImportDocument:
    """Parse and validate a whole document; every problem is reported before anything is written."""
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
    if "values" in data and isinstance(data.get("values"), dict):
        unknown = set(data) - {"namespace", "environment", "values", "secrets"}
        if unknown:
            raise ValidationError(f"Invalid import document: unknown fields {sorted(unknown)}")
        values = data["values"]
        secrets = data.get("secrets")
        if secrets is not None and not isinstance(secrets, dict):
            raise ValidationError("Invalid import document: 'secrets' must be an object")
    else:
        values, secrets = data, None
    problems: list[str] = []
    for section in (values, secrets or {}):
        for key, value in section.items():
            try:
                validate_key(key)
                validate_value(value)
            except ValidationError as exc:
                problems.append(exc.message)
    if secrets:
        problems.extend(f"Key {k!r} is in both values and secrets" for k in set(values) & set(secrets))
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
            lines.append(f"{name}={_dotenv_quote(text)}")
        return "\n".join(lines) + ("\n" if lines else "")
    raise ValidationError(f"Unknown export format {fmt!r}: use json, yaml or dotenv")


def _dotenv_quote(text: str) -> str:
    """Quote a dotenv value so python-dotenv and shells read it back unchanged."""
    if text and all(c.isalnum() or c in "_-./:@+,%" for c in text):
        return text
    if "'" not in text and "\n" not in text:
        return f"'{text}'"  # single quotes: no escapes and no ${VAR} interpolation
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
