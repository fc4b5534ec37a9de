"""JSON Schemas on keys (SPEC §6): patterns, the built-in provider schemas, compiling and checking. Pure.

Owns the schema-pattern grammar and glob matching, the built-in documents (package data in
`builtin_schemas/`), compiling a document once (metaschema check, local references only, cached by its
canonical JSON text) and turning failed checks into one `SchemaViolationError`.

Never does storage or network I/O: a `$ref` that is not local to the document (or a bundled metaschema)
is refused when the schema is set, and the validator's registry cannot retrieve anything. Never puts a
value, or any part of one, into a message: a violation names the key, the schema's pattern, the path
inside the value and the rule (the keyword and the schema's own limit). A path segment that is not a
name the schema itself uses (an unexpected property, a map key) is shown as `*`, as it comes from the value.

jsonschema is the authority (Draft 2020-12, every violation, value-free messages). A document that only
uses keywords meaning the same in draft 7 also gets a fastjsonschema fast path (~25x faster per check,
but tens of milliseconds of code generation): at once for a stored document (`checked=True`, whose
metaschema check is skipped, so a one-shot CLI write imports jsonschema only to refuse), otherwise once
the schema proves hot (`FAST_AFTER` checks in this process). The fast path may only *accept*: whatever
it refuses, or cannot compile, jsonschema decides. Neither library is imported at import time.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import orjson

from llm_config.errors import SchemaViolationError, ValidationError
from llm_config.names import validate_schema_pattern
from llm_config.values import validate_value
from llm_config.writes import where

__all__ = [
    "BUILTIN_NAMES",
    "FAST_AFTER",
    "MAX_REPORTED",
    "CompiledSchema",
    "builtin_descriptions",
    "builtin_schema",
    "check_all",
    "compile_schema",
    "matches",
    "validate_pattern",
]

BUILTIN_NAMES: Final[tuple[str, ...]] = (
    "openai-chat",
    "anthropic-messages",
    "gemini-generate",
    "azure-openai-chat",
    "bedrock-anthropic",
    "bedrock-llama",
    "bedrock-titan",
    "mistral-chat",
    "ollama-chat",
)
"""The built-in schemas, in the order `schema builtins` prints them (SPEC §6)."""

MAX_REPORTED: Final = 5
"""How many violations one message lists; the rest are counted."""

FAST_AFTER: Final = 64
"""Checks of one schema in this process after which it gets the fastjsonschema fast path."""

_BUILTIN_DIR: Final = "builtin_schemas"
_REF_KEYWORDS: Final = ("$ref", "$dynamicRef", "$recursiveRef")
_DATA_KEYWORDS: Final = frozenset({"const", "enum", "default", "examples"})
"""Keywords whose content is data, not schema: never searched for references or names."""
_LIMIT_KEYWORDS: Final = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "minContains", "maxContains", "pattern", "format",
})
_CONDITIONAL_BRANCHES: Final = frozenset({"then", "else"})
_SHOWN_LIMIT: Final = 60

# The fast path (fastjsonschema's draft-7 code generator) is used only for documents built from these
# keywords, which mean the same in draft 7 and 2020-12 and which fastjsonschema implements at least as
# strictly as jsonschema (its `format` and `pattern` `$` are stricter: a refusal falls back to jsonschema).
# Left out: multipleOf and uniqueItems (float and equality corner cases), and everything newer than draft 7.
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples", "$comment", "readOnly",
                                 "writeOnly", "deprecated"})
_FAST_KEYWORDS: Final = frozenset({
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "format", "items", "minItems", "maxItems", "contains",
    "required", "minProperties", "maxProperties", "properties", "patternProperties",
    "additionalProperties", "propertyNames", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "$defs", "definitions",
})
_SCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "$defs", "definitions"})
_SCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf"})
_SUBSCHEMAS: Final = frozenset({
    "items", "contains", "additionalProperties", "propertyNames", "not", "if", "then", "else",
})
_FAST_DRAFTS: Final = frozenset({
    "https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-07/schema#",
    "http://json-schema.org/draft-07/schema",
})


# --- patterns ---------------------------------------------------------------------------------------


def validate_pattern(pattern: object) -> str:
    """Return the pattern unchanged if it is a key or a glob of one (`*`, `?`; it may start with either).
    The grammar is `names.SCHEMA_PATTERN`, checked by `names.validate_schema_pattern` (one rule, one place)."""
    return validate_schema_pattern(pattern)


def matches(pattern: str, key: str) -> bool:
    """Whether `key` matches `pattern`: `fnmatchcase` with `*` and `?` only (`*` crosses dots)."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == key
    # fnmatch's translation does not backtrack catastrophically; `[` must stay literal (not a class)
    return fnmatch.fnmatchcase(key, pattern.replace("[", "[[]"))


# --- built-in schemas -------------------------------------------------------------------------------


@functools.cache
def _builtin_text(name: str) -> bytes:
    from importlib import resources  # not on the CLI's start-up path

    return resources.files(__package__).joinpath(_BUILTIN_DIR, f"{name}.json").read_bytes()


def builtin_schema(name: str) -> dict[str, Any]:
    """A fresh copy of the named built-in JSON Schema document."""
    if name not in BUILTIN_NAMES:
        shown = ascii(name[:80]) if isinstance(name, str) else type(name).__name__
        raise ValidationError(f"Unknown built-in schema {shown}: valid names are {', '.join(BUILTIN_NAMES)}")
    document: dict[str, Any] = orjson.loads(_builtin_text(name))
    return document


def builtin_descriptions() -> dict[str, str]:
    """Name → one-line description (the document's `title`), in `BUILTIN_NAMES` order."""
    return {name: str(orjson.loads(_builtin_text(name))["title"]) for name in BUILTIN_NAMES}


# --- compiling --------------------------------------------------------------------------------------


class _SchemaProblemError(Exception):
    """A document that is not a usable JSON Schema: where in it, and what is wrong."""

    def __init__(self, path: Sequence[str | int], problem: str) -> None:
        super().__init__(problem)
        self.path = tuple(path)
        self.problem = problem


class _Compiled:
    """One document, its fast path and its jsonschema validator (built when first needed), shared by
    every pattern that uses the same text."""

    __slots__ = ("_validator", "document", "eligible", "fast", "metaschema_checked", "names", "uses")

    def __init__(self, document: Any, names: frozenset[str], validator: Any = None) -> None:
        self.document = document
        self.names = names
        self._validator = validator
        self.metaschema_checked = validator is not None
        self.fast: Callable[[Any], object] | None = None
        self.eligible = _fast_equivalent(document, root=True)
        self.uses = 0

    @property
    def validator(self) -> Any:
        """jsonschema's validator (for a `checked` document, built on its first refusal)."""
        if self._validator is None:
            self._validator = _jsonschema_validator(self.document)
        return self._validator

    def fast_path(self) -> Callable[[Any], object] | None:
        """The fast accept, built on the `FAST_AFTER`th call for an eligible document (racing threads
        may both build it: harmless, the last assignment wins)."""
        if self.fast is None and self.eligible:
            self.uses += 1
            if self.uses >= FAST_AFTER:
                self.warm()
        return self.fast

    def warm(self) -> Callable[[Any], object] | None:
        """Build the fast path now (once), if the document is eligible and fastjsonschema compiles it."""
        if self.eligible:
            self.eligible = False
            self.fast = _fast_validator(self.document)
        return self.fast


class CompiledSchema:
    """A schema for the keys matching `pattern`, compiled once and reused for every write."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str, compiled: _Compiled) -> None:
        self.pattern = pattern
        self._compiled = compiled

    def __repr__(self) -> str:
        return f"CompiledSchema(pattern={self.pattern!r})"

    def check(self, namespace: str, key: str, environment: str, value: Any) -> None:
        """Raise `SchemaViolationError` if `value` breaks this schema (whatever the key)."""
        problems = self._problems(value)
        if problems:
            raise _violation(namespace, key, environment, [(self.pattern, problems)])

    def _problems(self, value: Any) -> list[str]:
        """The violations of `value`, rendered without any part of it, deterministic order; [] if valid."""
        compiled = self._compiled
        fast = compiled.fast_path()
        if fast is not None:
            try:
                fast(value)
            except Exception:  # noqa: S110 - refused or unsure: jsonschema decides below
                pass
            else:
                return []
        try:
            validator = compiled.validator
            if fast is None and validator.is_valid(value):
                return []
            return _render(compiled, value, validator.iter_errors(value))
        except _unresolvable() as exc:
            raise ValidationError(
                f"Schema {self.pattern} cannot be applied: a $ref in it does not resolve ({type(exc).__name__})"
            ) from None
        except _SchemaProblemError as exc:  # a `checked` document that is not a schema after all
            raise ValidationError(
                f"Schema {self.pattern} cannot be applied: at {_pointer(exc.path)}: {exc.problem}"
            ) from None
        except Exception as exc:
            if compiled.metaschema_checked:
                raise  # a bug of ours or jsonschema's: let it show
            raise ValidationError(  # a `checked` document broken after all: say so, no traceback
                f"Schema {self.pattern} cannot be applied: it is not a valid JSON Schema ({type(exc).__name__})"
            ) from None


def compile_schema(pattern: str, document: Any, *, checked: bool = False) -> CompiledSchema:
    """Check `document` against its metaschema (Draft 2020-12 unless `$schema` names another draft) and
    compile it for `pattern`; compiled documents are cached by their canonical JSON text (a cached call
    still costs ~0.1 ms for the strict-JSON check of the document: keep the `CompiledSchema`).

    `checked=True` is for a document that passed this check when it was stored (a schema row read back
    from storage, its MAC verified): the metaschema check (tens of milliseconds for a large document, after
    jsonschema's ~150 ms import) is skipped and the fast path is built at once, so a one-shot CLI write
    imports jsonschema only if the value is refused. References are still checked (nothing is fetched)."""
    validate_pattern(pattern)
    try:
        validate_value(document)  # strict JSON: finite numbers, string keys, bounded size and depth
    except ValidationError as exc:
        problem = exc.message.removeprefix("Invalid value: ")
        raise ValidationError(f"Invalid JSON Schema for {pattern}: {problem}") from None
    canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    try:
        compiled = _compile(canonical, checked)
    except _SchemaProblemError as exc:
        raise ValidationError(f"Invalid JSON Schema for {pattern}: at {_pointer(exc.path)}: {exc.problem}") from None
    return CompiledSchema(pattern, compiled)


def check_all(
    schemas: Sequence[CompiledSchema], namespace: str, key: str, environment: str, value: Any
) -> None:
    """Every schema whose pattern matches `key` must pass; one error names every schema that did not."""
    failed = [
        (schema.pattern, problems)
        for schema in schemas
        if matches(schema.pattern, key) and (problems := schema._problems(value))
    ]
    if failed:
        raise _violation(namespace, key, environment, failed)


@functools.lru_cache(maxsize=256)
def _compile(canonical: bytes, checked: bool) -> _Compiled:
    """Compile one canonical document (its own private copy, so no caller can change it afterwards)."""
    document = orjson.loads(canonical)
    validator = None
    if not checked:
        from jsonschema import exceptions  # type: ignore[import-untyped,unused-ignore]

        cls = _validator_class(document)
        try:
            cls.check_schema(document)
        except exceptions.SchemaError as exc:
            raise _SchemaProblemError(list(exc.absolute_path), _cut(exc.message, 200)) from None
        validator = _jsonschema_validator(document)
    _check_references(document)
    compiled = _Compiled(document, _schema_names(document), validator)
    if checked:
        compiled.warm()  # a stored schema: the fast path now, jsonschema only when it refuses
    return compiled


def _validator_class(document: Any) -> Any:
    """The jsonschema validator class `$schema` names (2020-12 by default)."""
    # jsonschema ships no type information (types-jsonschema would supply it); imported on first use: it is slow
    from jsonschema import validators  # type: ignore[import-untyped,unused-ignore]

    if not (isinstance(document, dict) and "$schema" in document):
        return validators.Draft202012Validator
    declared = document["$schema"]
    cls = validators.validator_for(document, default=None) if isinstance(declared, str) else None
    if cls is None:
        raise _SchemaProblemError(["$schema"], "unknown metaschema (supported: drafts 3, 4, 6, 7, 2019-09, 2020-12)")
    return cls


def _jsonschema_validator(document: Any) -> Any:
    """jsonschema's validator for `document`, whose registry cannot retrieve anything: jsonschema adds
    only its bundled metaschemas to an empty one."""
    from referencing import Registry

    return _validator_class(document)(document, registry=Registry())


def _fast_validator(document: Any) -> Callable[[Any], object] | None:
    """fastjsonschema's compiled function for an eligible document, None if it cannot have one (also when
    fastjsonschema is not installed: it is an accelerator, never needed for correctness)."""
    try:
        import fastjsonschema  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    draft7 = document
    if isinstance(document, dict):
        draft7 = {**document, "$schema": "http://json-schema.org/draft-07/schema#"}
    refuse = {scheme: _refuse_remote for scheme in ("http", "https", "file", "ftp", "urn", "")}
    try:
        fast: Callable[[Any], object] = fastjsonschema.compile(
            draft7, handlers=refuse, use_default=False
        )
    except Exception:  # whatever it cannot compile, jsonschema alone checks
        return None
    return fast


def _refuse_remote(uri: str) -> Any:
    raise ValueError("remote references are never fetched")


def _fast_equivalent(node: Any, *, root: bool = False) -> bool:
    """Whether every keyword in the document is one the fast path implements like jsonschema does."""
    if isinstance(node, bool):
        return True
    if not isinstance(node, dict):
        return False
    for keyword, sub in node.items():
        if keyword in _ANNOTATIONS or keyword.startswith("x-"):
            continue
        if keyword == "$schema":
            if not root or sub not in _FAST_DRAFTS:
                return False
        elif keyword == "$ref":  # draft 7 ignores a $ref's siblings, 2020-12 applies them: allow none
            if not (isinstance(sub, str) and (sub == "#" or sub.startswith("#/"))):
                return False
            if any(k != "$ref" and k not in _ANNOTATIONS and not k.startswith("x-") for k in node):
                return False
        elif keyword not in _FAST_KEYWORDS:
            return False
        elif keyword in _SCHEMA_MAPS:
            if not isinstance(sub, dict) or not all(_fast_equivalent(s) for s in sub.values()):
                return False
        elif keyword in _SCHEMA_LISTS:
            if not isinstance(sub, list) or not all(_fast_equivalent(s) for s in sub):
                return False
        elif keyword in _SUBSCHEMAS and not _fast_equivalent(sub):
            return False  # (`items` as an array, which means different things in 7 and 2020-12, lands here)
    return True


@functools.cache
def _metaschema_uris() -> frozenset[str]:
    from jsonschema_specifications import REGISTRY  # type: ignore[import-untyped,unused-ignore]

    return frozenset(str(uri).rstrip("#") for uri in REGISTRY)


def _schema_nodes(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every object in a schema document with its path, skipping data keywords (`const`, `enum`, …)."""
    if isinstance(node, dict):
        yield path, node
        for k, child in node.items():
            if k not in _DATA_KEYWORDS:
                yield from _schema_nodes(child, (*path, k))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _schema_nodes(child, (*path, i))


def _check_references(document: Any) -> None:
    """Only local references (`#…`) and the bundled metaschemas: nothing is ever fetched. Local JSON
    pointers must resolve (checked when no subschema declares its own `$id`, which would rebase them)."""
    nested_ids = any(
        path and isinstance(node.get("$id", node.get("id")), str) for path, node in _schema_nodes(document)
    )
    for path, node in _schema_nodes(document):
        for keyword in _REF_KEYWORDS:
            ref = node.get(keyword)
            if not isinstance(ref, str):
                continue
            if not ref.startswith("#"):
                if ref.split("#", 1)[0].rstrip("/") in _metaschema_uris() or ref.rstrip("#") in _metaschema_uris():
                    continue
                raise _SchemaProblemError(
                    [*path, keyword], "only local references ('#...') are allowed: remote schemas are never fetched"
                )
            if not nested_ids and ref.startswith("#/") and _resolve_pointer(document, ref) is _MISSING:
                raise _SchemaProblemError([*path, keyword], "the reference does not point into this schema")


_MISSING: Final = object()


def _resolve_pointer(document: Any, ref: str) -> Any:
    """The node a local reference `#/a/b` names, `_MISSING` if none (percent- and ~-escapes decoded)."""
    from urllib.parse import unquote

    if ref == "#":
        return document
    if not ref.startswith("#/"):
        return _MISSING
    node = document
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _schema_names(document: Any) -> frozenset[str]:
    """Property names the schema itself uses: the only value keys a message may show."""
    names: set[str] = set()
    for _, node in _schema_nodes(document):
        for keyword in ("properties", "dependentRequired", "dependentSchemas", "dependencies"):
            if isinstance(node.get(keyword), dict):
                names.update(node[keyword])
        required = node.get("required")
        if isinstance(required, list):
            names.update(n for n in required if isinstance(n, str))
        dependent = node.get("dependentRequired")
        if isinstance(dependent, dict):
            names.update(n for deps in dependent.values() if isinstance(deps, list) for n in deps if isinstance(n, str))
    return frozenset(names)


@functools.cache
def _unresolvable() -> type[Exception]:
    from referencing.exceptions import Unresolvable

    return Unresolvable


# --- rendering violations ---------------------------------------------------------------------------


def _violation(
    namespace: str, key: str, environment: str, failed: list[tuple[str, list[str]]]
) -> SchemaViolationError:
    shown: list[str] = []
    total = sum(len(problems) for _, problems in failed)
    budget = MAX_REPORTED
    for pattern, problems in failed:
        if budget <= 0:
            break
        shown.append(f"breaks schema '{pattern}' at " + "; at ".join(problems[:budget]))
        budget -= len(problems[:budget])
    more = total - (MAX_REPORTED - budget)
    tail = f" (and {more} more)" if more > 0 else ""
    env = getattr(environment, "value", environment)
    return SchemaViolationError(
        f"{where(namespace, key, env)}: value {'; '.join(shown)}{tail}",
        namespace=namespace, key=key, environment=env,
    )


def _render(compiled: _Compiled, value: Any, errors: Iterator[Any]) -> list[str]:
    """`<path>[, <path>…]: <rule>` lines: deduplicated, paths sharing a rule on one line, sorted by path."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped,unused-ignore]

    by_rule: dict[str, dict[tuple[Any, ...], str]] = {}
    for top in errors:
        error = best_match([top]) if top.context else top
        condition = _condition(compiled.document, error)
        for path, rule in _describe(compiled, value, error):
            by_rule.setdefault(rule + condition, {})[_sort_key(path)] = _shown_path(compiled.names, path)
    lines = [(min(paths), ", ".join(paths[k] for k in sorted(paths)) + ": " + rule) for rule, paths in by_rule.items()]
    return [line for _, line in sorted(lines)]


def _describe(compiled: _Compiled, value: Any, error: Any) -> Iterator[tuple[list[str | int], str]]:
    """(path inside the value, rule) pairs for one jsonschema error, never using the value's content
    beyond which of the schema's own names are present."""
    path: list[str | int] = list(error.absolute_path)
    keyword = error.validator
    limit = error.validator_value
    instance = error.instance
    if keyword is None:  # a `false` subschema: jsonschema reports it at the parent, without the name
        yield from _false_schema(compiled, value, error, path)
        return
    prefix = "property name " if "propertyNames" in error.relative_schema_path else ""
    if keyword in _LIMIT_KEYWORDS:
        yield path, f"{prefix}{keyword} {_limit(limit)}"
    elif keyword == "type":
        types = limit if isinstance(limit, list) else [limit]
        yield path, f"{prefix}type {' or '.join(str(t) for t in types)}"
    elif keyword in ("enum", "const"):
        yield path, f"{prefix}{keyword} {_limit(limit, quoted=True)}"
    elif keyword == "required" and isinstance(limit, list):
        for name in limit:
            if isinstance(instance, dict) and name not in instance:
                yield path, f"required {name}"
    elif keyword in ("dependentRequired", "dependencies") and isinstance(limit, dict):
        for trigger, needed in limit.items():
            if isinstance(instance, dict) and trigger in instance and isinstance(needed, list):
                for name in needed:
                    if name not in instance:
                        yield path, f"required {name} (with {trigger})"
    elif keyword in ("additionalProperties", "unevaluatedProperties") and limit is False:
        extra = _extra_properties(error.schema, instance) if keyword == "additionalProperties" else None
        count = f" ({extra} {'property' if extra == 1 else 'properties'} the schema does not name)" if extra else ""
        yield path, f"{keyword} false{count}"
    elif keyword in ("anyOf", "oneOf"):
        yield path, _alternatives(compiled, value, error)
    elif keyword == "not":
        yield path, "not allowed" if limit in ({}, True) else "not allowed (matches the 'not' subschema)"
    elif keyword == "contains":
        yield path, "contains: no item matches"
    elif keyword in ("items", "prefixItems", "additionalItems", "unevaluatedItems") and limit is False:
        yield path, f"{keyword} false (more items than the schema allows)"
    elif keyword == "uniqueItems":
        yield path, "uniqueItems"
    else:
        yield path, f"{prefix}{keyword}"


def _alternatives(compiled: _Compiled, value: Any, error: Any) -> str:
    """What each branch of a failed anyOf/oneOf wanted at this very place: `enum [...] or type object`."""
    if error.validator == "oneOf" and not error.context:
        return "oneOf: more than one alternative matches"
    branches: dict[Any, list[str]] = {}
    for sub in error.context:
        if sub.relative_path or not sub.relative_schema_path:
            continue  # a failure deeper inside the value: the branch's shape did match here
        rules = [rule for _, rule in _describe(compiled, value, sub)]
        branches.setdefault(sub.relative_schema_path[0], []).extend(rules)
    if not branches or any(not rules for rules in branches.values()):
        return f"{error.validator}: no alternative matches"
    return _cut(" or ".join(" and ".join(rules) for _, rules in sorted(branches.items())), 200)


def _false_schema(
    compiled: _Compiled, value: Any, error: Any, path: list[str | int]
) -> Iterator[tuple[list[str | int], str]]:
    """Recover the property names of a `false` subschema under `properties` (jsonschema drops them)."""
    schema_path = list(error.absolute_schema_path)
    if schema_path and schema_path[-1] == "properties":
        holder = _walk_schema(compiled.document, schema_path[:-1])
        parent = _walk_value(value, path)
        props = holder.get("properties") if isinstance(holder, dict) else None
        if isinstance(props, dict) and isinstance(parent, dict):
            names = sorted(name for name, sub in props.items() if sub is False and name in parent)
            for name in names:
                yield [*path, name], "not allowed"
            if names:
                return
    where_ = f" ({schema_path[-1]})" if schema_path and isinstance(schema_path[-1], str) else ""
    yield path, f"not allowed{where_}"


def _condition(document: Any, error: Any) -> str:
    """` (<title>)` of the if/then/else whose branch produced the error: why the rule applies here."""
    schema_path = list(error.absolute_schema_path)
    branch = max((i for i, seg in enumerate(schema_path) if seg in _CONDITIONAL_BRANCHES), default=None)
    if branch is None:
        return ""
    holder = _walk_schema(document, schema_path[:branch])
    title = holder.get("title") if isinstance(holder, dict) else None
    if isinstance(title, str) and title:
        return f" ({_cut(title, 160)})"
    return f" (when the condition at {_pointer(schema_path[:branch])}/if holds)"


def _walk_schema(document: Any, schema_path: Sequence[str | int]) -> Any:
    """The schema node at a jsonschema schema path, following local `$ref`s; None if it cannot."""
    node = document
    for seg in schema_path:
        if seg in _REF_KEYWORDS and isinstance(node, dict) and isinstance(node.get(seg), str):
            node = _resolve_pointer(document, node[seg])
            if node is _MISSING:
                return None
            continue
        try:
            node = node[seg]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _walk_value(value: Any, path: Sequence[str | int]) -> Any:
    node = value
    for seg in path:
        try:
            node = node[seg]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _extra_properties(schema: Any, instance: Any) -> int:
    if not isinstance(schema, dict) or not isinstance(instance, dict):
        return 0
    known = schema.get("properties") or {}
    patterns = [re.compile(p) for p in (schema.get("patternProperties") or {})]
    return sum(1 for k in instance if k not in known and not any(p.search(k) for p in patterns))


def _shown_path(names: frozenset[str], path: Sequence[str | int]) -> str:
    """A JSON pointer into the value naming only indexes and the schema's own names (others: `*`)."""
    if not path:
        return "(root)"
    parts = []
    for seg in path:
        if isinstance(seg, int):
            parts.append(str(seg))
        elif seg in names:
            text = seg.replace("~", "~0").replace("/", "~1")
            parts.append(text if text.isprintable() else ascii(text))
        else:
            parts.append("*")
    return "/" + "/".join(parts)


def _pointer(path: Sequence[str | int]) -> str:
    """A JSON pointer into a schema document (its content is not secret)."""
    if not path:
        return "(root)"
    return "/" + "/".join(_cut(str(p), 64).replace("~", "~0").replace("/", "~1") for p in path)


def _sort_key(path: Sequence[str | int]) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, seg, "") if isinstance(seg, int) else (1, 0, seg) for seg in path)


def _limit(limit: Any, *, quoted: bool = False) -> str:
    """A limit from the schema (never from the value), compact and cut; strings bare unless `quoted`."""
    if isinstance(limit, str) and not quoted:
        return _cut(limit if limit.isprintable() else ascii(limit), _SHOWN_LIMIT)
    return _cut(json.dumps(limit, separators=(",", ":"), ensure_ascii=True), _SHOWN_LIMIT)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
