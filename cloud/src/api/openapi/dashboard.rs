//! The `OpenAPI` descriptions and schemas of the dashboard's routes (the
//! live stream, the overview, the caller's identity), merged into the
//! document by `openapi`.

use serde_json::{Value, json};

use super::Operation;
use super::{ok_json, schema};
use crate::api::auth::Permission;
use crate::api::me::permission_name;

/// The description of a dashboard operation; `None` for the others.
pub(crate) fn describe(operation: Operation) -> Option<Value> {
    Some(match operation {
        Operation::Live => json!({
            "tags": ["telemetry"],
            "summary": "Committed readings and statuses, live (server-sent events)",
            "description": "A `text/event-stream` of what ingest commits, as it commits it. Events: \
                `ready` first, once subscribed (`{\"ven_id\",\"now_ms\"}`: nothing committed after it is \
                missed); `reading`, one per committed telemetry batch, its data a JSON array of \
                `{\"ven_id\",\"meter\",\"quantity\",\"phase\",\"ts_ms\",\"value\"}` (redeliveries left out); \
                `status` `{\"ven_id\",\"online\",\"at_ms\",\"received_ms\"}` per status or last will; \
                `lagged` `{\"skipped\": n}` when the stream fell behind and skipped n items (they are \
                stored; reload), after which it goes on. A `: keep-alive` comment every 15 s. \
                Browsers read it with `fetch` (EventSource cannot send the bearer token).",
            "parameters": [{
                "name": "ven_id", "in": "query", "required": false,
                "description": "Only this VEN's items (it must be known: 404 otherwise).",
                "schema": schema("VenId")
            }],
            "responses": {
                "200": {
                    "description": "The stream, until the client closes it or the server stops.",
                    "content": { "text/event-stream": { "schema": { "type": "string" },
                        "example": "event: ready\ndata: {\"ven_id\":\"ven-1\",\"now_ms\":1795305600000}\n\n\
                            event: reading\ndata: [{\"ven_id\":\"ven-1\",\"meter\":\"grid\",\"quantity\":\"active_power\",\
                            \"phase\":\"total\",\"ts_ms\":1795305601000,\"value\":1520.0}]\n\n" } }
                },
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": { "$ref": "#/components/responses/UnknownVen" },
            }
        }),
        Operation::Overview => json!({
            "tags": ["telemetry"],
            "summary": "Every VEN's state, power and running events, and network totals",
            "description": "Per VEN: online state, last seen, ingest lag, the site meter's latest \
                active power (the registered `site_meter`, or the VEN's only active_power/total series) \
                as import/export with its time, and the events running now (started, not ended). \
                Totals sum import and export over the VENs with a figure and count VENs by state.",
            "responses": { "200": ok_json("The overview.", "Overview") }
        }),
        Operation::Me => json!({
            "tags": ["auth"],
            "summary": "The caller's token: name, role and permissions",
            "description": "Any valid token (every role). The dashboard shows only the actions the \
                permissions allow.",
            "responses": { "200": ok_json("The caller.", "Me") }
        }),
        _ => return None,
    })
}

/// The schemas the dashboard's routes refer to.
pub(crate) fn schemas() -> Value {
    let num = |d: &str| json!({ "type": ["number", "null"], "description": d });
    let int = |d: &str| json!({ "type": ["integer", "null"], "description": d });
    let permissions: Vec<String> = Permission::ALL.into_iter().map(permission_name).collect();
    json!({
        "Me": {
            "type": "object",
            "required": ["name", "role", "permissions", "token_id", "created_ms"],
            "properties": {
                "name": { "type": "string" },
                "role": { "type": "string", "enum": ["viewer", "operator", "installer", "admin", "ven"] },
                "permissions": {
                    "type": "array",
                    "items": { "type": "string", "enum": permissions }
                },
                "token_id": { "type": "integer" },
                "created_ms": { "type": "integer" }
            },
            "example": { "name": "ops", "role": "operator", "permissions": ["read_telemetry", "dispatch", "configure_vens"], "token_id": 3, "created_ms": 1_795_305_600_000_i64 }
        },
        "ActiveEvent": {
            "type": "object",
            "properties": {
                "id": schema("ObjectId"),
                "name": { "type": ["string", "null"] },
                "start_ms": int("Start, ms."),
                "end_ms": int("End, ms; null: open-ended.")
            }
        },
        "VenOverview": {
            "type": "object",
            "properties": {
                "ven_id": schema("VenId"),
                "site": { "type": ["string", "null"] },
                "online": { "type": ["boolean", "null"] },
                "last_seen_ms": int("Last message of any kind, ms."),
                "last_reading_ms": int("Newest reading stored, ms."),
                "ingest_lag_ms": int("Receive time minus newest reading time of the newest batch, ms."),
                "power_w": num("Site meter active power, W (positive import, negative export)."),
                "import_w": num("max(power_w, 0)."),
                "export_w": num("max(-power_w, 0)."),
                "power_ts_ms": int("Time of that reading, ms."),
                "active_events": { "type": "array", "items": schema("ActiveEvent") }
            }
        },
        "Overview": {
            "type": "object",
            "required": ["now_ms", "vens", "totals"],
            "properties": {
                "now_ms": { "type": "integer" },
                "vens": { "type": "array", "items": schema("VenOverview") },
                "totals": {
                    "type": "object",
                    "properties": {
                        "import_w": { "type": "number" }, "export_w": { "type": "number" },
                        "vens_total": { "type": "integer" }, "vens_online": { "type": "integer" },
                        "vens_offline": { "type": "integer" },
                        "vens_unknown": { "type": "integer", "description": "Never heard from." },
                        "vens_metered": { "type": "integer", "description": "VENs with a power figure." },
                        "active_events": { "type": "integer" }
                    }
                }
            }
        }
    })
}
