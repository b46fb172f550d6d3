-- The durable event log (a transactional outbox): each state change's event is written in the
-- transaction of the change. `seq` orders the log and is never reused: it is taken from the
-- single row of `event_sequence`, which only ever grows, so neither deleting events
-- (retention) nor a restart can hand out a sequence number twice. Taking it is an UPDATE of
-- that row, which on PostgreSQL also holds the row's lock to the end of the transaction: event
-- writers commit in sequence order, so a reader paging by `seq > after` never passes a smaller
-- sequence that is still to commit (see src/sql/events.rs).
CREATE TABLE event_sequence (
    id       INTEGER PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO event_sequence (id, last_seq) VALUES (1, 0);

CREATE TABLE events (
    seq       BIGINT PRIMARY KEY,
    id        TEXT NOT NULL UNIQUE,
    time      BIGINT NOT NULL,
    type      TEXT NOT NULL,
    source    TEXT NOT NULL,
    -- JSON array of the ids the event is about (command, node, run, parameter name ...).
    resources TEXT NOT NULL,
    -- JSON object.
    detail    TEXT NOT NULL
);
CREATE INDEX events_type_seq ON events (type, seq);
CREATE INDEX events_time ON events (time);
