-- Sessions: interactive shells and port forwards through the agent channel. One row per
-- session (who opened it, where, as whom, when it ended and why, bytes each way) and, for a
-- port forward, one row per forwarded TCP connection. The transcript (asciicast v2 for a
-- shell) lives in the artifact store under `transcript`, a prefix of numbered parts.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    -- shell | port-forward
    kind        TEXT NOT NULL,
    run_as      TEXT NOT NULL,
    -- port-forward: HOST:PORT on the node's side; empty for a shell
    target      TEXT NOT NULL,
    opened_by   TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    reason      TEXT,
    transcript  TEXT
);
CREATE INDEX sessions_node ON sessions (node_id, started_at);

CREATE TABLE session_connections (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    target      TEXT NOT NULL,
    opened_at   BIGINT NOT NULL,
    closed_at   BIGINT NOT NULL,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
