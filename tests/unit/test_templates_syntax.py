"""Templates (SPEC §6): the syntax with exact fault positions, and rendering — variables, defaults,
references, includes, cycles, depth and output caps — with a Hypothesis round trip over literal text."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_config.core.templates import (
    ParsedTemplate,
    Rendered,
    Tag,
    TemplateSource,
    TemplateSyntaxError,
    TemplateVariablesError,
    escape,
    parse,
    render,
    tag_text,
)
from llm_config.errors import NotFoundError, ValidationError

# ------------------------------------------------------------------------------------------- helpers


def source(name: str, text: str, defaults: Mapping[str, Any] | None = None) -> TemplateSource:
    return TemplateSource(name, parse(text), defaults or {})


class Library:
    """Stored templates and config/secret values, recording every load and lookup."""

    def __init__(self, templates: Mapping[str, str], values: Mapping[tuple[str, str], Any] | None = None,
                 defaults: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.templates = dict(templates)
        self.values = dict(values or {})
        self.defaults = dict(defaults or {})
        self.loads: list[str] = []
        self.lookups: list[tuple[str, str]] = []

    def load(self, name: str) -> TemplateSource:
        self.loads.append(name)
        if name not in self.templates:
            raise NotFoundError(f"Template {name} not found")
        return source(name, self.templates[name], self.defaults.get(name))

    def lookup(self, kind: str, key: str) -> Any:
        self.lookups.append((kind, key))
        if (kind, key) not in self.values:
            raise NotFoundError(f"{kind} {key} not found")
        return self.values[(kind, key)]

    def render(self, name: str, variables: Mapping[str, Any] | None = None, **kw: Any) -> Rendered:
        return render(self.load(name), variables or {}, load=self.load, lookup=self.lookup, **kw)


def no_lookup(kind: str, key: str) -> Any:
    raise AssertionError(f"lookup({kind!r}, {key!r}) must not be called")


def no_load(name: str) -> TemplateSource:
    raise AssertionError(f"load({name!r}) must not be called")


def text_of(template: str, variables: Mapping[str, Any] | None = None, **kw: Any) -> str:
    return render(source("t", template), variables or {}, load=no_load, lookup=no_lookup, **kw).text


def syntax_error(text: str) -> TemplateSyntaxError:
    with pytest.raises(TemplateSyntaxError) as info:
        parse(text)
    return info.value


# -------------------------------------------------------------------------------------------- syntax


def test_a_variable_splits_the_text_into_literals_and_a_tag() -> None:
    parsed = parse("Hello {{ name }}!")
    assert parsed.source == "Hello {{ name }}!"
    assert parsed.parts == ("Hello ", Tag("var", "name", 6), "!")
    assert parsed.variables == ("name",)


@pytest.mark.parametrize("text", ["{{name}}", "{{ name }}", "{{    name }}", "{{\tname\t}}", "{{ \t name\t \t}}"])
def test_spaces_and_tabs_inside_the_braces_are_trimmed(text: str) -> None:
    assert parse(text).parts == (Tag("var", "name", 0),)


@pytest.mark.parametrize("name", ["a", "A", "0", "-", "_", "snake_case", "kebab-case", "MiXeD-09_x", "9lives",
                                  "x" * 200])
def test_variable_names_are_letters_digits_underscore_and_dash(name: str) -> None:
    assert parse(f"{{{{ {name} }}}}").variables == (name,)


def test_variables_are_unique_in_order_of_first_appearance() -> None:
    parsed = parse("{{ b }} {{ a }} {{ b }} {{ c }} {{ a }}")
    assert parsed.variables == ("b", "a", "c")
    assert parsed.references("var") == ("b", "a", "c")


def test_references_are_excluded_from_variables_and_listed_by_kind() -> None:
    parsed = parse("{{ config:model }} {{ secret:openai.api_key }} {{ x }} {{ template:footer }} "
                   "{{ config:temperature }} {{ config:model }} {{ config }}")
    assert parsed.variables == ("x", "config")
    assert parsed.references("config") == ("model", "temperature")
    assert parsed.references("secret") == ("openai.api_key",)
    assert parsed.references("template") == ("footer",)
    tags = [part for part in parsed.parts if isinstance(part, Tag)]
    assert [(t.kind, t.name) for t in tags] == [
        ("config", "model"), ("secret", "openai.api_key"), ("var", "x"), ("template", "footer"),
        ("config", "temperature"), ("config", "model"), ("var", "config")]


def test_references_of_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown tag kind"):
        parse("x").references("configs")


@pytest.mark.parametrize("key", ["a", "9", "openai.api_key", "A-b_c.d", "k" * 200, "x..y", "a-"])
def test_reference_keys_follow_the_key_grammar(key: str) -> None:
    assert parse(f"{{{{ config:{key} }}}}").references("config") == (key,)


def test_tag_positions_are_offsets_of_the_opening_braces() -> None:
    text = "ab\n{{ x }}{{config:k}}  {{\tsecret:s }}"
    tags = [part for part in parse(text).parts if isinstance(part, Tag)]
    assert [tag.position for tag in tags] == [3, 10, 24]
    assert all(text.startswith("{{", tag.position) for tag in tags)


@pytest.mark.parametrize("text", [
    '{"role": "user", "content": "hi"}',
    "{ }  {a} {\n} }{ {x} { {",
    '[{"a": {"b": [1, {"c": 2}]}}]',
    "function f() { return {a: 1}; }",
])
def test_single_braces_and_json_examples_are_literal(text: str) -> None:
    assert parse(text).parts == (text,)
    assert text_of(text) == text


def test_a_tag_inside_a_json_example() -> None:
    text = '{"model": "{{ model }}", "params": {"t": {{ t }}}}'
    assert parse(text).parts == ('{"model": "', Tag("var", "model", 11), '", "params": {"t": ',
                                 Tag("var", "t", 41), "}}")
    assert text_of(text, {"model": "gpt-4o", "t": 0.5}) == '{"model": "gpt-4o", "params": {"t": 0.5}}'


@pytest.mark.parametrize(("text", "parts"), [
    ("{{{ x }}}", ("{", Tag("var", "x", 1), "}")),
    ("{{{{x}}}}", ("{{", Tag("var", "x", 2), "}}")),
    ('{"a":{{{ x }}}}', ('{"a":{', Tag("var", "x", 6), "}}")),
])
def test_in_a_run_of_braces_the_tag_opens_at_the_last_two(text: str, parts: tuple[str | Tag, ...]) -> None:
    assert parse(text).parts == parts


@pytest.mark.parametrize(("text", "literal"), [
    ("\\{{ x }}", "{{ x }}"),
    ("a \\{{ not a tag }} b", "a {{ not a tag }} b"),
    ("\\{{\\{{", "{{{{"),
    ("\\{{{", "{{{"),
    ("\\{{", "{{"),
    ("\\{{}}", "{{}}"),
    ("\\\\{{ x }}", "\\{{ x }}"),  # only the backslash right before `{{` is consumed
])
def test_backslash_braces_is_a_literal_double_brace(text: str, literal: str) -> None:
    assert parse(text).parts == (literal,)
    assert text_of(text) == literal


def test_an_escape_and_a_tag_side_by_side() -> None:
    parsed = parse("\\{{ x }} = {{ x }}")
    assert parsed.parts == ("{{ x }} = ", Tag("var", "x", 11))
    assert parsed.variables == ("x",)
    assert text_of("\\{{{{ x }}", {"x": "1"}) == "{{1"


@pytest.mark.parametrize("text", ["C:\\path\\file", "\\", "a\\b", "\\{ \\} \\}}", "trailing \\", "\\n\\t"])
def test_a_backslash_elsewhere_is_literal_text(text: str) -> None:
    assert parse(text).parts == (text,)


@pytest.mark.parametrize("text", ["}}", "a }} b", "}}}}", "x } } y", "{{ x }}}}"])
def test_a_lone_closing_pair_is_literal_text(text: str) -> None:
    rendered = text_of(text, {"x": "X"} if "{{" in text else {})
    assert rendered == text.replace("{{ x }}", "X")


def test_adjacent_literals_are_merged() -> None:
    assert parse("a\\{{b\\{{c").parts == ("a{{b{{c",)
    assert parse("a\\{{b{{ x }}c\\{{").parts == ("a{{b", Tag("var", "x", 5), "c{{")
    assert parse("{{ x }}{{ y }}").parts == (Tag("var", "x", 0), Tag("var", "y", 7))
    assert parse("").parts == ()


def test_parse_is_cached_on_the_text() -> None:
    text = "cached {{ v }} " + "x" * 10
    assert parse(text) is parse(text)


def test_parse_refuses_a_non_string() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        parse(b"{{ x }}")  # type: ignore[arg-type]


def test_the_error_message_names_line_and_column() -> None:
    error = syntax_error("first line\nabc {{ name\n")
    assert str(error) == "Template syntax error at line 2, column 5: unclosed '{{'"
    assert (error.position, error.line, error.column) == (15, 2, 5)
    assert isinstance(error, ValidationError)


@pytest.mark.parametrize(("text", "position", "line", "column", "reason"), [
    ("abc {{ x", 4, 1, 5, "unclosed '{{'"),
    ("{{", 0, 1, 1, "unclosed '{{'"),
    ("ok {{ x }}\n\n  {{ y } z", 14, 3, 3, "unclosed '{{'"),
    ("a {{ x\n}}", 2, 1, 3, "unclosed '{{'"),  # a tag never spans lines
    ("{{ a {{ b }}", 0, 1, 1, "unclosed '{{'"),
    ("{{}}", 0, 1, 1, "empty tag"),
    ("x\n  {{   }}", 4, 2, 3, "empty tag"),
    ("{{\t \t}}", 0, 1, 1, "empty tag"),
    ("{{ a b }}", 4, 1, 5, "invalid character ' ' in variable name"),
    ("{{ a.b }}", 4, 1, 5, "invalid character '.' in variable name"),
    ("{{ caf\u00e9 }}", 6, 1, 7, "invalid character '\\xe9' in variable name"),
    ('{{"a": 1}}', 2, 1, 3, "invalid character '\"' in variable name"),
    ("{{ a}b }}", 4, 1, 5, "invalid character '}' in variable name"),
    ("{{ x" + "y" * 200 + " }}", 203, 1, 204, "variable name longer than 200 characters"),
    ("{{ foo:bar }}", 3, 1, 4, "unknown reference kind 'foo' (expected config, secret or template)"),
    ("{{ Config:x }}", 3, 1, 4, "unknown reference kind 'Config'"),
    ("{{ :x }}", 3, 1, 4, "unknown reference kind ''"),
    ("\n\n{{ config:.x }}", 12, 3, 11, "config key must start with a letter or digit"),
    ("{{ config:a b }}", 11, 1, 12, "invalid character ' ' in config key"),
    ("{{ config: a }}", 10, 1, 11, "invalid character ' ' in config key"),
    ("{{ secret: }}", 10, 1, 11, "empty secret key"),
    ("{{ secret:a:b }}", 11, 1, 12, "invalid character ':' in secret key"),
    ("{{ template:a/b }}", 13, 1, 14, "invalid character '/' in template name"),
    ("{{ config:" + "k" * 201 + " }}", 210, 1, 211, "config key longer than 200 characters"),
])
def test_each_syntax_error_names_its_exact_place(text: str, position: int, line: int, column: int,
                                                 reason: str) -> None:
    error = syntax_error(text)
    assert (error.position, error.line, error.column) == (position, line, column)
    assert error.reason.startswith(reason)
    assert str(error).startswith(f"Template syntax error at line {line}, column {column}: {reason}")


def test_a_bad_variable_name_hints_at_the_escape() -> None:
    assert "write \\{{ for a literal '{{'" in str(syntax_error('{{"a": 1}}'))


def test_the_first_error_in_the_text_is_reported() -> None:
    error = syntax_error("{{ ok }} {{ bad! }} {{ also bad")
    assert error.column == 16 and "'!'" in error.reason


def test_tag_text_parses_back_to_the_same_tag() -> None:
    for tag in [Tag("var", "x-1", 0), Tag("config", "a.b", 0), Tag("secret", "k", 0), Tag("template", "t", 0)]:
        assert tag_text(tag) in ("{{ x-1 }}", "{{ config:a.b }}", "{{ secret:k }}", "{{ template:t }}")
        assert parse(tag_text(tag)).parts == (tag,)


def test_long_texts_parse_and_oversized_ones_are_refused_before_parsing() -> None:
    """Texts at the limits parse (the parser is one pass: `bench.templates` times it); a longer text or one
    with more tags is refused by size before the parser sees it."""
    from llm_config.core.templates import MAX_TAGS, MAX_TEMPLATE_CHARS

    assert parse("\\{{" * (MAX_TAGS // 2)).variables == ()
    assert parse("{ " * 60_000 + "}}" * 60_000).parts
    assert parse("{{ x }}" * MAX_TAGS).variables == ("x",)
    for bad in ["{" * 20_000, "{{ " + " " * 100_000, "{{ " + "a" * 100_000 + " }}"]:
        with pytest.raises(TemplateSyntaxError):
            parse(bad)
    with pytest.raises(ValidationError, match="longer than"):
        parse("x" * (MAX_TEMPLATE_CHARS + 1))
    with pytest.raises(ValidationError, match="more than"):
        parse("{{ x }}" * (MAX_TAGS + 1))


# --------------------------------------------------------------------------------------------- render


@pytest.mark.parametrize(("value", "shown"), [
    ("plain", "plain"), ("", ""), ('{"not": "parsed"}', '{"not": "parsed"}'), ("{{ x }}", "{{ x }}"),
    ({"a": 1}, '{"a":1}'), ([1, 2], "[1,2]"), (True, "true"), (False, "false"), (None, "null"), (1.5, "1.5"),
    (3, "3"), ({"k": [1, {"n": None}], "s": "é"}, '{"k":[1,{"n":null}],"s":"é"}'), ([], "[]"), ({}, "{}"),
])
def test_strings_render_raw_and_other_json_values_as_compact_json(value: Any, shown: str) -> None:
    assert text_of("<{{ v }}>", {"v": value}) == f"<{shown}>"


@pytest.mark.parametrize("value", [math.nan, math.inf, {1: "a"}, {"password": {1, 2}}, 2**64, object(), b"hunter2"])
def test_a_value_that_is_not_json_is_refused_without_showing_it(value: Any) -> None:
    with pytest.raises(ValidationError, match="Template variable v: Invalid value") as info:
        render(source("t", "{{ v }}"), {"v": value}, load=no_load, lookup=no_lookup)
    assert "password" not in str(info.value) and "hunter2" not in str(info.value)


def test_missing_variables_are_listed_together_sorted_before_any_lookup() -> None:
    template = source("t", "{{ c }} {{ b }} {{ secret:k }} {{ a }} {{ config:m }}")
    with pytest.raises(TemplateVariablesError) as info:
        render(template, {"c": "1"}, load=no_load, lookup=no_lookup)
    assert str(info.value) == "Missing template variables: a, b"
    assert info.value.missing == ("a", "b") and info.value.unknown == ()
    assert isinstance(info.value, ValidationError)


def test_unknown_variables_are_refused_unless_allowed() -> None:
    template = source("t", "{{ a }}{{ secret:k }}")
    with pytest.raises(ValidationError) as info:
        render(template, {"a": "1", "zz": "2", "b": "3"}, load=no_load, lookup=no_lookup)
    assert str(info.value) == "Unknown template variables: b, zz"
    calls: list[tuple[str, str]] = []

    def lookup(kind: str, key: str) -> str:
        calls.append((kind, key))
        return "S"

    rendered = render(template, {"a": "1", "zz": "2", "b": "3"}, load=no_load, lookup=lookup, allow_extra=True)
    assert rendered.text == "1S" and calls == [("secret", "k")]


def test_missing_and_unknown_are_reported_in_one_error() -> None:
    with pytest.raises(TemplateVariablesError) as info:
        render(source("t", "{{ a }} {{ b }}"), {"b": 1, "x": 2}, load=no_load, lookup=no_lookup)
    assert str(info.value) == "Missing template variables: a; Unknown template variables: x"
    assert (info.value.missing, info.value.unknown) == (("a",), ("x",))


def test_a_variable_named_like_a_reference_key_is_unknown() -> None:
    """`config:k` is a reference, not a variable: supplying `k` (or `config:k`) is an unknown variable."""
    with pytest.raises(ValidationError, match="Unknown template variables: 'config:k', k"):
        render(source("t", "{{ config:k }}"), {"k": 1, "config:k": 2}, load=no_load, lookup=no_lookup)


def test_variable_names_must_be_strings() -> None:
    with pytest.raises(ValidationError, match="names must be strings"):
        render(source("t", "{{ a }}"), {"a": 1, 2: 3}, load=no_load, lookup=no_lookup)  # type: ignore[dict-item]


def test_an_odd_unknown_name_is_shown_escaped_and_cut() -> None:
    with pytest.raises(ValidationError) as info:
        render(source("t", "x"), {"evil\nname" + "n" * 100: 1}, load=no_load, lookup=no_lookup)
    message = str(info.value)
    assert "\n" not in message and "'evil\\nname" in message and len(message) < 120


def test_defaults_fill_missing_variables_and_supplied_values_win() -> None:
    template = source("t", "{{ a }}/{{ b }}/{{ c }}", {"a": "A", "b": {"x": 1}, "unused": 1})
    assert render(template, {"c": "C"}, load=no_load, lookup=no_lookup).text == 'A/{"x":1}/C'
    assert render(template, {"a": 1, "c": None}, load=no_load, lookup=no_lookup).text == '1/{"x":1}/null'
    with pytest.raises(ValidationError, match=r"^Missing template variables: c$"):
        render(template, {}, load=no_load, lookup=no_lookup)


def test_the_outermost_default_wins() -> None:
    """root includes b and c; b includes d. d (depth 2) and c (depth 1) both declare x: c wins, though d
    comes first reading the text; the root's own default beats both."""
    lib = Library({"root": "{{ template:b }}{{ template:c }}", "b": "[{{ template:d }}]", "c": "({{ x }})",
                   "d": "<{{ x }}{{ y }}>"},
                  defaults={"d": {"x": "from-d", "y": "from-d"}, "c": {"x": "from-c"}})
    rendered = lib.render("root")
    assert rendered.text == "[<from-cfrom-d>](from-c)"
    assert rendered.templates == ("root", "b", "c", "d")
    lib.defaults["root"] = {"x": "from-root"}
    assert lib.render("root").text == "[<from-rootfrom-d>](from-root)"
    assert lib.render("root", {"x": "given"}).text == "[<givenfrom-d>](given)"


def test_includes_render_inline_and_report_every_template_and_key() -> None:
    lib = Library(
        {"root": "A {{ template:mid }} B {{ config:z }} {{ template:leaf }}",
         "mid": "m({{ v }} {{ secret:s2 }} {{ template:leaf }} {{ config:a }})",
         "leaf": "l[{{ w }} {{ secret:s1 }} {{ config:z }}]"},
        {("config", "z"): 26, ("config", "a"): "aa", ("secret", "s1"): "one", ("secret", "s2"): ["t", 2]},
    )
    rendered = lib.render("root", {"v": "V", "w": "W"})
    leaf = "l[W one 26]"
    assert rendered.text == f'A m(V ["t",2] {leaf} aa) B 26 {leaf}'
    assert rendered.templates == ("root", "mid", "leaf")
    assert rendered.config_keys == ("a", "z")
    assert rendered.secret_keys == ("s1", "s2")
    assert lib.loads == ["root", "mid", "leaf"]  # a template included twice is loaded once
    assert sorted(lib.lookups) == [("config", "a"), ("config", "z"), ("secret", "s1"), ("secret", "s2")]


def test_variables_of_included_templates_are_required_and_known() -> None:
    lib = Library({"root": "{{ a }}{{ template:inc }}", "inc": "{{ b }}"})
    with pytest.raises(ValidationError, match=r"^Missing template variables: b$"):
        lib.render("root", {"a": 1})
    assert lib.render("root", {"a": 1, "b": 2}).text == "12"
    lib = Library({"root": "{{ zeta }}{{ template:inc }}", "inc": "{{ alpha }}{{ mid }}"})
    with pytest.raises(ValidationError, match=r"^Missing template variables: alpha, mid, zeta$"):
        lib.render("root")


def test_lookup_is_called_once_per_distinct_reference() -> None:
    lib = Library({"root": "{{ config:k }}{{ config:k }}{{ secret:k }}{{ template:i }}{{ template:i }}",
                   "i": "{{ config:k }}{{ secret:k }}{{ config:other }}"},
                  {("config", "k"): {"v": 1}, ("secret", "k"): "S", ("config", "other"): None})
    assert lib.render("root").text == '{"v":1}{"v":1}S{"v":1}Snull{"v":1}Snull'
    assert sorted(lib.lookups) == [("config", "k"), ("config", "other"), ("secret", "k")]


def test_lookup_errors_propagate_unchanged() -> None:
    lib = Library({"root": "{{ secret:absent }}"})
    with pytest.raises(NotFoundError, match="secret absent not found"):
        lib.render("root")


def test_a_missing_include_is_the_loaders_not_found() -> None:
    lib = Library({"root": "{{ template:nope }}"})
    with pytest.raises(NotFoundError, match="Template nope not found"):
        lib.render("root")


def test_nothing_is_looked_up_when_an_included_template_lacks_a_variable() -> None:
    lib = Library({"root": "{{ secret:k }}{{ template:inc }}", "inc": "{{ secret:j }}{{ missing }}"},
                  {("secret", "k"): "S", ("secret", "j"): "J"})
    with pytest.raises(ValidationError, match="Missing template variables: missing"):
        lib.render("root")
    assert lib.lookups == []


@pytest.mark.parametrize(("templates", "cycle"), [
    ({"a": "x{{ template:a }}"}, "a -> a"),
    ({"a": "{{ template:b }}", "b": "{{ template:a }}"}, "a -> b -> a"),
    ({"a": "{{ template:b }}", "b": "{{ template:c }}", "c": "{{ template:d }}", "d": "{{ template:b }}"},
     "b -> c -> d -> b"),
    ({"a": "{{ template:ok }}{{ template:b }}", "ok": "fine", "b": "{{ template:b }}"}, "b -> b"),
])
def test_an_include_cycle_is_an_error_naming_it(templates: dict[str, str], cycle: str) -> None:
    lib = Library(templates)
    with pytest.raises(ValidationError) as info:
        lib.render("a")
    assert str(info.value) == f"Template include cycle: {cycle}"
    assert lib.lookups == []


def test_a_diamond_is_not_a_cycle() -> None:
    lib = Library({"a": "{{ template:b }}{{ template:c }}", "b": "{{ template:d }}", "c": "{{ template:d }}",
                   "d": "D"})
    assert lib.render("a").text == "DD"


def chain(length: int) -> dict[str, str]:
    """t0 includes t1 includes ... t<length>: `length` levels of includes."""
    return {f"t{i}": f"{i}{{{{ template:t{i + 1} }}}}" if i < length else f"{i}" for i in range(length + 1)}


def test_includes_deeper_than_max_depth_are_refused() -> None:
    assert Library(chain(16)).render("t0").text == "".join(str(i) for i in range(17))
    lib = Library(chain(17))
    with pytest.raises(ValidationError, match=r"nested deeper than 16: t0 -> t1 -> .* -> t16 -> t17$"):
        lib.render("t0")
    assert "t17" not in lib.loads
    with pytest.raises(ValidationError, match=r"nested deeper than 0: t0 -> t1$"):
        Library(chain(1)).render("t0", max_depth=0)
    assert Library(chain(3)).render("t0", max_depth=3).text == "0123"


def test_depth_counts_the_deepest_path_to_a_shared_template() -> None:
    """x (which includes y) is first reached at depth 1, then again at depth 3 through a and b."""
    lib = Library({"root": "{{ template:x }}{{ template:a }}", "a": "{{ template:b }}", "b": "{{ template:x }}",
                   "x": "{{ template:y }}", "y": "Y"})
    assert lib.render("root", max_depth=4).text == "YY"
    with pytest.raises(ValidationError, match=r"nested deeper than 3: root -> a -> b -> x -> y$"):
        lib.render("root", max_depth=3)


def test_output_over_the_cap_is_refused_without_showing_values() -> None:
    secret = "TOPSECRET-" * 20
    lib = Library({"root": "{{ secret:s }}" * 10}, {("secret", "s"): secret})
    assert len(lib.render("root", max_output=2000).text) == 2000
    with pytest.raises(ValidationError, match="Rendered template root exceeds 1999 characters") as info:
        lib.render("root", max_output=1999)
    assert "TOPSECRET" not in str(info.value)


def bomb(levels: int) -> dict[str, str]:
    """b0 includes b1 twice, b1 includes b2 twice, ...: 2**levels copies of the innermost text."""
    return {f"b{i}": f"{{{{ template:b{i + 1} }}}}-{{{{ template:b{i + 1} }}}}" if i < levels else "0123456789"
            for i in range(levels + 1)}


def test_a_template_bomb_stops_at_the_output_cap() -> None:
    small = Library(bomb(6)).render("b0", max_depth=64)
    assert small.text.count("0123456789") == 64 and len(small.text) == 64 * 10 + 63
    lib = Library(bomb(60))  # 2**60 copies if nothing stopped it
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="exceeds 1048576 characters"):
        lib.render("b0", max_depth=64)
    assert time.perf_counter() - started < 2
    assert len(lib.loads) == 61  # each template loaded once, however often it is included


def test_rendered_results_are_what_the_manager_needs() -> None:
    rendered = render(source("root", "{{ config:b }}{{ config:a }}{{ secret:z }}{{ secret:a }}"), {},
                      load=no_load, lookup=lambda kind, key: f"{kind}.{key};")
    assert rendered == Rendered("config.b;config.a;secret.z;secret.a;", ("a", "b"), ("a", "z"), ("root",))


# ----------------------------------------------------------------------------------------- hypothesis

_TRICKY = st.sampled_from(["{", "}", "{{", "}}", "\\", "\\{{", "{{{", ":", " ", "\t", "\n", "é", "😀", "\x00"])
literal_text = st.lists(st.one_of(_TRICKY, st.text(max_size=5)), max_size=8).map("".join)
# the one thing the syntax cannot write: a backslash, or a backslash and one `{`, right before a tag
# (the backslash would escape the tag's braces)
literal_before_tag = literal_text.filter(lambda text: not text.endswith(("\\", "\\{")))
var_names = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
int64 = st.integers(-(2**63), 2**63 - 1)
json_scalars = st.none() | st.booleans() | int64 | st.floats(allow_nan=False, allow_infinity=False)
values = (st.text() | json_scalars | st.lists(int64, max_size=3)
          | st.dictionaries(st.text(max_size=4), st.text(), max_size=3))


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(literal_before_tag, var_names), max_size=8), literal_text,
       st.data())
def test_round_trip_of_literals_and_variables(segments: list[tuple[str, str]], tail: str, data: st.DataObject) -> None:
    template = "".join(escape(literal) + tag_text(Tag("var", name, 0)) for literal, name in segments) + escape(tail)
    names = list(dict.fromkeys(name for _, name in segments))
    supplied = {name: data.draw(values, label=name) for name in names}
    parsed = parse(template)
    assert parsed.variables == tuple(names)
    rendered = render(TemplateSource("t", parsed, {}), supplied, load=no_load, lookup=no_lookup).text
    expected = "".join(literal + _value_text(supplied[name]) for literal, name in segments) + tail
    assert rendered == expected
    at = 0  # every literal segment appears, in order
    for literal, name in segments:
        found = rendered.find(literal, at)
        assert found >= 0
        at = found + len(literal) + len(_value_text(supplied[name]))
    assert rendered.find(tail, at) >= 0


@given(literal_text)
def test_escaped_text_renders_to_itself(text: str) -> None:
    parsed = parse(escape(text))
    assert parsed.variables == () and parsed.references("template") == ()
    assert text_of(escape(text)) == text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_TRICKY, st.text(max_size=4), var_names.map(lambda n: f"{{{{ {n} }}}}")), max_size=10)
       .map("".join))
def test_any_text_parses_or_fails_with_a_consistent_position(text: str) -> None:
    try:
        parsed = parse(text)
    except TemplateSyntaxError as error:
        assert 0 <= error.position < len(text)
        before = text[:error.position]
        assert error.line == before.count("\n") + 1
        assert error.column == len(before) - (before.rfind("\n") + 1) + 1
        assert str(error).startswith(f"Template syntax error at line {error.line}, column {error.column}: ")
        return
    assert isinstance(parsed, ParsedTemplate)
    for part in parsed.parts:
        if isinstance(part, Tag):
            assert text.startswith("{{", part.position)
    if parsed.references("template"):
        return
    # with every variable and reference rendering as its own canonical tag text, the output is the
    # literals and the tags in order
    identity = {name: tag_text(Tag("var", name, 0)) for name in parsed.variables}
    rendered = render(TemplateSource("t", parsed, {}), identity, load=no_load,
                      lookup=lambda kind, key: tag_text(Tag(kind, key, 0)))  # type: ignore[arg-type]
    assert rendered.text == "".join(part if isinstance(part, str) else tag_text(part) for part in parsed.parts)


def test_every_reference_kind_renders_its_looked_up_value() -> None:
    def lookup(kind: str, key: str) -> Any:
        return {"k": key} if kind == "config" else key.upper()

    rendered = render(source("t", "{{ a }} {{ config:x.y }} {{ secret:s }}"), {"a": [1]}, load=no_load,
                      lookup=lookup)
    assert rendered.text == '[1] {"k":"x.y"} S'
