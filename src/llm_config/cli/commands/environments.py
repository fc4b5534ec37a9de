"""`diff` and `promote` between two environments of a namespace (SPEC §4)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from llm_config.cli.commands._common import confirm, format_option, open_manager, yes_option
from llm_config.cli.output import emit, err

if TYPE_CHECKING:
    from llm_config.documents import EnvDiff, Promotion

__all__ = ["COMMANDS"]

_ENV = "ENV"


def _diff_text(diff: EnvDiff) -> str:
    def keys(names: tuple[str, ...]) -> str:
        return ", ".join(names) if names else "-"

    return "\n".join([
        f"added:        {keys(diff.added)}",
        f"removed:      {keys(diff.removed)}",
        f"changed:      {keys(diff.changed)}",
        f"unchanged:    {keys(diff.unchanged)}",
        f"not_compared: {keys(diff.not_compared)}",
    ])


def _plan_text(p: Promotion) -> str:
    lines = [f"promotion {p.id}: {p.namespace} {p.source.value} -> {p.target.value}"]
    for step in p.steps:
        secret = " (secret)" if step.secret else ""
        if step.action == "delete":
            lines.append(f"  delete  {step.key}{secret} (at version {step.target_version})")
        elif step.action == "update":
            lines.append(f"  update  {step.key}{secret} (version {step.source_version} over version "
                         f"{step.target_version})")
        else:
            lines.append(f"  create  {step.key}{secret} (version {step.source_version})")
    if not p.steps:
        lines.append("  nothing to change")
    if p.unchanged:
        lines.append(f"unchanged: {', '.join(p.unchanged)}")
    return "\n".join(lines)


@click.command("diff")
@click.argument("namespace")
@click.option("--from", "source", required=True, metavar=_ENV, help="The environment compared from.")
@click.option("--to", "target", required=True, metavar=_ENV, help="The environment compared to.")
@format_option("text", "json", "yaml")
@click.pass_context
def diff_cmd(ctx: click.Context, namespace: str, source: str, target: str, fmt: str) -> None:
    """Compare two environments' own entries (not base-resolved); secrets are compared, never shown.

    added: only in --from; removed: only in --to; not_compared: secrets you may not read.
    """
    with open_manager(ctx, create=False) as manager:
        diff = manager.diff(namespace, from_env=source, to_env=target)
    emit(diff.to_json(), fmt, lambda: _diff_text(diff))


@click.command("promote")
@click.argument("namespace")
@click.option("--from", "source", required=True, metavar=_ENV, help="The environment promoted from.")
@click.option("--to", "target", required=True, metavar=_ENV, help="The environment promoted to.")
@click.option("--key", "keys", multiple=True, metavar="K", help="Only this key (repeatable).")
@click.option("--prune", is_flag=True, help="Also delete target keys the source does not have.")
@click.option("--dry-run", is_flag=True, help="Show the plan, write nothing.")
@click.option("--no-secret", "no_secret", is_flag=True,
              help="Let a plain value replace a secret of the target (refused otherwise, as with set).")
@yes_option
@format_option("text", "json", "yaml")
@click.pass_context
def promote_cmd(ctx: click.Context, namespace: str, source: str, target: str, keys: tuple[str, ...], prune: bool,
                dry_run: bool, no_secret: bool, yes: bool, fmt: str) -> None:
    """Copy --from's entries to --to: a plan first, then one transaction of compare-and-set writes.

    A key changed in either environment after the plan was shown aborts the whole promotion (exit 3),
    nothing is overwritten. Every write is audited with the promotion's id.
    """
    with open_manager(ctx, create=True) as manager:
        plan = manager.promote(namespace, from_env=source, to_env=target, keys=list(keys) or None, prune=prune,
                               dry_run=True)
        if dry_run or not plan.steps:
            emit(plan.to_json(), fmt, lambda: _plan_text(plan))
            if dry_run:
                err("dry run: nothing was written")
            return
        if not yes and sys.stdin.isatty():  # the plan the question is about, whatever the output format
            err(_plan_text(plan))
        confirm(f"Apply {len(plan.steps)} change(s) to {plan.target.value}?", yes)
        done = manager.promote(namespace, from_env=source, to_env=target, keys=list(keys) or None, prune=prune,
                               plan=plan, secret=False if no_secret else None)
    emit(done.to_json(), fmt, lambda: _plan_text(done) + f"\npromoted {len(done.steps)} key(s)")


COMMANDS: tuple[click.Command, ...] = (diff_cmd, promote_cmd)
