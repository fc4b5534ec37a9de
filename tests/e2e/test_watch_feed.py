"""The change feed (storage.watch_since / ChangeFeed): one row per write, purges and restores included."""

from __future__ import annotations

from collections.abc import Callable

from llm_config.core.manager import ConfigManager


def _kinds(rows):
    return [(r.revision, r.key, r.kind) for r in rows]


def test_a_purge_followed_by_a_write_to_the_same_entry_stays_in_the_feed(
    make_manager: Callable[..., ConfigManager],
) -> None:
    """A purge has its own row in the feed: a later write to the entry does not hide it."""
    mgr = make_manager()
    mgr.set("app", "k", "v1")
    mgr.set("app", "k", "v2")
    since = mgr.feed.current()
    mgr.purge("app", "k", 1)
    purge_rev = mgr.feed.current()
    mgr.set("app", "k", "v3")
    rows, _ = mgr.feed.read(since)
    assert (purge_rev, "k", "purge") in _kinds(rows), _kinds(rows)


def test_two_purges_of_one_entry_are_both_listed(make_manager: Callable[..., ConfigManager]) -> None:
    mgr = make_manager()
    for v in ("a", "b", "c"):
        mgr.set("app", "k", v)
    since = mgr.feed.current()
    mgr.purge("app", "k", 1)
    mgr.purge("app", "k", 2)
    rows, _ = mgr.feed.read(since)
    assert [r.kind for r in rows] == ["purge", "purge"], _kinds(rows)


def test_the_purge_event_names_the_purged_version(make_manager: Callable[..., ConfigManager]) -> None:
    """A purge change names the version it purged, not the entry's current one."""
    mgr = make_manager()
    mgr.set("app", "k", "v1")
    mgr.set("app", "k", "v2")
    since = mgr.feed.current()
    mgr.purge("app", "k", 1)
    rows, _ = mgr.feed.read(since)
    assert [(r.kind, r.version) for r in rows] == [("purge", 1)]


def test_last_event_id_from_before_a_restore_gets_resync(
    make_manager: Callable[..., ConfigManager], tmp_path,
) -> None:
    """SSE clients reconnect with `Last-Event-ID` only (no epoch): a restore starts the feed above every
    revision served before it, so such a client gets `resync`, never a silent jump into the restored store."""
    mgr = make_manager()
    mgr.set("app", "a", 1)
    backup = tmp_path / "b.llmc"
    with backup.open("wb") as out:
        mgr.backup(out)
    mgr.set("app", "b", 1)
    mgr.set("app", "c", 1)
    last_seen = mgr.feed.current()  # the client's Last-Event-ID
    with backup.open("rb") as stream:
        mgr.restore(stream, force=True)
    for key in ("d", "e", "f"):
        mgr.set("app", key, 1)
    hello, resync, start = mgr.feed.begin(last_seen, None)
    assert resync is not None, (
        f"resumed at {start} in epoch {hello.epoch} without resync; the client next sees only "
        f"{[r.key for r in mgr.feed.read(start)[0]]}, never that b, c are gone and d, e exist")
