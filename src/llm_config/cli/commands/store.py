"""Whole-store commands (SPEC §2, §4): `backup`, `restore`, `migrate --to URL`, `upgrade`, `rotate-key`."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import click

from llm_config.cli.commands._common import (
    confirm,
    format_option,
    open_local_manager,
    open_manager,
    refuse_remote,
    state_of,
    yes_option,
)
from llm_config.cli.output import dump_json, err, out, write_private_stream
from llm_config.errors import IntegrityError, SecretKeyError, ValidationError

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
    with open_local_manager(ctx, create=False) as manager:
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
    refuse_remote(ctx)
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


@click.command("rotate-key")
@click.option("--new-key-file", metavar="FILE", help="File holding the new master key (one key, mode 0600).")
@click.option("--new-key", metavar="B64", help="The new master key (visible in ps: prefer --new-key-file).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True, metavar="N",
              help="Values re-sealed per transaction (writers wait for at most one batch).")
@format_option("text", "json")
@click.pass_context
def rotate_key_cmd(ctx: click.Context, new_key_file: str | None, new_key: str | None, batch_size: int,
                   fmt: str) -> None:
    """Re-seal every secret (history too) and the instance secret under a new master key.

    Run it with the current key; the service keeps serving, and it is safe to re-run (a run that was
    stopped goes on where it stopped). Then put the new key first in every keyring (LLM_CONFIG_KEY=new,old),
    run it again to catch values sealed meanwhile, and drop the old key once 'llm-config doctor' shows it
    seals nothing.
    """
    refuse_remote(ctx)  # POST /api/v1/admin/rotate-key takes the id of a key the server holds, not a key
    from pathlib import Path

    from llm_config.crypto.aead import parse_key
    from llm_config.crypto.keys import read_single_key

    if (new_key_file is None) == (new_key is None):
        raise ValidationError("Give the new master key with exactly one of --new-key-file FILE or --new-key B64 "
                              "(make one with 'llm-config keygen')")
    key = read_single_key(Path(new_key_file)) if new_key_file is not None else parse_key(new_key or "")
    with open_local_manager(ctx, create=False) as manager:
        summary = manager.rotate_key(key, batch_size=batch_size)
    if fmt == "json":
        out(dump_json(summary.to_json()))
    else:
        olds = ", ".join(f"{kid}: {count}" for kid, count in summary.by_key_id.items())
        out(f"re-sealed {summary.resealed} secret version(s) under key id {summary.new_key_id} in {summary.batches} "
            f"batch(es)" + (f" (from key id {olds})" if olds else "") + "; instance secret "
            + ("re-sealed" if summary.instance_secret else "already sealed by it"))
        if summary.complete:
            out("nothing is sealed by another key id any more: once every process has the new key first in its "
                "keyring, drop the old key")
    if summary.remaining:
        err(f"note: {summary.remaining} value(s) were written meanwhile under another key id (a process whose keyring "
            "does not have the new key first): run rotate-key again once every keyring does")
    if summary.problems:
        raise SecretKeyError(f"{len(summary.problems)} value(s) could not be re-sealed, so the old key must stay: "
                             + "; ".join(summary.problems[:5]))


COMMANDS: tuple[click.Command, ...] = (backup_cmd, restore_cmd, migrate_cmd, upgrade_cmd, rotate_key_cmd)
