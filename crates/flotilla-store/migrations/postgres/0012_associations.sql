-- State Manager associations: desired state (a document, its parameters, targets, a schedule)
-- kept on every node the targets match. `generation` rises whenever the association must run
-- again everywhere (created, edited, each schedule occurrence, a manual apply); each node's row
-- records the generation it last applied, so the reconciler sends it to every targeted node
-- that is behind, including nodes that start matching later, and a restart loses nothing.
CREATE TABLE associations (
    id                          TEXT PRIMARY KEY,
    name                        TEXT NOT NULL UNIQUE,
    document                    TEXT NOT NULL,
    -- NULL: the document's default version at each run.
    document_version            BIGINT,
    parameters                  TEXT NOT NULL,
    targets                     TEXT NOT NULL,
    schedule                    TEXT,
    timezone                    TEXT,
    max_concurrency             TEXT NOT NULL,
    max_errors                  TEXT NOT NULL,
    -- CRITICAL | HIGH | MEDIUM | LOW | UNSPECIFIED
    compliance_severity         TEXT NOT NULL,
    apply_only_at_cron_interval BIGINT NOT NULL,
    generation                  BIGINT NOT NULL,
    schedule_since              BIGINT NOT NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);

CREATE TABLE association_nodes (
    association_id TEXT NOT NULL REFERENCES associations (id) ON DELETE CASCADE,
    node_id        TEXT NOT NULL,
    generation     BIGINT NOT NULL,
    -- Pending | Success | Failed
    status         TEXT NOT NULL,
    -- 1 when the last run changed something on the node, 0 when not, NULL when it did not say.
    changed        BIGINT,
    detail         TEXT NOT NULL,
    command_id     TEXT,
    -- 1 when the last run never reached the node (repeated when the node is online again).
    undelivered    BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (association_id, node_id)
);

-- Compliance per node: the current item of each (type, id), and every result that produced one.
CREATE TABLE compliance_items (
    node_id      TEXT NOT NULL,
    -- Association | Patch | Vulnerability
    kind         TEXT NOT NULL,
    item_id      TEXT NOT NULL,
    title        TEXT NOT NULL,
    -- COMPLIANT | NON_COMPLIANT
    status       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    detail       TEXT NOT NULL,
    -- The command or assessment run that produced it.
    execution_id TEXT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    PRIMARY KEY (node_id, kind, item_id)
);

CREATE TABLE compliance_history (
    node_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    item_id      TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    detail       TEXT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    PRIMARY KEY (node_id, kind, item_id, execution_id)
);
CREATE INDEX compliance_history_time ON compliance_history (recorded_at);
