-- Device shadows (AWS IoT classic shadow semantics) for brokers without a
-- shadow service: one document per VEN. `document` is the whole
-- gridlink_protocol::shadow::ShadowDocument as JSON; `version` repeats its
-- version so an update can be made conditional on it (optimistic
-- concurrency: UPDATE ... WHERE version = <the version read>). No foreign
-- key to vens: a VEN may ask for its shadow before it has sent a status.
CREATE TABLE shadows (
    ven_id     TEXT PRIMARY KEY,
    document   JSONB NOT NULL,
    version    BIGINT NOT NULL CHECK (version >= 0),
    updated_at BIGINT NOT NULL
);
