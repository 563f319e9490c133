-- Device shadows: as ../postgres/20261122030000_shadow.sql, with the
-- document as JSON text.
CREATE TABLE shadows (
    ven_id     TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 0),
    updated_at INTEGER NOT NULL
) STRICT;
