-- 001_initial: the whole schema of the SQLite dialect's migrations 001-003, in MySQL/MariaDB's spelling.
--
-- Every text column is utf8mb4 with the binary collation, so `Key` and `key` are two keys and listing
-- order is code-point order, as on SQLite; indexed names are VARCHARs sized to the name grammar (a
-- namespace is at most 519 characters, a key 200) so the composite indexes fit InnoDB's 3072 bytes;
-- values are LONGTEXT (JSON text next to an explicit value_type tag, never a JSON column).
--
-- MySQL commits DDL implicitly, so every statement here must be safe to run again after a crash
-- between two of them: CREATE TABLE IF NOT EXISTS with the indexes inline, INSERT IGNORE.

CREATE TABLE IF NOT EXISTS entries (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    namespace VARCHAR(520) NOT NULL,
    environment VARCHAR(16) NOT NULL,
    "key" VARCHAR(200) NOT NULL,
    version BIGINT NOT NULL,
    deleted SMALLINT NOT NULL DEFAULT 0,
    value_type VARCHAR(16) NOT NULL,
    stored_value LONGTEXT,
    fingerprint VARCHAR(200),
    created_at VARCHAR(40) NOT NULL,
    created_by TEXT NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    updated_by TEXT NOT NULL,
    tags MEDIUMTEXT NOT NULL,
    description MEDIUMTEXT,
    revision BIGINT NOT NULL,
    audit_seq BIGINT,
    purged MEDIUMTEXT NOT NULL,
    mac VARCHAR(64),
    UNIQUE KEY entries_name_uq (namespace, environment, "key"),
    KEY entries_revision_idx (revision),
    KEY entries_list_idx (environment, namespace, "key")
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

CREATE TABLE IF NOT EXISTS versions (
    entry_id VARCHAR(64) NOT NULL,
    version BIGINT NOT NULL,
    deleted SMALLINT NOT NULL DEFAULT 0,
    purged SMALLINT NOT NULL DEFAULT 0,
    value_type VARCHAR(16) NOT NULL,
    stored_value LONGTEXT,
    fingerprint VARCHAR(200),
    created_at VARCHAR(40) NOT NULL,
    created_by TEXT NOT NULL,
    change_description MEDIUMTEXT NOT NULL,
    audit_seq BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    mac VARCHAR(64),
    PRIMARY KEY (entry_id, version),
    CONSTRAINT versions_entry_fk FOREIGN KEY (entry_id) REFERENCES entries (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

CREATE TABLE IF NOT EXISTS audit_events (
    seq BIGINT NOT NULL PRIMARY KEY,
    id VARCHAR(64) NOT NULL,
    timestamp VARCHAR(40) NOT NULL,
    type VARCHAR(64) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    namespace VARCHAR(520),
    "key" VARCHAR(200),
    environment VARCHAR(16),
    old_version BIGINT,
    new_version BIGINT,
    outcome VARCHAR(32) NOT NULL,
    source_ip VARCHAR(64),
    request_id VARCHAR(200),
    details LONGTEXT NOT NULL,
    prev_mac VARCHAR(128) NOT NULL,
    mac VARCHAR(128) NOT NULL,
    subject VARCHAR(760),
    UNIQUE KEY audit_events_id_uq (id),
    KEY audit_events_namespace_idx (namespace, seq),
    KEY audit_events_timestamp_idx (timestamp),
    KEY audit_events_subject_idx (subject, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

CREATE TABLE IF NOT EXISTS meta (
    name VARCHAR(190) NOT NULL PRIMARY KEY,
    value LONGTEXT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT IGNORE INTO meta (name, value) VALUES ('revision', '0');

CREATE TABLE IF NOT EXISTS api_keys (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    role VARCHAR(32) NOT NULL,
    namespaces MEDIUMTEXT NOT NULL,
    environments MEDIUMTEXT NOT NULL,
    key_hash VARCHAR(128) NOT NULL,
    created_at VARCHAR(40) NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    expires_at VARCHAR(40),
    revoked_at VARCHAR(40),
    parent_id VARCHAR(64),
    audit_seq BIGINT,
    mac VARCHAR(64),
    UNIQUE KEY api_keys_hash_uq (key_hash),
    KEY api_keys_parent_idx (parent_id),
    KEY api_keys_name_idx (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;
