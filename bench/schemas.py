"""`python -m bench.schemas [--quick]`: JSON Schema validation on a write, jsonschema next to fastjsonschema.

ARCHITECTURE names jsonschema, "or fastjsonschema, compiled once per schema, if it measures faster".
This measures both on the object a write checks most often, one 8-property model-parameter object,
valid and invalid, each validator compiled once; then `CompiledSchema.check` as the manager calls it —
fastjsonschema may only accept, jsonschema decides every refusal and renders the message — with and
without that fast path, and on the built-in openai-chat schema; then what each library costs to import
and to compile a schema. Prints Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from bench.harness import Timing, fmt_ns, interleave, progress
from bench.report import command_line, load_average, machine, write_section
from llm_config.core import schemas
from llm_config.errors import SchemaViolationError

BEGIN: Final = "<!-- schemas:begin -->"
END: Final = "<!-- schemas:end -->"

__all__ = ["INVALID", "SCHEMA", "VALID", "main"]

# Keywords both libraries implement alike (fastjsonschema stops at draft 7).
SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "stop": {"type": ["string", "array"], "items": {"type": "string"}, "maxItems": 4},
        "seed": {"type": "integer"},
    },
}
VALID: dict[str, Any] = {
    "model": "gpt-4o", "temperature": 0.2, "top_p": 0.9, "max_tokens": 512,
    "frequency_penalty": 0.0, "presence_penalty": 0.5, "stop": ["\n\n", "END"], "seed": 42,
}
INVALID: dict[str, Any] = {**VALID, "temperature": 3.5}
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def _loop(fn: Callable[[Any], object], value: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            fn(value)
    return run


def _raising(fn: Callable[[Any], object], exc: type[BaseException]) -> Callable[[Any], None]:
    def call(value: Any) -> None:
        try:
            fn(value)
        except exc:
            pass
        else:
            raise AssertionError("expected the value to be refused")
    return call


def _import_ms(module: str, runs: int) -> float:
    """Median `-X importtime` cumulative microseconds of `import module` in a fresh interpreter, as ms."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True, text=True, check=True,
        ).stderr.strip().splitlines()
        samples.append(int(out[-1].split("|")[1]) / 1000)
    return statistics.median(samples)


_FIRST_CHECK = """if True:
    import time
    start = time.perf_counter()
    from llm_config.core.schemas import builtin_schema, compile_schema
    schema = compile_schema("openai.params", builtin_schema("openai-chat"), checked={checked})
    schema.check("bench", "openai.params", "production", {value!r})
    print((time.perf_counter() - start) * 1000)
"""


def _first_check_ms(checked: bool, runs: int) -> float:
    """Median ms from importing the module to the first check's answer in a fresh interpreter: what a
    one-shot `llm-config set` on a key with the openai-chat schema pays (compile, imports included)."""
    code = _FIRST_CHECK.format(checked=checked, value=VALID)
    samples = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(runs)]
    return statistics.median(samples)


def _jsonschema_compile(validators: Any) -> None:
    cls = validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)  # what compile_schema does for a new document
    cls(SCHEMA).is_valid(VALID)


def _compile_ms(compile_once: Callable[[], object], runs: int) -> float:
    import time

    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        compile_once()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def run_section(*, quick: bool, argv: list[str]) -> str:
    """The Markdown section: validation per library, import and compile costs, the first check."""
    host = machine()
    load_start = load_average()
    started = time.monotonic()
    lines: list[str] = []

    def emit(line: str = "") -> None:
        lines.append(line)
    n, rounds, import_runs = (2_000, 3, 3) if quick else (50_000, 7, 9)

    import fastjsonschema  # type: ignore[import-untyped]
    from jsonschema import validators  # type: ignore[import-untyped]

    progress("schemas: compiling once per library")
    js = validators.validator_for(SCHEMA)(SCHEMA)
    fast = fastjsonschema.compile(SCHEMA, use_default=False)
    ours = schemas.compile_schema("openai.params", SCHEMA)
    # a 2020-12 keyword the fast path does not implement (and which changes nothing here): jsonschema only
    slow = schemas.compile_schema("openai.params", {**SCHEMA, "$schema": DRAFT_2020_12, "dependentRequired": {}})
    builtin = schemas.compile_schema("openai.params", schemas.builtin_schema("openai-chat"))
    assert js.is_valid(VALID) and not js.is_valid(INVALID)
    assert ours._compiled.warm() is not None and builtin._compiled.warm() is not None  # as once they are hot
    assert slow._compiled.warm() is None

    def check(value: Any) -> None:
        ours.check("bench", "openai.params", "production", value)

    def check_slow(value: Any) -> None:
        slow.check("bench", "openai.params", "production", value)

    def check_builtin(value: Any) -> None:
        builtin.check("bench", "openai.params", "production", value)

    cases: list[tuple[str, Callable[[int], None]]] = [
        ("jsonschema `is_valid`, valid", _loop(js.is_valid, VALID)),
        ("fastjsonschema, valid", _loop(fast, VALID)),
        ("jsonschema `is_valid`, invalid", _loop(js.is_valid, INVALID)),
        ("fastjsonschema, invalid (raises)", _loop(_raising(fast, fastjsonschema.JsonSchemaValueException), INVALID)),
        ("`CompiledSchema.check`, valid (fastjsonschema accepts)", _loop(check, VALID)),
        ("`CompiledSchema.check`, valid, fast path off (jsonschema only)", _loop(check_slow, VALID)),
        ("`CompiledSchema.check`, invalid (jsonschema refuses, renders the message)",
         _loop(_raising(check, SchemaViolationError), INVALID)),
        ("built-in openai-chat `check`, valid (fast path)", _loop(check_builtin, VALID)),
    ]
    progress(f"schemas: {len(cases)} cases × {n} validations × {rounds} rounds, interleaved")
    timings: list[Timing] = interleave([(run, n) for _, run in cases], rounds)

    progress("schemas: import and compile cost")
    imports = {m: _import_ms(m, import_runs) for m in ("jsonschema", "fastjsonschema", "llm_config.core.schemas")}
    compiles = {
        "jsonschema": _compile_ms(lambda: _jsonschema_compile(validators), 20),
        "fastjsonschema": _compile_ms(lambda: fastjsonschema.compile(SCHEMA, use_default=False), 20),
    }

    emit("| validation (8-property model-parameter object, compiled once) | per validation |")
    emit("|---|---|")
    for (name, _), timing in zip(cases, timings, strict=True):
        emit(f"| {name} | {fmt_ns(timing.per_op_ns)} |")
    emit()
    emit("| one-off cost | jsonschema | fastjsonschema |")
    emit("|---|---|---|")
    js_ms, fast_ms = imports["jsonschema"], imports["fastjsonschema"]
    emit(f"| import (fresh interpreter, median) | {js_ms:.0f} ms | {fast_ms:.0f} ms |")
    emit("| compile one schema: metaschema check + validator / code generation (median) "
          f"| {compiles['jsonschema']:.2f} ms | {compiles['fastjsonschema']:.2f} ms |")
    first = {checked: _first_check_ms(checked, import_runs) for checked in (False, True)}
    emit()
    emit("| first check in a fresh process (built-in openai-chat, valid value; imports and compile included) "
          "| median |")
    emit("|---|---|")
    emit(f"| `compile_schema(...)` (metaschema check, jsonschema) | {first[False]:.0f} ms |")
    emit(f"| `compile_schema(..., checked=True)` (stored schema: fast path at once, no jsonschema) "
          f"| {first[True]:.0f} ms |")
    emit(f"\n`import llm_config.core.schemas` (jsonschema deferred): {imports['llm_config.core.schemas']:.0f} ms "
          "cumulative, most of it llm_config, orjson and the models every command imports anyway.")
    header = [
        "## JSON Schema validation",
        "",
        f"- command: `{command_line('bench.schemas', argv)}`",
        f"- date: `{host.date}`; runtime {time.monotonic() - started:.0f} s; {host.cpus} CPUs, {host.cpu_model}, "
        f"Python {host.python}; 1-min load average {load_start} → {load_average()}",
        f"- medians over {rounds} alternating rounds of {n:,} validations; `CompiledSchema.check` is what every "
        "write to a key with a schema runs",
        "",
    ]
    return "\n".join(header + lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds (smoke test)")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE", help="replace the schemas section")
    args = parser.parse_args(args_list)
    section = run_section(quick=args.quick, argv=args_list)
    sys.stdout.write(section)
    if args.write is not None:
        write_section(args.write, section, begin=BEGIN, end=END)


if __name__ == "__main__":
    main()
