-- Assessment templates: targets, rules packages, how long node-side checks may take, and an
-- optional cron schedule.
CREATE TABLE assessment_templates (
    name             TEXT PRIMARY KEY,
    targets          TEXT NOT NULL,
    rules            TEXT NOT NULL,
    noncompliant_at  TEXT NOT NULL,
    duration_seconds BIGINT NOT NULL,
    schedule         TEXT,
    -- When the schedule last fired (claimed by one replica with a conditional update).
    last_fired_at    BIGINT,
    created_at       BIGINT NOT NULL
);
