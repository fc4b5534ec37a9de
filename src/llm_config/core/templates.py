"""Prompt templates (SPEC §6): the syntax, the parser and the renderer. Pure: never does I/O.

This module owns the template language and nothing else. Storing, versioning, auditing and
permission checks belong to the manager, which hands `render` two callbacks: `load(name)` returns
another stored template (raising `NotFoundError` itself) and `lookup(kind, key)` resolves a
`config:` or `secret:` reference (raising `NotFoundError` / `PermissionDeniedError` itself).

Syntax:

- `{{ name }}` is a variable: 1-200 letters, digits, `_`, `-`. Spaces and tabs just inside the
  braces are trimmed; a tag never spans lines.
- `{{ config:KEY }}`, `{{ secret:KEY }}`, `{{ template:NAME }}` are references; KEY and NAME follow
  the key grammar of `llm_config.names` (no spaces around the colon).
- Everything else is literal text: single braces (JSON examples), a lone `}}`, backslashes. In a run
  of three or more `{`, the tag opens at the last two (`{{{ x }}}` is `{` + x + `}`), as a regex scan
  for tags would find it.
- `\\{{` is a literal `{{` (the backslash is consumed; a backslash anywhere else is kept). `escape`
  turns any text into a template that renders to that text. The one thing the syntax cannot say is a
  literal `\\` or `\\{` right before a tag: that backslash escapes the tag's braces.

Rendering inserts strings raw and every other JSON value as compact JSON (`{"a":1}`, `true`,
`null`). Errors are `ValidationError`s whose messages name variables, keys and templates, never a
value; every variable check happens before `lookup` is first called.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal, cast, get_args

import orjson

from llm_config.errors import ValidationError
from llm_config.names import KEY_PATTERN
from llm_config.values import validate_value

__all__ = [
    "MAX_NAME_LENGTH",
    "ParsedTemplate",
    "Rendered",
    "Tag",
    "TagKind",
    "TemplateSource",
    "TemplateSyntaxError",
    "TemplateVariablesError",
    "escape",
    "parse",
    "render",
    "tag_text",
]

TagKind = Literal["var", "config", "secret", "template"]
ReferenceKind = Literal["config", "secret", "template"]
_KINDS: Final = frozenset(get_args(TagKind))
_REFERENCE_KINDS: Final = ("config", "secret", "template")

MAX_NAME_LENGTH: Final = 200
"""Longest variable name (and key: the key grammar has the same bound)."""
_VAR: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_NAME_LENGTH}}}")
_VAR_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_KEY: Final = re.compile(KEY_PATTERN)
_KEY_CHARS: Final = _VAR_CHARS | {"."}
_BLANK: Final = " \t"
_TAG: Final = re.compile(
    rf"\{{\{{[ \t]*(?:(config|secret|template):({KEY_PATTERN})|([A-Za-z0-9_-]{{1,{MAX_NAME_LENGTH}}}))[ \t]*\}}\}}"
)
"""A well-formed tag from its `{{` (the common case: one match); anything else goes the slow way for
the exact fault. No backtracking beyond the 3-way alternation: blanks, name characters and braces are
disjoint, so each character has one place to go."""
_MISSING: Final = object()
_ESCAPE_HINT: Final = r"; write \{{ for a literal '{{'"


class TemplateSyntaxError(ValidationError):
    """A template that does not parse: `position` is the 0-based offset of the fault in the text,
    `line` and `column` are 1-based (columns count characters)."""

    def __init__(self, reason: str, *, position: int, line: int, column: int) -> None:
        super().__init__(f"Template syntax error at line {line}, column {column}: {reason}")
        self.reason = reason
        self.position = position
        self.line = line
        self.column = column


class TemplateVariablesError(ValidationError):
    """Variables missing from a render, or supplied but used nowhere: every name, sorted."""

    def __init__(self, missing: tuple[str, ...], unknown: tuple[str, ...]) -> None:
        parts = []
        if missing:
            parts.append(f"Missing template variables: {', '.join(_shown(n) for n in missing)}")
        if unknown:
            parts.append(f"Unknown template variables: {', '.join(_shown(n) for n in unknown)}")
        super().__init__("; ".join(parts))
        self.missing = missing
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class Tag:
    """One `{{ ... }}`: a variable (`kind="var"`) or a reference, and where its `{{` opens."""

    kind: TagKind
    name: str
    position: int


@dataclass(frozen=True, slots=True)
class ParsedTemplate:
    """A template's text split into literal segments and tags (adjacent literals merged)."""

    source: str
    parts: tuple[str | Tag, ...]
    variables: tuple[str, ...]
    """Variable names in order of first appearance, each once; references excluded."""
    # derived once per parse, for `references` and the render loop
    _names: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _sorted: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _variable_set: frozenset[str] = field(init=False, repr=False, compare=False)
    _skeleton: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """`parts` with "" in place of each tag: the render copies it and fills the tags in."""
    _slots: tuple[tuple[int, str, str], ...] = field(init=False, repr=False, compare=False)
    """(index in `parts`, kind, name) of each tag."""

    def __post_init__(self) -> None:
        names: dict[str, dict[str, None]] = {kind: {} for kind in _KINDS}
        slots = []
        for index, part in enumerate(self.parts):
            if isinstance(part, Tag):
                names[part.kind][part.name] = None
                slots.append((index, part.kind, part.name))
        set_ = object.__setattr__
        set_(self, "_names", {kind: tuple(found) for kind, found in names.items()})
        set_(self, "_sorted", {kind: tuple(sorted(found)) for kind, found in names.items()})
        set_(self, "_variable_set", frozenset(self.variables))
        set_(self, "_skeleton", tuple("" if isinstance(part, Tag) else part for part in self.parts))
        set_(self, "_slots", tuple(slots))

    def references(self, kind: str) -> tuple[str, ...]:
        """Names of the tags of `kind` ("config", "secret", "template" or "var"), each once, in order
        of first appearance."""
        try:
            return self._names[kind]
        except KeyError:
            raise ValueError(f"unknown tag kind {kind!r}") from None


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """What the manager loads for one stored template."""

    name: str
    parsed: ParsedTemplate
    defaults: Mapping[str, Any]
    """Variable defaults declared with the template."""


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    config_keys: tuple[str, ...]
    """Keys referenced through `config:` anywhere in the include tree, sorted, each once."""
    secret_keys: tuple[str, ...]
    """Keys referenced through `secret:` anywhere in the include tree, sorted, each once."""
    templates: tuple[str, ...]
    """Every template used, each once: the root, then breadth-first in order of appearance."""


# --------------------------------------------------------------------------------------------- parse


def _shown(name: str) -> str:
    """A name as a message may show it: as is when it is one of ours, else escaped and cut."""
    if _KEY.fullmatch(name) or _VAR.fullmatch(name):
        return name
    return ascii(name if len(name) <= 60 else name[:57] + "...")


def _syntax_error(text: str, position: int, reason: str) -> TemplateSyntaxError:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return TemplateSyntaxError(reason, position=position, line=line, column=column)


def _name_fault(text: str, start: int, name: str, what: str, chars: frozenset[str]) -> TemplateSyntaxError:
    """The first thing wrong with a variable name or key that failed its pattern."""
    hint = _ESCAPE_HINT if what == "variable name" else ""
    if not name:
        return _syntax_error(text, start, f"empty {what}")
    for index, char in enumerate(name):
        if index >= MAX_NAME_LENGTH:
            return _syntax_error(text, start + index, f"{what} longer than {MAX_NAME_LENGTH} characters")
        if char not in chars:
            return _syntax_error(text, start + index, f"invalid character {char!a} in {what}{hint}")
    # only the key grammar fails here: its first character must be a letter or digit
    return _syntax_error(text, start, f"{what} must start with a letter or digit")


def _fault(text: str, open_at: int) -> TemplateSyntaxError:
    """What is wrong with the tag whose `{{` is at `open_at` (the tag pattern refused it)."""
    close_at = text.find("}}", open_at + 2)
    # a tag ends on its own line, before the next `{{`: else this `{{` was never closed
    if close_at < 0 or text.find("\n", open_at + 2, close_at) >= 0 or text.find("{{", open_at + 2, close_at) >= 0:
        return _syntax_error(text, open_at, "unclosed '{{'")
    start, end = open_at + 2, close_at
    while start < end and text[start] in _BLANK:
        start += 1
    while end > start and text[end - 1] in _BLANK:
        end -= 1
    if start == end:
        return _syntax_error(text, open_at, "empty tag")
    inner = text[start:end]
    colon = inner.find(":")
    if colon < 0:
        return _name_fault(text, start, inner, "variable name", _VAR_CHARS)
    kind, key = inner[:colon], inner[colon + 1:]
    if kind not in _REFERENCE_KINDS:
        if kind and not _VAR.fullmatch(kind):  # no word before the colon: not meant as a reference (`{{"a": 1}}`)
            return _name_fault(text, start, inner, "variable name", _VAR_CHARS)
        return _syntax_error(text, start, f"unknown reference kind {kind!a} (expected config, secret or template)")
    what = "template name" if kind == "template" else f"{kind} key"
    return _name_fault(text, start + colon + 1, key, what, _KEY_CHARS)


@lru_cache(maxsize=512)
def _parse(text: str) -> ParsedTemplate:
    """One pass: `str.find` to the next `{{`, one anchored match of the whole tag there."""
    parts: list[str | Tag] = []
    literal: list[str] = []  # literal pieces not yet emitted (merged when a tag or the end comes)
    variables: dict[str, None] = {}
    find, match_tag = text.find, _TAG.match
    pos = 0
    while (open_at := find("{{", pos)) >= 0:
        if open_at > pos and text[open_at - 1] == "\\":  # `\{{`: a literal `{{`, the backslash consumed
            literal.append(text[pos:open_at - 1])
            literal.append("{{")
            pos = open_at + 2
            continue
        while text.startswith("{", open_at + 2):  # `{{{`: the tag opens at the last two braces
            open_at += 1
        match = match_tag(text, open_at)
        if match is None:
            raise _fault(text, open_at)
        literal.append(text[pos:open_at])
        if merged := "".join(literal):
            parts.append(merged)
        literal.clear()
        kind, key, var = match.groups()
        if var is not None:
            parts.append(Tag("var", var, open_at))
            variables[var] = None
        else:
            parts.append(Tag(cast(ReferenceKind, kind), key, open_at))
        pos = match.end()
    literal.append(text[pos:])
    if merged := "".join(literal):
        parts.append(merged)
    return ParsedTemplate(text, tuple(parts), tuple(variables))


MAX_TEMPLATE_CHARS: Final = 256 * 1024
"""The longest template text (a prompt skeleton; what it includes and renders may be larger)."""
MAX_TAGS: Final = 10_000
"""The most `{{` a template text may hold."""
_CACHED_CHARS: Final = 64 * 1024
"""Texts up to this size are cached parsed (a parsed text costs ~30x its size, so 512 of them stay small)."""


def parse(text: str) -> ParsedTemplate:
    """Parse a template (cached on the text: a template is parsed once however often it renders).

    The size and the number of tags are checked before any parsing, and only texts up to 64 KiB are cached.
    Raises `TemplateSyntaxError` (a `ValidationError`) naming the line and column of the fault."""
    if not isinstance(text, str):
        raise ValidationError("Invalid template: the text must be a string")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ValidationError(f"Invalid template: longer than {MAX_TEMPLATE_CHARS} characters")
    if text.count("{{") > MAX_TAGS:
        raise ValidationError(f"Invalid template: more than {MAX_TAGS} '{{{{'")
    return _parse(text) if len(text) <= _CACHED_CHARS else _parse.__wrapped__(text)


def tag_text(tag: Tag) -> str:
    """The canonical text of a tag: `{{ name }}` or `{{ kind:NAME }}`."""
    return f"{{{{ {tag.name} }}}}" if tag.kind == "var" else f"{{{{ {tag.kind}:{tag.name} }}}}"


def escape(text: str) -> str:
    """Template text that renders to `text` itself (every `{{` written `\\{{`).

    Safe to place before a tag unless `text` ends with `\\` or `\\{` (that backslash would escape the
    tag's braces: the syntax has no way to write one right before a tag)."""
    return text.replace("{{", "\\{{")


# -------------------------------------------------------------------------------------------- render


def _chain(names: Iterable[str]) -> str:
    return " -> ".join(_shown(name) for name in names)


def _walk(root: TemplateSource, load: Callable[[str], TemplateSource], max_depth: int) -> tuple[
        dict[str, TemplateSource], list[str], list[str]]:
    """Load the include tree once per template; refuse cycles and chains deeper than `max_depth`.

    Returns the templates by name, their order for `Rendered.templates` (breadth-first from the root)
    and an order in which every template comes after all it includes (for rendering)."""
    sources = {root.name: root}
    includes = root.parsed.references("template")
    if not includes:
        return sources, [root.name], [root.name]
    height: dict[str, int] = {}  # the longest include chain below a template whose subtree is done
    deepest: dict[str, str] = {}  # the child on that chain
    post_order: list[str] = []
    path = [root.name]
    on_path = {root.name}
    stack = [iter(includes)]

    def too_deep(chain: list[str]) -> ValidationError:
        return ValidationError(f"Template includes nested deeper than {max_depth}: {_chain(chain)}")

    while stack:
        child = next(stack[-1], None)
        if child is None:
            done = path.pop()
            on_path.discard(done)
            stack.pop()
            below = sources[done].parsed.references("template")
            height[done] = 0
            for name in below:
                if height[name] + 1 > height[done]:
                    height[done], deepest[done] = height[name] + 1, name
            post_order.append(done)
            continue
        if child in on_path:
            raise ValidationError(f"Template include cycle: {_chain([*path[path.index(child):], child])}")
        if child in height:  # already walked through another parent: only the depth may differ
            if len(path) + height[child] > max_depth:
                chain = [*path, child]
                while chain[-1] in deepest:
                    chain.append(deepest[chain[-1]])
                raise too_deep(chain)
            continue
        if len(path) > max_depth:
            raise too_deep([*path, child])
        source = sources.get(child)
        if source is None:
            source = sources[child] = load(child)
        path.append(child)
        on_path.add(child)
        stack.append(iter(source.parsed.references("template")))
    order = [root.name]
    seen = {root.name}
    for name in order:  # breadth-first: grows while it is read
        for child in sources[name].parsed.references("template"):
            if child not in seen:
                seen.add(child)
                order.append(child)
    return sources, order, post_order


def _value_text(value: Any, name: str) -> str:
    """A variable's value as inserted: strings raw, any other JSON value as compact JSON."""
    if isinstance(value, str):  # a str subclass (a StrEnum member): its text
        return str.__str__(value)
    try:
        return validate_value(value)
    except ValidationError as exc:
        raise ValidationError(f"Template variable {_shown(name)}: {exc.message}") from None


def _variable_texts(variables: Mapping[str, Any], used: Collection[str], defaults: list[Mapping[str, Any]],
                    allow_extra: bool) -> dict[str, str]:
    """The text of every used variable (supplied, else the first default), or one error naming every
    missing variable and, unless `allow_extra`, every supplied one that is not used."""
    unknown: list[str] = []
    if extra := variables.keys() - used:  # a set difference in C: the common case is empty
        if not all(isinstance(name, str) for name in extra):
            raise ValidationError("Template variable names must be strings")
        if not allow_extra:
            unknown = sorted(extra)
    texts: dict[str, str] = {}
    missing: list[str] = []
    for name in used:
        value = variables.get(name, _MISSING)
        if value is _MISSING:
            for declared in defaults:
                if name in declared:
                    value = declared[name]
                    break
            else:
                missing.append(name)
                continue
        texts[name] = value if value.__class__ is str else _value_text(value, name)
    if missing or unknown:
        raise TemplateVariablesError(tuple(sorted(missing)), tuple(unknown))
    return texts


def render(
    root: TemplateSource,
    variables: Mapping[str, Any],
    *,
    load: Callable[[str], TemplateSource],
    lookup: Callable[[str, str], Any],
    allow_extra: bool = False,
    max_depth: int = 16,
    max_output: int = 1 << 20,
) -> Rendered:
    """Render `root` with its includes.

    A variable takes its supplied value, else the default of the first template in
    `Rendered.templates` that declares one. Missing variables, and unless `allow_extra` supplied
    variables no template uses, are refused together before anything renders and before `lookup`
    is first called; `lookup` is called once per distinct reference. Output longer than `max_output`
    characters is refused as soon as one template's text would exceed it, before that text is built."""
    parsed = root.parsed
    if parsed._names["template"]:
        sources, order, post_order = _walk(root, load, max_depth)
        used: Collection[str] = dict.fromkeys(
            name for template in order for name in sources[template].parsed.variables)
    else:  # the common case: no includes
        sources, order, post_order = {root.name: root}, [root.name], [root.name]
        used = parsed._variable_set
    texts = _variable_texts(variables, used, [sources[template].defaults for template in order], allow_extra)

    resolved: dict[str, dict[str, str]] = {"config": {}, "secret": {}}
    rendered: dict[str, str] = {}
    for template in post_order:
        template_parsed = sources[template].parsed
        pieces = list(template_parsed._skeleton)
        for index, kind, name in template_parsed._slots:
            if kind == "var":
                pieces[index] = texts[name]
            elif kind == "template":
                pieces[index] = rendered[name]
            else:
                cache = resolved[kind]
                text = cache.get(name)
                if text is None:
                    value = lookup(kind, name)
                    text = cache[name] = value if value.__class__ is str else _reference_text(value, kind, name)
                pieces[index] = text
        if sum(map(len, pieces)) > max_output:  # before the join: a template bomb never builds its text
            raise ValidationError(f"Rendered template {_shown(template)} exceeds {max_output} characters")
        rendered[template] = "".join(pieces)

    if len(order) == 1:
        config_keys, secret_keys = parsed._sorted["config"], parsed._sorted["secret"]
    else:
        config_keys = tuple(sorted({key for t in order for key in sources[t].parsed._names["config"]}))
        secret_keys = tuple(sorted({key for t in order for key in sources[t].parsed._names["secret"]}))
    return Rendered(rendered[root.name], config_keys, secret_keys, tuple(order))


def _reference_text(value: Any, kind: str, key: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        raise ValidationError(f"The value of {kind} key {_shown(key)} is not serializable as JSON") from None
