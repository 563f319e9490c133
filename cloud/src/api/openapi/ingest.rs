//! The `OpenAPI` descriptions and schemas of HTTP ingest and its API keys,
//! merged into the document by `openapi`.

use gridlink_protocol::telemetry::MAX_TS_MS;
use gridlink_protocol::{Phase, Quantity};
use serde_json::{Value, json};

use super::Operation;
use super::non_blank_text;
use super::{body, ok_json, problem_response, schema};
use crate::ingest::http::{DEFAULT_EXPONENT, MAX_IDEMPOTENCY_KEY_LEN, MAX_READINGS};
use crate::store::{MAX_API_KEY_VENS, MAX_CUSTOMER_LEN, MAX_TOKEN_NAME_LEN};

/// The `apiKey` security scheme of `POST /api/v1/ingest`.
pub(crate) fn security_scheme() -> Value {
    json!({
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "An HTTP ingest API key, `gli_<id>_<64 hex digits>`, made by an admin with \
            `POST /api/v1/api-keys` or `gridlink-cloud api-key create`."
    })
}

/// The description of `operation`, if it is one of these routes.
pub(crate) fn describe(operation: Operation) -> Option<Value> {
    Some(match operation {
        Operation::CreateApiKey => json!({
            "tags": ["auth"],
            "summary": "Create an API key for HTTP ingest (admin)",
            "description": "The key is in this answer only (`Cache-Control: no-store`); the cloud \
                keeps the SHA-256 of its secret. It may write only the VENs listed; VENs the cloud \
                does not know are registered, so `ingest.refuse_unknown_vens` lets their data in.",
            "requestBody": body("ApiKeyRequest"),
            "responses": {
                "201": ok_json("The key.", "ApiKeyCreated"),
                "400": { "$ref": "#/components/responses/BadRequest" },
            }
        }),
        Operation::ListApiKeys => json!({
            "tags": ["auth"],
            "summary": "Every API key, revoked ones too, without secrets (admin)",
            "responses": { "200": ok_json("The keys, by id.", "ApiKeyList") }
        }),
        Operation::RevokeApiKey => json!({
            "tags": ["auth"],
            "summary": "Revoke an API key (admin)",
            "description": "Takes effect at once: the next request with the key is a 401. \
                Revoking a revoked key is a 204 again.",
            "parameters": [{
                "name": "id", "in": "path", "required": true, "description": "The key's id.",
                "schema": { "type": "integer", "minimum": 1 }
            }],
            "responses": {
                "204": { "description": "Revoked." },
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": problem_response("No such key (`unknown-object`)."),
            }
        }),
        Operation::Ingest => json!({
            "tags": ["telemetry"],
            "summary": "Send readings with an API key",
            "description": "Stored as MQTT telemetry is: one batch, readings grouped into series \
                by meter, quantity and phase; a reading whose series already has one at its time is \
                skipped (the first one wins) and counted in `duplicates`. Values are stored as \
                `raw * 10^exponent` of the quantity's unit, `raw` an integer (default exponent -3). \
                With an `Idempotency-Key`, a retried request is recognised as the same batch \
                (`duplicate_batch`) and stores nothing. Rate-limited per key (429 with \
                `Retry-After`); bodies over `http_ingest.max_body_bytes` (1 MiB) are 413.",
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Names the request for retries: the same key, VEN and header is the same batch.",
                "schema": { "type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LEN, "pattern": "^[!-~]+$" }
            }],
            "requestBody": body("IngestRequest"),
            "responses": {
                "200": ok_json("Committed.", "IngestAnswer"),
                "400": { "$ref": "#/components/responses/BadRequest" },
                "401": problem_response("No valid API key: missing, malformed, unknown or revoked (the \
                    answer does not say which)."),
                "403": problem_response("The key may not write this `ven_id` (`forbidden`)."),
                "413": problem_response("The body is larger than `http_ingest.max_body_bytes`."),
                "429": {
                    "description": "The key sent more requests than its rate allows (`rate-limited`).",
                    "headers": {
                        "Retry-After": { "description": "Seconds until a request is allowed.", "schema": { "type": "integer" } }
                    },
                    "content": { "application/problem+json": { "schema": schema("Problem") } }
                },
                "503": { "$ref": "#/components/responses/Unavailable" },
            },
            "security": [{ "apiKey": [] }]
        }),
        _ => return None,
    })
}

/// The schemas these routes use.
pub(crate) fn schemas() -> Value {
    let quantities: Vec<&str> = Quantity::ALL.iter().map(|q| q.name()).collect();
    let phases: Vec<&str> = Phase::ALL.into_iter().map(Phase::name).collect();
    let key = json!({
        "type": "object",
        "required": ["id", "name", "customer", "ven_ids", "created_ms", "revoked_ms"],
        "properties": {
            "id": { "type": "integer" },
            "name": { "type": "string" },
            "customer": { "type": "string" },
            "ven_ids": { "type": "array", "items": schema("VenId") },
            "created_ms": { "type": "integer" },
            "revoked_ms": { "type": ["integer", "null"], "description": "When it was revoked; null while valid." }
        }
    });
    json!({
        "ApiKeyRequest": {
            "type": "object",
            "required": ["name", "customer", "ven_ids"],
            "additionalProperties": false,
            "properties": {
                "name": non_blank_text(MAX_TOKEN_NAME_LEN),
                "customer": non_blank_text(MAX_CUSTOMER_LEN),
                "ven_ids": {
                    "type": "array", "minItems": 1, "maxItems": MAX_API_KEY_VENS,
                    "description": "The VENs the key may write (registered if unknown).",
                    "items": schema("VenId")
                }
            }
        },
        "ApiKey": key,
        "ApiKeyCreated": {
            "allOf": [
                schema("ApiKey"),
                {
                    "type": "object",
                    "required": ["key"],
                    "properties": {
                        "key": { "type": "string", "description": "The key, shown once.", "pattern": "^gli_[0-9]+_[0-9a-f]{64}$" }
                    }
                }
            ]
        },
        "ApiKeyList": {
            "type": "object",
            "required": ["api_keys"],
            "properties": { "api_keys": { "type": "array", "items": schema("ApiKey") } }
        },
        "IngestReading": {
            "type": "object",
            "required": ["meter", "quantity", "value"],
            "additionalProperties": false,
            "description": "One reading; exactly one of `ts` and `ts_ms`.",
            "oneOf": [
                { "required": ["ts"], "not": { "required": ["ts_ms"] } },
                { "required": ["ts_ms"], "not": { "required": ["ts"] } }
            ],
            "properties": {
                "meter": { "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$" },
                "quantity": { "type": "string", "enum": quantities },
                "phase": { "type": "string", "enum": phases, "default": "total" },
                "ts": {
                    "type": "string", "format": "date-time", "description": "RFC 3339, 1970 to 9999.",
                    "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
                },
                "ts_ms": { "type": "integer", "minimum": 0, "maximum": MAX_TS_MS, "description": "ms since the Unix epoch." },
                "value": { "type": "number", "description": "In the quantity's unit: W, var, VA, V, A, Hz, Wh (none for the power factor)." },
                "exponent": {
                    "type": "integer", "minimum": -9, "maximum": 9, "default": DEFAULT_EXPONENT,
                    "description": "Resolution: the value is stored as an integer times 10^exponent (rounded half away \
                        from zero). The same for every reading of a series in one request."
                }
            }
        },
        "IngestRequest": {
            "type": "object",
            "required": ["ven_id", "readings"],
            "additionalProperties": false,
            "properties": {
                "ven_id": schema("VenId"),
                "readings": {
                    "type": "array", "minItems": 1, "maxItems": MAX_READINGS,
                    "description": "A time may appear once per series (meter, quantity, phase).",
                    "items": schema("IngestReading")
                }
            }
        },
        "IngestAnswer": {
            "type": "object",
            "required": ["ven_id", "accepted", "duplicates", "duplicate_batch"],
            "properties": {
                "ven_id": schema("VenId"),
                "accepted": { "type": "integer", "description": "Readings stored now." },
                "duplicates": { "type": "integer", "description": "Readings skipped: their series already has a reading at that time." },
                "duplicate_batch": { "type": "boolean", "description": "A retry (same Idempotency-Key) of a stored batch." }
            }
        }
    })
}
