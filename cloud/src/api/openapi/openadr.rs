//! The OpenADR 3.1 VTN's part of `/openapi.json`, loaded from the vendored
//! specification (`cloud/openadr3/openadr3.yaml`, `OpenAPI` 3.0) rather
//! than written again: each VTN route's operation object (with its
//! path-level parameters), and the spec's schemas and responses under the
//! prefix `oadr3.` (their references rewritten to match).
//!
//! Two errata of the 3.1.0 file are mended where its schemas would
//! contradict every conforming answer:
//!
//! - `ven` and `resource` are `allOf` the object metadata (whose
//!   `objectType` is `VEN`/`RESOURCE`) and the BL request (whose
//!   `objectType` must be `BL_VEN_REQUEST`/`BL_RESOURCE_REQUEST`): no
//!   object can be both, so the request's discriminator is dropped from
//!   the answer's schema;
//! - `OpenAPI` 3.0's `nullable: true` becomes a type that admits `null`
//!   (this document is `OpenAPI` 3.1).

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::Operation;
use crate::api::OPENADR_BASE_PATH as BASE_PATH;

/// The specification as shipped.
const SPEC_YAML: &str = include_str!("../../../openadr3/openadr3.yaml");
/// The prefix of the spec's component names in this document.
pub(crate) const PREFIX: &str = "oadr3.";

static SPEC: LazyLock<Value> = LazyLock::new(|| {
    let spec: Value =
        serde_norway::from_str(SPEC_YAML).expect("the vendored OpenADR specification parses");
    rewrite(spec)
});

/// `value` with references prefixed and `nullable` turned into 3.1 types.
fn rewrite(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let nullable = map.get("nullable") == Some(&Value::Bool(true));
            let mut out = Map::new();
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => {
                        let target = target
                            .replacen(
                                "#/components/schemas/",
                                &format!("#/components/schemas/{PREFIX}"),
                                1,
                            )
                            .replacen(
                                "#/components/responses/",
                                &format!("#/components/responses/{PREFIX}"),
                                1,
                            );
                        out.insert(key, Value::String(target));
                    }
                    ("nullable", _) => {}
                    (_, v) => {
                        out.insert(key, rewrite(v));
                    }
                }
            }
            if nullable {
                if let Some(Value::String(kind)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([kind, "null"]));
                } else {
                    // A `$ref` or composition that may also be null.
                    let inner = Value::Object(std::mem::take(&mut out));
                    out.insert("anyOf".into(), json!([inner, { "type": "null" }]));
                }
                if let Some(values) = out.get_mut("enum").and_then(Value::as_array_mut) {
                    values.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(rewrite).collect()),
        other => other,
    }
}

/// The spec's description of a VTN route; `None` for other routes.
pub(crate) fn describe(operation: Operation) -> Option<Value> {
    if !operation.is_openadr() {
        return None;
    }
    let path = operation.path().strip_prefix(BASE_PATH)?;
    let item = SPEC["paths"].get(path)?;
    let method = operation.method().as_str().to_ascii_lowercase();
    let mut doc = item.get(&method)?.as_object()?.clone();
    if let Some(shared) = item.get("parameters").and_then(Value::as_array) {
        let mut params = shared.clone();
        if let Some(own) = doc.get("parameters").and_then(Value::as_array) {
            params.extend(own.iter().cloned());
        }
        doc.insert("parameters".into(), Value::Array(params));
    }
    let scopes = doc
        .get("security")
        .and_then(Value::as_array)
        .and_then(|s| {
            s.iter()
                .find_map(|r| r.get("oAuth2ClientCredentials").cloned())
        })
        .unwrap_or_else(|| json!([]));
    doc.insert("tags".into(), json!(["openadr"]));
    if operation.vtn_client() {
        doc.insert(
            "security".into(),
            json!([{ "bearer": [] }, { "oadr3OAuth": scopes }]),
        );
    } else {
        doc.remove("security");
    }
    // A name taken by another object is a 409 on every write that names
    // one (the spec lists it on most; on `createVen` it is missing).
    if matches!(
        operation.method(),
        axum::http::Method::POST | axum::http::Method::PUT
    ) && operation != Operation::AuthToken
        && let Some(responses) = doc.get_mut("responses").and_then(Value::as_object_mut)
    {
        responses.entry("409").or_insert_with(
            || json!({ "$ref": format!("#/components/responses/{PREFIX}conflict") }),
        );
    }
    // The VTN needs the body the spec describes (it answers 415 without
    // one, as every JSON route does); the token request's is a form.
    if operation != Operation::AuthToken
        && let Some(body) = doc.get_mut("requestBody").and_then(Value::as_object_mut)
    {
        body.insert("required".into(), Value::Bool(true));
    }
    Some(Value::Object(doc))
}

/// The spec's schemas, prefixed, with the errata mended.
pub(crate) fn schemas() -> Value {
    let mut out = Map::new();
    let Some(schemas) = SPEC["components"]["schemas"].as_object() else {
        return Value::Object(out);
    };
    for (name, schema) in schemas {
        out.insert(format!("{PREFIX}{name}"), schema.clone());
    }
    for (answer, request) in [("ven", "BlVenRequest"), ("resource", "BlResourceRequest")] {
        let mut body = schemas[request].clone();
        if let Some(props) = body["properties"].as_object_mut() {
            props.remove("objectType");
        }
        if let Some(required) = body["required"].as_array_mut() {
            required.retain(|r| r != "objectType");
        }
        out.insert(
            format!("{PREFIX}{answer}"),
            json!({
                "type": "object",
                "description": schemas[answer]["description"],
                "allOf": [ { "$ref": format!("#/components/schemas/{PREFIX}objectMetadata") }, body ]
            }),
        );
    }
    Value::Object(out)
}

/// The request schemas the VTN checks bodies against.
const REQUEST_SCHEMAS: [&str; 4] = [
    "programRequest",
    "eventRequest",
    "reportRequest",
    "subscriptionRequest",
];

/// A validator of each of [`REQUEST_SCHEMAS`] (JSON Schema 2020-12 over the
/// spec's schemas as this document has them: `nullable` as a `null` type).
static VALIDATORS: LazyLock<Vec<(&'static str, jsonschema::Validator)>> = LazyLock::new(|| {
    REQUEST_SCHEMAS
        .into_iter()
        .map(|name| {
            let root = json!({
                "$ref": format!("#/components/schemas/{PREFIX}{name}"),
                "components": { "schemas": schemas() }
            });
            let validator =
                jsonschema::draft202012::new(&root).expect("the vendored OpenADR schemas compile");
            (name, validator)
        })
        .collect()
});

/// Longest reason taken from the validator (its messages quote the value).
const MAX_REASON: usize = 200;

/// Where `body` breaks the spec's schema `name` (`programRequest`, ...):
/// each violation as (field, reason), the field as `a.b[0].c` (`body` for
/// the object itself). Empty when it conforms, or for an unknown schema.
pub(crate) fn request_violations(name: &str, body: &Value) -> Vec<(String, String)> {
    let Some((_, validator)) = VALIDATORS.iter().find(|(n, _)| *n == name) else {
        return Vec::new();
    };
    validator
        .iter_errors(body)
        .map(|error| {
            let mut field = String::new();
            for segment in error.instance_path.as_str().split('/').skip(1) {
                let segment = segment.replace("~1", "/").replace("~0", "~");
                if segment.parse::<usize>().is_ok() {
                    field.push('[');
                    field.push_str(&segment);
                    field.push(']');
                } else {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(&segment);
                }
            }
            if let jsonschema::error::ValidationErrorKind::Required { property } = &error.kind {
                // Named by the missing field, as the rest of the API does.
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(property.as_str().unwrap_or("body"));
            }
            if field.is_empty() {
                field.push_str("body");
            }
            let mut reason: String = error.to_string().chars().take(MAX_REASON).collect();
            if reason.len() < error.to_string().len() {
                reason.push_str("...");
            }
            (field, format!("{reason} (openadr3.yaml {name})"))
        })
        .collect()
}

/// The spec's shared responses, prefixed.
pub(crate) fn responses() -> Map<String, Value> {
    SPEC["components"]["responses"]
        .as_object()
        .map(|r| {
            r.iter()
                .map(|(name, v)| (format!("{PREFIX}{name}"), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The OAuth 2.0 security scheme of the VTN's routes.
pub(crate) fn security_scheme() -> Value {
    json!({
        "type": "oauth2",
        "description": "OpenADR 3.1 client credentials: POST the client id and secret to \
            /openadr3/3.1.0/auth/token for a JWT; clients are made by an admin \
            (`gridlink-cloud client create`, POST /api/v1/openadr/clients). API tokens (`bearer`) \
            work too.",
        "flows": { "clientCredentials": {
            "tokenUrl": format!("{BASE_PATH}/auth/token"),
            "scopes": SPEC["components"]["securitySchemes"]["oAuth2ClientCredentials"]["flows"]["clientCredentials"]["scopes"]
        } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_loads_and_every_vtn_route_is_in_it() {
        for op in Operation::ALL.into_iter().filter(|o| o.is_openadr()) {
            let doc = describe(op).unwrap_or_else(|| panic!("{op:?} is not in the spec"));
            assert_eq!(doc["operationId"], op.id(), "{op:?}");
        }
        let spec_ops: usize = SPEC["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "put", "post", "delete"].contains(&k.as_str()))
                    .count()
            })
            .sum();
        let ours = Operation::ALL.iter().filter(|o| o.is_openadr()).count();
        assert_eq!(spec_ops, 45);
        assert_eq!(ours, spec_ops);
        let schemas = schemas();
        assert!(schemas["oadr3.event"].is_object());
        assert!(!schemas.to_string().contains("\"nullable\""));
    }
}
