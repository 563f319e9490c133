-- Energy projects (renewable and flexibility) and their finances. The
-- SQLite schema in ../sqlite has the same tables, columns and meaning.
--
-- Money is stored as BIGINT minor units (cents: amount * 100, exact), never
-- as a float, so sums do not drift. Energy is never stored here: it is
-- computed from the hourly rollups (metrics_1h) when asked for.

-- A project. `currency` is the ISO 4217 code its finances are kept in.
CREATE TABLE projects (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('renewable', 'flexibility')),
    status      TEXT NOT NULL CHECK (status IN ('planned', 'construction', 'operational', 'decommissioned')),
    capacity_kw DOUBLE PRECISION NOT NULL CHECK (capacity_kw >= 0),
    latitude    DOUBLE PRECISION NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude   DOUBLE PRECISION NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    address     TEXT,
    currency    TEXT NOT NULL,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL
);

-- The VENs (sites) that belong to a project; a VEN may be in several.
CREATE TABLE project_vens (
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    ven_id     TEXT NOT NULL REFERENCES vens (ven_id),
    PRIMARY KEY (project_id, ven_id)
);
CREATE INDEX project_vens_ven ON project_vens (ven_id);

-- Milestones: when the project's all-time generated or consumed energy
-- first reaches threshold_kwh. `reached` (ms) is set once, by
-- projects::refresh_milestones; NULL until then. `position` keeps the
-- order the client gave.
CREATE TABLE project_milestones (
    project_id    BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    position      INTEGER NOT NULL,
    quantity      TEXT NOT NULL CHECK (quantity IN ('generated', 'consumed')),
    threshold_kwh DOUBLE PRECISION NOT NULL CHECK (threshold_kwh > 0),
    reached       BIGINT,
    PRIMARY KEY (project_id, name)
);

-- Expense and revenue entries. amount_minor >= 0 in minor units (cents);
-- `kind` gives the sign. `at` is the booking time (ms).
CREATE TABLE project_finances (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id   BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('expense', 'revenue')),
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency     TEXT NOT NULL,
    at           BIGINT NOT NULL,
    category     TEXT,
    description  TEXT,
    created      BIGINT NOT NULL
);
CREATE INDEX project_finances_at ON project_finances (project_id, at);

-- Events by VEN, for the DR revenue of a project (events of its VENs).
CREATE INDEX event_vens_ven ON event_vens (ven_id, event_id);
