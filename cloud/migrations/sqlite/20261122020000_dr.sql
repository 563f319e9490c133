-- Demand response, SQLite: the same tables, columns and meaning as
-- ../postgres/20261122020000_dr.sql (read the comments there).

CREATE TABLE programs (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    created  INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    targets  TEXT NOT NULL,
    body     TEXT NOT NULL
) STRICT;

CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    program_id TEXT NOT NULL REFERENCES programs (id),
    created    INTEGER NOT NULL,
    modified   INTEGER NOT NULL,
    start_ms   INTEGER,
    end_ms     INTEGER,
    priority   INTEGER,
    deleted    INTEGER,
    targets    TEXT NOT NULL,
    body       TEXT NOT NULL
) STRICT;
CREATE INDEX events_program ON events (program_id);

CREATE TABLE event_targets (
    event_id TEXT NOT NULL REFERENCES events (id),
    target   TEXT NOT NULL,
    PRIMARY KEY (event_id, target)
) STRICT, WITHOUT ROWID;
CREATE INDEX event_targets_target ON event_targets (target, event_id);

CREATE TABLE event_vens (
    event_id TEXT NOT NULL REFERENCES events (id),
    ven_id   TEXT NOT NULL,
    removed  INTEGER,
    PRIMARY KEY (event_id, ven_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE ven_groups (
    ven_id     TEXT NOT NULL REFERENCES vens (ven_id),
    group_name TEXT NOT NULL,
    PRIMARY KEY (ven_id, group_name)
) STRICT, WITHOUT ROWID;
CREATE INDEX ven_groups_group ON ven_groups (group_name, ven_id);

CREATE TABLE command_seq (
    ven_id  TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE command_outbox (
    ven_id     TEXT NOT NULL,
    command_id INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created    INTEGER NOT NULL,
    sent       INTEGER,
    PRIMARY KEY (ven_id, command_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX command_outbox_unsent ON command_outbox (created) WHERE sent IS NULL;

CREATE TABLE event_acks (
    event_id   TEXT NOT NULL,
    ven_id     TEXT NOT NULL,
    command_id INTEGER NOT NULL,
    state      TEXT NOT NULL,
    at         INTEGER NOT NULL,
    reason     TEXT,
    received   INTEGER NOT NULL,
    PRIMARY KEY (event_id, ven_id, command_id, state, at)
) STRICT, WITHOUT ROWID;
