"""The Markdown section of a run, and writing it between its markers in BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import shlex
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Row

__all__ = ["BEGIN", "END", "Machine", "load_average", "machine", "render", "write_section"]

BEGIN = "<!-- core:begin -->"
END = "<!-- core:end -->"

_SKELETON = """# Benchmarks

Numbers measured by `make bench` on the machine named in each section; every figure stands next to
its physical floor (a raw driver call, a dict lookup, an empty interpreter), and goals are reported,
never asserted. Each section is rewritten between its own markers by the script that measures it.

{begin}
{end}
"""


@dataclass(frozen=True, slots=True)
class Machine:
    date: str
    cpus: str
    cpu_model: str
    python: str
    sqlite: str


def command_line(module: str, argv: list[str]) -> str:
    """How a section says it was produced: `<python> -m <module> <argv>`, the interpreter shown
    relative to the working directory when it lies inside it (`.venv/bin/python`)."""
    exe = Path(sys.executable)
    try:
        shown = os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)
    except ValueError:
        shown = str(exe)
    return shlex.join([shown, "-m", module, *argv])


def _command_output(argv: list[str], fallback: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return fallback


def machine() -> Machine:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return Machine(
        date=_command_output(["date", "-u"], "unknown date"),
        cpus=_command_output(["nproc"], str(os.cpu_count())),
        cpu_model=model,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        sqlite=sqlite3.sqlite_version,
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def load_average() -> str:
    """The 1-minute load average: the machine is shared, so it says how quiet the run was."""
    try:
        return Path("/proc/loadavg").read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        return "?"


def render(rows: list[Row], *, command: str, host: Machine, runtime_s: float, notes: list[str],
           profiles: list[str], load: str) -> str:
    lines = [
        "## Core library and CLI",
        "",
        f"- command: `{command}` (`make bench` runs `.venv/bin/python -m bench.run`)",
        f"- date: `{host.date}`; total runtime {runtime_s / 60:.1f} min",
        f"- machine: {host.cpus} CPUs (`nproc`), {host.cpu_model}, Python {host.python}, SQLite {host.sqlite}; "
        f"1-min load average {load} (start → end of the run)",
        "",
        "| # | measurement | ours (median per op) | ours ops/s | baseline (floor) | baseline | ratio | goal | met? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.number} | {_cell(r.name)} | {_cell(r.ours)} | {r.ours_rate} | {_cell(r.baseline_name)} "
        f"| {_cell(r.baseline)} | {r.ratio} | {r.goal} | {r.met_text} |"
        for r in rows
    ]
    lines += ["", "How it is measured:", ""]
    lines += [f"- {note}" for note in notes]
    lines += [f"- row {r.number}: {r.note}" for r in rows if r.note]
    if profiles:
        lines += ["", "<details><summary>Profiles of the missed goals</summary>", "", "```text"]
        lines += [p.rstrip() for p in profiles]
        lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


def emit_section(section: str, path: Path | None, *, begin: str, end: str) -> None:
    """What a bench module's `main` ends with: the section on stdout, and between its markers in `path`."""
    print(section)
    if path is not None:
        write_section(path, section, begin=begin, end=end)


def write_section(path: Path, section: str, *, begin: str = BEGIN, end: str = END) -> None:
    """Replace what lies between the markers `begin` and `end` (adding the block at the end of the file
    if they are missing); keep the rest of the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else _SKELETON.format(begin=BEGIN, end=END)
    block = f"{begin}\n{section}{end}"
    if begin in text and end in text and text.index(begin) < text.index(end):
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
