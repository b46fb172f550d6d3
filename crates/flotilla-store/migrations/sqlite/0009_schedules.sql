-- The scheduler's durable record: one row per (schedule, occurrence instant), written once with
-- its outcome. The primary key is the exactly-once guarantee: of several servers sharing this
-- database, the one whose INSERT lands fires the occurrence; the others see the row and do not.
-- A schedule's newest row is where its catch-up starts after a restart.
CREATE TABLE schedule_occurrences (
    schedule_key  TEXT NOT NULL,
    occurrence_at BIGINT NOT NULL,
    -- Fired | Missed
    outcome       TEXT NOT NULL,
    recorded_at   BIGINT NOT NULL,
    -- Which server claimed it (its listen address or name), for operators reading the table.
    claimed_by    TEXT NOT NULL,
    PRIMARY KEY (schedule_key, occurrence_at)
);

-- Assessment templates' schedules gain a time zone (NULL: UTC), a grace (NULL: 1 hour) and the
-- time the schedule was last set, so a changed schedule never catches up occurrences from
-- before it existed.
ALTER TABLE assessment_templates ADD COLUMN timezone TEXT;
ALTER TABLE assessment_templates ADD COLUMN grace_seconds BIGINT;
ALTER TABLE assessment_templates ADD COLUMN schedule_since BIGINT;

-- The old claim (last_fired_at, set to the claiming server's clock when it fired) becomes the
-- template's first occurrence row, so every occurrence it covered counts as handled and no
-- template fires twice across the upgrade.
INSERT INTO schedule_occurrences (schedule_key, occurrence_at, outcome, recorded_at, claimed_by)
SELECT 'assessment-template:' || name, last_fired_at, 'Fired', last_fired_at, 'migration 0009'
FROM assessment_templates WHERE last_fired_at IS NOT NULL;
