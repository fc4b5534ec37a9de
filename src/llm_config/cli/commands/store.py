"""Whole-store commands (SPEC §4): `backup`, `restore`, `migrate --to URL`, `upgrade`."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import click

from llm_config.cli.commands._common import confirm, format_option, open_manager, state_of, yes_option
from llm_config.cli.output import dump_json, err, out, write_private_stream
from llm_config.errors import IntegrityError, ValidationError

__all__ = ["COMMANDS"]


def _rows(rows: dict[str, int]) -> str:
    return (f"{rows['entries']} entries, {rows['versions']} versions, {rows['api_keys']} API keys, "
            f"{rows['audit_events']} audit events")


@click.command("backup")
@click.argument("file", metavar="FILE")
@click.pass_context
def backup_cmd(ctx: click.Context, file: str) -> None:
    """Write a checksummed backup of the whole store to FILE ('-' is stdout).

    Secrets stay sealed under the master key; restoring needs the same key.
    """
    with open_manager(ctx, create=False) as manager:
        if file == "-":
            summary = manager.backup(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            summary = write_private_stream(file, manager.backup)
    err(f"backup of {manager.storage.url} written to {file}: {_rows(summary.rows)}; sha256 {summary.sha256}")


@contextlib.contextmanager
def _seekable(file: str) -> Iterator[IO[bytes]]:
    """FILE opened for reading twice (a restore checks it whole first); stdin is spooled to a temporary file."""
    if file != "-":
        try:
            with open(file, "rb") as fh:
                yield fh
        except FileNotFoundError:
            raise ValidationError(f"Backup file not found: {file}") from None
        except IsADirectoryError:
            raise ValidationError(f"Backup file {file} is a directory") from None
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.seek(0)
        yield spool


@click.command("restore")
@click.argument("file", metavar="FILE")
@click.option("--force", is_flag=True, help="Replace a store that is not empty.")
@yes_option
@format_option("text", "json")
@click.pass_context
def restore_cmd(ctx: click.Context, file: str, force: bool, yes: bool, fmt: str) -> None:
    """Replace the store's contents with the backup in FILE ('-' is stdin).

    The whole file is checked first (manifest, digest, master key); nothing changes unless it passes.
    A store that is not empty needs --force. The restored store starts a new epoch.
    """
    with _seekable(file) as stream, open_manager(ctx, create=True) as manager:
        info = manager.check_backup(stream)
        confirm(f"Replace everything in {manager.storage.url} with the backup in {file} "
                f"({_rows(info.rows)})?", yes)
        stream.seek(0)
        summary = manager.restore(stream, force=force)
    if fmt == "json":
        out(dump_json(summary.to_json()))
    else:
        err(f"restored {_rows(summary.rows)} from {file} into {manager.storage.url}; new epoch {summary.epoch}")
    if not summary.verified:
        raise IntegrityError("The restored store does not verify: " + "; ".join(summary.problems[:5]))
    if fmt != "json":
        out("audit verify: ok")


@click.command("migrate")
@click.option("--to", "target", required=True, metavar="URL", help="The store to copy into (any backend).")
@click.option("--force", is_flag=True, help="Replace a target that is not empty.")
@format_option("text", "json")
@click.pass_context
def migrate_cmd(ctx: click.Context, target: str, force: bool, fmt: str) -> None:
    """Copy the whole store to the store at URL, then prove the copy (digest, counts, audit verify)."""
    with open_manager(ctx, create=False) as manager:
        summary = manager.migrate_to(target, force=force)
    if fmt == "json":
        out(dump_json(summary.to_json()))
    else:
        err(f"copied {_rows(summary.rows)} from {manager.storage.url} to {summary.target}; sha256 {summary.sha256}")
    if not summary.verified:
        raise IntegrityError("The copy does not verify: " + "; ".join(summary.problems[:5]))
    if fmt != "json":
        out("verified: same rows and digest read back, audit verify ok")


@click.command("upgrade")
@click.pass_context
def upgrade_cmd(ctx: click.Context) -> None:
    """Apply pending schema migrations under the database lock, then exit (what a deploy Job runs)."""
    from llm_config.storage import open_storage

    state = state_of(ctx)
    storage = open_storage(state.settings.storage, create=True)
    try:
        applied: Any = storage.applied_migrations
    finally:
        storage.close()
    if applied:
        out(f"applied migration(s) {', '.join(map(str, applied))} to {storage.url}")
    else:
        out(f"{storage.url} is up to date: no migration pending")


COMMANDS: tuple[click.Command, ...] = (backup_cmd, restore_cmd, migrate_cmd, upgrade_cmd)
