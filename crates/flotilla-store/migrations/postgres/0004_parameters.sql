-- Parameter Store and the key service's record of master key versions.
-- A parameter's versions; `value` is the text itself for String and StringList, and for
-- SecureString the base64 of a key-service envelope bound to (name, version).
CREATE TABLE parameter_versions (
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    type        TEXT NOT NULL,
    tier        TEXT NOT NULL,
    description TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

-- One row per parameter: its newest version (the optimistic-concurrency point of a put).
CREATE TABLE parameter_heads (
    name           TEXT PRIMARY KEY,
    latest_version BIGINT NOT NULL
);

-- A label names one version of a parameter; moving it rewrites the row.
CREATE TABLE parameter_labels (
    name    TEXT NOT NULL,
    label   TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (name, label)
);

-- Master key versions that have encrypted something here, with a check value (an HMAC of a
-- fixed text under the key, never the key) so a start with a wrong or missing key is refused.
CREATE TABLE master_keys (
    key_id      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    check_value TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (key_id, version)
);
