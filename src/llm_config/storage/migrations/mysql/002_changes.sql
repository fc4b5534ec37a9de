-- 002_changes: the watch stream's feed (GET /api/v1/watch). Every write adds one row, keyed by the store
-- revision it took under the write lock, in its own transaction: a purge names the version it purged,
-- and nothing later overwrites a row, so a client resuming after revision R reads every change after R.
-- Not part of backups: a restore empties it and starts it again above every revision served before.
-- Both statements are safe to run again (DDL commits implicitly).
CREATE TABLE IF NOT EXISTS changes (
    revision BIGINT NOT NULL PRIMARY KEY,
    namespace VARCHAR(520) NOT NULL,
    "key" VARCHAR(200) NOT NULL,
    environment VARCHAR(16) NOT NULL,
    version BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    KEY changes_namespace_idx (namespace, revision)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- the history so far, from the versions (earlier purges left no row of their own)
INSERT IGNORE INTO changes (revision, namespace, "key", environment, version, kind)
SELECT v.revision, e.namespace, e."key", e.environment, v.version, CASE WHEN v.deleted = 1 THEN 'delete' ELSE 'set' END
FROM versions v JOIN entries e ON e.id = v.entry_id;
