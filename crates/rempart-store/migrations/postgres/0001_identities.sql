-- People and their API tokens, and machine identities (mTLS client
-- certificates). Timestamps are Unix milliseconds. Rows are never deleted:
-- users are disabled, tokens and machines revoked.
--
-- Names use the "C" collation so that `ORDER BY name` sorts byte-wise, the
-- same as SQLite, whatever the database's default collation is.

CREATE TABLE users (
    name           TEXT COLLATE "C" PRIMARY KEY,
    roles          TEXT NOT NULL,
    email          TEXT NULL,
    created_at_ms  BIGINT NOT NULL,
    disabled_at_ms BIGINT NULL
);

-- Only the SHA-256 of a token is kept, as lowercase hex.
CREATE TABLE api_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_name     TEXT COLLATE "C" NOT NULL REFERENCES users (name),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NULL,
    revoked_at_ms BIGINT NULL
);

CREATE INDEX api_tokens_user_name ON api_tokens (user_name);

CREATE TABLE machines (
    name          TEXT COLLATE "C" PRIMARY KEY,
    role          TEXT NOT NULL,
    cert_sha256   TEXT NOT NULL UNIQUE,
    cert_serial   TEXT NOT NULL,
    not_after_ms  BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at_ms BIGINT NULL
);
