"""`export` and `import` of a namespace's values (SPEC §5)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from llm_config.cli.commands._common import confirm, env_option, open_manager, read_text, yes_option
from llm_config.cli.output import err, out, out_raw, write_private_file

if TYPE_CHECKING:
    from llm_config.core.transfer import ImportPlan

__all__ = ["COMMANDS"]


@click.command("export")
@click.argument("namespace")
@env_option
@click.option("--format", "fmt", type=click.Choice(["json", "yaml", "dotenv"], case_sensitive=False),
              default="json", show_default=True, help="Document format.")
@click.option("--reveal", is_flag=True, help="Include decrypted secrets (audited); otherwise they are left out.")
@click.option("-o", "--output", metavar="FILE",
              help="Write to a new file FILE (mode 0600, atomically; never through a symlink); '-' is stdout.")
@click.pass_context
def export_cmd(ctx: click.Context, namespace: str, env: str, fmt: str, reveal: bool, output: str | None) -> None:
    """Export one environment's values of a namespace."""
    with open_manager(ctx, create=False) as manager:
        text = manager.export_text(namespace, env=env, fmt=fmt, reveal=reveal)
    if output and output != "-":
        write_private_file(output, text)
        err(f"exported {namespace} to {output}")
    else:
        out_raw(text)


def _plan_text(plan: ImportPlan) -> str:
    def keys(names: list[str]) -> str:
        return ", ".join(names) if names else "-"

    return "\n".join([
        f"created:   {keys(plan.created)}",
        f"updated:   {keys(plan.updated)}",
        f"unchanged: {keys(plan.unchanged)}",
        f"deleted:   {keys(plan.deleted)}",
    ])


@click.command("import")
@click.argument("namespace")
@click.argument("file", metavar="FILE")
@env_option
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"], case_sensitive=False),
              default=None, help="Document format (default: guessed from the content).")
@click.option("--secret/--no-secret", "secret", default=None,
              help="--secret seals every value; --no-secret lets plain values replace secrets (a secrets "
                   "section is always sealed).")
@click.option("--prune", is_flag=True, help="Also delete keys the document does not have.")
@click.option("--dry-run", is_flag=True, help="Show the plan, write nothing.")
@yes_option
@click.pass_context
def import_cmd(
    ctx: click.Context, namespace: str, file: str, env: str, fmt: str | None, secret: bool | None, prune: bool,
    dry_run: bool, yes: bool,
) -> None:
    """Import a document into NAMESPACE (FILE '-' reads stdin); all or nothing.

    Unchanged values write no new version; nothing is deleted unless --prune.
    """
    text = read_text(file, "Import")
    with open_manager(ctx, create=True) as manager:
        if prune and not dry_run and not yes and sys.stdin.isatty():
            preview = manager.import_(namespace, text, env=env, fmt=fmt, secret=secret, prune=True, dry_run=True)
            if preview.deleted:
                confirm(f"Delete {len(preview.deleted)} key(s) missing from {file}: "
                        f"{', '.join(preview.deleted)}?", yes)
        plan = manager.import_(namespace, text, env=env, fmt=fmt, secret=secret, prune=prune, dry_run=dry_run)
    out(_plan_text(plan))
    if dry_run:
        err("dry run: nothing was written")


COMMANDS: tuple[click.Command, ...] = (export_cmd, import_cmd)
