//! Query parameters: unknown and repeated names are refused, every value
//! is parsed with the parameter's name in its error, and all errors of a
//! request are reported together.
//!
//! Times (`from`, `to`) are RFC 3339 date-times (`2026-11-21T12:00:00Z`,
//! a date alone is midnight UTC) or integer milliseconds since the Unix
//! epoch. Steps are ISO 8601 durations (`PT1M`, `PT15M`, `P1D`) or integer
//! seconds (`60`).

use std::collections::BTreeMap;
use std::str::FromStr as _;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use gridlink_protocol::time::TimeError;
use gridlink_protocol::{IsoDuration, Phase, Quantity, Timestamp, VenId, VenIdError};

use super::error::{ApiError, InvalidParam, quoted};

/// Why a parameter's value is refused: the `reason` of its
/// [`InvalidParam`], rendered with `to_string()` (the parameter's name is
/// beside it, never in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParamError {
    /// Not a VEN id.
    #[error(transparent)]
    VenId(#[from] VenIdError),
    /// Not a time, or outside the years 1 to 9999.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// Digits that do not fit a time in ms.
    #[error("{} is not a time in ms since the Unix epoch", quoted(.0))]
    NotEpochMs(String),
    /// No quantity has this API name.
    #[error("unknown quantity {}; expected one of {}", quoted(.0), Quantity::ALL.iter().map(|q| q.name()).collect::<Vec<_>>().join(", "))]
    UnknownQuantity(String),
    /// No phase has this API name.
    #[error("unknown phase {}; expected one of {}", quoted(.0), Phase::ALL.into_iter().map(Phase::name).collect::<Vec<_>>().join(", "))]
    UnknownPhase(String),
    /// A JSON number that is not an integer (a time in ms).
    #[error("must be integer ms since the Unix epoch")]
    NotIntegerMs,
    /// A JSON value that is neither a string nor a number (a time).
    #[error("must be an RFC 3339 date or time, or integer ms since the Unix epoch")]
    NotTimeValue,
    /// Integer seconds too large for a step.
    #[error("{} is too long a step", quoted(.0))]
    StepTooLong(String),
    /// A step of zero.
    #[error("must be longer than zero")]
    ZeroStep,
    /// A step over [`MAX_STEP_MS`].
    #[error("must be at most {}", IsoDuration::from_millis(MAX_STEP_MS))]
    StepOverMax,
    /// An alert state other than `open`, `resolved` or `all`.
    #[error("expected open, resolved or all")]
    UnknownAlertState,
    /// No alert rule has this name.
    #[error("unknown rule; expected one of {}", crate::store::alerts::Rule::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownRule,
    /// An alert list's limit out of 1 to the given maximum.
    #[error("expected an integer from 1 to {0}")]
    AlertLimit(u32),
    /// An audit filter's text: empty, too long or with control characters.
    #[error("must be 1 to 256 characters without control characters")]
    AuditText,
    /// Digits too large for a token id.
    #[error("a token id out of range")]
    TokenIdOutOfRange,
    /// An audit `skip` that is not an integer from 0 (fitting 32 bits).
    #[error("an integer from 0")]
    Skip,
    /// An audit list's limit out of 1 to the given maximum.
    #[error("an integer from 1 to {0}")]
    AuditLimit(u32),
    /// Not a meter name (series query).
    #[error("{} is not a meter name (1 to {max} of A-Z a-z 0-9 _ . : -)", quoted(.value))]
    NotMeterName {
        /// The value as given.
        value: String,
        /// The longest meter name.
        max: usize,
    },
    /// Not a meter name (a reading's `meter`).
    #[error("must be a meter name: 1 to {0} characters, each A-Z a-z 0-9 or one of _.:-")]
    MeterName(usize),
}

/// The query string of one request, by name.
pub(crate) struct QueryParams {
    values: BTreeMap<String, String>,
    errors: Vec<InvalidParam>,
}

impl QueryParams {
    /// Splits the query; names not in `allowed`, or given twice, are errors.
    pub(crate) fn new(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(pairs) =
            query.map_err(|rejection| ApiError::invalid_param("query", rejection.body_text()))?;
        let mut params = Self {
            values: BTreeMap::new(),
            errors: Vec::new(),
        };
        for (name, value) in pairs {
            if !allowed.contains(&name.as_str()) {
                let reason = format!("unknown parameter; expected one of {}", allowed.join(", "));
                params.reject(&name, reason);
            } else if let std::collections::btree_map::Entry::Vacant(entry) =
                params.values.entry(name.clone())
            {
                entry.insert(value);
            } else {
                params.reject(&name, "given more than once");
            }
        }
        Ok(params)
    }

    /// Records an error for `name`.
    pub(crate) fn reject(&mut self, name: &str, reason: impl Into<String>) {
        self.errors.push(InvalidParam::new(name, reason));
    }

    /// The value of `name`, parsed by `parse` (whose error is the reason);
    /// `None` if absent or invalid (recorded).
    pub(crate) fn optional<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let value = self.values.remove(name)?;
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(reason) => {
                self.reject(name, reason.to_string());
                None
            }
        }
    }

    /// Like [`optional`](Self::optional), and an error if absent.
    pub(crate) fn required<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        if self.values.contains_key(name) {
            self.optional(name, parse)
        } else {
            self.reject(name, "required");
            None
        }
    }

    /// Whether an error was recorded so far.
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `Err` with every recorded error, else the parsed `value` (which is
    /// `Some` whenever nothing was rejected).
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        if !self.errors.is_empty() {
            return Err(ApiError::InvalidParams(self.errors));
        }
        value.ok_or_else(|| {
            ApiError::Internal("a query parameter was neither parsed nor rejected".into())
        })
    }
}

/// A VEN id.
pub(crate) fn ven_id(value: &str) -> Result<VenId, ParamError> {
    Ok(VenId::new(value)?)
}

/// A quantity by its API name (`active_power`).
pub(crate) fn quantity(value: &str) -> Result<Quantity, ParamError> {
    Quantity::ALL
        .into_iter()
        .find(|q| q.name() == value)
        .ok_or_else(|| ParamError::UnknownQuantity(value.to_owned()))
}

/// A phase by its API name.
pub(crate) fn phase(value: &str) -> Result<Phase, ParamError> {
    Phase::ALL
        .into_iter()
        .find(|&p| p.name() == value)
        .ok_or_else(|| ParamError::UnknownPhase(value.to_owned()))
}

/// A time: RFC 3339 or integer ms since the epoch.
pub(crate) fn time(value: &str) -> Result<i64, ParamError> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let parsed = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = value
            .parse()
            .map_err(|_| ParamError::NotEpochMs(value.to_owned()))?;
        Timestamp::from_unix_ms(ms)
    } else {
        Timestamp::from_str(value)
    };
    Ok(parsed.map(Timestamp::unix_ms)?)
}

/// A step: an ISO 8601 duration or integer seconds; positive and finite.
pub(crate) fn step(value: &str) -> Result<i64, ParamError> {
    let duration = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = value
            .parse()
            .map_err(|_| ParamError::StepTooLong(value.to_owned()))?;
        IsoDuration::from_secs(secs)
    } else {
        IsoDuration::from_str(value)?
    };
    match duration.millis() {
        Some(0) => Err(ParamError::ZeroStep),
        Some(ms) if ms <= MAX_STEP_MS => Ok(ms as i64),
        _ => Err(ParamError::StepOverMax),
    }
}

/// Longest step: 366 days.
const MAX_STEP_MS: u64 = 366 * 86_400_000;

/// A positive integer id from the path (`{id}`); `reason` is the answer's
/// text for anything else (it names what the id is of).
pub(crate) fn path_positive_id(
    path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    reason: &str,
) -> Result<i64, ApiError> {
    let axum::extract::Path(id) =
        path.map_err(|rejection| ApiError::invalid_param("id", rejection.body_text()))?;
    id.parse::<i64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| ApiError::invalid_param("id", reason))
}

/// The 404 of an unknown numeric id of `what` (`alert`, `API key`, ...).
pub(crate) fn unknown_id(what: &'static str, id: i64) -> ApiError {
    match gridlink_protocol::ObjectId::new(id.to_string()) {
        Ok(object) => ApiError::UnknownObject(what, object),
        Err(e) => ApiError::Internal(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_render_the_clients_text() {
        let cases = [
            (
                ParamError::NotEpochMs("9".repeat(20)),
                "\"99999999999999999999\" is not a time in ms since the Unix epoch",
            ),
            (
                ParamError::StepTooLong("9".repeat(21)),
                "\"999999999999999999999\" is too long a step",
            ),
            (ParamError::ZeroStep, "must be longer than zero"),
            (ParamError::StepOverMax, "must be at most P366D"),
            (
                ParamError::UnknownAlertState,
                "expected open, resolved or all",
            ),
            (
                ParamError::AlertLimit(1000),
                "expected an integer from 1 to 1000",
            ),
            (
                ParamError::AuditText,
                "must be 1 to 256 characters without control characters",
            ),
            (ParamError::TokenIdOutOfRange, "a token id out of range"),
            (ParamError::Skip, "an integer from 0"),
            (ParamError::AuditLimit(500), "an integer from 1 to 500"),
            (
                ParamError::NotMeterName {
                    value: "a b".into(),
                    max: 64,
                },
                "\"a b\" is not a meter name (1 to 64 of A-Z a-z 0-9 _ . : -)",
            ),
            (
                ParamError::MeterName(64),
                "must be a meter name: 1 to 64 characters, each A-Z a-z 0-9 or one of _.:-",
            ),
            (
                ParamError::NotIntegerMs,
                "must be integer ms since the Unix epoch",
            ),
            (
                ParamError::NotTimeValue,
                "must be an RFC 3339 date or time, or integer ms since the Unix epoch",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
        assert_eq!(
            ven_id("a b").unwrap_err().to_string(),
            VenId::new("a b").unwrap_err().to_string()
        );
        assert!(
            ParamError::UnknownRule
                .to_string()
                .starts_with("unknown rule; expected one of ven_offline, ")
        );
    }

    #[test]
    fn times_parse_as_rfc3339_or_ms() {
        assert_eq!(time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert_eq!(time("2026-01-01T01:00:00+01:00"), Ok(1_767_225_600_000));
        assert_eq!(time("2026-01-01"), Ok(1_767_225_600_000));
        assert_eq!(time("1767225600000"), Ok(1_767_225_600_000));
        assert!(
            time("yesterday")
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
        assert!(time("").is_err());
        assert!(time("99999999999999999999").is_err());
    }

    #[test]
    fn steps_parse_as_iso8601_or_seconds() {
        assert_eq!(step("PT1M"), Ok(60_000));
        assert_eq!(step("PT0.5S"), Ok(500));
        assert_eq!(step("P1D"), Ok(86_400_000));
        assert_eq!(step("60"), Ok(60_000));
        assert!(
            step("0")
                .unwrap_err()
                .to_string()
                .contains("longer than zero")
        );
        assert!(step("PT0S").is_err());
        assert!(step("P9999Y").is_err());
        assert!(step("P400D").unwrap_err().to_string().contains("at most"));
        assert!(step("1m").is_err());
        assert!(step("-60").is_err());
    }

    #[test]
    fn quantities_and_phases_by_name() {
        assert_eq!(quantity("active_power"), Ok(Quantity::ActivePower));
        assert!(
            quantity("power")
                .unwrap_err()
                .to_string()
                .contains("active_power")
        );
        for p in Phase::ALL {
            assert_eq!(phase(p.name()), Ok(p));
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                p.name(),
                "the API name is the JSON name"
            );
        }
        assert!(phase("l1").is_err());
    }

    #[test]
    fn unknown_repeated_and_missing_parameters_are_all_reported() {
        let pairs = vec![
            ("ven".to_string(), "a".to_string()),
            ("ven".to_string(), "b".to_string()),
            ("colour".to_string(), "red".to_string()),
        ];
        let mut params = QueryParams::new(Ok(Query(pairs)), &["ven", "meter"]).unwrap();
        assert_eq!(
            params.required("meter", |v| Ok::<_, String>(v.to_string())),
            None
        );
        assert!(params.has_errors());
        let Err(ApiError::InvalidParams(errors)) = params.finish(Some(())) else {
            panic!("expected invalid params");
        };
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["ven", "colour", "meter"]);
        assert_eq!(errors[0].reason, "given more than once");
    }
}
