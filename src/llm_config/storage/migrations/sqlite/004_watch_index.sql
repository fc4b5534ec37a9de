-- 004_watch_index: the watch stream (GET /api/v1/watch) reads versions in revision order after a
-- client's last revision; without this index every resume would scan the whole history.
CREATE INDEX versions_revision_idx ON versions (revision);
