-- 001_initial: the whole schema of the SQLite dialect's migrations 001-003, in PostgreSQL's spelling.
--
-- Text compares byte-exactly and case-sensitively (COLLATE "C"), so listing order and key identity are
-- those of SQLite whatever the database's default collation; integers are BIGINT (64-bit), booleans 0/1
-- SMALLINT, times RFC 3339 UTC text, values JSON text next to an explicit value_type tag (ARCHITECTURE
-- decision 2). Applied in one transaction under an advisory lock (storage/migrate.py).

CREATE TABLE entries (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    namespace TEXT COLLATE "C" NOT NULL,
    environment TEXT COLLATE "C" NOT NULL,
    "key" TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    deleted SMALLINT NOT NULL DEFAULT 0,
    value_type TEXT COLLATE "C" NOT NULL,
    stored_value TEXT COLLATE "C",
    fingerprint TEXT COLLATE "C",
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    tags TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    description TEXT COLLATE "C",
    revision BIGINT NOT NULL,
    audit_seq BIGINT,
    purged TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    mac TEXT COLLATE "C",
    CONSTRAINT entries_name_uq UNIQUE (namespace, environment, "key")
);

CREATE INDEX entries_revision_idx ON entries (revision);

CREATE INDEX entries_list_idx ON entries (environment, namespace, "key");

CREATE TABLE versions (
    entry_id TEXT COLLATE "C" NOT NULL REFERENCES entries (id),
    version BIGINT NOT NULL,
    deleted SMALLINT NOT NULL DEFAULT 0,
    purged SMALLINT NOT NULL DEFAULT 0,
    value_type TEXT COLLATE "C" NOT NULL,
    stored_value TEXT COLLATE "C",
    fingerprint TEXT COLLATE "C",
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    change_description TEXT COLLATE "C" NOT NULL,
    audit_seq BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    mac TEXT COLLATE "C",
    PRIMARY KEY (entry_id, version)
);

CREATE TABLE audit_events (
    seq BIGINT NOT NULL PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    timestamp TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C",
    "key" TEXT COLLATE "C",
    environment TEXT COLLATE "C",
    old_version BIGINT,
    new_version BIGINT,
    outcome TEXT COLLATE "C" NOT NULL,
    source_ip TEXT COLLATE "C",
    request_id TEXT COLLATE "C",
    details TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    prev_mac TEXT COLLATE "C" NOT NULL,
    mac TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C"
);

CREATE INDEX audit_events_namespace_idx ON audit_events (namespace, seq);

CREATE INDEX audit_events_timestamp_idx ON audit_events (timestamp);

CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq);

CREATE TABLE meta (
    name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

INSERT INTO meta (name, value) VALUES ('revision', '0');

CREATE TABLE api_keys (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL,
    namespaces TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    environments TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    key_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C",
    revoked_at TEXT COLLATE "C",
    parent_id TEXT COLLATE "C",
    audit_seq BIGINT,
    mac TEXT COLLATE "C"
);

CREATE INDEX api_keys_parent_idx ON api_keys (parent_id);
