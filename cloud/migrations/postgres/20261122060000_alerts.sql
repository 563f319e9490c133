-- Alerts (crate::alerts): conditions waiting out their hold-down, alerts
-- (open and resolved), and the delivery outbox of their notifications.

-- A condition seen but not yet alerted: it must persist `open_after` (per
-- rule) before an alert opens. One row per (rule, subject).
CREATE TABLE alert_conditions (
    rule     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    -- When the condition was first seen (this episode).
    since_ms BIGINT NOT NULL,
    -- When it was last seen.
    last_ms  BIGINT NOT NULL,
    PRIMARY KEY (rule, subject)
);

CREATE TABLE alerts (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    -- The key the rule is about: a VEN id, ven/meter/quantity/phase, event/ven.
    subject         TEXT NOT NULL,
    ven_id          TEXT,
    event_id        TEXT,
    project_id      BIGINT,
    -- 'open' or 'resolved'.
    state           TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
    opened_ms       BIGINT NOT NULL,
    resolved_ms     BIGINT,
    acknowledged_ms BIGINT,
    acknowledged_by TEXT,
    ack_note        TEXT,
    message         TEXT NOT NULL,
    -- Rule-specific JSON (text, as on SQLite).
    details         TEXT NOT NULL,
    -- While open: when the condition was first seen clear (resolve hold-down);
    -- NULL while the condition holds.
    clear_since_ms  BIGINT,
    -- When the condition was last raised.
    last_raised_ms  BIGINT NOT NULL
);

-- One open alert per (rule, subject), whatever the number of processes.
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, subject) WHERE state = 'open';
CREATE INDEX alerts_by_opened ON alerts (opened_ms DESC, id DESC);
CREATE INDEX alerts_by_ven ON alerts (ven_id, opened_ms DESC);

-- The outbox: one row per notification (opened/resolved) and channel.
CREATE TABLE alert_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        BIGINT NOT NULL REFERENCES alerts (id),
    -- 'opened' or 'resolved'.
    kind            TEXT NOT NULL,
    -- 'webhook', 'email' or 'sns'.
    channel         TEXT NOT NULL,
    -- The notification as JSON: what every channel sends.
    payload         TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    -- A claim by one process: others skip the row until then.
    lease_until_ms  BIGINT,
    delivered_ms    BIGINT,
    gave_up_ms      BIGINT,
    last_error      TEXT
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_ms)
    WHERE delivered_ms IS NULL AND gave_up_ms IS NULL;
