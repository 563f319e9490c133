-- The rest of the OpenADR 3.1 VTN, SQLite: the same tables, columns and
-- meaning as ../postgres/20261207030000_vtn.sql (read the comments there).

CREATE TABLE vtn_objects (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('VEN', 'RESOURCE', 'REPORT', 'SUBSCRIPTION')),
    client_id   TEXT,
    name        TEXT,
    parent      TEXT,
    program_id  TEXT,
    unique_key  TEXT UNIQUE,
    agent_ven   TEXT,
    created     INTEGER NOT NULL,
    modified    INTEGER NOT NULL,
    body        TEXT NOT NULL
) STRICT;
CREATE INDEX vtn_objects_kind ON vtn_objects (kind, created, id);
CREATE INDEX vtn_objects_client ON vtn_objects (client_id, kind);
CREATE INDEX vtn_objects_parent ON vtn_objects (parent, kind);
CREATE INDEX vtn_objects_name ON vtn_objects (name, kind);
CREATE INDEX vtn_objects_agent ON vtn_objects (agent_ven, kind);

CREATE TABLE vtn_object_targets (
    object_id TEXT NOT NULL REFERENCES vtn_objects (id) ON DELETE CASCADE,
    target    TEXT NOT NULL,
    PRIMARY KEY (object_id, target)
) STRICT;
CREATE INDEX vtn_object_targets_target ON vtn_object_targets (target, object_id);

CREATE TABLE vtn_clients (
    client_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('bl', 'ven')),
    secret_hash BLOB NOT NULL,
    created     INTEGER NOT NULL,
    revoked     INTEGER
) STRICT;

CREATE TABLE vtn_signing_key (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    secret  BLOB NOT NULL,
    created INTEGER NOT NULL
) STRICT;
