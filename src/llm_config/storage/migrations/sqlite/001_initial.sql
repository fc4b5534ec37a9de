-- 001_initial: entries, versions, the audit chain and store-level settings (SQLite dialect).
--
-- Portable on purpose (ARCHITECTURE decision 2): only TEXT and INTEGER columns, values stored as
-- JSON text next to an explicit value_type tag, booleans as 0/1, times as RFC 3339 UTC text.
-- The PostgreSQL and MySQL files mirror this one with their own spellings (BIGINT, VARCHAR with a
-- binary collation, ...). Statements end with ';' at the end of a line: the runner splits on that.

-- The current row of every (namespace, environment, key), tombstones included.
CREATE TABLE entries (
    id TEXT NOT NULL PRIMARY KEY,
    namespace TEXT NOT NULL,
    environment TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    value_type TEXT NOT NULL,
    stored_value TEXT,
    fingerprint TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    description TEXT,
    revision INTEGER NOT NULL,
    CONSTRAINT entries_name_uq UNIQUE (namespace, environment, key)
);

CREATE INDEX entries_revision_idx ON entries (revision);

-- Every version ever written; purged versions keep their row with the value destroyed.
CREATE TABLE versions (
    entry_id TEXT NOT NULL REFERENCES entries (id),
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    purged INTEGER NOT NULL DEFAULT 0,
    value_type TEXT NOT NULL,
    stored_value TEXT,
    fingerprint TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    change_description TEXT NOT NULL,
    audit_seq INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (entry_id, version)
);

-- The keyed HMAC chain (SPEC section 7); seq is assigned explicitly as head + 1 under the write lock.
CREATE TABLE audit_events (
    seq INTEGER NOT NULL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    namespace TEXT,
    key TEXT,
    environment TEXT,
    old_version INTEGER,
    new_version INTEGER,
    outcome TEXT NOT NULL,
    source_ip TEXT,
    request_id TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    prev_mac TEXT NOT NULL,
    mac TEXT NOT NULL
);

CREATE INDEX audit_events_namespace_idx ON audit_events (namespace, seq);

CREATE INDEX audit_events_timestamp_idx ON audit_events (timestamp);

-- Store-level settings; 'revision' is the watch counter, bumped once per write in its transaction.
CREATE TABLE meta (
    name TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta (name, value) VALUES ('revision', '0');
