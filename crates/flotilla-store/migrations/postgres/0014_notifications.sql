-- Notifications: topics, their subscriptions (webhook, email, run-a-document), rules that
-- route events from the log to topics or actions, and one durable delivery row per (event,
-- subscription). The dispatcher writes a page's delivery rows and moves its cursor in ONE
-- transaction, so after a restart it resumes at the first event it had not routed, and a
-- delivery is sent until it is Delivered or DeadLettered: at least once.
CREATE TABLE notification_topics (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE notification_subscriptions (
    id         TEXT PRIMARY KEY,
    topic      TEXT NOT NULL REFERENCES notification_topics (name) ON DELETE CASCADE,
    -- webhook | email | run-document
    kind       TEXT NOT NULL,
    -- The URL, the address, or the document's name.
    endpoint   TEXT NOT NULL,
    -- Webhooks: the signing secret as a key-service envelope (base64); never listed back.
    secret     TEXT,
    -- Webhooks: PEM of the CA certificates to trust instead of the system's.
    ca_pem     TEXT,
    timeout_ms BIGINT NOT NULL,
    -- run-document: parameters (JSON object of lists) and targets (JSON list).
    parameters TEXT NOT NULL,
    targets    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX notification_subscriptions_topic ON notification_subscriptions (topic);

CREATE TABLE notification_rules (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    -- The pattern's JSON text, as checked at creation.
    pattern    TEXT NOT NULL,
    -- topic:NAME | assessment:TEMPLATE | run:DOC
    target     TEXT NOT NULL,
    parameters TEXT NOT NULL,
    targets    TEXT NOT NULL,
    enabled    BIGINT NOT NULL,
    -- Why the rule could not act on its last match (its topic or template is gone); NULL when fine.
    problem    TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE notification_deliveries (
    subscription_id TEXT NOT NULL REFERENCES notification_subscriptions (id) ON DELETE CASCADE,
    event_seq       BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    -- Pending | Retrying | Delivered | DeadLettered
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, event_seq)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (subscription_id, status, next_attempt_at);

-- How far each reader of the event log has routed (the dispatcher's row is `rules`).
CREATE TABLE notification_cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
