-- 003_row_integrity: a keyed MAC on every row that decides what is served or who may act (SPEC §2).
--
-- Each protected row records the audit event of its last change (audit_seq) inside its MAC, and
-- those events name the row they change (audit_events.subject, indexed), so a replayed older row
-- is told apart from the current one with one index probe. entries.purged lists the versions whose
-- value was destroyed, so a purged version row copied back from a backup is refused too.
-- Rows of a store created before this migration get their MACs once, at the first open with the
-- master key (ConfigManager), audited as one `integrity_migrated` event; `integrity_pending` marks
-- such a store.

ALTER TABLE entries ADD COLUMN audit_seq INTEGER;

ALTER TABLE entries ADD COLUMN purged TEXT NOT NULL DEFAULT '[]';

ALTER TABLE entries ADD COLUMN mac TEXT;

ALTER TABLE versions ADD COLUMN mac TEXT;

ALTER TABLE api_keys ADD COLUMN parent_id TEXT;

ALTER TABLE api_keys ADD COLUMN audit_seq INTEGER;

ALTER TABLE api_keys ADD COLUMN mac TEXT;

ALTER TABLE audit_events ADD COLUMN subject TEXT;

CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq);

CREATE INDEX api_keys_parent_idx ON api_keys (parent_id);

INSERT INTO meta (name, value)
SELECT 'integrity_pending', '1'
WHERE EXISTS (SELECT 1 FROM audit_events) OR EXISTS (SELECT 1 FROM api_keys) OR EXISTS (SELECT 1 FROM entries);
