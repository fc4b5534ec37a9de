-- 002_watch_index: the watch stream (GET /api/v1/watch) reads versions in revision order after a
-- client's last revision; without this index every resume would scan the whole history.
-- IF NOT EXISTS keeps it safe to run again after a crash (DDL commits implicitly); MariaDB spelling.
CREATE INDEX IF NOT EXISTS versions_revision_idx ON versions (revision);
