"""Prompt templates (`llm_config.core.templates`) next to Jinja2's sandbox and plain `str.format_map`.

One prompt of 10 variables and 2 `{{ config:KEY }}` references, in this process, no storage:

1. **render**: our `render` of the parsed template (the manager keeps it parsed; the references served
   from a dict by `lookup`) against `jinja2.sandbox.SandboxedEnvironment` rendering the same text, compiled
   once, with the references passed as two more variables — and against `str.format_map` of the same
   text with `{name}` fields (the floor: one C call, no checks). In alternating rounds.
2. **parse**: our `parse` of the text when it is not cached (a template's first render) against Jinja2
   compiling it (`from_string`), which a Jinja2 user pays once per template the same way.

Every variant's output is checked equal before timing. `python -m bench.templates [--quick] [--write
BENCHMARKS.md]` prints the Markdown section (progress on stderr); with `--write` it replaces the text
between `<!-- templates:begin -->` and `<!-- templates:end -->`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from jinja2.sandbox import SandboxedEnvironment

from bench.harness import Timing, fmt_ns, fmt_rate, interleave, progress, ratio
from bench.report import command_line, emit_section, load_average, machine
from llm_config.core import templates
from llm_config.core.templates import TemplateSource, parse, render

__all__ = ["BEGIN", "END", "TEXT", "bench_parse", "bench_render", "main", "run_section"]

BEGIN: Final = "<!-- templates:begin -->"
END: Final = "<!-- templates:end -->"

VARIABLES: Final = ("persona", "company", "user_name", "language", "tone", "topic", "max_words", "date",
                    "product", "question")
CONFIG: Final = {"openai.model": "gpt-4o", "openai.temperature": 0.7}
TEXT: Final = (
    "You are {{ persona }}, an assistant for {{ company }}. Answer {{ user_name }} in {{ language }}, "
    "in a {{ tone }} tone, staying on {{ topic }} and under {{ max_words }} words.\n"
    "Today is {{ date }}. The customer asks about {{ product }}:\n\n{{ question }}\n\n"
    'Reply as JSON: {"answer": "...", "model": "{{ config:openai.model }}", '
    '"temperature": {{ config:openai.temperature }}}\n'
)
"""A realistic system prompt: 10 variables, 2 config references, a JSON example with single braces."""


@dataclass(frozen=True, slots=True)
class Sizes:
    rounds: int = 9
    render_n: int = 20_000
    parse_n: int = 5_000
    compile_n: int = 300

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rounds=3, render_n=2_000, parse_n=500, compile_n=30)


def _values() -> dict[str, Any]:
    values: dict[str, Any] = {name: f"<{name} value>" for name in VARIABLES}
    values["max_words"] = 150  # one non-string: rendered as JSON by us, str() by Jinja2 and format_map
    return values


def _jinja_text() -> str:
    return TEXT.replace("config:openai.model", "openai_model").replace("config:openai.temperature",
                                                                       "openai_temperature")


def _format_text() -> str:
    """The same prompt for `str.format_map`: literal braces doubled, `{{ name }}` → `{name}`."""
    text = _jinja_text().replace("{", "{{").replace("}", "}}")
    return text.replace("{{{{ ", "{").replace(" }}}}", "}")


def _loop(fn: Callable[[], object]) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in range(n):
            fn()
    return run


def _row(number: str, name: str, ours: Timing, base_name: str, base: Timing, factor: float) -> str:
    return (f"| {number} | {name} | {fmt_ns(ours.per_op_ns)} | {fmt_rate(ours.ops_per_s)} | {base_name} | "
            f"{fmt_ns(base.per_op_ns)} | {factor:.2f}× |")


def bench_render(sizes: Sizes) -> list[str]:
    """Rows 1a/1b: one render, median ns, against Jinja2's sandbox and `str.format_map`."""
    progress(f"templates 1: render ({sizes.render_n:,} × {sizes.rounds} rounds)")
    values = _values()
    root = TemplateSource("prompt", parse(TEXT), {})

    def lookup(kind: str, key: str) -> Any:
        return CONFIG[key]

    def load(name: str) -> TemplateSource:
        raise AssertionError(name)

    jinja = SandboxedEnvironment(keep_trailing_newline=True, autoescape=False).from_string(_jinja_text())
    jinja_values = {**values, "openai_model": CONFIG["openai.model"],
                    "openai_temperature": CONFIG["openai.temperature"]}
    fmt = _format_text()
    ours_text = render(root, values, load=load, lookup=lookup).text
    assert ours_text == jinja.render(jinja_values) == fmt.format_map(jinja_values), "the variants disagree"

    def run_ours(n: int) -> None:
        for _ in range(n):
            render(root, values, load=load, lookup=lookup)

    def run_jinja(n: int) -> None:
        jrender = jinja.render
        for _ in range(n):
            jrender(jinja_values)

    def run_format(n: int) -> None:
        format_map = fmt.format_map
        for _ in range(n):
            format_map(jinja_values)

    ours, jinja_t, floor = interleave([(run_ours, sizes.render_n), (run_jinja, sizes.render_n),
                                       (run_format, sizes.render_n)], sizes.rounds)
    return [
        _row("1a", "`render`: 10 variables, 2 config references", ours,
             "Jinja2 `SandboxedEnvironment` render (compiled once)", jinja_t, ratio(ours, jinja_t)),
        _row("1b", "`render`: 10 variables, 2 config references", ours, "`str.format_map` (floor)", floor,
             ratio(ours, floor)),
    ]


def bench_parse(sizes: Sizes) -> list[str]:
    """Row 2: parsing the text uncached against Jinja2 compiling it."""
    progress(f"templates 2: parse uncached ({sizes.parse_n:,}) vs Jinja2 compile ({sizes.compile_n:,})")
    uncached = templates._parse.__wrapped__  # the parser under `parse`'s cache
    env = SandboxedEnvironment(keep_trailing_newline=True, autoescape=False)
    jinja_text = _jinja_text()
    assert uncached(TEXT) == parse(TEXT)
    ours, compile_t = interleave([(_loop(lambda: uncached(TEXT)), sizes.parse_n),
                                  (_loop(lambda: env.from_string(jinja_text)), sizes.compile_n)], sizes.rounds)
    return [_row("2", f"`parse`, not cached ({len(TEXT)} characters)", ours, "Jinja2 `from_string` (compile)",
                 compile_t, ratio(ours, compile_t))]


def run_section(sizes: Sizes, argv: list[str]) -> str:
    host = machine()
    load_start = load_average()
    started = time.monotonic()
    rows = bench_render(sizes) + bench_parse(sizes)
    lines = [
        "## Prompt templates",
        "",
        f"- command: `{command_line('bench.templates', argv)}`",
        f"- date: `{host.date}`; runtime {time.monotonic() - started:.0f} s; {host.cpus} CPUs, {host.cpu_model}, "
        f"Python {host.python}; 1-min load average {load_start} → {load_average()}",
        f"- template: {len(TEXT)} characters, 10 variables (one an integer), 2 `config:` references served "
        "from a dict; Jinja2 gets the references as 2 more variables; medians over "
        f"{sizes.rounds} alternating rounds, garbage collector off",
        "",
        "| # | measurement | ours (median) | ours rate | baseline | baseline (median) | ratio |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.templates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test in seconds")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="replace the templates section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    section = run_section(Sizes.quick() if args.quick else Sizes(), args_list)
    emit_section(section, args.write, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
