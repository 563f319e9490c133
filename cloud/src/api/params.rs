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
use gridlink_protocol::{IsoDuration, Phase, Quantity, Timestamp, VenId};

use super::error::{ApiError, InvalidParam, quoted};

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
    pub(crate) fn optional<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.values.remove(name)?;
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(reason) => {
                self.reject(name, reason);
                None
            }
        }
    }

    /// Like [`optional`](Self::optional), and an error if absent.
    pub(crate) fn required<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
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
pub(crate) fn ven_id(value: &str) -> Result<VenId, String> {
    VenId::new(value).map_err(|e| e.to_string())
}

/// A quantity by its API name (`active_power`).
pub(crate) fn quantity(value: &str) -> Result<Quantity, String> {
    Quantity::ALL
        .into_iter()
        .find(|q| q.name() == value)
        .ok_or_else(|| {
            let names: Vec<&str> = Quantity::ALL.iter().map(|q| q.name()).collect();
            format!(
                "unknown quantity {}; expected one of {}",
                quoted(value),
                names.join(", ")
            )
        })
}

/// A phase by its API name.
pub(crate) fn phase(value: &str) -> Result<Phase, String> {
    Phase::ALL
        .into_iter()
        .find(|&p| p.name() == value)
        .ok_or_else(|| {
            let names: Vec<&str> = Phase::ALL.into_iter().map(Phase::name).collect();
            format!(
                "unknown phase {}; expected one of {}",
                quoted(value),
                names.join(", ")
            )
        })
}

/// A time: RFC 3339 or integer ms since the epoch.
pub(crate) fn time(value: &str) -> Result<i64, String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let parsed = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = value
            .parse()
            .map_err(|_| format!("{} is not a time in ms since the Unix epoch", quoted(value)))?;
        Timestamp::from_unix_ms(ms)
    } else {
        Timestamp::from_str(value)
    };
    parsed.map(Timestamp::unix_ms).map_err(|e| e.to_string())
}

/// A step: an ISO 8601 duration or integer seconds; positive and finite.
pub(crate) fn step(value: &str) -> Result<i64, String> {
    let duration = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = value
            .parse()
            .map_err(|_| format!("{} is too long a step", quoted(value)))?;
        IsoDuration::from_secs(secs)
    } else {
        IsoDuration::from_str(value).map_err(|e| e.to_string())?
    };
    match duration.millis() {
        Some(0) => Err("must be longer than zero".into()),
        Some(ms) if ms <= MAX_STEP_MS => Ok(ms as i64),
        _ => Err(format!(
            "must be at most {}",
            IsoDuration::from_millis(MAX_STEP_MS)
        )),
    }
}

/// Longest step: 366 days.
const MAX_STEP_MS: u64 = 366 * 86_400_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_ms() {
        assert_eq!(time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert_eq!(time("2026-01-01T01:00:00+01:00"), Ok(1_767_225_600_000));
        assert_eq!(time("2026-01-01"), Ok(1_767_225_600_000));
        assert_eq!(time("1767225600000"), Ok(1_767_225_600_000));
        assert!(time("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(time("").is_err());
        assert!(time("99999999999999999999").is_err());
    }

    #[test]
    fn steps_parse_as_iso8601_or_seconds() {
        assert_eq!(step("PT1M"), Ok(60_000));
        assert_eq!(step("PT0.5S"), Ok(500));
        assert_eq!(step("P1D"), Ok(86_400_000));
        assert_eq!(step("60"), Ok(60_000));
        assert!(step("0").unwrap_err().contains("longer than zero"));
        assert!(step("PT0S").is_err());
        assert!(step("P9999Y").is_err());
        assert!(step("P400D").unwrap_err().contains("at most"));
        assert!(step("1m").is_err());
        assert!(step("-60").is_err());
    }

    #[test]
    fn quantities_and_phases_by_name() {
        assert_eq!(quantity("active_power"), Ok(Quantity::ActivePower));
        assert!(quantity("power").unwrap_err().contains("active_power"));
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
