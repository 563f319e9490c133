-- Daily export: as ../postgres/20261122064000_export.sql.
CREATE TABLE export_days (
    day     TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    expires INTEGER NOT NULL,
    done    INTEGER,
    rows    INTEGER
) STRICT;
