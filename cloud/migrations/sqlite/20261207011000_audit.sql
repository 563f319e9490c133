-- Token expiry and revocation (issue 18). Tokens stored before this
-- migration keep expires = NULL: they never expire, as before.
ALTER TABLE api_tokens ADD COLUMN expires INTEGER;
ALTER TABLE api_tokens ADD COLUMN revoked INTEGER;

-- The audit trail of writes through the API (see the PostgreSQL migration
-- for the columns). Append-only: the triggers refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    token_id    INTEGER NOT NULL,
    token_name  TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT,
    request_id  TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    summary     TEXT NOT NULL
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at_ms DESC, id DESC);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
