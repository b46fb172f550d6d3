-- Foundation: activations, nodes, API tokens, saved target groups.
-- Times are Unix milliseconds (BIGINT); tags and lists are JSON text.
CREATE TABLE activations (
    id                 TEXT PRIMARY KEY,
    code_hash          TEXT NOT NULL,
    description        TEXT NOT NULL,
    registration_limit BIGINT NOT NULL,
    registrations      BIGINT NOT NULL DEFAULT 0,
    expires_at         BIGINT NOT NULL,
    default_tags       TEXT NOT NULL,
    created_at         BIGINT NOT NULL
);

CREATE TABLE nodes (
    id               TEXT PRIMARY KEY,
    hostname         TEXT NOT NULL,
    status           TEXT NOT NULL,
    last_seen        BIGINT,
    platform_name    TEXT NOT NULL,
    platform_version TEXT NOT NULL,
    platform_id      TEXT NOT NULL,
    kernel           TEXT NOT NULL,
    arch             TEXT NOT NULL,
    agent_version    TEXT NOT NULL,
    addresses        TEXT NOT NULL,
    tags             TEXT NOT NULL,
    activation_id    TEXT NOT NULL,
    registered_at    BIGINT NOT NULL,
    cert_fingerprint TEXT NOT NULL
);
CREATE INDEX nodes_status ON nodes (status);

CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE target_groups (
    name       TEXT PRIMARY KEY,
    targets    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
