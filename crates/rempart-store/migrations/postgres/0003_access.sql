-- Access requests (issue 4): resources and their labels, requests, the
-- reviews and actions that decide them, and security training. A request is
-- never updated: its state is computed from its reviews and actions (see
-- rempart-access). Nothing is deleted.

CREATE TABLE resources (
    kind          TEXT NOT NULL CHECK (kind IN ('host', 'db')),
    name          TEXT COLLATE "C" NOT NULL,
    -- A JSON object of label keys to values, keys sorted.
    labels        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE access_requests (
    id               BIGSERIAL PRIMARY KEY,
    requester        TEXT COLLATE "C" NOT NULL REFERENCES users (name),
    reason           TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    start_ms         BIGINT NULL,
    duration_ms      BIGINT NOT NULL CHECK (duration_ms > 0),
    approvals_needed BIGINT NOT NULL CHECK (approvals_needed > 0),
    pending_until_ms BIGINT NOT NULL
);

CREATE INDEX access_requests_requester ON access_requests (requester, id);

CREATE TABLE access_request_resources (
    request_id BIGINT NOT NULL REFERENCES access_requests (id),
    kind       TEXT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (request_id, kind, name),
    FOREIGN KEY (kind, name) REFERENCES resources (kind, name)
);

CREATE INDEX access_request_resources_resource ON access_request_resources (kind, name, request_id);

-- One row per reviewer and request: a reviewer counts once.
CREATE TABLE access_reviews (
    id         BIGSERIAL PRIMARY KEY,
    request_id BIGINT NOT NULL REFERENCES access_requests (id),
    reviewer   TEXT COLLATE "C" NOT NULL REFERENCES users (name),
    decision   TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    comment    TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    UNIQUE (request_id, reviewer)
);

CREATE TABLE access_actions (
    id         BIGSERIAL PRIMARY KEY,
    request_id BIGINT NOT NULL REFERENCES access_requests (id),
    kind       TEXT NOT NULL CHECK (kind IN ('cancel', 'revoke')),
    actor      TEXT COLLATE "C" NOT NULL,
    reason     TEXT NOT NULL,
    at_ms      BIGINT NOT NULL
);

CREATE INDEX access_actions_request ON access_actions (request_id, id);

CREATE TABLE training_modules (
    name          TEXT COLLATE "C" PRIMARY KEY,
    valid_for_ms  BIGINT NOT NULL CHECK (valid_for_ms > 0),
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL
);

CREATE TABLE training_records (
    id              BIGSERIAL PRIMARY KEY,
    user_name       TEXT COLLATE "C" NOT NULL REFERENCES users (name),
    module          TEXT COLLATE "C" NOT NULL REFERENCES training_modules (name),
    completed_at_ms BIGINT NOT NULL,
    recorded_at_ms  BIGINT NOT NULL,
    recorded_by     TEXT NOT NULL
);

CREATE INDEX training_records_user ON training_records (user_name, module, completed_at_ms);

-- Ends nobody acted on (a grant reaching its end, a request nobody decided
-- in time), each claimed once so that one node writes its well-log event.
CREATE TABLE access_ends (
    request_id   BIGINT PRIMARY KEY REFERENCES access_requests (id),
    kind         TEXT NOT NULL CHECK (kind IN ('grant', 'request')),
    ended_at_ms  BIGINT NOT NULL,
    logged_at_ms BIGINT NOT NULL
);

CREATE INDEX access_requests_created ON access_requests (created_at_ms);
