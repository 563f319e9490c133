-- Daily export (cloud/src/export): one row per exported UTC day, which is
-- also the lease that keeps several `serve` processes from exporting the
-- same day at once. A process may take the row while it is not done and
-- its lease has expired (or is its own); it renews the lease while it
-- works and sets `done` when the day's manifest is written.
CREATE TABLE export_days (
    -- The UTC day, YYYY-MM-DD.
    day     TEXT PRIMARY KEY,
    -- Who holds (or last held) the lease.
    holder  TEXT NOT NULL,
    -- Lease end, ms since the Unix epoch.
    expires BIGINT NOT NULL,
    -- When the day's export completed, ms; NULL while not done.
    done    BIGINT,
    -- Rows exported, when done.
    rows    BIGINT
);
