-- Alerts, SQLite: the same tables, columns and meaning as ../postgres
-- (read the comments there), with SQLite's types.

CREATE TABLE alert_conditions (
    rule     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (rule, subject)
) STRICT;

CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    rule            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    ven_id          TEXT,
    event_id        TEXT,
    project_id      INTEGER,
    state           TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
    opened_ms       INTEGER NOT NULL,
    resolved_ms     INTEGER,
    acknowledged_ms INTEGER,
    acknowledged_by TEXT,
    ack_note        TEXT,
    message         TEXT NOT NULL,
    details         TEXT NOT NULL,
    clear_since_ms  INTEGER,
    last_raised_ms  INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, subject) WHERE state = 'open';
CREATE INDEX alerts_by_opened ON alerts (opened_ms DESC, id DESC);
CREATE INDEX alerts_by_ven ON alerts (ven_id, opened_ms DESC);

CREATE TABLE alert_deliveries (
    id              INTEGER PRIMARY KEY,
    alert_id        INTEGER NOT NULL REFERENCES alerts (id),
    kind            TEXT NOT NULL,
    channel         TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    delivered_ms    INTEGER,
    gave_up_ms      INTEGER,
    last_error      TEXT
) STRICT;

CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_ms)
    WHERE delivered_ms IS NULL AND gave_up_ms IS NULL;
