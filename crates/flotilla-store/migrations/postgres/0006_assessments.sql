-- Vulnerability assessment runs, their per-node progress and their findings.
CREATE TABLE assessment_runs (
    id             TEXT PRIMARY KEY,
    targets        TEXT NOT NULL,
    rules          TEXT NOT NULL,
    noncompliant_at TEXT NOT NULL,
    -- How long node-side checks may wait for delivery.
    duration_seconds BIGINT NOT NULL,
    status         TEXT NOT NULL,
    node_count     BIGINT NOT NULL,
    finding_counts TEXT NOT NULL,
    command_ids    TEXT NOT NULL,
    detail         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    ended_at       BIGINT
);
CREATE INDEX assessment_runs_created ON assessment_runs (created_at);

CREATE TABLE assessment_nodes (
    run_id  TEXT NOT NULL,
    node_id TEXT NOT NULL,
    -- Pending, Assessed, NotAssessable (no CVE matching for its OS), Failed
    status  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    PRIMARY KEY (run_id, node_id)
);

CREATE TABLE findings (
    run_id            TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    seq               BIGINT NOT NULL,
    rule              TEXT NOT NULL,
    advisory_id       TEXT NOT NULL,
    aliases           TEXT NOT NULL,
    package           TEXT NOT NULL,
    installed_version TEXT NOT NULL,
    fixed_version     TEXT,
    severity          TEXT NOT NULL,
    score             TEXT,
    title             TEXT NOT NULL,
    PRIMARY KEY (run_id, node_id, seq)
);
CREATE INDEX findings_node ON findings (node_id, run_id);
