-- Maintenance windows: the windows, their registered targets and tasks, one execution per
-- occurrence, and each execution's task invocations with their command ids.
CREATE TABLE windows (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    schedule        TEXT NOT NULL,
    -- IANA zone of the schedule; NULL: UTC.
    timezone        TEXT,
    duration_hours  BIGINT NOT NULL,
    cutoff_hours    BIGINT NOT NULL,
    start_date      BIGINT,
    end_date        BIGINT,
    enabled         BIGINT NOT NULL,
    -- When the schedule (zone, dates, enabling) was last set: nothing before it is caught up.
    schedule_since  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE window_targets (
    id          TEXT PRIMARY KEY,
    window_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- JSON list of target expressions (as Run Command's --target).
    targets     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX window_targets_window ON window_targets (window_id);

CREATE TABLE window_tasks (
    id               TEXT PRIMARY KEY,
    window_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    document         TEXT NOT NULL,
    document_version BIGINT,
    -- JSON: name -> list of values.
    parameters       TEXT NOT NULL,
    priority         BIGINT NOT NULL,
    max_concurrency  TEXT NOT NULL,
    max_errors       TEXT NOT NULL,
    -- CONTINUE_TASK | CANCEL_TASK
    cutoff_behavior  TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX window_tasks_window ON window_tasks (window_id);

-- One row per (window, occurrence): the unique key makes a second execution of one
-- occurrence impossible, whichever server or restart tries.
CREATE TABLE window_executions (
    id              TEXT PRIMARY KEY,
    window_id       TEXT NOT NULL,
    occurrence_at   BIGINT NOT NULL,
    -- The window's hours when the occurrence fired (a later edit does not move a running one).
    duration_hours  BIGINT NOT NULL,
    cutoff_hours    BIGINT NOT NULL,
    -- PENDING | IN_PROGRESS | SUCCESS | FAILED | TIMED_OUT | CANCELLING | CANCELLED | SKIPPED_OVERLAPPING
    status          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    UNIQUE (window_id, occurrence_at)
);
CREATE INDEX window_executions_status ON window_executions (status);

-- Each task of an execution, as the task was when the occurrence fired.
CREATE TABLE window_task_invocations (
    execution_id     TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    task_name        TEXT NOT NULL,
    document         TEXT NOT NULL,
    document_version BIGINT,
    parameters       TEXT NOT NULL,
    priority         BIGINT NOT NULL,
    max_concurrency  TEXT NOT NULL,
    max_errors       TEXT NOT NULL,
    cutoff_behavior  TEXT NOT NULL,
    -- PENDING | IN_PROGRESS | SUCCESS | FAILED | TIMED_OUT | CANCELLED | NOT_STARTED
    status           TEXT NOT NULL,
    command_id       TEXT,
    reason           TEXT NOT NULL,
    started_at       BIGINT,
    ended_at         BIGINT,
    PRIMARY KEY (execution_id, task_id)
);
