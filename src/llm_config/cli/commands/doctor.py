"""`doctor`: health of the store, the key and the audit chain."""

from __future__ import annotations

from typing import Any

import click

from llm_config.cli.commands._common import format_option, open_manager
from llm_config.cli.output import emit, render_table

__all__ = ["COMMANDS"]


def _text(report: dict[str, Any]) -> str:
    rows = [[name, check["status"], check["message"]] for name, check in report["checks"].items()]
    text = f"status: {report['status']}\n" + render_table(["CHECK", "STATUS", "MESSAGE"], rows, max_width=200)
    counts = report["checks"].get("key", {}).get("ciphertexts_by_key_id", {})
    for kid, count in sorted(counts.items()):
        text += f"\nkey id {kid} seals {count} ciphertext{'s' if count != 1 else ''}"
    for kid, count in sorted(report["checks"].get("key", {}).get("seals_by_key_id", {}).items()):
        text += f"\nkey id {kid} has sealed {count} value{'s' if count != 1 else ''} in all (AES-GCM allows 2^32)"
    for problem in report["checks"].get("audit", {}).get("problems", []):
        text += f"\naudit: {problem}"
    return text


@click.command("doctor")
@format_option("text", "json", "yaml")
@click.pass_context
def doctor_cmd(ctx: click.Context, fmt: str) -> None:
    """Check the store, the key, the audit chain and Redis; exit 1 if anything is unhealthy."""
    with open_manager(ctx, create=False, redis=True) as manager:
        report = manager.doctor()
    emit(report, fmt, lambda: _text(report))
    if report["status"] == "unhealthy":
        ctx.exit(1)


COMMANDS: tuple[click.Command, ...] = (doctor_cmd,)
