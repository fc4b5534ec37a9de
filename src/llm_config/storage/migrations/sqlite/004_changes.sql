-- 004_changes: the watch stream's feed (GET /api/v1/watch). Every write adds one row, keyed by the store
-- revision it took under the write lock, in its own transaction: a purge names the version it purged,
-- and nothing later overwrites a row, so a client resuming after revision R reads every change after R.
-- Not part of backups: a restore empties it and starts it again above every revision served before.
CREATE TABLE changes (
    revision INTEGER NOT NULL PRIMARY KEY,
    namespace TEXT NOT NULL,
    "key" TEXT NOT NULL,
    environment TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL
);

CREATE INDEX changes_namespace_idx ON changes (namespace, revision);

-- the history so far, from the versions (earlier purges left no row of their own)
INSERT OR IGNORE INTO changes (revision, namespace, "key", environment, version, kind)
SELECT v.revision, e.namespace, e."key", e.environment, v.version, CASE WHEN v.deleted = 1 THEN 'delete' ELSE 'set' END
FROM versions v JOIN entries e ON e.id = v.entry_id;
