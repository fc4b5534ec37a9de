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

A schema cannot make a check take unbounded time, whoever writes the value: every regex a schema carries
(`pattern`, `patternProperties`, also inside `propertyNames`) runs on RE2 (linear time, no backtracking) in
both libraries and here, and a document is refused when it is set if RE2 cannot compile one of its patterns,
or if one value node could be checked against more than `_BUDGET` schema nodes (`$ref`s expanded, a
recursive reference unrolled to the `MAX_DEPTH` a value may have; see `_Cost`). jsonschema's quadratic
`uniqueItems` and its linear scan of a large `enum` are replaced by hashing.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import orjson

from llm_config.errors import SchemaViolationError, ValidationError
from llm_config.names import validate_schema_pattern
from llm_config.values import MAX_DEPTH, validate_value
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
_PATHS_SHOWN: Final = 10
_ERRORS_RENDERED: Final = 1_000
"""Violations a refusal looks at (jsonschema's; the rest are not even found)."""

# The fast path (fastjsonschema's draft-7 code generator) is used only for documents built from these
# keywords, which mean the same in draft 7 and 2020-12 and which fastjsonschema implements at least as
# strictly as jsonschema (its `format` and `pattern` `$` are stricter: a refusal falls back to jsonschema).
# Left out: multipleOf and uniqueItems (float and equality corner cases), and everything newer than draft 7.
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples", "$comment", "readOnly",
                                 "writeOnly", "deprecated"})
# `pattern` stays: its compiled regexes are swapped for RE2 ones (`_fast_validator`). `patternProperties` is
# left out: fastjsonschema also runs those on Python's `re` while generating code (against `required` names).
_FAST_KEYWORDS: Final = frozenset({
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "format", "items", "minItems", "maxItems", "contains",
    "required", "minProperties", "maxProperties", "properties",
    "additionalProperties", "propertyNames", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "$defs", "definitions",
})
_FAST_ENUM_MAX: Final = 64
"""A longer `enum` is a linear scan per check in fastjsonschema: jsonschema (hashed here) checks it."""
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
    """A document that is not a usable JSON Schema: where in it (None: the document as a whole), and what
    is wrong."""

    def __init__(self, path: Sequence[str | int] | None, problem: str) -> None:
        super().__init__(problem)
        self.path = None if path is None else tuple(path)
        self.problem = problem

    def __str__(self) -> str:
        return self.problem if self.path is None else f"at {_pointer(self.path)}: {self.problem}"


class _UnsupportedPatternError(Exception):
    """A pattern RE2 cannot compile, met while checking (a document set before patterns were checked)."""


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
            errors = compiled.validator.iter_errors(value)  # (is_valid, then iter_errors, checked twice)
            first = next(errors, None)
            if first is None:
                return []
            return _render(compiled, value, itertools.chain((first,), errors))
        except _unresolvable() as exc:
            raise ValidationError(
                f"Schema {self.pattern} cannot be applied: a $ref in it does not resolve ({type(exc).__name__})"
            ) from None
        except _SchemaProblemError as exc:  # a `checked` document that is not a schema after all
            raise ValidationError(f"Schema {self.pattern} cannot be applied: {exc}") from None
        except _UnsupportedPatternError:
            raise ValidationError(f"Schema {self.pattern} cannot be applied: a {_UNSUPPORTED}") from None
        except RecursionError:  # quick: the same few frames until Python's limit, not a deep value
            raise ValidationError(
                f"Schema {self.pattern} cannot be applied: its references loop back without going into the value"
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
        raise ValidationError(f"Invalid JSON Schema for {pattern}: {exc}") from None
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
    _Cost(document).check()  # every pattern compiles on RE2, and a value node meets at most `_BUDGET` nodes
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
    only its bundled metaschemas to an empty one. Its keywords match patterns on RE2 (`_bounded_class`)."""
    from referencing import Registry

    return _bounded_class(_validator_class(document))(document, registry=Registry())


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
        # no formats: jsonschema does not check them either (and fastjsonschema's run on Python's `re`)
        fast: Callable[[Any], object] = fastjsonschema.compile(
            draft7, handlers=refuse, use_default=False, use_formats=False
        )
        # The generated code looks its `pattern` regexes up in this dict at each call: RE2 ones instead of
        # the `re` ones it compiled (fastjsonschema's `$` -> `\Z` is what RE2's `$` means anyway), and any
        # other use of `re` fails (the fast path is then unsure, and jsonschema decides).
        namespace = getattr(fast, "__globals__", None)
        if not isinstance(namespace, dict):
            return None
        regexes = namespace.get("REGEX_PATTERNS", {})
        for key in list(regexes):
            regexes[key] = _re2(key)
        namespace["re"] = _RE2_AS_RE
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
        elif keyword not in _FAST_KEYWORDS or (keyword == "enum" and _long_list(sub)):
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


def _long_list(enum: Any) -> bool:
    return isinstance(enum, list) and len(enum) > _FAST_ENUM_MAX


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


# --- bounded checking: RE2 for a schema's regexes, and a budget for what one value node costs -------------

_BUDGET: Final = 10_000
"""Most schema nodes one value node may be checked against, `$ref`s expanded (`_Cost`)."""
_UNSUPPORTED: Final = "pattern not supported (RE2 syntax: no lookaround or backreferences)"
_UNEVALUATED: Final = frozenset({"unevaluatedProperties", "unevaluatedItems"})
_UNEVALUATED_FACTOR: Final = 3
"""jsonschema's `unevaluated*` re-evaluates its schema's subschemas (measured: ~2.8x per nesting level)."""
_METASCHEMA_WEIGHT: Final = 200
"""What a `$ref` to a bundled metaschema costs per value node (measured: ~150 subschema evaluations)."""
_META: Final = -1
"""The node id `_Cost` gives a bundled metaschema (at every depth, as it is recursive)."""
_SAME_INSTANCE_ONE: Final = frozenset({"not", "if", "then", "else"})
_SAME_INSTANCE_MANY: Final = frozenset({"allOf", "anyOf", "oneOf", "disallow"})
_OBJECT_ANY: Final = frozenset({"additionalProperties", "unevaluatedProperties", "propertyNames"})
_ARRAY_ANY: Final = frozenset({"additionalItems", "unevaluatedItems", "contains"})
_ENUM_HASHED_FROM: Final = 16
_MAX_WORK: Final = 2_000_000
"""Most steps `_Cost` takes (nodes reached, edges followed): a document needing more is refused as too big."""
_ENUM_INDEX: dict[int, tuple[list[Any], frozenset[Any], tuple[Any, ...]]] = {}


@functools.lru_cache(maxsize=1024)
def _re2(pattern: str) -> _Regex:
    """`pattern` compiled once on RE2 (linear time in the text, whatever the pattern); raises
    `_UnsupportedPatternError` if RE2 cannot compile it (lookaround, backreferences, ...)."""
    import re2  # type: ignore[import-untyped,unused-ignore]

    options = re2.Options()
    options.never_capture = True  # only "is there a match": no submatch tracking
    options.log_errors = False
    try:
        return _Regex(re2.compile(pattern, options))
    except re2.error:
        raise _UnsupportedPatternError(_UNSUPPORTED) from None


class _Regex:
    """One compiled RE2 regex whose `search` says only whether it matches (what every caller here needs):
    google-re2's own `search` builds match objects in Python, ~6 µs a call; RE2 itself answers in ~1 µs.
    Falls back to the public `search` should google-re2's internals change."""

    __slots__ = ("_anchor", "_compiled", "_match", "programsize")

    def __init__(self, compiled: Any) -> None:
        import re2

        self._compiled = compiled
        self._anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
        self._match = getattr(getattr(compiled, "_regexp", None), "Match", None) if self._anchor is not None else None
        self.programsize = int(compiled.programsize)

    def search(self, text: str) -> bool:
        if self._match is None or not isinstance(text, str):
            return self._compiled.search(text) is not None
        data = text.encode()
        return bool(self._match(self._anchor, data, 0, len(data))[0][0] >= 0)


class _RE2AsRe:
    """`re` as the keyword functions of jsonschema see it here: the one function they call, on RE2.
    (Anything else they might call one day fails loudly instead of backtracking.)"""

    @staticmethod
    def search(pattern: str, string: str) -> Any:
        return _re2(pattern).search(string)


_RE2_AS_RE: Final = _RE2AsRe()


@functools.cache
def _bounded_class(cls: Any) -> Any:
    """`cls` (a jsonschema validator class) whose keywords match patterns on RE2: each keyword function is
    a copy of jsonschema's own whose `re` is `_RE2_AS_RE` — as are the copies of the jsonschema functions it
    calls (`find_additional_properties` for `additionalProperties`, the evaluated-keys search of
    `unevaluatedProperties`), so `pattern`, `patternProperties` (and through them `propertyNames`) and
    both of those keep jsonschema's exact semantics but not its backtracking. `uniqueItems` hashes instead
    of comparing every pair, `enum` hashes a long list of scalars."""
    from jsonschema import validators

    copies: dict[Any, Any] = {}
    keywords = {
        name: _with_re2(function, copies)
        for name, function in cls.VALIDATORS.items()
        if isinstance(function, types.FunctionType)
    }
    if "enum" in keywords:
        keywords["enum"] = _enum
    return validators.extend(cls, keywords)


def _with_re2(function: types.FunctionType, copies: dict[Any, Any]) -> Any:
    """A copy of one of jsonschema's functions, and of those it calls by name, with `re` → `_RE2_AS_RE`
    and `uniq` → `_uniq` in its globals."""
    done = copies.get(function)
    if done is not None:
        return done
    namespace = dict(function.__globals__)
    copy = types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copies[function] = copy
    for name in _global_names(function.__code__):
        target = function.__globals__.get(name)
        if isinstance(target, types.FunctionType) and target.__module__.startswith("jsonschema"):
            namespace[name] = _with_re2(target, copies)
    if "re" in namespace:
        namespace["re"] = _RE2_AS_RE
    if "uniq" in namespace:
        namespace["uniq"] = _uniq
    return copy


def _global_names(code: types.CodeType) -> set[str]:
    """Names a function's code (its generator expressions and lambdas included) may look up as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _scalar_key(value: Any) -> Any:
    """A hashable key equal for exactly the scalars jsonschema's `equal` finds equal (`1 == 1.0`, but
    `True != 1`); None for anything else."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None


def _canonical(value: Any) -> Any:
    """A hashable key equal for exactly the JSON values jsonschema's `equal` finds equal."""
    key = _scalar_key(value)
    if key is not None:
        return key
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((name, _canonical(item)) for name, item in value.items()))
    raise TypeError(type(value).__name__)


def _uniq(container: Any) -> bool:
    """jsonschema's `uniq` in linear time (its own compares every pair of unsortable items: a 40 KB array
    of objects took 30 s)."""
    try:
        keys = [_canonical(item) for item in container]
    except TypeError:
        from jsonschema._utils import uniq  # type: ignore[import-untyped,unused-ignore]

        return bool(uniq(container))
    return len(set(keys)) == len(keys)


def _enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's `enum`, with a long list's scalars hashed (one lookup per check, not one comparison
    per member); the message names neither (it is never shown: `_describe` words the rule)."""
    equal, JsonschemaError = _jsonschema_equal_and_error()  # noqa: N806 - a class
    if not isinstance(enums, list) or len(enums) < _ENUM_HASHED_FROM:
        found = any(equal(each, instance) for each in enums)
    else:
        scalars, others = _enum_index(enums)
        key = _scalar_key(instance)
        found = key in scalars if key is not None else any(equal(each, instance) for each in others)
    if not found:
        yield JsonschemaError("is not one of the enum's values")


@functools.cache
def _jsonschema_equal_and_error() -> tuple[Callable[[Any, Any], bool], Any]:
    from jsonschema._utils import equal
    from jsonschema.exceptions import ValidationError as JsonschemaError  # type: ignore[import-untyped,unused-ignore]

    return equal, JsonschemaError


def _enum_index(enums: list[Any]) -> tuple[frozenset[Any], tuple[Any, ...]]:
    """(keys of the scalar members, the other members) of one `enum` list, cached by identity (the entry
    keeps the list alive, so its id cannot be reused while cached)."""
    entry = _ENUM_INDEX.get(id(enums))
    if entry is None or entry[0] is not enums:
        keys = [_scalar_key(each) for each in enums]
        others = tuple(each for each, key in zip(enums, keys, strict=True) if key is None)
        entry = (enums, frozenset(key for key in keys if key is not None), others)
        if len(_ENUM_INDEX) >= 256:
            _ENUM_INDEX.clear()
        _ENUM_INDEX[id(enums)] = entry
    return entry[1], entry[2]


_Kind = tuple[str, "str | int | None"]
"""Which children of a value node a subschema applies to: ("object", name), ("array", index), or
("object" / "array", None) for every child."""


class _Cost:
    """What checking one value costs, bounded when the schema is set.

    Every schema node reachable from the root (through applicators, `$defs` and local references) is
    walked once: its `pattern` and `patternProperties` keys must compile on RE2, and it gets a weight (1,
    +1 per keyword, per name of `required`, per subschema it applies; a pattern weighs its RE2 program
    size), edges to the subschemas it applies to the *same* value node (`allOf`/`anyOf`/`oneOf`, `not`,
    `if`/`then`/`else`, `dependentSchemas`, and each `$ref` to its target: the target's expansion, computed
    once per target; a reference cycle on the same value node counts once — jsonschema recurses on it until
    Python's recursion limit, quickly) and edges to those it applies to a *child* of it (`properties`,
    `items`, ...), labelled with which child.

    Then, for each depth of the value (`MAX_DEPTH` at most), it computes how many times each node can be
    applied to one value node at that depth: same-instance edges multiply within a depth, child edges lead
    to the next one, each kind of child apart (a value node is one child: `properties: {a, b}` both
    recursing is a tree, linear; `allOf: [$ref #, $ref #]` under one property doubles per level — the
    fan-out a reference cycle can hide). A set of nodes that weighs more than `_BUDGET` refuses the
    document. A check then costs at most about `_BUDGET` node evaluations per value node — a bound, not a
    speed: a 1 MiB value has ~10^5 nodes, and a regex costs its program size per character (RE2's NFA,
    when its DFA gives up: ~8 ns per instruction and byte)."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.paths: dict[int, tuple[str | int, ...]] = {}
        self.nodes: dict[int, Any] = {}
        self.weight: dict[int, int] = {_META: _METASCHEMA_WEIGHT}
        self.same: dict[int, list[tuple[int, int]]] = {_META: []}
        self.child: dict[int, list[tuple[_Kind, int, int]]] = {
            _META: [(("object", None), _META, 1), (("array", None), _META, 1)],
        }
        self.refs: list[tuple[int, str, str, int]] = []  # (node, keyword, reference, multiplicity)
        self.anchors: dict[str, list[Any]] = {}
        self.recursive_anchors: list[Any] = []
        self.bases: list[Any] = [document]  # the root and every subschema with an id ("#/…" is relative to it)
        self.work = 0
        self._todo: list[Any] = []

    def check(self) -> None:
        """Raise `_SchemaProblemError` for a pattern RE2 cannot compile or a document over the budget."""
        self._walk()
        rank = self._ranks()
        over = _SchemaProblemError(None, f"references expand to more than {_BUDGET} schema nodes")
        seen: set[tuple[tuple[int, int], ...]] = set()
        states: list[tuple[tuple[int, int], ...]] = [((id(self.document), 1),)]  # (node, times applied)
        for _ in range(MAX_DEPTH + 1):  # the value's root, and each depth of nesting below it
            following = []
            for state in states:
                total = self._same_instance(dict(state), rank)
                if sum(count * self.weight[node] for node, count in total.items()) > _BUDGET:
                    raise over
                for child in self._children(total):
                    if child not in seen:  # (met before, it was met with at least as many levels to go)
                        seen.add(child)
                        following.append(child)
                if self.work > _MAX_WORK:  # (so is this analysis: a few seconds at most)
                    raise over
            if not following:
                return
            states = following

    # walking

    def _visit(self, node: Any, path: tuple[str | int, ...]) -> int | None:
        """Register a schema node (an object or a boolean) to walk; its id, None if it is not a schema."""
        if not isinstance(node, (dict, bool)):
            return None
        key = id(node)  # one `true` (or `false`) object stands for all of them: fine, they have no edges
        if key not in self.nodes:
            self.nodes[key] = node
            self.paths[key] = path
            self._todo.append(node)
        return key

    def _walk(self) -> None:
        self._visit(self.document, ())
        resolved = 0
        while True:
            while self._todo or resolved < len(self.refs):
                while self._todo:
                    self._node(self._todo.pop())
                while resolved < len(self.refs):  # a target may be a new node (anywhere in the document)
                    _, keyword, reference, _ = self.refs[resolved]
                    resolved += 1
                    self._targets(keyword, reference)
            # again, now that every anchor and `$id` is known (which may, rarely, land somewhere new)
            found = [self._targets(keyword, reference) for _, keyword, reference, _ in self.refs]
            if not self._todo:
                break
        for (source, _, _, times), targets in zip(self.refs, found, strict=True):
            self.same[source].extend((target, times) for target in targets)

    def _node(self, node: Any) -> None:
        key = id(node)
        path = self.paths[key]
        weight = 1
        same: list[tuple[int, int]] = []
        child: list[tuple[_Kind, int, int]] = []
        self.weight[key], self.same[key], self.child[key] = weight, same, child
        if not isinstance(node, dict):
            return
        times = _UNEVALUATED_FACTOR if any(k in node for k in _UNEVALUATED) else 1

        def applies(sub: Any, at: tuple[str | int, ...], kind: _Kind | None = None) -> int:
            target = self._visit(sub, at)
            if target is not None:
                (same.append((target, times)) if kind is None else child.append((kind, target, times)))
            return 1

        for keyword, sub in node.items():
            weight += 1
            at = (*path, keyword)
            if keyword in _DATA_KEYWORDS:
                continue
            if keyword == "pattern" and isinstance(sub, str):
                weight += self._pattern(sub, at)
            elif keyword in _SAME_INSTANCE_ONE or (keyword == "extends" and isinstance(sub, dict)):
                weight += applies(sub, at)
            elif (keyword in _SAME_INSTANCE_MANY or keyword in ("extends", "type")) and isinstance(sub, list):
                weight += sum(applies(s, (*at, i)) for i, s in enumerate(sub))
            elif keyword in ("dependentSchemas", "dependencies", "dependentRequired") and isinstance(sub, dict):
                for name, s in sub.items():
                    weight += len(s) if isinstance(s, list) else applies(s, (*at, name))
            elif keyword == "required" and isinstance(sub, list):
                weight += len(sub)
            elif keyword == "properties" and isinstance(sub, dict):
                weight += sum(applies(s, (*at, name), ("object", name)) for name, s in sub.items())
            elif keyword == "patternProperties" and isinstance(sub, dict):
                for regex, s in sub.items():
                    weight += self._pattern(regex, (*at, regex)) + applies(s, (*at, regex), ("object", None))
            elif keyword in _OBJECT_ANY:
                weight += applies(sub, at, ("object", None))
            elif keyword in ("items", "prefixItems") and isinstance(sub, list):
                weight += sum(applies(s, (*at, i), ("array", i)) for i, s in enumerate(sub))
            elif keyword == "items" or keyword in _ARRAY_ANY:
                weight += applies(sub, at, ("array", None))
            elif keyword in ("$defs", "definitions") and isinstance(sub, dict):
                for name, s in sub.items():  # walked (their patterns are checked), applied only by reference
                    self._visit(s, (*at, name))
            elif keyword in _REF_KEYWORDS and isinstance(sub, str):
                self.refs.append((key, keyword, sub, times))
            elif keyword in ("$anchor", "$dynamicAnchor") and isinstance(sub, str):
                self.anchors.setdefault(sub, []).append(node)
            elif keyword == "$recursiveAnchor" and sub is True:
                self.recursive_anchors.append(node)
            elif keyword in ("$id", "id") and isinstance(sub, str) and path:
                self.bases.append(node)
        self.weight[key] = weight * times

    def _pattern(self, pattern: str, at: tuple[str | int, ...]) -> int:
        """The weight of one of the schema's regexes (its RE2 program size); refuses one RE2 cannot compile."""
        try:
            size = _re2(pattern).programsize
        except _UnsupportedPatternError:
            raise _SchemaProblemError(at, _UNSUPPORTED) from None
        if size > _BUDGET:
            raise _SchemaProblemError(at, f"pattern too complex (its RE2 program exceeds {_BUDGET} instructions)")
        return size

    def _targets(self, keyword: str, reference: str) -> list[int]:
        """The nodes a reference may land on (all of them: an over-estimate where ids or anchors repeat)."""
        from urllib.parse import unquote

        if not reference.startswith("#"):
            return [_META]  # `_check_references` let only the bundled metaschemas through
        if keyword == "$recursiveRef" and reference == "#":
            candidates = [self.document, *self.recursive_anchors]
        elif reference == "#" or reference.startswith("#/"):
            candidates = [_resolve_pointer(base, reference) for base in self.bases]
        else:
            candidates = list(self.anchors.get(unquote(reference[1:]), []))
        at = tuple(unquote(raw).replace("~1", "/").replace("~0", "~") for raw in reference[2:].split("/") if raw)
        found: dict[int, None] = {}
        for node in candidates:  # (a node not walked yet is where the pointer says, as seen from the root)
            if node is not _MISSING and (target := self._visit(node, at)) is not None:
                found[target] = None
        return list(found)

    # counting

    def _ranks(self) -> dict[int, int]:
        """A topological rank of the same-instance graph (depth-first, iterative: a chain of references
        may be long); an edge to a node of lower or equal rank closes a cycle and is not followed."""
        state: dict[int, bool] = {}  # False: on the stack, True: done
        order: list[int] = []
        for start in [*self.same]:
            if start in state:
                continue
            state[start] = False
            stack = [(start, iter(self.same[start]))]
            while stack:
                node, edges = stack[-1]
                for target, _ in edges:
                    if target not in state:
                        state[target] = False
                        stack.append((target, iter(self.same[target])))
                        break
                else:
                    stack.pop()
                    state[node] = True
                    order.append(node)
        return {node: len(order) - i for i, node in enumerate(order)}

    def _same_instance(self, applied: dict[int, int], rank: dict[int, int]) -> dict[int, int]:
        """How many times each node is applied to one value node, given those applied to it directly."""
        reached = set(applied)
        stack = list(applied)
        while stack:
            for target, _ in self.same[stack.pop()]:
                if target not in reached:
                    reached.add(target)
                    stack.append(target)
        self.work += len(reached)
        total = dict(applied)
        for node in sorted(reached, key=rank.__getitem__):
            count = total.get(node, 0)
            if count:
                for target, times in self.same[node]:
                    if rank[target] > rank[node]:
                        total[target] = min(_BUDGET + 1, total.get(target, 0) + count * times)
        return total

    def _children(self, total: dict[int, int]) -> Iterator[tuple[tuple[int, int], ...]]:
        """For each kind of child of that value node (a property the schema names, any other property, an
        index, any other index): the nodes applied to such a child, and how many times."""
        by_kind: dict[_Kind, dict[int, int]] = {}
        for node, count in total.items():
            edges = self.child[node]
            self.work += len(edges)
            for kind, target, times in edges:
                counts = by_kind.setdefault(kind, {})
                counts[target] = counts.get(target, 0) + count * times  # (capped with the rest, below)
        self.work += len(by_kind)
        for (container, name), counts in by_kind.items():
            every = by_kind.get((container, None)) if name is not None else None
            merged = {**every, **{t: c + every.get(t, 0) for t, c in counts.items()}} if every else counts
            if len(merged) == 1:
                ((target, count),) = merged.items()
                yield ((target, min(count, _BUDGET + 1)),)
            else:
                yield tuple(sorted((t, min(c, _BUDGET + 1)) for t, c in merged.items()))


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
    stopped = False
    for seen, top in enumerate(errors):
        if seen == _ERRORS_RENDERED:  # a refusal costs no more than an acceptance, whatever the value
            stopped = True
            break
        error = best_match([top]) if top.context else top
        condition = _condition(compiled.document, error)
        for path, rule in _describe(compiled, value, error):
            by_rule.setdefault(rule + condition, {})[_sort_key(path)] = _shown_path(compiled.names, path)
    lines = [(min(paths), _paths_text(paths, stopped) + ": " + rule) for rule, paths in by_rule.items()]
    return [line for _, line in sorted(lines)]


def _paths_text(paths: dict[tuple[Any, ...], str], stopped: bool) -> str:
    """The first `_PATHS_SHOWN` paths sharing a rule, and how many more (a message stays short; after
    `_ERRORS_RENDERED` violations they are no longer counted)."""
    keys = sorted(paths)
    shown = ", ".join(paths[k] for k in keys[:_PATHS_SHOWN])
    if stopped and len(keys) >= _PATHS_SHOWN:
        return f"{shown} and more"
    return shown if len(keys) <= _PATHS_SHOWN else f"{shown} and {len(keys) - _PATHS_SHOWN} more"


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
    patterns = [_re2(p) for p in (schema.get("patternProperties") or {})]  # checked when the schema was set
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
        head = limit[: _SHOWN_LIMIT + 1]
        return _cut(head if head.isprintable() else ascii(head), _SHOWN_LIMIT)
    # encoded only as far as shown: an `enum` of 100,000 members, once per refused item, was quadratic
    text, chunks = "", json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).iterencode(limit)
    for chunk in chunks:
        text += chunk
        if len(text) > _SHOWN_LIMIT:
            break
    return _cut(text, _SHOWN_LIMIT)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
