-- People and their API tokens, and machine identities (mTLS client
-- certificates). Timestamps are Unix milliseconds. Rows are never deleted:
-- users are disabled, tokens and machines revoked.

CREATE TABLE users (
    name           TEXT PRIMARY KEY NOT NULL,
    roles          TEXT NOT NULL,
    email          TEXT NULL,
    created_at_ms  BIGINT NOT NULL,
    disabled_at_ms BIGINT NULL
);

-- Only the SHA-256 of a token is kept, as lowercase hex.
CREATE TABLE api_tokens (
    token_hash    TEXT PRIMARY KEY NOT NULL,
    user_name     TEXT NOT NULL REFERENCES users (name),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NULL,
    revoked_at_ms BIGINT NULL
);

CREATE INDEX api_tokens_user_name ON api_tokens (user_name);

CREATE TABLE machines (
    name          TEXT PRIMARY KEY NOT NULL,
    role          TEXT NOT NULL,
    cert_sha256   TEXT NOT NULL UNIQUE,
    cert_serial   TEXT NOT NULL,
    not_after_ms  BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at_ms BIGINT NULL
);
