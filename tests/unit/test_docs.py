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


ROOT = Path(__file__).resolve().parents[2]


def test_generated_references_are_current() -> None:
    """docs/cli.md, rest.md and configuration.md list every command, flag, route and setting the code has."""
    import runpy

    generate = runpy.run_path(str(ROOT / "docs" / "generate.py"))
    stale = [page for page in generate["PAGES"]
             if generate["render"](page, (ROOT / "docs" / page).read_text()) != (ROOT / "docs" / page).read_text()]
    assert not stale, f"out of date: {stale} — run .venv/bin/python docs/generate.py"


def test_every_flag_and_route_has_an_entry() -> None:
    from llm_config.cli.main import cli as root

    text = (ROOT / "docs" / "cli.md").read_text()
    for path in _command_paths(root):
        assert f"### `llm-config {path}`" in text, path
    rest = (ROOT / "docs" / "rest.md").read_text()
    for method, route in _routes():
        assert f"### `{method.upper()} {route}`" in rest, (method, route)


def _routes() -> list[tuple[str, str]]:
    from llm_config.server.app import create_app
    from llm_config.settings import ServeOptions
    from llm_config.testing import temporary_manager

    with temporary_manager() as manager:
        spec = create_app(manager, ServeOptions()).openapi()
    return [(m, p) for p, item in spec["paths"].items() for m in item]


def test_the_project_documents_itself() -> None:
    """No link leaves the repository; the quick start works copy-pasted in two terminals."""
    pages = [README, *(p.read_text() for p in (ROOT / "docs").glob("*.md"))]
    assert not any("../shared" in page or "SPEC.md" in page or "ARCHITECTURE.md" in page for page in pages)
    for link in ("docs/cli.md", "docs/rest.md", "docs/configuration.md", "docs/security.md", "docs/architecture.md"):
        assert f"]({link})" in README and (ROOT / link).exists(), link
    assert "KEY=$(cat .llm-config/initial-admin-key)" in README and "make serve PORT=" in README
    assert "second terminal" in README
