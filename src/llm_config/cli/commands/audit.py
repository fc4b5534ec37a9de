"""`audit list|verify|head|export`: reading and checking the HMAC-chained audit trail (SPEC §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llm_config.audit import EVENT_TYPES
from llm_config.cli.commands._common import LIMIT, format_option, open_manager
from llm_config.cli.output import dump_json, emit, err, out, out_raw, render_table, write_private_file
from llm_config.errors import NotFoundError

if TYPE_CHECKING:
    from llm_config.models import AuditEvent

__all__ = ["COMMANDS"]


def _target(event: AuditEvent) -> str:
    if event.namespace is None:
        return ""
    where = event.namespace + (f"/{event.key}" if event.key else "")
    return where + (f" [{event.environment}]" if event.environment else "")


def _versions(event: AuditEvent) -> str:
    old = "" if event.old_version is None else str(event.old_version)
    new = "" if event.new_version is None else str(event.new_version)
    return f"{old}->{new}" if old and new else old or new


def _events_table(events: list[AuditEvent]) -> str:
    rows = [
        [str(e.seq), e.timestamp, e.type, e.actor, _target(e), _versions(e), e.outcome]
        for e in events
    ]
    return render_table(["SEQ", "TIMESTAMP", "TYPE", "ACTOR", "TARGET", "VERSION", "OUTCOME"], rows)


@click.group("audit")
def audit_group() -> None:
    """Read and verify the tamper-evident audit trail."""


@audit_group.command("list")
@click.option("--since", metavar="T", help="Events at or after T (RFC 3339 or a date).")
@click.option("--until", metavar="T", help="Events before T (RFC 3339 or a date).")
@click.option("--user", metavar="U", help="Only events by actor U.")
@click.option("--type", "event_type", type=click.Choice(EVENT_TYPES), metavar="TYPE",
              help="Only events of this type: " + ", ".join(EVENT_TYPES) + ".")
@click.option("--namespace", metavar="NS", help="Only events in NS and its sub-namespaces.")
@click.option("--limit", type=LIMIT, metavar="N", help="At most N events.")
@format_option("text", "json", "yaml")
@click.pass_context
def audit_list_cmd(
    ctx: click.Context, since: str | None, until: str | None, user: str | None, event_type: str | None,
    namespace: str | None, limit: int | None, fmt: str,
) -> None:
    """List audit events, oldest first."""
    from llm_config.times import normalize_time
    from llm_config.types import AuditQuery

    query = AuditQuery(
        since=normalize_time(since, "--since"), until=normalize_time(until, "--until"), actor=user,
        type=event_type, namespace=namespace, limit=limit,
    )
    with open_manager(ctx, create=False) as manager:
        events = manager.audit_events(query)
    if not events and fmt == "text":
        err("no audit events")
        return
    emit([e.to_json() for e in events], fmt, lambda: _events_table(events))


@audit_group.command("verify")
@click.option("--anchor", metavar="SEQ:MAC", help="A head printed earlier by 'audit head' that must still be there.")
@format_option("text", "json")
@click.pass_context
def audit_verify_cmd(ctx: click.Context, anchor: str | None, fmt: str) -> None:
    """Check the MAC chain and every version's audit reference; exit 1 if broken."""
    with open_manager(ctx, create=False) as manager:
        report = manager.audit_verify(anchor)
    if fmt == "json":
        out(dump_json(report.to_json()))
    elif report.ok:
        out(f"ok: {report.events} events verified")
    if not report.ok:
        if fmt != "json":
            err(f"error: audit trail BROKEN ({len(report.problems)} problem(s) in {report.events} events):")
            for problem in report.problems:
                err(f"  {problem}")
        ctx.exit(1)


@audit_group.command("head")
@click.pass_context
def audit_head_cmd(ctx: click.Context) -> None:
    """Print SEQ:MAC of the newest event, to keep outside the database for 'verify --anchor'."""
    with open_manager(ctx, create=False) as manager:
        head = manager.audit_head()
    if head is None:
        raise NotFoundError("The audit trail is empty")
    out(head)


def _export_line(event: AuditEvent) -> str:
    from llm_config.audit import export_record

    return dump_json(export_record(event), compact=True)


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True,
              help="One JSON event per line, with its MACs.")
@click.option("-o", "--output", metavar="FILE",
              help="Write to a new file FILE (mode 0600, atomically; never through a symlink); '-' is stdout.")
@click.pass_context
def audit_export_cmd(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Export the whole audit trail, oldest first."""
    del fmt  # jsonl is the only format
    with open_manager(ctx, create=False) as manager:
        events = manager.audit_events()
    text = "".join(_export_line(e) + "\n" for e in events)
    if output and output != "-":
        write_private_file(output, text)
        err(f"exported {len(events)} events to {output}")
    else:
        out_raw(text)


COMMANDS: tuple[click.Command, ...] = (audit_group,)
