"""`keys create|list|revoke`: API keys for the REST API (SPEC §4, §8-9).

The local CLI acts as the store's owner (an unrestricted admin named after the OS account). A new
key is printed once, on stdout; only its peppered HMAC is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from llm_config.cli.commands._common import format_option, open_manager
from llm_config.cli.output import emit, err, out, render_table

if TYPE_CHECKING:
    from llm_config.models import ApiKey

__all__ = ["COMMANDS"]

ROLES = ("admin", "editor", "viewer", "auditor")


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys for the REST API."""


@keys_group.command("create")
@click.option("--name", required=True, metavar="N", help="A name for the key (the audit trail shows key:N).")
@click.option("--role", required=True, type=click.Choice(ROLES, case_sensitive=False), help="Role of the key.")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS",
              help="Limit the key to NS and its sub-namespaces (repeatable; default: all).")
@click.option("--environment", "environments", multiple=True, metavar="ENV",
              help="Limit the key to ENV (repeatable; default: all).")
@click.option("--expires", type=click.FloatRange(min=0, min_open=True), metavar="DAYS",
              help="Expire the key after DAYS days (default: never).")
@format_option("text", "json")
@click.pass_context
def keys_create_cmd(
    ctx: click.Context, name: str, role: str, namespaces: tuple[str, ...], environments: tuple[str, ...],
    expires: float | None, fmt: str,
) -> None:
    """Create an API key and print it once (it cannot be shown again)."""
    with open_manager(ctx, create=True) as manager:
        record, secret_key = manager.create_api_key(
            name, role, namespaces=namespaces, environments=environments, expires_days=expires,
        )
    if fmt == "json":
        doc: dict[str, Any] = {k: v for k, v in record.to_json().items()
                               if k in ("id", "name", "role", "namespaces", "environments", "expires_at")}
        doc["key"] = secret_key
        emit(doc, "json")
        return
    out(secret_key)
    scope = ", ".join(record.namespaces) or "all namespaces"
    envs = ", ".join(e.value for e in record.environments) or "all environments"
    err(f"created {record.id} '{record.name}' ({record.role.value}; {scope}; {envs}"
        f"{'; expires ' + record.expires_at if record.expires_at else ''}). Store the key now: it is not shown again.")


def _keys_table(keys: list[ApiKey]) -> str:
    rows = [
        [k.id, k.name, k.role.value, ",".join(k.namespaces) or "*", ",".join(e.value for e in k.environments) or "*",
         k.created_at, k.expires_at or "", "revoked" if k.revoked_at else "active"]
        for k in keys
    ]
    return render_table(["ID", "NAME", "ROLE", "NAMESPACES", "ENVIRONMENTS", "CREATED", "EXPIRES", "STATUS"], rows)


@keys_group.command("list")
@format_option("text", "json", "yaml")
@click.pass_context
def keys_list_cmd(ctx: click.Context, fmt: str) -> None:
    """List API keys (never the keys themselves)."""
    with open_manager(ctx, create=False) as manager:
        keys = manager.list_api_keys()
    if not keys and fmt == "text":
        err("no API keys")
        return
    emit([k.to_json() for k in keys], fmt, lambda: _keys_table(keys))


@keys_group.command("revoke")
@click.argument("key_id", metavar="ID")
@click.pass_context
def keys_revoke_cmd(ctx: click.Context, key_id: str) -> None:
    """Revoke an API key; every server process refuses it within a second."""
    with open_manager(ctx, create=False) as manager:
        record = manager.revoke_api_key(key_id)
    err(f"revoked {record.id} '{record.name}'")


COMMANDS: tuple[click.Command, ...] = (keys_group,)
