-- gridlink cloud store, SQLite: the same tables, columns and meaning as
-- ../postgres (read the comments there). Differences: STRICT tables with
-- SQLite's types, metrics is one table clustered by (series_id, ts)
-- (WITHOUT ROWID) instead of daily partitions, retention deletes rows, and
-- network_stats has a single shard.

CREATE TABLE vens (
    ven_id        TEXT PRIMARY KEY,
    online        INTEGER,
    last_seen     INTEGER,
    agent_version TEXT,
    last_reading  INTEGER,
    ingest_lag    INTEGER,
    loads_at      INTEGER
) STRICT;

CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    ven_id    TEXT NOT NULL REFERENCES vens (ven_id),
    meter     TEXT NOT NULL,
    quantity  INTEGER NOT NULL,
    phase     INTEGER NOT NULL,
    exponent  INTEGER NOT NULL,
    UNIQUE (ven_id, meter, quantity, phase)
) STRICT;

CREATE TABLE metrics (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL NOT NULL,
    PRIMARY KEY (series_id, ts)
) STRICT, WITHOUT ROWID;

CREATE TABLE metrics_1m (
    series_id  INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    sum        REAL NOT NULL,
    min        REAL NOT NULL,
    max        REAL NOT NULL,
    last_ts    INTEGER NOT NULL,
    last_value REAL NOT NULL,
    PRIMARY KEY (series_id, bucket)
) STRICT, WITHOUT ROWID;

CREATE TABLE metrics_15m (
    series_id  INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    sum        REAL NOT NULL,
    min        REAL NOT NULL,
    max        REAL NOT NULL,
    last_ts    INTEGER NOT NULL,
    last_value REAL NOT NULL,
    PRIMARY KEY (series_id, bucket)
) STRICT, WITHOUT ROWID;

CREATE TABLE metrics_1h (
    series_id  INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    sum        REAL NOT NULL,
    min        REAL NOT NULL,
    max        REAL NOT NULL,
    last_ts    INTEGER NOT NULL,
    last_value REAL NOT NULL,
    PRIMARY KEY (series_id, bucket)
) STRICT, WITHOUT ROWID;

CREATE TABLE ingested_batches (
    ven_id    TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    received  INTEGER NOT NULL,
    readings  INTEGER NOT NULL,
    PRIMARY KEY (ven_id, batch_seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE loads (
    ven_id       TEXT NOT NULL REFERENCES vens (ven_id),
    name         TEXT NOT NULL,
    is_on        INTEGER NOT NULL,
    power_w      REAL,
    setpoint     REAL,
    controllable INTEGER NOT NULL,
    last_change  INTEGER,
    -- JSON text.
    cause        TEXT NOT NULL,
    snapshot     INTEGER NOT NULL,
    PRIMARY KEY (ven_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE api_tokens (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    role    TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'installer', 'admin', 'ven')),
    hash    BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    created INTEGER NOT NULL
) STRICT;

-- One writer, so one shard (0).
CREATE TABLE network_stats (
    bucket_ms      INTEGER NOT NULL,
    bucket         INTEGER NOT NULL,
    shard          INTEGER NOT NULL DEFAULT 0,
    import_w       REAL NOT NULL,
    export_w       REAL NOT NULL,
    vens_reporting INTEGER NOT NULL,
    PRIMARY KEY (bucket_ms, bucket, shard)
) STRICT, WITHOUT ROWID;
