//! The `OpenAPI` 3.1 document served at `/openapi.json`, built from
//! [`Operation::ALL`] so every route is described: its parameters, its
//! answers and their schemas, the problem document, and bearer auth for the
//! routes that need a token.

mod dashboard;
mod dr;
mod ingest;
pub(crate) mod openadr;
mod projects;

use gridlink_protocol::{Phase, Quantity};
use serde_json::{Map, Value, json};

use super::Operation;
use super::error::PROBLEM_CONTENT_TYPE;
use crate::store::dr::{MAX_GROUP_LEN, MAX_GROUPS};
use crate::store::{MAX_SITE_LEN, MAX_TOKEN_NAME_LEN, Role};
use gridlink_protocol::status::MAX_LOADS;

/// ECMA-262 pattern of text without control characters (Unicode `Cc`,
/// what Rust's `char::is_control` refuses): the server refuses them in
/// every name, site, group, target and note.
pub(crate) const TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// Like [`TEXT_PATTERN`], and with at least one character that is not
/// white space (names the server trims before checking they are empty).
pub(crate) const NON_BLANK_TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*\
    [^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// ECMA-262 pattern of the ISO 8601 durations the server reads
/// (`gridlink_protocol::IsoDuration`): weeks, days, hours, minutes and
/// seconds (to milliseconds) in that order, or `P9999Y` (no end); no
/// calendar years or months, nothing negative.
pub(crate) const DURATION_PATTERN: &str = "^(P9999Y|P([0-9]+W([0-9]+D)?(T(\
    [0-9]+H([0-9]+M)?([0-9]+(\\.[0-9]{1,3})?S)?|[0-9]+M([0-9]+(\\.[0-9]{1,3})?S)?|[0-9]+(\\.[0-9]{1,3})?S))?\
    |[0-9]+D(T([0-9]+H([0-9]+M)?([0-9]+(\\.[0-9]{1,3})?S)?|[0-9]+M([0-9]+(\\.[0-9]{1,3})?S)?|[0-9]+(\\.[0-9]{1,3})?S))?\
    |T([0-9]+H([0-9]+M)?([0-9]+(\\.[0-9]{1,3})?S)?|[0-9]+M([0-9]+(\\.[0-9]{1,3})?S)?|[0-9]+(\\.[0-9]{1,3})?S)))$";

/// ECMA-262 pattern of an RFC 3339 date-time (`format: date-time` alone
/// is only an annotation in JSON Schema 2020-12, so `""` would fit it).
pub(crate) const DATE_TIME_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";
/// ECMA-262 pattern of an RFC 3339 full date.
pub(crate) const DATE_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// An RFC 3339 date-time string (`nullable`: or null).
pub(crate) fn date_time(nullable: bool) -> Value {
    let kind = if nullable {
        json!(["string", "null"])
    } else {
        json!("string")
    };
    json!({ "type": kind, "format": "date-time", "pattern": DATE_TIME_PATTERN })
}

/// A time parameter: RFC 3339 date-time, a date (midnight UTC), or
/// integer ms since the Unix epoch (years 1 to 9999).
pub(crate) fn time_param() -> Value {
    json!({
        "type": "string",
        "anyOf": [
            { "format": "date-time", "pattern": DATE_TIME_PATTERN },
            { "format": "date", "pattern": DATE_PATTERN },
            { "pattern": "^-?[0-9]{1,15}$" }
        ]
    })
}

/// A string of `min..=max` characters without control characters.
pub(crate) fn text(min: usize, max: usize) -> Value {
    json!({ "type": "string", "minLength": min, "maxLength": max, "pattern": TEXT_PATTERN })
}

/// A string of 1 to `max` characters without control characters, not
/// only white space.
pub(crate) fn non_blank_text(max: usize) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": max, "pattern": NON_BLANK_TEXT_PATTERN })
}

/// The `OpenAPI` document of the whole API.
pub fn openapi_document() -> Value {
    let mut paths = Map::new();
    for operation in Operation::ALL {
        let item = paths
            .entry(operation.path())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(
                operation.method().as_str().to_ascii_lowercase(),
                describe(operation),
            );
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gridlink cloud API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Telemetry of gridlink VENs (site gateways): VENs, loads, meter series and \
                network statistics. Errors are RFC 7807 problem documents. Routes under /api/v1 need \
                `Authorization: Bearer <token>`; tokens are made with `gridlink-cloud token create` \
                or `POST /api/v1/tokens`.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "tags": [
            { "name": "operations", "description": "Health, metrics and this document." },
            { "name": "telemetry", "description": "VENs, loads and data over time." },
            { "name": "auth", "description": "API tokens." },
            { "name": "shadow", "description": "Device shadows: agent settings desired and state reported." },
            { "name": "openadr", "description": "The OpenADR 3.1 VTN, as its specification describes it (schemas `oadr3.*`): programs, events (dispatched to the gridlink VENs they target), reports, subscriptions (webhook and MQTT notifications), VENs, resources, OAuth 2.0 tokens, notifier bindings. Also served at the root (`/programs`, ...)." },
            { "name": "dr", "description": "VEN groups and event status (acknowledgements, measured response)." },
            { "name": "projects", "description": "Energy projects: energy per period, finances, DR revenue, milestones." },
            { "name": "alerts", "description": "Alerts raised by the rules (offline VENs, meter anomalies, DR non-response), and their acknowledgement." },
            { "name": "audit", "description": "The append-only audit trail of writes through the API (admin)." }
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token, `glk_` and 64 hex digits. Roles: viewer (reads), \
                        installer (reads, registers VENs), operator (reads, dispatches), admin \
                        (everything), ven (OpenADR VEN clients)."
                },
                "apiKey": ingest::security_scheme(),
                "oadr3OAuth": openadr::security_scheme()
            },
            "responses": merged(
                merged(responses(), vtn_responses()),
                Value::Object(openadr::responses())
            ),
            "schemas": merged(
                merged(merged(schemas(), dr::schemas()), openadr::schemas()),
                merged(
                    merged(
                        merged(
                            dashboard::schemas(),
                            projects::schemas()
                        ),
                        ingest::schemas(),
                    ),
                    merged(
                        super::alerts::schemas(),
                        merged(super::tokens::schemas(), super::audit::schemas()),
                    ),
                ),
            ),
        }
    })
}

/// `a` with `b`'s entries added (both JSON objects).
fn merged(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { PROBLEM_CONTENT_TYPE: { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn responses() -> Value {
    json!({
        "BadRequest": problem_response(
            "A parameter or the body is not acceptable; `invalid_params` names each parameter \
            (`invalid-parameter`), or `body` when the body is not JSON (`invalid-body`)."),
        "Unauthorized": {
            "description": "No bearer token, or an unknown one.",
            "headers": {
                "WWW-Authenticate": {
                    "description": "`Bearer realm=\"gridlink\"` (with `error=\"invalid_token\"` for a bad token).",
                    "schema": { "type": "string" }
                }
            },
            "content": { PROBLEM_CONTENT_TYPE: { "schema": { "$ref": "#/components/schemas/Problem" } } }
        },
        "Forbidden": problem_response("The token's role does not allow this."),
        "TooLarge": problem_response(
            "The body is larger than the route accepts (`invalid-body`, `invalid_params` names `body`)."),
        "UnsupportedMediaType": problem_response(
            "The body is not sent as `application/json` (`invalid-body`, `invalid_params` names `Content-Type`)."),
        "UnknownVen": problem_response("No such VEN."),
        "Unavailable": {
            "description": "The database is unavailable.",
            "headers": {
                "Retry-After": { "description": "Seconds to wait.", "schema": { "type": "integer" } }
            },
            "content": { PROBLEM_CONTENT_TYPE: { "schema": { "$ref": "#/components/schemas/Problem" } } }
        },
        "Internal": problem_response("An internal error; it is logged, not described."),
    })
}

/// The common answers of the VTN's routes: the same problems, sent as
/// `application/json` as openadr3.yaml has them, named `Vtn<name>`.
fn vtn_responses() -> Value {
    let mut out = Map::new();
    if let Value::Object(common) = responses() {
        for (name, mut response) in common {
            if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
                && let Some(problem) = content.remove(PROBLEM_CONTENT_TYPE)
            {
                content.insert("application/json".into(), problem);
            }
            out.insert(format!("Vtn{name}"), response);
        }
    }
    Value::Object(out)
}

/// A reference to the component schema `name`.
fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A 2xx answer with a JSON body of `schema`.
fn ok(description: &str, schema: &Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// A required JSON request body of the component schema `name`.
fn body(name: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema(name) } } })
}

/// The shared 400 answer.
fn bad_request() -> Value {
    json!({ "$ref": "#/components/responses/BadRequest" })
}

fn ok_json(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn query(name: &str, required: bool, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "query", "required": required, "description": description, "schema": schema })
}

fn ven_id_path() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "The VEN id (its certificate CN and MQTT client id).",
        "schema": { "$ref": "#/components/schemas/VenId" }
    })
}

fn window_params(default_step: &str) -> Vec<Value> {
    vec![
        query(
            "from",
            false,
            "Start, inclusive: RFC 3339 (`2026-11-21T12:00:00Z`) or ms since the Unix epoch. \
             Default: `to` minus 24 h. Rounded down to a whole step.",
            &merged(
                time_param(),
                json!({ "examples": ["2026-11-21T00:00:00Z", "1795305600000"] }),
            ),
        ),
        query(
            "to",
            false,
            "End, exclusive, like `from`. Default: now. Rounded up to a whole step.",
            &merged(
                time_param(),
                json!({ "examples": ["2026-11-22T00:00:00Z"] }),
            ),
        ),
        query(
            "step",
            false,
            &format!(
                "Width of one point: an ISO 8601 duration (`PT1M`, `PT15M`, `P1D`) or integer \
                 seconds. Default {default_step}. Picks what is read: the coarsest stored \
                 resolution (raw, PT1M, PT15M, PT1H) whose bucket divides the step. At most \
                 `max_points` (default 10000) steps may fit between `from` and `to`."
            ),
            &json!({ "type": "string", "examples": ["PT1M", "PT15M", "3600"],
                     "anyOf": [{ "pattern": "^[0-9]{1,12}$" }, { "pattern": DURATION_PATTERN }] }),
        ),
    ]
}

#[expect(
    clippy::too_many_lines,
    reason = "one JSON literal per operation; read best side by side"
)]
fn describe(operation: Operation) -> Value {
    let mut doc = match operation {
        Operation::Health => json!({
            "tags": ["operations"],
            "summary": "Health of the database and the broker connection",
            "description": "200 when the database answers and ingest is connected to the broker; \
                503 (same body) naming what is down.",
            "responses": {
                "200": ok_json("Everything is up.", "Health"),
                "503": ok_json("The database or the broker is down.", "Health"),
            }
        }),
        Operation::Metrics => json!({
            "tags": ["operations"],
            "summary": "Prometheus metrics",
            "description": "Ingest counters (messages, batches, readings, drops by reason, database \
                writes and their latency, lag, broker connection) and HTTP requests by route, \
                method and status.",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format 0.0.4.",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                }
            }
        }),
        Operation::OpenApi => json!({
            "tags": ["operations"],
            "summary": "This OpenAPI document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1.",
                    "content": { "application/json": { "schema": { "type": "object" } } }
                }
            }
        }),
        Operation::ListVens => json!({
            "tags": ["telemetry"],
            "summary": "Every VEN, by id",
            "responses": { "200": ok_json("The VENs.", "VenList") }
        }),
        Operation::GetVen => json!({
            "tags": ["telemetry"],
            "summary": "One VEN: online state, last seen, last reading, ingest lag",
            "parameters": [ven_id_path()],
            "responses": {
                "200": ok_json("The VEN.", "Ven"),
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": { "$ref": "#/components/responses/UnknownVen" },
            }
        }),
        Operation::RegisterVen => json!({
            "tags": ["telemetry"],
            "summary": "Register a VEN with its site, groups and loads (installer)",
            "description": "Registers the VEN if it is unknown and sets its site and (if given) \
                its site meter and groups, so the dashboard knows the site before its first reading. \
                `site_meter` names the site's grid meter, the only one the measured response of events \
                reads (sub-meters such as PV or a heat pump would skew it). `loads` are \
                stored only while the VEN has sent no load snapshot: each shows as on, at its rated \
                power, cause `startup`, until the agent's first snapshot replaces them all. \
                Idempotent. Installer and admin tokens. A bad field is a 400 naming it \
                (`site`, `site_meter`, `groups`, `loads[0].name`, `loads[0].rated_power_w`).",
            "parameters": [ven_id_path()],
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/VenRegistration" } } }
            },
            "responses": {
                "200": ok_json("The VEN as registered, with its groups.", "RegisteredVen"),
                "400": { "$ref": "#/components/responses/BadRequest" },
            }
        }),
        Operation::ListLoads => json!({
            "tags": ["telemetry"],
            "summary": "A VEN's loads from its latest snapshot",
            "parameters": [ven_id_path()],
            "responses": {
                "200": ok_json("The loads, by name.", "LoadList"),
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": { "$ref": "#/components/responses/UnknownVen" },
            }
        }),
        Operation::Series => {
            let quantities: Vec<&str> = Quantity::ALL.iter().map(|q| q.name()).collect();
            let phases: Vec<&str> = Phase::ALL.into_iter().map(Phase::name).collect();
            let mut parameters = vec![
                query(
                    "ven",
                    true,
                    "The VEN id.",
                    &json!({ "$ref": "#/components/schemas/VenId" }),
                ),
                query(
                    "meter",
                    true,
                    "The meter's name in the agent's config.",
                    &json!({ "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$" }),
                ),
                query(
                    "quantity",
                    true,
                    "What is measured.",
                    &json!({ "type": "string", "enum": quantities }),
                ),
                query(
                    "phase",
                    false,
                    "Where it is measured. Default `total`.",
                    &json!({ "type": "string", "enum": phases, "default": "total" }),
                ),
            ];
            parameters.extend(window_params("PT1M"));
            json!({
                "tags": ["telemetry"],
                "summary": "One series of one meter over time, one point per step",
                "description": "Stored points are merged into steps: `avg` weighted by count, `min`, \
                    `max`, `last`, `count` summed; the answer is the same whichever resolution a \
                    step is computed from. An answer cut at the row limit has `truncated` and \
                    `next_from_ms`.",
                "parameters": parameters,
                "responses": {
                    "200": ok_json("The series.", "Series"),
                    "400": { "$ref": "#/components/responses/BadRequest" },
                    "404": { "$ref": "#/components/responses/UnknownVen" },
                }
            })
        }
        Operation::Network => json!({
            "tags": ["telemetry"],
            "summary": "Network-wide import and export over time",
            "description": "Sums over VENs of their mean total active power per bucket, from the \
                rollups (so the step is a whole number of minutes); a step covering several \
                buckets gets their mean and the most VENs reporting in any of them. Also the VENs \
                known and online now.",
            "parameters": window_params("PT1M"),
            "responses": {
                "200": ok_json("The statistics.", "Network"),
                "400": { "$ref": "#/components/responses/BadRequest" },
            }
        }),
        Operation::CreateToken => json!({
            "tags": ["auth"],
            "summary": "Issue an API token",
            "description": "The secret is in this answer only (`Cache-Control: no-store`); the \
                cloud keeps its SHA-256.",
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TokenRequest" } } }
            },
            "responses": {
                "201": ok_json("The token.", "TokenCreated"),
                "400": { "$ref": "#/components/responses/BadRequest" },
            }
        }),
        Operation::GetShadow => json!({
            "tags": ["shadow"],
            "summary": "A VEN's device shadow",
            "description": "The document as `$aws/things/{venId}/shadow/get/accepted` shows it: \
                desired settings, the state the agent reported, their delta, the version.",
            "parameters": [ven_id_path()],
            "responses": {
                "200": ok_json("The shadow.", "Shadow"),
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": problem_response("The VEN has no shadow yet (`no-shadow`)."),
            }
        }),
        Operation::PatchShadow => json!({
            "tags": ["shadow"],
            "summary": "Change a VEN's desired settings",
            "description": "Merges `desired` into the shadow's desired state key by key (`null` \
                deletes a key, `\"desired\": null` clears it), stores the document with version + 1 \
                and publishes `update/accepted` and `update/delta` to the VEN. Keys are checked \
                against the settings the agent accepts; whether a value lies inside the agent's \
                hard limits only the agent knows: it refuses one outside them and reports why in \
                `reported.rejected`. Installer, operator and admin tokens.",
            "parameters": [ven_id_path()],
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ShadowPatch" } } }
            },
            "responses": {
                "200": ok_json("The shadow after the change.", "Shadow"),
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": { "$ref": "#/components/responses/UnknownVen" },
                "409": problem_response("`version` is not the shadow's current version (`conflict`)."),
            }
        }),
        Operation::GetVenGroups | Operation::SetVenGroups | Operation::EventStatus => {
            dr::describe(operation).unwrap_or_default()
        }
        Operation::Live | Operation::Overview | Operation::Me => {
            dashboard::describe(operation).unwrap_or_default()
        }
        Operation::ListProjects
        | Operation::CreateProject
        | Operation::GetProject
        | Operation::UpdateProject
        | Operation::ProjectEnergy
        | Operation::ProjectFinances
        | Operation::AddFinanceEntry
        | Operation::DeleteFinanceEntry => projects::describe(operation).unwrap_or_default(),
        Operation::CreateApiKey
        | Operation::ListApiKeys
        | Operation::RevokeApiKey
        | Operation::Ingest => ingest::describe(operation).unwrap_or_default(),
        Operation::ListAlerts | Operation::GetAlert | Operation::AckAlert => {
            super::alerts::describe(operation).unwrap_or_default()
        }
        Operation::ListTokens | Operation::RevokeToken => {
            super::tokens::describe(operation).unwrap_or_default()
        }
        Operation::ListAudit => super::audit::describe(operation).unwrap_or_default(),
        Operation::SearchPrograms
        | Operation::CreateProgram
        | Operation::GetProgram
        | Operation::UpdateProgram
        | Operation::DeleteProgram
        | Operation::SearchEvents
        | Operation::CreateEvent
        | Operation::GetEvent
        | Operation::UpdateEvent
        | Operation::DeleteEvent
        | Operation::SearchReports
        | Operation::CreateReport
        | Operation::GetReport
        | Operation::UpdateReport
        | Operation::DeleteReport
        | Operation::SearchSubscriptions
        | Operation::CreateSubscription
        | Operation::GetSubscription
        | Operation::UpdateSubscription
        | Operation::DeleteSubscription
        | Operation::SearchOadrVens
        | Operation::CreateOadrVen
        | Operation::GetOadrVen
        | Operation::UpdateOadrVen
        | Operation::DeleteOadrVen
        | Operation::SearchResources
        | Operation::CreateResource
        | Operation::GetResource
        | Operation::UpdateResource
        | Operation::DeleteResource
        | Operation::AuthServer
        | Operation::AuthToken
        | Operation::ListNotifiers
        | Operation::TopicsPrograms
        | Operation::TopicsProgram
        | Operation::TopicsEvents
        | Operation::TopicsProgramEvents
        | Operation::TopicsReports
        | Operation::TopicsSubscriptions
        | Operation::TopicsVens
        | Operation::TopicsVen
        | Operation::TopicsResources
        | Operation::TopicsVenEvents
        | Operation::TopicsVenPrograms
        | Operation::TopicsVenResources => openadr::describe(operation).unwrap_or_default(),
        Operation::CreateVtnClient | Operation::ListVtnClients | Operation::RevokeVtnClient => {
            super::openadr_clients::describe(operation).unwrap_or_default()
        }
    };
    if let Value::Object(doc) = &mut doc {
        doc.insert("operationId".into(), operation.id().into());
        add_common_responses(operation, doc);
        let security = if operation.authenticated() {
            json!([{ "bearer": [] }])
        } else {
            json!([])
        };
        // Routes with their own scheme (ingest's API key) keep it.
        doc.entry("security").or_insert(security);
    }
    doc
}

/// The answers every operation of a kind can give, added to what its
/// description lists (which wins where both name a status): so a new
/// operation is documented with them without anyone remembering to.
///
/// * 400 `BadRequest` when it takes parameters or a body;
/// * 413 `TooLarge` with a body, 415 `UnsupportedMediaType` with a
///   required one (the [`JsonBody`](super::body::JsonBody) extractor);
/// * 401 `Unauthorized` with a bearer token, 403 `Forbidden` when the
///   token also needs a permission;
/// * 503 `Unavailable` when it reads the database (all but `/metrics` and
///   `/openapi.json`);
/// * 500 `Internal`, always.
fn add_common_responses(operation: Operation, doc: &mut Map<String, Value>) {
    let has_params = doc
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let body = doc.get("requestBody");
    let has_body = body.is_some();
    let body_required = body.is_some_and(|b| b["required"] == true);
    let mut common: Vec<(&str, &str)> = Vec::new();
    if has_params || has_body {
        common.push(("400", "BadRequest"));
    }
    if has_body {
        common.push(("413", "TooLarge"));
    }
    if body_required {
        common.push(("415", "UnsupportedMediaType"));
    }
    if operation.authenticated() {
        common.push(("401", "Unauthorized"));
    }
    if operation.permission().is_some() || operation.vtn_client() {
        common.push(("403", "Forbidden"));
    }
    if !matches!(operation, Operation::Metrics | Operation::OpenApi) {
        common.push(("503", "Unavailable"));
    }
    common.push(("500", "Internal"));
    let prefix = if operation.is_openadr() { "Vtn" } else { "" };
    let responses = doc.entry("responses").or_insert_with(|| json!({}));
    if let Value::Object(responses) = responses {
        for (status, name) in common {
            responses.entry(status).or_insert_with(
                || json!({ "$ref": format!("#/components/responses/{prefix}{name}") }),
            );
        }
    }
}

fn nullable(kind: &str, description: &str) -> Value {
    json!({ "type": [kind, "null"], "description": description })
}

#[expect(
    clippy::too_many_lines,
    reason = "every schema of the API in one JSON literal"
)]
fn schemas() -> Value {
    let roles: Vec<&str> = Role::ALL.into_iter().map(Role::as_str).collect();
    let quantities: Vec<&str> = Quantity::ALL.iter().map(|q| q.name()).collect();
    let phases: Vec<&str> = Phase::ALL.into_iter().map(Phase::name).collect();
    let resolutions = ["raw", "PT1M", "PT15M", "PT1H"];
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 7807 problem document, `application/problem+json`.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {
                    "type": "string", "format": "uri",
                    "description": "`urn:gridlink:problem:` and one of unauthenticated, forbidden, \
                        invalid-parameter, invalid-body, unknown-ven, no-shadow, not-found, \
                        method-not-allowed, conflict, unprocessable, unavailable, shadow-off, \
                        rate-limited, internal."
                },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
                "instance": { "type": "string", "description": "The request path, for unknown routes." },
                "invalid_params": {
                    "type": "array",
                    "description": "Each rejected parameter or body field (400), or what a body problem \
                        is about (`body`, `Content-Type`: 400, 413, 415).",
                    "items": {
                        "type": "object",
                        "required": ["name", "reason"],
                        "properties": { "name": { "type": "string" }, "reason": { "type": "string" } }
                    }
                }
            }
        },
        "Health": {
            "type": "object",
            "required": ["status", "database", "broker", "version"],
            "properties": {
                "status": { "type": "string", "enum": ["ok", "unavailable"] },
                "database": { "type": "string", "enum": ["ok", "unavailable"] },
                "broker": { "type": "string", "enum": ["connected", "disconnected"] },
                "version": { "type": "string" }
            }
        },
        "VenId": {
            "type": "string",
            "pattern": "^[A-Za-z0-9:_-]{1,128}$",
            "examples": ["site-42"]
        },
        "Ven": {
            "type": "object",
            "required": ["ven_id", "online", "last_seen_ms", "last_reading_ms", "ingest_lag_ms", "agent_version", "site", "site_meter"],
            "properties": {
                "ven_id": { "$ref": "#/components/schemas/VenId" },
                "online": nullable("boolean", "From the last status message or last will; null if never heard."),
                "last_seen_ms": nullable("integer", "Last message of any kind, ms since the epoch."),
                "last_reading_ms": nullable("integer", "Newest reading stored, ms since the epoch."),
                "ingest_lag_ms": nullable("integer", "Receive time minus newest reading time of the newest batch, ms."),
                "agent_version": nullable("string", "From the last status message."),
                "site": nullable("string", "The site's name from registration (`PUT /api/v1/vens/{id}`); null if not registered."),
                "site_meter": nullable("string", "The site's grid meter from registration: the measured response of events reads only its series; null if not registered.")
            }
        },
        "VenRegistration": {
            "type": "object",
            "required": ["site"],
            "additionalProperties": false,
            "properties": {
                "site": merged(text(1, MAX_SITE_LEN), json!({ "examples": ["Depot North"] })),
                "site_meter": {
                    "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$", "examples": ["main"],
                    "description": "The site's grid meter (the agent's `[dr] site_meter`, the `meter` of its series): \
                        the measured response of events reads only it. Absent: kept. Without one, a VEN is measured \
                        only if it has a single active_power/total series."
                },
                "groups": {
                    "type": "array", "maxItems": MAX_GROUPS,
                    "description": "Replaces the VEN's groups; absent: kept.",
                    "items": text(1, MAX_GROUP_LEN)
                },
                "loads": {
                    "type": "array", "maxItems": MAX_LOADS,
                    "description": "The site's loads (stored while the VEN has sent no load snapshot); absent: kept.",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": false,
                        "properties": {
                            "name": { "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$" },
                            "rated_power_w": { "type": "number", "minimum": 0, "description": "Shown as its power until the first snapshot." },
                            "controllable": { "type": "boolean", "default": true, "description": "Whether DR may switch it (the agent's `never_switch = false`)." }
                        }
                    }
                }
            }
        },
        "RegisteredVen": {
            "allOf": [
                { "$ref": "#/components/schemas/Ven" },
                {
                    "type": "object",
                    "required": ["groups"],
                    "properties": { "groups": { "type": "array", "items": { "type": "string" } } }
                }
            ]
        },
        "VenList": {
            "type": "object",
            "required": ["vens"],
            "properties": { "vens": { "type": "array", "items": { "$ref": "#/components/schemas/Ven" } } }
        },
        "Load": {
            "type": "object",
            "required": ["name", "on", "power_w", "setpoint", "controllable", "last_change_ms", "cause", "snapshot_ms"],
            "properties": {
                "name": { "type": "string" },
                "on": { "type": "boolean", "description": "Relay state: true = consuming." },
                "power_w": nullable("number", "Measured or rated power, W."),
                "setpoint": nullable("number", "Setpoint, for loads controlled by a register."),
                "controllable": { "type": "boolean", "description": "Whether DR may switch it." },
                "last_change_ms": nullable("integer", "Last state change, ms since the epoch."),
                "cause": {
                    "description": "Why it last changed: \"startup\", \"external\", \
                        {\"event\":{\"event_id\":...}} or {\"restore\":{\"event_id\":...}}."
                },
                "snapshot_ms": { "type": "integer", "description": "When the snapshot was taken." }
            }
        },
        "LoadList": {
            "type": "object",
            "required": ["ven_id", "loads"],
            "properties": {
                "ven_id": { "$ref": "#/components/schemas/VenId" },
                "loads": { "type": "array", "items": { "$ref": "#/components/schemas/Load" } }
            }
        },
        "SeriesPoint": {
            "type": "object",
            "required": ["ts_ms", "avg", "min", "max", "last", "count"],
            "properties": {
                "ts_ms": { "type": "integer", "description": "Step start, ms since the epoch." },
                "avg": { "type": "number", "description": "Mean of the readings in the step." },
                "min": { "type": "number" },
                "max": { "type": "number" },
                "last": { "type": "number", "description": "Last reading in the step (for counters)." },
                "count": { "type": "integer", "description": "Readings in the step." }
            }
        },
        "Series": {
            "type": "object",
            "required": ["ven_id", "meter", "quantity", "unit", "phase", "from_ms", "to_ms", "step_ms",
                "step", "resolution", "truncated", "points"],
            "properties": {
                "ven_id": { "$ref": "#/components/schemas/VenId" },
                "meter": { "type": "string" },
                "quantity": { "type": "string", "enum": quantities },
                "unit": { "type": "string", "description": "SI unit symbol (empty for the power factor)." },
                "phase": { "type": "string", "enum": phases },
                "from_ms": { "type": "integer", "description": "Start after rounding, inclusive." },
                "to_ms": { "type": "integer", "description": "End after rounding, exclusive." },
                "step_ms": { "type": "integer" },
                "step": { "type": "string", "description": "ISO 8601 duration." },
                "resolution": { "type": "string", "enum": resolutions, "description": "What was read." },
                "truncated": { "type": "boolean", "description": "The row limit cut the answer." },
                "next_from_ms": { "type": "integer", "description": "Where to continue (when truncated)." },
                "points": { "type": "array", "items": { "$ref": "#/components/schemas/SeriesPoint" } }
            }
        },
        "NetworkPoint": {
            "type": "object",
            "required": ["ts_ms", "import_w", "export_w", "vens_reporting"],
            "properties": {
                "ts_ms": { "type": "integer" },
                "import_w": { "type": "number", "description": "Sum over VENs of mean import, W." },
                "export_w": { "type": "number", "description": "Sum over VENs of mean export, W (positive)." },
                "vens_reporting": { "type": "integer" }
            }
        },
        "Network": {
            "type": "object",
            "required": ["from_ms", "to_ms", "step_ms", "step", "resolution", "vens_total", "vens_online", "points"],
            "properties": {
                "from_ms": { "type": "integer" },
                "to_ms": { "type": "integer" },
                "step_ms": { "type": "integer" },
                "step": { "type": "string" },
                "resolution": { "type": "string", "enum": resolutions },
                "vens_total": { "type": "integer", "description": "VENs known now." },
                "vens_online": { "type": "integer", "description": "VENs whose last status says online." },
                "points": { "type": "array", "items": { "$ref": "#/components/schemas/NetworkPoint" } }
            }
        },
        "Shadow": {
            "type": "object",
            "description": "A device shadow (AWS IoT classic shadow, without metadata).",
            "required": ["state", "version", "timestamp"],
            "properties": {
                "state": {
                    "type": "object",
                    "properties": {
                        "desired": { "type": "object", "description": "Settings asked for (absent if none)." },
                        "reported": { "type": "object", "description": "The agent's state: agent_version, \
                            config_digest, poll_interval_ms, max_shed_s, loads, buffer, dr, limits, rejected." },
                        "delta": { "type": "object", "description": "Desired keys that differ from reported." }
                    }
                },
                "version": { "type": "integer", "description": "One more per accepted update." },
                "timestamp": { "type": "integer", "description": "Last update, seconds since the epoch." }
            }
        },
        "ShadowPatch": {
            "type": "object",
            "required": ["desired"],
            "additionalProperties": false,
            "properties": {
                "desired": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "description": "Merged into desired; null deletes a key.",
                    "properties": {
                        "poll_interval_ms": { "type": ["integer", "null"], "minimum": 1 },
                        "max_shed_s": { "type": ["integer", "null"], "minimum": 0 },
                        "loads": {
                            "type": ["object", "null"],
                            "additionalProperties": {
                                "type": ["object", "null"],
                                "additionalProperties": false,
                                "properties": { "dr_participation": { "type": ["boolean", "null"] } }
                            }
                        }
                    }
                },
                "version": { "type": "integer", "minimum": 0, "maximum": i64::MAX,
                    "description": "Apply only to this version (else 409); not null." }
            }
        },
        "TokenRequest": {
            "type": "object",
            "required": ["name", "role"],
            "additionalProperties": false,
            "properties": {
                "name": non_blank_text(MAX_TOKEN_NAME_LEN),
                "role": { "type": "string", "enum": roles },
                "expires_in_s": { "type": "integer", "minimum": 1, "maximum": super::MAX_TOKEN_LIFETIME_S,
                    "description": "Seconds until it expires (default 90 days); not with `expires_ms`." },
                "expires_ms": { "type": "integer",
                    "description": "When it expires, ms since the Unix epoch, in the future; not with `expires_in_s`." }
            }
        },
        "TokenCreated": {
            "type": "object",
            "required": ["id", "name", "role", "created_ms", "token"],
            "properties": {
                "id": { "type": "integer" },
                "name": { "type": "string" },
                "role": { "type": "string", "enum": roles },
                "created_ms": { "type": "integer" },
                "expires_ms": { "type": ["integer", "null"], "description": "When it stops working." },
                "revoked_ms": { "type": ["integer", "null"], "description": "Always null here." },
                "active": { "type": "boolean" },
                "token": { "type": "string", "description": "The secret, shown once.", "pattern": "^glk_[0-9a-f]{64}$" }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_operation_is_described_once() {
        let doc = openapi_document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = std::collections::HashSet::new();
        for op in Operation::ALL {
            let method = op.method().as_str().to_ascii_lowercase();
            let described = &doc["paths"][op.path()][&method];
            assert_eq!(described["operationId"], op.id(), "{op:?}");
            assert!(ids.insert(op.id()), "duplicate operationId {}", op.id());
            let secured = described["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            let api_key = op == Operation::Ingest;
            assert_eq!(secured, op.authenticated() || api_key, "{op:?}");
            assert!(described["responses"]["500"].is_object());
            let path_params: Vec<&str> = described["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let templated: Vec<&str> = op
                .path()
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(path_params, templated, "{op:?}");
        }
        let described: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(described, Operation::ALL.len());
    }

    #[test]
    fn every_reference_resolves() {
        let doc = openapi_document();
        let mut targets = Vec::new();
        refs(&doc, &mut targets);
        assert!(targets.len() > 20);
        for target in targets {
            let pointer = target.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
        }
    }
}
