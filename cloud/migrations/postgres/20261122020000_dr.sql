-- Demand response: OpenADR 3.1 programs and events, VEN groups (target
-- resolution), the per-VEN command counter, the command outbox and the
-- VENs' acknowledgements. Times are BIGINT ms since the Unix epoch.

-- An OpenADR program. `body` is the programRequest JSON as accepted (the
-- object's metadata is in the columns); `targets` its targets as a JSON
-- array of strings.
CREATE TABLE programs (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    created  BIGINT NOT NULL,
    modified BIGINT NOT NULL,
    targets  TEXT NOT NULL,
    body     TEXT NOT NULL
);

-- An OpenADR event: the eventRequest JSON as accepted in `body`, and the
-- columns the API filters and sorts by. `start_ms` / `end_ms` span all its
-- intervals (`end_ms` NULL: open-ended, P9999Y). `deleted` is set when the
-- event is deleted (cancelled): the row stays so the VENs' `cancelled`
-- acknowledgements can still be stored, but the API no longer shows it.
CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    program_id TEXT NOT NULL REFERENCES programs (id),
    created    BIGINT NOT NULL,
    modified   BIGINT NOT NULL,
    start_ms   BIGINT,
    end_ms     BIGINT,
    priority   BIGINT,
    deleted    BIGINT,
    targets    TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX events_program ON events (program_id);

-- The event's target strings, one row each, for the `targets` filter.
CREATE TABLE event_targets (
    event_id TEXT NOT NULL REFERENCES events (id),
    target   TEXT NOT NULL,
    PRIMARY KEY (event_id, target)
);
CREATE INDEX event_targets_target ON event_targets (target, event_id);

-- The VENs the targets resolved to (and so were sent the event).
-- `removed` is set when an update dropped the VEN (it was sent a cancel).
CREATE TABLE event_vens (
    event_id TEXT NOT NULL REFERENCES events (id),
    ven_id   TEXT NOT NULL,
    removed  BIGINT,
    PRIMARY KEY (event_id, ven_id)
);

-- Groups a VEN belongs to (set by an installer or admin); a target string
-- that is a group name selects every VEN of the group.
CREATE TABLE ven_groups (
    ven_id     TEXT NOT NULL REFERENCES vens (ven_id),
    group_name TEXT NOT NULL,
    PRIMARY KEY (ven_id, group_name)
);
CREATE INDEX ven_groups_group ON ven_groups (group_name, ven_id);

-- The last command id issued to each VEN: strictly increasing, never reused.
CREATE TABLE command_seq (
    ven_id  TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);

-- The outbox: every command, written in the transaction that changed the
-- event, `sent` set when the broker acknowledged (PUBACK) its publish.
-- Rows with `sent` NULL are (re)published after a restart or reconnect.
CREATE TABLE command_outbox (
    ven_id     TEXT NOT NULL,
    command_id BIGINT NOT NULL,
    event_id   TEXT NOT NULL,
    payload    BYTEA NOT NULL,
    created    BIGINT NOT NULL,
    sent       BIGINT,
    PRIMARY KEY (ven_id, command_id)
);
CREATE INDEX command_outbox_unsent ON command_outbox (created) WHERE sent IS NULL;

-- Every acknowledgement a VEN sent for an event, once (redeliveries of the
-- same message are skipped by the key). `at` is the VEN's time, `received`
-- the cloud's.
CREATE TABLE event_acks (
    event_id   TEXT NOT NULL,
    ven_id     TEXT NOT NULL,
    command_id BIGINT NOT NULL,
    state      TEXT NOT NULL,
    at         BIGINT NOT NULL,
    reason     TEXT,
    received   BIGINT NOT NULL,
    PRIMARY KEY (event_id, ven_id, command_id, state, at)
);
