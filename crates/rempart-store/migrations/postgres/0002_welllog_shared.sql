-- The well-log shared by several control-plane nodes (PostgreSQL only in
-- practice; a single node keeps its log in files). Any node submits a batch
-- with its entries in one transaction; the one sequencer (the holder of an
-- advisory lock) gives each pending batch the next contiguous range of
-- sequence numbers. Rows are never deleted; an erased entry loses its payload
-- and keeps its leaf hash, and the erasure is recorded for every node.

CREATE TABLE welllog_batches (
    id           BIGSERIAL PRIMARY KEY,
    -- The node process that accepted the batch (wakes its waiting request).
    node         TEXT NOT NULL,
    entries      BIGINT NOT NULL CHECK (entries > 0),
    submitted_ms BIGINT NOT NULL,
    -- NULL until sequenced. UNIQUE: two sequencers that both read the same
    -- end of the log cannot both commit the same range.
    first_seq    BIGINT NULL UNIQUE CHECK (first_seq >= 0)
);

CREATE INDEX welllog_batches_pending ON welllog_batches (id) WHERE first_seq IS NULL;
CREATE INDEX welllog_batches_node ON welllog_batches (node, id);

CREATE TABLE welllog_entries (
    batch_id BIGINT NOT NULL REFERENCES welllog_batches (id),
    position BIGINT NOT NULL CHECK (position >= 0),
    -- SHA-256(0x00 || payload): the entry's leaf in the Merkle tree.
    leaf     BYTEA NOT NULL CHECK (octet_length(leaf) = 32),
    -- The canonical entry; NULL once erased.
    payload  BYTEA NULL,
    PRIMARY KEY (batch_id, position)
);

CREATE TABLE welllog_erasures (
    id        BIGSERIAL PRIMARY KEY,
    seq       BIGINT NOT NULL,
    erased_ms BIGINT NOT NULL
);

-- What every node must agree on (the checkpoint verifier key, the origin).
CREATE TABLE welllog_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
