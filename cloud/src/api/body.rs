//! JSON request bodies: the one extractor every handler that reads JSON
//! uses, [`JsonBody`], so a body is refused the same way on every route
//! and always with a problem document that names what is wrong:
//!
//! | what | status | `type` | `invalid_params[0].name` |
//! |---|---|---|---|
//! | no `Content-Type: application/json` (or `application/*+json`) | 415 | `invalid-body` | `Content-Type` |
//! | larger than the route's body limit | 413 | `invalid-body` | `body` |
//! | not JSON (syntax, truncated, trailing data) | 400 | `invalid-body` | `body` |
//! | JSON but not an object | 400 | `invalid-parameter` | `body` |
//! | an object that does not fit the type | 400 | `invalid-parameter` | the field's path (`groups`, `loads[0].name`) |
//!
//! A field that does not fit is named by serde's path to it
//! (`serde_path_to_error`): a missing or unknown field by its own name
//! appended to the path of the object it is missing from.
//!
//! ```ignore
//! async fn put(JsonBody(request): JsonBody<GroupsRequest>) -> Result<..., ApiError> { ... }
//! ```

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;

/// A request body parsed from JSON into `T`; its rejection is an
/// [`ApiError`] naming the field (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(not_json_content_type());
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::InvalidBody {
                status: rejection.status(),
                detail: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "the body is larger than this route accepts".into()
                } else {
                    "the body could not be read".into()
                },
            })?;
        parse(&bytes).map(Self)
    }
}

/// Whether the `Content-Type` is JSON: `application/json` or
/// `application/*+json`, any parameters (`; charset=utf-8`) allowed.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// The 415 answer to a body that is not declared as JSON.
pub(crate) fn not_json_content_type() -> ApiError {
    ApiError::InvalidBody {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        detail: "the body must be JSON: send `Content-Type: application/json`".into(),
    }
}

/// Parses `bytes` as a JSON object into `T`, naming the failing field.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from an array too (by position): refuse that,
    // and every other non-object, before serde sees it.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => return Err(not_json("the body is empty; send a JSON object")),
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err(ApiError::invalid_param("body", "must be a JSON object"));
        }
        Some(_) => return Err(not_json("the body is not a JSON object")),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut deserializer);
    match parsed {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|e| not_json(&format!("the body is not valid JSON: {e}")))?;
            Ok(value)
        }
        // JSON Schema counts `5.0` as an integer; serde does not. Only
        // then is the body read again, as a value with such numbers
        // written as integers (the common case pays nothing).
        Err(error) if error.inner().is_data() && is_float_for_integer(error.inner()) => {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| not_json(&format!("the body is not valid JSON: {e}")))?;
            from_value(value)
        }
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            Err(if inner.is_data() {
                data_error(&path, &inner)
            } else {
                not_json(&format!("the body is not valid JSON: {inner}"))
            })
        }
    }
}

/// Whether serde refused a floating-point number where it wanted an
/// integer (`invalid type: floating point `5.0`, expected u32`).
fn is_float_for_integer(error: &serde_json::Error) -> bool {
    error
        .to_string()
        .starts_with("invalid type: floating point")
}

/// `value` with every number that is a whole float (`5.0`, `-2e3`) in
/// the range of `i64`/`u64` written as that integer, at every depth: JSON
/// Schema's `integer` includes them, so the server reads them as such.
pub(crate) fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64().filter(|f| f.fract() == 0.0) {
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss,
                    reason = "only whole floats inside the integer's range are converted"
                )]
                let integer = if (i64::MIN as f64..i64::MAX as f64).contains(&float) {
                    Some(Value::from(float as i64))
                } else if (0.0..u64::MAX as f64).contains(&float) {
                    Some(Value::from(float as u64))
                } else {
                    None
                };
                if let Some(integer) = integer {
                    *value = integer;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Deserializes a JSON value already read (an object whose server-set
/// fields were removed, say) into `T`, naming the failing field.
pub(crate) fn from_value<T: DeserializeOwned>(mut value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid_param("body", "must be a JSON object"));
    }
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize::<_, T>(value).map_err(|error| {
        let path = error.path().to_string();
        data_error(&path, error.inner())
    })
}

fn not_json(detail: &str) -> ApiError {
    ApiError::InvalidBody {
        status: StatusCode::BAD_REQUEST,
        detail: detail.to_owned(),
    }
}

/// A body that is JSON but does not fit: 400 naming the field. serde's
/// own `at line L column C` suffix is dropped (the name says where).
fn data_error(path: &str, inner: &serde_json::Error) -> ApiError {
    let mut reason = inner.to_string();
    if inner.line() > 0
        && let Some(at) = reason.rfind(" at line ")
    {
        reason.truncate(at);
    }
    ApiError::invalid_param(field_name(path, &reason), reason)
}

/// The parameter name a serde error at `path` is about: the path, with
/// the field a "missing field" or "unknown field" error names appended.
pub(crate) fn field_name(path: &str, inner: &str) -> String {
    let field = inner
        .strip_prefix("missing field `")
        .or_else(|| inner.strip_prefix("unknown field `"))
        .and_then(|rest| rest.split('`').next());
    match (path, field) {
        // An unknown field is already the path's last segment.
        (path, Some(field)) if path == field || path.ends_with(&format!(".{field}")) => {
            path.to_owned()
        }
        (".", Some(field)) => field.to_owned(),
        (".", None) => "body".to_owned(),
        (path, Some(field)) => format!("{path}.{field}"),
        (path, None) => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::api::InvalidParam;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed")]
    struct Groups {
        groups: Vec<String>,
        loads: Option<Vec<Load>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed")]
    struct Load {
        name: String,
    }

    fn named(body: &str) -> (StatusCode, Vec<InvalidParam>) {
        match parse::<Groups>(body.as_bytes()).unwrap_err() {
            ApiError::InvalidParams(params) => (StatusCode::BAD_REQUEST, params),
            ApiError::InvalidBody { status, detail } => {
                (status, vec![InvalidParam::new("body", detail)])
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn every_refusal_names_the_field() {
        for (body, name, needle) in [
            ("{}", "groups", "missing field `groups`"),
            (r#"{"groups": 3}"#, "groups", "invalid type: integer `3`"),
            (r#"{"groups": [], "x": 1}"#, "x", "unknown field `x`"),
            (
                r#"{"groups": [], "loads": [{"name": "a"}, {}]}"#,
                "loads[1].name",
                "missing field `name`",
            ),
            (
                r#"{"groups": [], "loads": [{"name": 1}]}"#,
                "loads[0].name",
                "invalid type",
            ),
            ("[1]", "body", "must be a JSON object"),
            ("null", "body", "must be a JSON object"),
        ] {
            let (status, params) = named(body);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(params[0].name, name, "{body}");
            assert!(params[0].reason.contains(needle), "{body}: {params:?}");
            assert!(
                !params[0].reason.contains(" at line "),
                "{body}: {params:?}"
            );
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Counts {
        n: u32,
        m: Option<i64>,
        x: f64,
    }

    #[test]
    fn whole_floats_are_integers_as_in_json_schema() {
        let counts: Counts = parse(br#"{"n": 5.0, "m": -2e3, "x": 1.0}"#).unwrap();
        assert_eq!(
            counts,
            Counts {
                n: 5,
                m: Some(-2000),
                x: 1.0
            }
        );
        let error = parse::<Counts>(br#"{"n": 5.5, "x": 1}"#).unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidParams(ref p) if p[0].name == "n"),
            "{error}"
        );
        let counts: Counts = from_value(serde_json::json!({"n": 7.0, "x": 2})).unwrap();
        assert_eq!(counts.n, 7);
    }

    #[test]
    fn syntax_errors_are_invalid_body() {
        for body in ["", "{", r#"{"groups": []} x"#, "nope"] {
            let error = parse::<Groups>(body.as_bytes()).unwrap_err();
            assert!(
                matches!(error, ApiError::InvalidBody { status, .. } if status == StatusCode::BAD_REQUEST),
                "{body}: {error}"
            );
        }
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), json, "{value}");
        }
    }
}
