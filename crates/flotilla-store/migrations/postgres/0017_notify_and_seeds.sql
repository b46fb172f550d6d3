-- Run Command notifications (`flotilla run --notify TOPIC --notify-on ...`): JSON
-- {"topic": NAME, "events": [...]} on the command, NULL when none. On the command row so it is
-- written in the same transaction as the command's first event: the router never sees a
-- command's status change before its notification settings.
ALTER TABLE commands ADD COLUMN notification TEXT;

-- Data the server ships and creates once (the `daily` template, the default topics and rules):
-- a seed listed here is never created again, so an operator's edit or deletion stays.
CREATE TABLE seeds (
    name       TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
