-- OpenADR notifications, SQLite: the same table, columns and meaning as
-- ../postgres (read the comments there), with SQLite's types.

CREATE TABLE notify_webhooks (
    id              INTEGER PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    url             TEXT NOT NULL,
    bearer_token    TEXT,
    body            TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    claim_token     INTEGER,
    delivered_ms    INTEGER,
    failed_ms       INTEGER,
    last_error      TEXT
) STRICT;

CREATE INDEX notify_webhooks_due ON notify_webhooks (next_attempt_ms, id)
    WHERE delivered_ms IS NULL AND failed_ms IS NULL;
CREATE INDEX notify_webhooks_by_subscription ON notify_webhooks (subscription_id, id);
