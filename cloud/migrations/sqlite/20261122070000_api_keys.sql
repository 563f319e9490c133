-- HTTP ingest API keys: the same tables and meaning as ../postgres (read
-- the comments there).
CREATE TABLE api_keys (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL,
    customer TEXT NOT NULL,
    hash     BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    created  INTEGER NOT NULL,
    revoked  INTEGER
) STRICT;

CREATE TABLE api_key_vens (
    key_id INTEGER NOT NULL REFERENCES api_keys (id),
    ven_id TEXT NOT NULL REFERENCES vens (ven_id),
    PRIMARY KEY (key_id, ven_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE http_ingest_seq (
    ven_id   TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
