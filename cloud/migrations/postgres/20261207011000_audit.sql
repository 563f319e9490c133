-- Token expiry and revocation (issue 18). Tokens stored before this
-- migration keep expires = NULL: they never expire, as before.
ALTER TABLE api_tokens ADD COLUMN expires BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked BIGINT;

-- The audit trail of writes through the API: who (token id and name, at
-- the time of the request, and its role), when (at_ms), what (action,
-- object), the request id and the answer's status, with a compact JSON
-- summary of the request (secrets redacted). Append-only: the triggers
-- below refuse UPDATE, DELETE and TRUNCATE, so not even the application's
-- own database role can rewrite history (a superuser can still drop the
-- triggers; that is outside what a database can enforce on its owner).
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    token_id    BIGINT NOT NULL,
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
);

CREATE INDEX audit_log_at ON audit_log (at_ms DESC, id DESC);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
