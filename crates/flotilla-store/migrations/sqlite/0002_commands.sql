-- Documents (versioned) and Run Command: commands and their per-node invocations.
CREATE TABLE documents (
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    content     TEXT NOT NULL,
    description TEXT NOT NULL,
    -- 'flotilla' or 'ssm' (an imported AWS SSM document, kept as written)
    format      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE document_heads (
    name            TEXT PRIMARY KEY,
    latest_version  BIGINT NOT NULL,
    default_version BIGINT NOT NULL
);

CREATE TABLE commands (
    id                TEXT PRIMARY KEY,
    document          TEXT NOT NULL,
    document_version  BIGINT NOT NULL,
    parameters        TEXT NOT NULL,
    targets           TEXT NOT NULL,
    plan              TEXT NOT NULL,
    max_concurrency   TEXT NOT NULL,
    max_errors        TEXT NOT NULL,
    delivery_timeout_ms BIGINT NOT NULL,
    comment           TEXT NOT NULL,
    status            TEXT NOT NULL,
    stopped_for_errors BIGINT NOT NULL DEFAULT 0,
    cancel_requested  BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    ended_at          BIGINT
);
CREATE INDEX commands_status ON commands (status);
CREATE INDEX commands_created ON commands (created_at);

CREATE TABLE invocations (
    command_id       TEXT NOT NULL,
    node_id          TEXT NOT NULL,
    status           TEXT NOT NULL,
    exit_code        BIGINT,
    dispatched_at    BIGINT,
    started_at       BIGINT,
    ended_at         BIGINT,
    stdout           TEXT NOT NULL DEFAULT '',
    stderr           TEXT NOT NULL DEFAULT '',
    stdout_truncated BIGINT NOT NULL DEFAULT 0,
    stderr_truncated BIGINT NOT NULL DEFAULT 0,
    stdout_bytes     BIGINT NOT NULL DEFAULT 0,
    stderr_bytes     BIGINT NOT NULL DEFAULT 0,
    detail           TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (command_id, node_id)
);
