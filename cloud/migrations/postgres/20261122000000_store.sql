-- gridlink cloud store, PostgreSQL. The SQLite schema in ../sqlite has the
-- same tables, columns and meaning.
--
-- Times are BIGINT milliseconds since the Unix epoch (UTC), as everywhere in
-- gridlink: the same integer on both backends and in the API, bucket maths
-- in plain integer arithmetic (ts - ts % 60000), no time-zone conversion on
-- the ingest path. For a human: to_timestamp(ts / 1000.0).
--
-- Quantities and phases are SMALLINT codes: their wire order in
-- gridlink-protocol (never reordered, only appended), see
-- store::quantity_code and store::phase_code.

-- A VEN: status, freshness of its data, and when its loads were last replaced.
CREATE TABLE vens (
    ven_id        TEXT PRIMARY KEY,
    -- From the last status or last will; NULL if never heard.
    online        BOOLEAN,
    -- Last message of any kind (received time).
    last_seen     BIGINT,
    -- From the last status that carried one (the last will does not).
    agent_version TEXT,
    -- Newest reading stored.
    last_reading  BIGINT,
    -- Receive time minus reading time of the batch with the newest reading.
    ingest_lag    BIGINT,
    -- `at` of the load snapshot stored in `loads`; older snapshots are ignored.
    loads_at      BIGINT
);

-- One series per (VEN, meter, quantity, phase), so metrics rows are narrow.
-- Rows are never deleted: metrics and rollups refer to the id without a
-- foreign key (a FK check per reading would cost ingest throughput).
CREATE TABLE series (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ven_id    TEXT NOT NULL REFERENCES vens (ven_id),
    meter     TEXT NOT NULL,
    quantity  SMALLINT NOT NULL,
    phase     SMALLINT NOT NULL,
    -- Exponent of the latest batch (informational: values are stored scaled).
    exponent  SMALLINT NOT NULL,
    UNIQUE (ven_id, meter, quantity, phase)
);

-- Raw readings, value = raw * 10^exponent as float8 (exact for every raw a
-- meter produces, and independent of a later change of the exponent).
-- Partitioned by UTC day: partitions are named metrics_pYYYYMMDD and cover
-- [day, day + 86400000). The application creates them (prepare_partitions,
-- and on demand before any ingest that needs one) and drops them for
-- retention. There is no DEFAULT partition.
CREATE TABLE metrics (
    series_id BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

-- Rollups: one row per series and bucket, merged in the ingest transaction
-- (late data included). `last_value` is the value at `last_ts`, the newest
-- reading in the bucket. Kept when raw data is dropped for retention.
-- fillfactor leaves room for HOT updates: the current bucket is rewritten by
-- every batch.
CREATE TABLE metrics_1m (
    series_id  BIGINT NOT NULL,
    bucket     BIGINT NOT NULL,
    count      BIGINT NOT NULL,
    sum        DOUBLE PRECISION NOT NULL,
    min        DOUBLE PRECISION NOT NULL,
    max        DOUBLE PRECISION NOT NULL,
    last_ts    BIGINT NOT NULL,
    last_value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITH (fillfactor = 70);

CREATE TABLE metrics_15m (LIKE metrics_1m INCLUDING ALL) WITH (fillfactor = 70);
CREATE TABLE metrics_1h (LIKE metrics_1m INCLUDING ALL) WITH (fillfactor = 70);

-- Idempotency: a (ven_id, batch_seq) is stored once. batch_seq is the u64
-- from the wire, stored bit for bit as BIGINT. Never pruned: the rollups
-- outlive raw retention, so a redelivered old batch must still be refused.
CREATE TABLE ingested_batches (
    ven_id    TEXT NOT NULL,
    batch_seq BIGINT NOT NULL,
    received  BIGINT NOT NULL,
    readings  BIGINT NOT NULL,
    PRIMARY KEY (ven_id, batch_seq)
);

-- A VEN's loads from its latest snapshot (replaced as a whole).
CREATE TABLE loads (
    ven_id       TEXT NOT NULL REFERENCES vens (ven_id),
    name         TEXT NOT NULL,
    is_on        BOOLEAN NOT NULL,
    power_w      DOUBLE PRECISION,
    setpoint     DOUBLE PRECISION,
    controllable BOOLEAN NOT NULL,
    last_change  BIGINT,
    cause        JSONB NOT NULL,
    snapshot     BIGINT NOT NULL,
    PRIMARY KEY (ven_id, name)
);

-- API tokens: only the SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    TEXT NOT NULL,
    role    TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'installer', 'admin', 'ven')),
    hash    BYTEA NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    created BIGINT NOT NULL
);

-- Network-wide import/export per rollup bucket, maintained by ingest in the
-- same transaction as the rollups (see store::network): per VEN, the means
-- of its active_power (quantity 0) / total (phase 0) series in the bucket
-- are summed; a positive sum counts as import, a negative one as export.
-- Each ingest transaction adds its changes to one of 8 rows ("shards") per
-- bucket, chosen at random, so concurrent ingest processes do not queue on
-- one row; readers sum the shards. A table rather than a view over the
-- rollups: a view costs VENs x buckets rollup rows per query (about 1 s for
-- 1000 VENs over 30 days at 1 h here), the table costs buckets x shards.
-- bucket_ms: 60000, 900000 or 3600000.
CREATE TABLE network_stats (
    bucket_ms      BIGINT NOT NULL,
    bucket         BIGINT NOT NULL,
    shard          SMALLINT NOT NULL,
    import_w       DOUBLE PRECISION NOT NULL,
    export_w       DOUBLE PRECISION NOT NULL,
    vens_reporting BIGINT NOT NULL,
    PRIMARY KEY (bucket_ms, bucket, shard)
) WITH (fillfactor = 70);
