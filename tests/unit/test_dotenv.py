"""dotenv exports are inert for a POSIX shell and read back unchanged by python-dotenv (SPEC §5).

The review found `(set -a; . file.env)` running `$(…)` from a multi-line value. Every value here goes
through both readers: `sh` (which must run nothing: a canary file proves it) and python-dotenv.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_config.core.transfer import format_export
from llm_config.errors import ValidationError

TRICKY = [
    "plain", "with space", "multi\nline\nvalue", "tab\there", "quote ' inside", 'double " quote',
    "back\\slash", "trailing backslash \\", "it's \"both\"", "$HOME stays", "`echo hi` stays",
    "$(touch {canary})", "`touch {canary}`", "line1\n$(touch {canary})", "a;b&&c|d>e<f", "#not a comment",
    "ends with newline\n", "carriage\rreturn", "unicode ✓ 日本", "=equals=", "", " leading space",
    "\\n is two characters", "'single-quoted'", "a\\'b",
]
REFUSED = ["${HOME}", "it's $HOME", "it's `date`", "nul\x00byte", "C:\\path costs $5"]


def _through_sh(path: Path) -> str:
    result = subprocess.run(["sh", "-c", f'set -a; . "{path}"; printf %s "$V"'], capture_output=True, check=True)
    return result.stdout.decode()


def _round_trip(value: str, tmp_path: Path) -> None:
    text = format_export({"values": {"v": value}}, "dotenv")
    path = tmp_path / "x.env"
    path.write_text(text)
    assert dotenv_values(stream=io.StringIO(text)) == {"V": value}
    assert _through_sh(path) == value


@pytest.mark.parametrize("template", TRICKY)
def test_values_survive_sh_and_python_dotenv_and_run_nothing(template: str, tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    value = template.replace("{canary}", str(canary))
    _round_trip(value, tmp_path)
    assert not canary.exists(), "sourcing the export ran a command"


@pytest.mark.parametrize("value", REFUSED)
def test_values_no_quoting_can_carry_are_refused_by_name(value: str) -> None:
    with pytest.raises(ValidationError, match="Cannot export V as dotenv") as refused:
        format_export({"values": {"v": value}}, "dotenv")
    assert value not in str(refused.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_any_text_either_round_trips_or_is_refused(tmp_path: Path, value: str) -> None:
    try:
        text = format_export({"values": {"v": value}}, "dotenv")
    except ValidationError:
        assert ("$" in value or "`" in value) and ("'" in value or "\\" in value or "${" in value)
        return
    assert dotenv_values(stream=io.StringIO(text)) == {"V": value}
    path = tmp_path / "h.env"
    path.write_text(text)
    assert _through_sh(path) == value
