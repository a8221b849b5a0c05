-- Bastion sessions (issue 6): each session's summary, sent by the bastion
-- when it ends, and its PTY recordings (asciicast v2), stored as received.
-- A recording may arrive before its session's summary; the summary names
-- each recording's SHA-256, which must match what is stored.

CREATE TABLE ssh_sessions (
    id              TEXT PRIMARY KEY,
    user_name       TEXT NOT NULL,
    target          TEXT NOT NULL,
    grant_id        TEXT NOT NULL,
    bastion         TEXT NOT NULL,
    client          TEXT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    ended_at_ms     BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    bytes_from_user BIGINT NOT NULL,
    bytes_to_user   BIGINT NOT NULL,
    received_at_ms  BIGINT NOT NULL
);

CREATE INDEX ssh_sessions_started ON ssh_sessions (started_at_ms);

CREATE TABLE ssh_recordings (
    session_id     TEXT NOT NULL,
    name           TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    size           BIGINT NOT NULL,
    content        BYTEA NOT NULL,
    bastion        TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (session_id, name)
);
