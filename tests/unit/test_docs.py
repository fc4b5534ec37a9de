"""The README documents every CLI command (and sub-command) the CLI offers, and the quick start."""

from pathlib import Path

import click

from llm_config.cli.main import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _command_paths(group: click.Group, prefix: str = "") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, path + " "))
        else:
            paths.append(path)
    return paths


def test_every_command_is_in_the_readme() -> None:
    paths = _command_paths(cli)
    assert len(paths) >= 15
    missing = [p for p in paths if f"llm-config {p}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_command_has_help_text() -> None:
    def walk(group: click.Group) -> None:
        for command in group.commands.values():
            assert command.help or command.short_help, command.name
            if isinstance(command, click.Group):
                walk(command)

    walk(cli)


def test_quick_start_is_two_commands() -> None:
    assert "make serve" in README and "make test" in README
