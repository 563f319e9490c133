//! The `OpenAPI` descriptions and schemas of the energy-project routes
//! (`/api/v1/projects...`), merged into the document by `openapi`.

use serde_json::{Value, json};

use super::Operation;
use super::{TEXT_PATTERN, text, time_param};
use super::{bad_request, body, ok, problem_response, schema};
use crate::api::projects::{
    DEFAULT_CURRENCY, MAX_MILESTONES, MAX_NAME_LEN, MAX_PERIODS, MAX_PROJECT_VENS, MAX_TEXT_LEN,
};

fn project_path() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "description": "The project's id.",
            "schema": { "type": "integer", "minimum": 1 } })
}

fn window(default_period: &str) -> Vec<Value> {
    vec![
        project_path(),
        json!({ "name": "from", "in": "query", "required": false,
                "description": "Start: RFC 3339 (a date alone is midnight UTC) or ms since the epoch; \
                    rounded down to its period. Default: `to` - 31 days (day) or - 366 days (month).",
                "schema": time_param() }),
        json!({ "name": "to", "in": "query", "required": false,
                "description": "End (exclusive), as `from`; rounded up to a whole period. Default: now.",
                "schema": time_param() }),
        json!({ "name": "period", "in": "query", "required": false,
                "description": format!("UTC days or calendar months; default {default_period}; at most \
                    {MAX_PERIODS} periods between from and to."),
                "schema": { "type": "string", "enum": ["day", "month"] } }),
    ]
}

/// The description of a project operation; `None` for others.
pub(crate) fn describe(operation: Operation) -> Option<Value> {
    let not_found = problem_response("No such project (`unknown-object`).");
    Some(match operation {
        Operation::ListProjects => json!({
            "tags": ["projects"],
            "summary": "Every energy project, by id",
            "responses": { "200": ok("The projects.", &json!({
                "type": "object", "required": ["projects"],
                "properties": { "projects": { "type": "array", "items": schema("Project") } } })) }
        }),
        Operation::CreateProject => json!({
            "tags": ["projects"],
            "summary": "Create an energy project (operator, admin)",
            "requestBody": body("ProjectRequest"),
            "responses": { "201": ok("The project.", &schema("Project")), "400": bad_request(),
                           "409": problem_response("A project with this name exists (`conflict`).") }
        }),
        Operation::GetProject => json!({
            "tags": ["projects"],
            "summary": "One project, with its milestones brought up to date",
            "parameters": [project_path()],
            "responses": { "200": ok("The project.", &schema("Project")), "400": bad_request(),
                           "404": not_found }
        }),
        Operation::UpdateProject => json!({
            "tags": ["projects"],
            "summary": "Replace a project (operator, admin)",
            "parameters": [project_path()],
            "requestBody": body("ProjectRequest"),
            "responses": { "200": ok("The project.", &schema("Project")), "400": bad_request(),
                           "404": not_found,
                           "409": problem_response("Another project has this name, or the currency would change \
                               while finance entries exist (`conflict`).") }
        }),
        Operation::ProjectEnergy => json!({
            "tags": ["projects"],
            "summary": "Energy generated and consumed per UTC day or month, from the 1-hour rollups",
            "parameters": window("day"),
            "responses": { "200": ok("Energy per period.", &schema("ProjectEnergy")),
                           "400": bad_request(), "404": not_found }
        }),
        Operation::ProjectFinances => json!({
            "tags": ["projects"],
            "summary": "Finance entries, DR revenue of the events that ended in the window, and totals per period",
            "parameters": window("month"),
            "responses": { "200": ok("Finances.", &schema("ProjectFinances")),
                           "400": bad_request(), "404": not_found }
        }),
        Operation::AddFinanceEntry => json!({
            "tags": ["projects"],
            "summary": "Add an expense or revenue entry (operator, admin)",
            "parameters": [project_path()],
            "requestBody": body("FinanceEntryRequest"),
            "responses": { "201": ok("The entry.", &schema("FinanceEntry")), "400": bad_request(),
                           "404": not_found }
        }),
        Operation::DeleteFinanceEntry => json!({
            "tags": ["projects"],
            "summary": "Delete a finance entry (operator, admin)",
            "parameters": [project_path(), { "name": "entry_id", "in": "path", "required": true,
                "description": "The entry's id.", "schema": { "type": "integer", "minimum": 1 } }],
            "responses": { "204": { "description": "Deleted." }, "400": bad_request(),
                           "404": problem_response("No such project or entry (`unknown-object`).") }
        }),
        _ => return None,
    })
}

fn money(description: &str) -> Value {
    json!({ "type": "number", "description": format!("{description} Decimal with at most 2 decimals, \
        summed exactly in minor units.") })
}

fn money_totals(with_start: bool) -> Value {
    let mut required = vec!["expenses", "revenue", "dr_revenue", "net"];
    if with_start {
        required.insert(0, "start_ms");
    }
    let mut value = json!({
        "type": "object", "required": required,
        "properties": {
            "expenses": money("Sum of expense entries."),
            "revenue": money("Sum of revenue entries."),
            "dr_revenue": money("Sum of DR revenue in the project's currency."),
            "net": money("revenue + dr_revenue - expenses.")
        }
    });
    if with_start {
        value["properties"]["start_ms"] =
            json!({ "type": "integer", "description": "Period start, ms (UTC)." });
    }
    value
}

/// The schemas of the project routes.
#[expect(clippy::too_many_lines, reason = "one JSON literal per schema")]
pub(crate) fn schemas() -> Value {
    let location = json!({
        "type": "object", "required": ["latitude", "longitude"],
        "properties": {
            "latitude": { "type": "number", "minimum": -90, "maximum": 90 },
            "longitude": { "type": "number", "minimum": -180, "maximum": 180 },
            "address": { "type": ["string", "null"], "minLength": 1, "maxLength": MAX_TEXT_LEN, "pattern": TEXT_PATTERN }
        }
    });
    let milestone_request = json!({
        "type": "object", "required": ["name", "quantity", "threshold_kwh"],
        "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": TEXT_PATTERN,
                      "description": "Unique within the project." },
            "quantity": { "type": "string", "enum": ["generated", "consumed"] },
            "threshold_kwh": { "type": "number", "exclusiveMinimum": 0 },
            "reached_ms": { "description": "Ignored in requests." }
        }
    });
    let energy_totals = json!({
        "type": "object", "required": ["generated_kwh", "consumed_kwh"],
        "properties": { "generated_kwh": { "type": "number" }, "consumed_kwh": { "type": "number" } }
    });
    json!({
        "ProjectRequest": {
            "type": "object",
            "required": ["name", "kind", "status", "capacity_kw", "location"],
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": TEXT_PATTERN, "description": "Unique." },
                "kind": { "type": "string", "enum": ["renewable", "flexibility"] },
                "status": { "type": "string", "enum": ["planned", "construction", "operational", "decommissioned"] },
                "capacity_kw": { "type": "number", "minimum": 0 },
                "location": location,
                "currency": { "type": "string", "pattern": "^[A-Z]{3}$", "default": DEFAULT_CURRENCY,
                              "description": "ISO 4217 code the project's finances are kept in." },
                "ven_ids": { "type": "array", "maxItems": MAX_PROJECT_VENS, "uniqueItems": true,
                             "items": schema("VenId"), "description": "Known VENs (registered or reporting)." },
                "milestones": { "type": "array", "maxItems": MAX_MILESTONES, "items": milestone_request },
                "id": { "description": "Ignored in requests." },
                "created_ms": { "description": "Ignored in requests." },
                "updated_ms": { "description": "Ignored in requests." }
            },
            "additionalProperties": false
        },
        "Project": {
            "type": "object",
            "required": ["id", "name", "kind", "status", "capacity_kw", "location", "currency",
                         "ven_ids", "milestones", "created_ms", "updated_ms"],
            "properties": {
                "id": { "type": "integer" },
                "name": { "type": "string" },
                "kind": { "type": "string", "enum": ["renewable", "flexibility"] },
                "status": { "type": "string", "enum": ["planned", "construction", "operational", "decommissioned"] },
                "capacity_kw": { "type": "number" },
                "location": location,
                "currency": { "type": "string" },
                "ven_ids": { "type": "array", "items": schema("VenId") },
                "milestones": { "type": "array", "items": {
                    "type": "object", "required": ["name", "quantity", "threshold_kwh", "reached_ms"],
                    "properties": {
                        "name": { "type": "string" },
                        "quantity": { "type": "string", "enum": ["generated", "consumed"] },
                        "threshold_kwh": { "type": "number" },
                        "reached_ms": { "type": ["integer", "null"],
                            "description": "When the all-time total first reached the threshold (the newest \
                                reading of that hour), ms; null if not yet." }
                    } } },
                "created_ms": { "type": "integer" },
                "updated_ms": { "type": "integer" }
            }
        },
        "ProjectEnergy": {
            "type": "object", "required": ["period", "from_ms", "to_ms", "rows", "total", "vens"],
            "properties": {
                "period": { "type": "string", "enum": ["day", "month"] },
                "from_ms": { "type": "integer" },
                "to_ms": { "type": "integer" },
                "rows": { "type": "array", "items": {
                    "type": "object", "required": ["start_ms", "generated_kwh", "consumed_kwh"],
                    "properties": { "start_ms": { "type": "integer" }, "generated_kwh": { "type": "number" },
                                    "consumed_kwh": { "type": "number" } } } },
                "total": energy_totals,
                "vens": { "type": "array", "items": {
                    "type": "object", "required": ["ven_id", "meter", "consumed_from", "generated_from", "unmeasured_reason"],
                    "properties": {
                        "ven_id": schema("VenId"),
                        "meter": { "type": ["string", "null"] },
                        "consumed_from": { "type": ["string", "null"], "enum": ["energy_import", "active_power", null] },
                        "generated_from": { "type": ["string", "null"], "enum": ["energy_export", "active_power", null] },
                        "unmeasured_reason": { "type": ["string", "null"] }
                    } } }
            }
        },
        "FinanceEntryRequest": {
            "type": "object", "required": ["kind", "amount", "at"], "additionalProperties": false,
            "properties": {
                "kind": { "type": "string", "enum": ["expense", "revenue"] },
                "amount": { "type": ["number", "string"], "description": "At least 0, at most 2 decimals (1234.56 or \"1234.56\")." },
                "currency": { "type": "string", "pattern": "^[A-Z]{3}$", "description": "The project's currency (the default)." },
                "at": { "type": ["string", "integer"], "description": "RFC 3339 date or time, or ms since the epoch.",
                        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$" },
                "category": text(1, MAX_TEXT_LEN),
                "description": text(1, MAX_TEXT_LEN)
            }
        },
        "FinanceEntry": {
            "type": "object",
            "required": ["id", "kind", "amount", "amount_minor", "currency", "at_ms", "category", "description", "created_ms"],
            "properties": {
                "id": { "type": "integer" },
                "kind": { "type": "string", "enum": ["expense", "revenue"] },
                "amount": money("The amount."),
                "amount_minor": { "type": "integer", "description": "The amount in minor units (cents), exact." },
                "currency": { "type": "string" },
                "at_ms": { "type": "integer" },
                "category": { "type": ["string", "null"] },
                "description": { "type": ["string", "null"] },
                "created_ms": { "type": "integer" }
            }
        },
        "ProjectFinances": {
            "type": "object",
            "required": ["period", "from_ms", "to_ms", "currency", "entries", "dr_revenue", "totals", "total"],
            "properties": {
                "period": { "type": "string", "enum": ["day", "month"] },
                "from_ms": { "type": "integer" },
                "to_ms": { "type": "integer" },
                "currency": { "type": "string" },
                "entries": { "type": "array", "items": schema("FinanceEntry") },
                "dr_revenue": { "type": "array", "items": {
                    "type": "object",
                    "required": ["event_id", "program_id", "start_ms", "end_ms", "vens", "vens_measured",
                                 "shed_w", "shed_kwh", "price", "price_source", "amount", "currency", "reason"],
                    "properties": {
                        "event_id": schema("ObjectId"),
                        "program_id": schema("ObjectId"),
                        "start_ms": { "type": ["integer", "null"] },
                        "end_ms": { "type": "integer" },
                        "vens": { "type": "array", "items": schema("VenId") },
                        "vens_measured": { "type": "integer" },
                        "shed_w": { "type": ["number", "null"], "description": "Baseline mean minus mean during, summed over the VENs measured." },
                        "shed_kwh": { "type": ["number", "null"], "description": "shed_w x the event's duration." },
                        "price": { "type": ["number", "null"], "description": "Per kWh." },
                        "price_source": { "type": ["string", "null"], "enum": ["event", "program", null] },
                        "amount": { "type": ["number", "null"], "description": "shed_kwh x price, rounded to cents." },
                        "currency": { "type": ["string", "null"] },
                        "reason": { "type": ["string", "null"], "description": "Why amount is null or not in the totals." }
                    } } },
                "totals": { "type": "array", "items": money_totals(true) },
                "total": money_totals(false)
            }
        }
    })
}
