-- Energy projects, SQLite: the same tables, columns and meaning as
-- ../postgres/20261122080000_projects.sql (read the comments there).

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('renewable', 'flexibility')),
    status      TEXT NOT NULL CHECK (status IN ('planned', 'construction', 'operational', 'decommissioned')),
    capacity_kw REAL NOT NULL CHECK (capacity_kw >= 0),
    latitude    REAL NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude   REAL NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    address     TEXT,
    currency    TEXT NOT NULL,
    created     INTEGER NOT NULL,
    updated     INTEGER NOT NULL
) STRICT;

CREATE TABLE project_vens (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    ven_id     TEXT NOT NULL REFERENCES vens (ven_id),
    PRIMARY KEY (project_id, ven_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX project_vens_ven ON project_vens (ven_id);

CREATE TABLE project_milestones (
    project_id    INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    position      INTEGER NOT NULL,
    quantity      TEXT NOT NULL CHECK (quantity IN ('generated', 'consumed')),
    threshold_kwh REAL NOT NULL CHECK (threshold_kwh > 0),
    reached       INTEGER,
    PRIMARY KEY (project_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE project_finances (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('expense', 'revenue')),
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency     TEXT NOT NULL,
    at           INTEGER NOT NULL,
    category     TEXT,
    description  TEXT,
    created      INTEGER NOT NULL
) STRICT;
CREATE INDEX project_finances_at ON project_finances (project_id, at);

CREATE INDEX event_vens_ven ON event_vens (ven_id, event_id);
