-- OpenADR notifications (crate::notify): the durable outbox of webhook
-- deliveries to subscriptions' callback URLs. MQTT notifications are not
-- stored (the broker queues them for persistent sessions).

CREATE TABLE notify_webhooks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The OpenADR subscription the notification is for.
    subscription_id TEXT NOT NULL,
    -- The subscription's callbackUrl, as given.
    url             TEXT NOT NULL,
    -- The subscription's bearerToken, sent as `Authorization: Bearer`.
    bearer_token    TEXT,
    -- The OpenADR `notification` object, JSON text: the POST body.
    body            TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    -- Attempts made (a claim counts one).
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    -- A claim by one worker: others skip the row until then.
    lease_until_ms  BIGINT,
    -- Random per claim: only the claim's holder may record its outcome.
    claim_token     BIGINT,
    delivered_ms    BIGINT,
    -- Given up after max_attempts; kept for inspection.
    failed_ms       BIGINT,
    last_error      TEXT
);

CREATE INDEX notify_webhooks_due ON notify_webhooks (next_attempt_ms, id)
    WHERE delivered_ms IS NULL AND failed_ms IS NULL;
CREATE INDEX notify_webhooks_by_subscription ON notify_webhooks (subscription_id, id);
