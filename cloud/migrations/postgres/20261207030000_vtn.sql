-- The rest of the OpenADR 3.1 VTN (programs and events are in
-- 20261122020000_dr.sql): VENs, resources, reports and subscriptions as
-- objects, the OAuth 2.0 clients that may call the VTN, and the key that
-- signs their access tokens. Times are BIGINT ms since the Unix epoch.

-- One OpenADR object of kind VEN, RESOURCE, REPORT or SUBSCRIPTION. `body`
-- is the request JSON as accepted (server-set fields and nulls removed);
-- the columns are what searches filter by:
--   client_id   the owner's clientID (VEN: from the request of BL, or the
--               VEN's own token; REPORT/SUBSCRIPTION: the creator's token;
--               RESOURCE: its VEN's)
--   name        venName, resourceName, or the clientName of a report or
--               subscription
--   parent      RESOURCE: its venID; REPORT: its eventID
--   program_id  REPORT, SUBSCRIPTION: the program
--   unique_key  what must be unique: 'VEN/' || venName,
--               'RESOURCE/' || venID || '/' || resourceName; NULL otherwise
--   agent_ven   the gridlink VEN (vens.ven_id) this VEN or resource stands
--               for, when it was made from an MQTT agent's registration
CREATE TABLE vtn_objects (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('VEN', 'RESOURCE', 'REPORT', 'SUBSCRIPTION')),
    client_id   TEXT,
    name        TEXT,
    parent      TEXT,
    program_id  TEXT,
    unique_key  TEXT UNIQUE,
    agent_ven   TEXT,
    created     BIGINT NOT NULL,
    modified    BIGINT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX vtn_objects_kind ON vtn_objects (kind, created, id);
CREATE INDEX vtn_objects_client ON vtn_objects (client_id, kind);
CREATE INDEX vtn_objects_parent ON vtn_objects (parent, kind);
CREATE INDEX vtn_objects_name ON vtn_objects (name, kind);
CREATE INDEX vtn_objects_agent ON vtn_objects (agent_ven, kind);

-- The targets of VENs and resources (granted by BL) and of subscriptions,
-- one row each, for the `targets` filter and for target privacy.
CREATE TABLE vtn_object_targets (
    object_id TEXT NOT NULL REFERENCES vtn_objects (id) ON DELETE CASCADE,
    target    TEXT NOT NULL,
    PRIMARY KEY (object_id, target)
);
CREATE INDEX vtn_object_targets_target ON vtn_object_targets (target, object_id);

-- OAuth 2.0 clients (client credentials grant): a business-logic (`bl`) or
-- VEN (`ven`) client. Only the SHA-256 of the secret is kept.
CREATE TABLE vtn_clients (
    client_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('bl', 'ven')),
    secret_hash BYTEA NOT NULL,
    created     BIGINT NOT NULL,
    revoked     BIGINT
);

-- The HS256 key that signs access tokens: one row, made by the first cloud
-- process that needs it and shared by every process on this database.
CREATE TABLE vtn_signing_key (
    id      SMALLINT PRIMARY KEY CHECK (id = 1),
    secret  BYTEA NOT NULL,
    created BIGINT NOT NULL
);
