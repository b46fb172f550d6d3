-- Patch Manager: baselines (the operator's JSON spec as written, normalised), the default
-- baseline of each OS family, patch groups (the `Patch Group` tag value -> a baseline), and
-- each node's last patch operation: its summary and one row per installed package.
CREATE TABLE patch_baselines (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    -- debian | ubuntu | rhel | alpine
    os          TEXT NOT NULL,
    spec        TEXT NOT NULL,
    -- 1 for the predefined Flotilla-* baselines, which cannot be changed or removed
    predefined  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE patch_defaults (
    os          TEXT PRIMARY KEY,
    baseline_id TEXT NOT NULL REFERENCES patch_baselines (id)
);

CREATE TABLE patch_groups (
    name        TEXT PRIMARY KEY,
    baseline_id TEXT NOT NULL REFERENCES patch_baselines (id)
);

CREATE TABLE patch_summaries (
    node_id       TEXT PRIMARY KEY,
    baseline_id   TEXT NOT NULL,
    baseline_name TEXT NOT NULL,
    patch_group   TEXT NOT NULL,
    -- Scan | Install
    operation     TEXT NOT NULL,
    reboot_option TEXT NOT NULL,
    -- COMPLIANT | NON_COMPLIANT, and the worst severity of what made it so
    status        TEXT NOT NULL,
    severity      TEXT NOT NULL,
    -- JSON object: patch state -> count
    counts        TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    ended_at      BIGINT NOT NULL
);

CREATE TABLE patch_states (
    node_id           TEXT NOT NULL,
    name              TEXT NOT NULL,
    arch              TEXT NOT NULL,
    state             TEXT NOT NULL,
    installed_version TEXT NOT NULL,
    available_version TEXT,
    severity          TEXT NOT NULL,
    classification    TEXT,
    -- comma-separated CVE ids (MISSING and FAILED only)
    cves              TEXT NOT NULL,
    repository        TEXT,
    PRIMARY KEY (node_id, name, arch)
);
