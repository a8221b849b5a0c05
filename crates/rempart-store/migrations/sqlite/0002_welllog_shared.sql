-- The well-log shared by several control-plane nodes (see the PostgreSQL
-- version of this migration; SQLite serves one node, which keeps its log in
-- files, so these tables stay empty there but keep both schemas alike).

CREATE TABLE welllog_batches (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    node         TEXT NOT NULL,
    entries      BIGINT NOT NULL CHECK (entries > 0),
    submitted_ms BIGINT NOT NULL,
    first_seq    BIGINT NULL UNIQUE CHECK (first_seq >= 0)
);

CREATE INDEX welllog_batches_pending ON welllog_batches (id) WHERE first_seq IS NULL;
CREATE INDEX welllog_batches_node ON welllog_batches (node, id);

CREATE TABLE welllog_entries (
    batch_id BIGINT NOT NULL REFERENCES welllog_batches (id),
    position BIGINT NOT NULL CHECK (position >= 0),
    leaf     BLOB NOT NULL CHECK (length(leaf) = 32),
    payload  BLOB NULL,
    PRIMARY KEY (batch_id, position)
);

CREATE TABLE welllog_erasures (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    seq       BIGINT NOT NULL,
    erased_ms BIGINT NOT NULL
);

CREATE TABLE welllog_settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
