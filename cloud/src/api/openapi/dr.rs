//! The `OpenAPI` descriptions and schemas of the demand-response routes
//! (OpenADR 3.1 programs and events, VEN groups, event status), merged
//! into the document by `openapi`.

use serde_json::{Value, json};

use super::Operation;
use super::{DURATION_PATTERN, date_time, text};
use super::{bad_request, body, ok, schema};
use crate::api::openadr::PAYLOAD_TYPES;
use crate::dispatch::response::BASELINE_WINDOW_MS;
use crate::store::dr::{MAX_GROUP_LEN, MAX_GROUPS};

fn not_found(what: &str) -> Value {
    json!({
        "description": format!("No such {what} (`unknown-object`)."),
        "content": { "application/problem+json": { "schema": schema("Problem") } }
    })
}

fn ven_path() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "description": "The VEN id.",
            "schema": { "$ref": "#/components/schemas/VenId" } })
}

/// The description of a demand-response operation; `None` for others.
pub(crate) fn describe(operation: Operation) -> Option<Value> {
    Some(match operation {
        Operation::GetVenGroups => json!({
            "tags": ["dr"],
            "summary": "The groups a VEN is in (event targets may name them)",
            "parameters": [ven_path()],
            "responses": { "200": ok("The groups.", &schema("VenGroups")), "400": bad_request(),
                           "404": { "$ref": "#/components/responses/UnknownVen" } }
        }),
        Operation::SetVenGroups => json!({
            "tags": ["dr"],
            "summary": "Set the groups of a VEN (registers the VEN if unknown)",
            "parameters": [ven_path()],
            "requestBody": body("VenGroupsRequest"),
            "responses": { "200": ok("The groups.", &schema("VenGroups")), "400": bad_request() }
        }),
        Operation::EventStatus => json!({
            "tags": ["dr"],
            "summary": "Every target VEN's state and history, and the measured response",
            "description": format!("Baseline: mean total active power over the {} minutes before \
                the start; during: the mean from the start to the end (or now). Per VEN and in total \
                (VENs with both), in W and %.", BASELINE_WINDOW_MS / 60_000),
            "parameters": [{ "name": "id", "in": "path", "required": true,
                             "description": "The event's id.", "schema": schema("ObjectId") }],
            "responses": { "200": ok("The status.", &schema("EventStatus")), "400": bad_request(),
                           "404": not_found("event") }
        }),
        _ => return None,
    })
}

/// The schemas the descriptions refer to.
pub(crate) fn schemas() -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let duration = json!({ "type": ["string", "null"], "pattern": DURATION_PATTERN,
                           "description": "ISO 8601 duration, not negative (P9999Y: no end)." });
    // Every member is optional and may be null, as the server reads it.
    let interval_period = json!({
        "type": ["object", "null"],
        "properties": {
            "start": date_time(true),
            "duration": duration,
            "randomizeStart": duration
        }
    });
    let metadata = |kind: &str, request: &str| {
        json!({ "allOf": [
            { "type": "object", "required": ["id", "createdDateTime", "modificationDateTime", "objectType"],
              "properties": { "id": schema("ObjectId"), "createdDateTime": time, "modificationDateTime": time,
                              "objectType": { "const": kind } } },
            schema(request)
        ] })
    };
    let response = json!({
        "type": "object",
        "properties": {
            "baseline_w": { "type": ["number", "null"] }, "during_w": { "type": ["number", "null"] },
            "shed_w": { "type": ["number", "null"] }, "shed_pct": { "type": ["number", "null"] },
            "baseline_readings": { "type": "integer" }, "during_readings": { "type": "integer" },
            "unmeasured_reason": {
                "type": ["string", "null"],
                "description": "Why a started event has no measured response for this VEN (no readings of its \
                    site meter in a window, or several meters and no registered `site_meter`); null when measured."
            }
        }
    });
    json!({
        "ObjectId": { "type": "string", "pattern": "^[a-zA-Z0-9_-]*$", "minLength": 1, "maxLength": 128 },
        "ProgramRequest": {
            "type": "object", "required": ["programName"],
            "properties": {
                "programName": { "type": "string", "minLength": 1, "maxLength": 128 },
                "intervalPeriod": interval_period,
                "targets": { "type": ["array", "null"], "items": text(1, 128) }
            }
        },
        "Program": metadata("PROGRAM", "ProgramRequest"),
        "EventRequest": {
            "type": "object", "required": ["programID", "intervals"],
            "properties": {
                "programID": schema("ObjectId"),
                "eventName": { "type": ["string", "null"] },
                "priority": { "type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX },
                "targets": { "type": ["array", "null"], "items": text(1, 128) },
                "payloadDescriptors": { "type": ["array", "null"], "items": { "type": "object" } },
                "intervalPeriod": interval_period,
                "intervals": { "type": "array", "items": {
                    "type": "object", "required": ["id", "payloads"],
                    "properties": {
                        "id": { "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX },
                        "intervalPeriod": interval_period,
                        "payloads": { "type": "array", "items": {
                            "type": "object", "required": ["type", "values"],
                            "properties": { "type": { "enum": PAYLOAD_TYPES }, "values": { "type": "array" } }
                        } }
                    }
                } }
            }
        },
        "Event": metadata("EVENT", "EventRequest"),
        "VenGroupsRequest": {
            "type": "object", "required": ["groups"], "additionalProperties": false,
            "properties": { "groups": { "type": "array", "maxItems": MAX_GROUPS, "items": text(1, MAX_GROUP_LEN) } }
        },
        "VenGroups": {
            "type": "object", "required": ["ven_id", "groups"],
            "properties": { "ven_id": { "$ref": "#/components/schemas/VenId" },
                            "groups": { "type": "array", "items": { "type": "string" } } }
        },
        "EventStatus": {
            "type": "object",
            "required": ["event_id", "program_id", "start_ms", "end_ms", "baseline_window_ms", "states", "vens", "total"],
            "properties": {
                "event_id": schema("ObjectId"), "program_id": schema("ObjectId"),
                "start_ms": { "type": ["integer", "null"] }, "end_ms": { "type": ["integer", "null"] },
                "baseline_window_ms": { "type": "integer" },
                "states": { "type": "object", "additionalProperties": { "type": "integer" },
                            "description": "VENs per latest state (`none`: no acknowledgement yet)." },
                "vens": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "ven_id": { "$ref": "#/components/schemas/VenId" },
                        "state": { "type": ["string", "null"],
                                   "enum": ["received", "scheduled", "active", "completed", "cancelled", "opted_out", "failed", null] },
                        "at_ms": { "type": ["integer", "null"] },
                        "reason": { "type": ["string", "null"] },
                        "history": { "type": "array", "items": { "type": "object" } },
                        "response": response
                    }
                } },
                "total": response
            }
        }
    })
}
