"""Setting up: `init` (store and key file) and `keygen` (SPEC §2)."""

from __future__ import annotations

import click

from llm_config.cli.commands._common import open_local_manager, refuse_remote, state_of
from llm_config.cli.output import out
from llm_config.errors import KeyMissingError, StoreMissingError

__all__ = ["COMMANDS"]


def _refuse_keyless_existing_store(ctx: click.Context) -> None:
    """A new key cannot open an existing store: say so instead of writing a useless key file."""
    try:
        manager = open_local_manager(ctx, create=False)
    except StoreMissingError:
        return
    with manager:
        store = manager.storage.url
    raise KeyMissingError(
        f"Store {store} already exists but no master key is configured: set LLM_CONFIG_KEY or "
        "LLM_CONFIG_KEY_FILE, or pass --key-file"
    )


@click.command("init")
@click.pass_context
def init_cmd(ctx: click.Context) -> None:
    """Create the store and, if no key is configured, a new key in the default key file.

    The key file is written 0600 outside the store; the key itself is never printed.
    """
    state = state_of(ctx)
    refuse_remote(ctx)
    from llm_config.crypto.keys import default_key_file, find_keyring, generate_key, write_key_file

    encryption_key, key_file = state.key_arguments()
    source = find_keyring(encryption_key=encryption_key, key_file=key_file)
    if source is None:
        _refuse_keyless_existing_store(ctx)
        path = default_key_file()
        write_key_file(path, generate_key())
        key_line = f"key file: {path} (created, mode 0600; back it up: secrets cannot be read without it)"
    else:
        key_line = f"key: {source.origin}"
    try:
        manager = open_local_manager(ctx, create=False)
        created = False
    except StoreMissingError:
        manager = open_local_manager(ctx, create=True)
        created = True
    with manager:
        store = manager.storage.url
    out(f"store: {store} ({'created' if created else 'already exists'})")
    out(key_line)


@click.command("keygen")
def keygen_cmd() -> None:
    """Print a new random master key (base64); store it somewhere safe."""
    from llm_config.crypto.keys import generate_key

    out(generate_key())


COMMANDS: tuple[click.Command, ...] = (init_cmd, keygen_cmd)
