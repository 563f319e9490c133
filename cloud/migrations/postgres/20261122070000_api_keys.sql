-- HTTP ingest API keys (POST /api/v1/api-keys, POST /api/v1/ingest): one
-- row per key, only the SHA-256 of its secret is kept. A revoked key keeps
-- its row (revoked = ms since the epoch) so the list shows who had access.
CREATE TABLE api_keys (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name     TEXT NOT NULL,
    customer TEXT NOT NULL,
    hash     BYTEA NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    created  BIGINT NOT NULL,
    revoked  BIGINT
);

-- The VENs a key may write. Creating a key registers its VENs (a row in
-- vens), so `ingest.refuse_unknown_vens` lets their data in.
CREATE TABLE api_key_vens (
    key_id BIGINT NOT NULL REFERENCES api_keys (id),
    ven_id TEXT NOT NULL REFERENCES vens (ven_id),
    PRIMARY KEY (key_id, ven_id)
);

-- The last batch_seq allocated to an HTTP ingest request without an
-- Idempotency-Key, per VEN. The batch_seq stored is 2^63 + last_seq (as a
-- BIGINT bit for bit: negative), a range no agent counter reaches.
CREATE TABLE http_ingest_seq (
    ven_id   TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
