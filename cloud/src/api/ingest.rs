//! `POST /api/v1/ingest`: readings of customers without a gateway, sent
//! as JSON with an API key (`x-api-key`, see [`super::api_keys`]), stored
//! exactly as MQTT telemetry is: the same [`IngestBatch`] of
//! [`Series`], the same [`Store::ingest`] transaction (readings already
//! stored for their series and time are skipped: the first one wins), and
//! published on the feed after the commit, so the alert rules see HTTP
//! data too.
//!
//! ```json
//! {"ven_id": "cust-1-main",
//!  "readings": [{"meter": "main", "quantity": "active_power", "phase": "total",
//!                "ts": "2026-11-22T10:00:00Z", "value": 1234.5}]}
//! ```
//!
//! The checks, in order, each with its problem document:
//!
//! 1. the key: missing, malformed, unknown or revoked is 401, the same
//!    answer for each;
//! 2. the key's rate (a token bucket per key, [`crate::ratelimit`]): 429
//!    with `Retry-After`;
//! 3. the body: over `http_ingest.max_body_bytes` is 413, not
//!    `application/json` 415, not JSON 400 (`invalid-body`);
//! 4. `ven_id`: malformed 400, not one of the key's VENs 403;
//! 5. every reading ([`series_of`]): 400 naming each bad field
//!    (`readings[3].value`);
//! 6. the database: unreachable is 503 with `Retry-After` (the one
//!    transaction stored nothing).
//!
//! **Values** are stored as the protocol stores them: `raw * 10^exponent`
//! of the quantity's unit (W, var, VA, V, A, Hz, Wh; none for the power
//! factor), `raw` an integer. A reading may give `exponent` (-9..=9); the
//! default, [`DEFAULT_EXPONENT`] (-3: mW, mV, ...), keeps three decimals;
//! more are rounded half away from zero (the protocol's `quantize`).
//!
//! **`batch_seq`.** With an `Idempotency-Key` header (1 to 255 visible
//! ASCII characters) the batch's sequence number is derived from the key
//! id, the VEN and that header (SHA-256, top two bits set), so a retried
//! request is recognised as the same batch (`"duplicate_batch": true`)
//! and stores nothing. Without it, a number is allocated per VEN in the
//! database (`2^63 + n`, [`crate::store::HTTP_SEQ_BASE`]). Both ranges lie
//! above anything an agent's counter reaches, so HTTP batches never
//! collide with MQTT batches of the same VEN.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gridlink_protocol::codec::WireMessage as _;
use gridlink_protocol::telemetry::{
    EXPONENT_RANGE, MAX_METER_NAME_LEN, MAX_TS_MS, MIN_TS_MS, quantize,
};
use gridlink_protocol::{Phase, Point, Quantity, Series, TelemetryBatch, Timestamp, VenId};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api_keys::authenticate_api_key;
use super::body::is_json;
use super::error::{ApiError, InvalidParam};
use super::now_ms;
use super::params::ParamError;
use crate::ingest::http::{
    DEFAULT_EXPONENT, HttpIngest, IDEMPOTENCY_KEY_HEADER, IngestRejection, MAX_IDEMPOTENCY_KEY_LEN,
    MAX_READINGS, idempotent_seq,
};
use crate::store::{IngestBatch, Store};

/// Most bad fields listed in one 400 answer.
const MAX_ERRORS: usize = 20;

/// The metrics label of a refusal answered with `error`.
fn rejection_of(error: &ApiError) -> IngestRejection {
    match error.status() {
        StatusCode::UNAUTHORIZED => IngestRejection::Unauthorized,
        StatusCode::FORBIDDEN => IngestRejection::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => IngestRejection::RateLimited,
        StatusCode::PAYLOAD_TOO_LARGE => IngestRejection::TooLarge,
        StatusCode::SERVICE_UNAVAILABLE => IngestRejection::Unavailable,
        status if status.is_client_error() => IngestRejection::Invalid,
        _ => IngestRejection::Internal,
    }
}

/// The body of `POST /api/v1/ingest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IngestRequest {
    ven_id: String,
    readings: Vec<ReadingRequest>,
}

/// One reading.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadingRequest {
    meter: String,
    quantity: String,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    ts_ms: Option<i64>,
    value: f64,
    #[serde(default)]
    exponent: Option<i8>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub(crate) struct IngestAnswer {
    ven_id: String,
    /// Readings stored now.
    accepted: u64,
    /// Readings skipped: their series already had a reading at that time.
    duplicates: u64,
    /// The request was a retry of a stored batch (same `Idempotency-Key`).
    duplicate_batch: bool,
}

/// Parses the body, naming the failing field; a body that is not JSON at
/// all is an `invalid-body` problem (`super::body`).
fn parse(bytes: &[u8]) -> Result<IngestRequest, ApiError> {
    super::body::parse(bytes)
}

/// The body checks of `POST /api/v1/ingest` without a key, a rate limit or
/// a database: parses `bytes` (3. and 5. of the module's list, and the
/// `ven_id`'s form of 4.) and returns the batch the handler would store,
/// with `batch_seq` 0, after the protocol's own check. The entry point of
/// the body parser for fuzzing (`fuzz/fuzz_targets/cloud_ingest_http.rs`).
pub fn decode_body(bytes: &[u8]) -> Result<TelemetryBatch, ApiError> {
    let body = parse(bytes)?;
    let ven_id =
        VenId::new(body.ven_id).map_err(|e| ApiError::invalid_param("ven_id", e.to_string()))?;
    let batch = TelemetryBatch {
        ven_id,
        batch_seq: 0,
        series: series_of(&body.readings)?,
    };
    batch
        .validate()
        .map_err(|e| ApiError::invalid_param("readings", e.to_string()))?;
    Ok(batch)
}

/// Checks a meter name as the protocol checks a series' `meter`.
fn check_meter(meter: &str) -> Result<(), ParamError> {
    if meter.is_empty()
        || meter.len() > MAX_METER_NAME_LEN
        || !meter
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        return Err(ParamError::MeterName(MAX_METER_NAME_LEN));
    }
    Ok(())
}

/// The reading's time, ms, or the bad field and why.
fn reading_time(i: usize, reading: &ReadingRequest) -> Result<i64, InvalidParam> {
    let (field, ms) = match (&reading.ts, reading.ts_ms) {
        (Some(_), Some(_)) => {
            return Err(InvalidParam::new(
                format!("readings[{i}].ts_ms"),
                "give ts or ts_ms, not both",
            ));
        }
        (None, None) => {
            return Err(InvalidParam::new(
                format!("readings[{i}].ts"),
                "missing: give ts (RFC 3339, e.g. 2026-11-22T10:00:00Z) or ts_ms (ms since the Unix epoch)",
            ));
        }
        (Some(ts), None) => {
            let parsed = ts
                .parse::<Timestamp>()
                .map_err(|e| InvalidParam::new(format!("readings[{i}].ts"), e.to_string()))?;
            ("ts", parsed.unix_ms())
        }
        (None, Some(ms)) => ("ts_ms", ms),
    };
    if (MIN_TS_MS..=MAX_TS_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(InvalidParam::new(
            format!("readings[{i}].{field}"),
            format!("{ms} ms is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59.999Z"),
        ))
    }
}

/// Checks one reading's fields (pushing each bad one to `errors`); its
/// quantity, phase and time if all are good.
fn check_reading(
    i: usize,
    reading: &ReadingRequest,
    errors: &mut Vec<InvalidParam>,
) -> Option<(Quantity, Phase, i64)> {
    let mut bad = |name: &str, reason: String| {
        errors.push(InvalidParam::new(format!("readings[{i}].{name}"), reason));
    };
    let meter_ok = check_meter(&reading.meter)
        .map_err(|r| bad("meter", r.to_string()))
        .is_ok();
    let quantity = Quantity::ALL
        .into_iter()
        .find(|q| q.name() == reading.quantity);
    if quantity.is_none() {
        let names: Vec<&str> = Quantity::ALL.iter().map(|q| q.name()).collect();
        bad(
            "quantity",
            format!(
                "unknown quantity {}; expected one of {}",
                super::error::quoted(&reading.quantity),
                names.join(", ")
            ),
        );
    }
    let phase_name = reading.phase.as_deref().unwrap_or("total");
    let phase = Phase::ALL.into_iter().find(|p| p.name() == phase_name);
    if phase.is_none() {
        let names: Vec<&str> = Phase::ALL.into_iter().map(Phase::name).collect();
        bad(
            "phase",
            format!(
                "unknown phase {}; expected one of {}",
                super::error::quoted(phase_name),
                names.join(", ")
            ),
        );
    }
    let exponent = reading.exponent.unwrap_or(DEFAULT_EXPONENT);
    let exponent_ok = EXPONENT_RANGE.contains(&exponent);
    if !exponent_ok {
        bad("exponent", format!("{exponent} is outside -9..=9"));
    }
    let ts = reading_time(i, reading).map_err(|e| errors.push(e)).ok();
    match (quantity, phase, ts, meter_ok, exponent_ok) {
        (Some(quantity), Some(phase), Some(ts), true, true) => Some((quantity, phase, ts)),
        _ => None,
    }
}

/// Sorts each series' points by time; a time twice in one series is an
/// error naming the later reading's time field.
fn sort_points(
    series: &mut [Series],
    origin: &[(usize, Vec<usize>)],
    readings: &[ReadingRequest],
    errors: &mut Vec<InvalidParam>,
) {
    for (s, (_, from)) in series.iter_mut().zip(origin) {
        let mut order: Vec<usize> = (0..s.points.len()).collect();
        order.sort_by_key(|&k| (s.points[k].ts_ms, from[k]));
        for pair in order.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if s.points[a].ts_ms == s.points[b].ts_ms && errors.len() < MAX_ERRORS {
                let field = if readings[from[b]].ts.is_some() {
                    "ts"
                } else {
                    "ts_ms"
                };
                errors.push(InvalidParam::new(
                    format!("readings[{}].{field}", from[b]),
                    format!(
                        "repeats the time of readings[{}] in the same series (meter, quantity, phase)",
                        from[a]
                    ),
                ));
            }
        }
        s.points = order.iter().map(|&k| s.points[k]).collect();
    }
}

/// The series of a request's readings, as the protocol's batch holds
/// them: one per (meter, quantity, phase), in order of first appearance,
/// points sorted by time. Every bad field is named (at most
/// [`MAX_ERRORS`]): meter, quantity, phase, the time (`ts` or `ts_ms`;
/// a time repeated within one series is refused), `exponent` (-9..=9, the
/// same within a series) and `value` (must fit at its exponent).
pub(crate) fn series_of(readings: &[ReadingRequest]) -> Result<Vec<Series>, ApiError> {
    if readings.is_empty() {
        return Err(ApiError::invalid_param(
            "readings",
            "must hold at least one reading",
        ));
    }
    if readings.len() > MAX_READINGS {
        return Err(ApiError::invalid_param(
            "readings",
            format!(
                "{} readings; at most {MAX_READINGS} per request",
                readings.len()
            ),
        ));
    }
    let mut errors = Vec::new();
    let mut series: Vec<Series> = Vec::new();
    // Per series: the reading that set its exponent, and per point the
    // reading it came from.
    let mut origin: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (i, reading) in readings.iter().enumerate() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let Some((quantity, phase, ts)) = check_reading(i, reading, &mut errors) else {
            continue;
        };
        let exponent = reading.exponent.unwrap_or(DEFAULT_EXPONENT);
        let at = *index
            .entry((reading.meter.as_str(), quantity, phase))
            .or_insert_with(|| {
                series.push(Series::new(
                    reading.meter.clone(),
                    quantity,
                    phase,
                    exponent,
                ));
                origin.push((i, Vec::new()));
                series.len() - 1
            });
        let (first, points) = &mut origin[at];
        let exponent = series[at].exponent;
        if reading.exponent.is_some_and(|e| e != exponent) {
            errors.push(InvalidParam::new(
                format!("readings[{i}].exponent"),
                format!(
                    "differs from the exponent {exponent} of readings[{first}], the first of the same series"
                ),
            ));
            continue;
        }
        match quantize(reading.value, exponent) {
            Some(raw) => {
                series[at].points.push(Point { ts_ms: ts, raw });
                points.push(i);
            }
            None => errors.push(InvalidParam::new(
                format!("readings[{i}].value"),
                format!(
                    "{} does not fit at exponent {exponent} (at most about 9.2e18 x 10^{exponent})",
                    reading.value
                ),
            )),
        }
    }
    sort_points(&mut series, &origin, readings, &mut errors);
    if errors.is_empty() {
        Ok(series)
    } else {
        errors.truncate(MAX_ERRORS);
        Err(ApiError::InvalidParams(errors))
    }
}

/// The request's `Idempotency-Key`, if any: 1 to 255 visible ASCII
/// characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid_param(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(text))
}

/// Whether the request says its body is JSON.
/// `POST /api/v1/ingest`.
pub(crate) async fn ingest<S: Store>(
    State(state): State<AppState<S>>,
    request: Request,
) -> Response {
    let metrics = &state.metrics.http_ingest;
    match handle(&state, request).await {
        Ok(answer) => {
            metrics.requests.fetch_add(1, Ordering::Relaxed);
            metrics
                .readings
                .fetch_add(answer.accepted, Ordering::Relaxed);
            metrics
                .duplicates
                .fetch_add(answer.duplicates, Ordering::Relaxed);
            (StatusCode::OK, Json(answer)).into_response()
        }
        Err(error) => {
            metrics.rejected(rejection_of(&error));
            error.into_response()
        }
    }
}

async fn handle<S: Store>(state: &AppState<S>, request: Request) -> Result<IngestAnswer, ApiError> {
    let ingest: &Arc<HttpIngest> = &state.http_ingest;
    let key = authenticate_api_key(&*state.store, request.headers()).await?;
    ingest
        .check_rate(key.id, Instant::now())
        .map_err(|wait| ApiError::RateLimited(wait.as_secs()))?;
    let idempotency = idempotency_key(request.headers())?.map(str::to_owned);
    if !is_json(request.headers()) {
        return Err(super::body::not_json_content_type());
    }
    // The route's DefaultBodyLimit (http_ingest.max_body_bytes) applies
    // here: a larger body is a 413 problem, never buffered whole.
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| ApiError::InvalidBody {
            status: rejection.status(),
            detail: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the body is larger than {} bytes (http_ingest.max_body_bytes)",
                    ingest.max_body_bytes
                )
            } else {
                rejection.body_text()
            },
        })?;
    let body = parse(&bytes)?;
    let ven_id =
        VenId::new(body.ven_id).map_err(|e| ApiError::invalid_param("ven_id", e.to_string()))?;
    if !key.ven_ids.contains(&ven_id) {
        return Err(ApiError::VenNotAllowed(ven_id));
    }
    let series = series_of(&body.readings)?;
    let readings: u64 = series.iter().map(|s| s.points.len() as u64).sum();
    let batch_seq = match &idempotency {
        Some(idempotency) => idempotent_seq(key.id, &ven_id, idempotency),
        None => state.store.next_http_batch_seq(&ven_id).await?,
    };
    // The protocol's own check of a batch, as MQTT ingest applies it on
    // decoding (everything it checks was checked above, field by field),
    // with a VEN's sequence number: the cloud's own, from 2^63 on, is
    // above what a VEN may send (`MAX_BATCH_SEQ`), which is the point.
    let batch = TelemetryBatch {
        ven_id,
        batch_seq: 0,
        series,
    };
    batch
        .validate()
        .map_err(|e| ApiError::invalid_param("readings", e.to_string()))?;
    let batch = IngestBatch {
        ven_id: batch.ven_id,
        batch_seq,
        received_ms: now_ms(),
        series: batch.series,
    };
    let started = Instant::now();
    let outcome = state.store.ingest(std::slice::from_ref(&batch)).await?;
    state
        .metrics
        .ingest
        .db_write(started.elapsed().as_micros() as u64);
    // Committed: now (never before) the feed may see it.
    if outcome.inserted_batches > 0 {
        state.feed.telemetry(std::slice::from_ref(&batch));
    }
    tracing::debug!(
        api_key = key.id,
        ven = batch.ven_id.as_str(),
        readings,
        accepted = outcome.inserted_readings,
        "HTTP ingest"
    );
    Ok(IngestAnswer {
        ven_id: batch.ven_id.as_str().to_owned(),
        accepted: outcome.inserted_readings,
        duplicates: readings.saturating_sub(outcome.inserted_readings),
        duplicate_batch: outcome.duplicate_batches > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(meter: &str, quantity: &str, ts_ms: i64, value: f64) -> ReadingRequest {
        ReadingRequest {
            meter: meter.into(),
            quantity: quantity.into(),
            phase: None,
            ts: None,
            ts_ms: Some(ts_ms),
            value,
            exponent: None,
        }
    }

    fn names(error: ApiError) -> Vec<String> {
        match error {
            ApiError::InvalidParams(params) => params.into_iter().map(|p| p.name).collect(),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn decode_body_makes_the_batch_the_handler_stores() {
        let batch = decode_body(
            br#"{"ven_id": "cust-1-main", "readings": [{"meter": "main", "quantity": "active_power",
                "phase": "total", "ts": "2026-11-22T10:00:00Z", "value": 1234.5}]}"#,
        )
        .unwrap();
        assert_eq!(batch.ven_id.as_str(), "cust-1-main");
        assert_eq!(batch.series[0].points[0].raw, 1_234_500);
        assert_eq!(
            names(decode_body(br#"{"ven_id": "a/b", "readings": []}"#).unwrap_err()),
            ["ven_id"]
        );
        assert_eq!(names(decode_body(b"[1]").unwrap_err()), ["body"]);
    }

    #[test]
    fn readings_group_into_sorted_series() {
        let mut with_ts = reading("main", "voltage", 0, 230.15);
        with_ts.ts = Some("2026-11-22T10:00:00Z".into());
        with_ts.ts_ms = None;
        with_ts.phase = Some("L1".into());
        with_ts.exponent = Some(-1);
        let readings = [
            reading("main", "active_power", 2000, 1234.5),
            reading("pv", "active_power", 1000, -300.0),
            reading("main", "active_power", 1000, 1000.0),
            with_ts,
        ];
        let series = series_of(&readings).unwrap();
        assert_eq!(series.len(), 3);
        assert_eq!(
            series[0].key(),
            ("main", Quantity::ActivePower, Phase::Total)
        );
        assert_eq!(series[0].exponent, DEFAULT_EXPONENT);
        assert_eq!(
            series[0].points,
            [
                Point {
                    ts_ms: 1000,
                    raw: 1_000_000
                },
                Point {
                    ts_ms: 2000,
                    raw: 1_234_500
                }
            ]
        );
        assert_eq!(series[2].key(), ("main", Quantity::Voltage, Phase::L1));
        assert_eq!(series[2].points[0].ts_ms, 1_795_341_600_000);
        assert_eq!(series[2].points[0].raw, 2302, "rounded half away from zero");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut both = reading("m", "active_power", 5, 1.0);
        both.ts = Some("2026-11-22T10:00:00Z".into());
        let mut neither = reading("m", "active_power", 5, 1.0);
        neither.ts_ms = None;
        let mut bad_ts = reading("m", "active_power", 5, 1.0);
        bad_ts.ts = Some("yesterday".into());
        bad_ts.ts_ms = None;
        let mut bad_phase = reading("m", "active_power", 6, 1.0);
        bad_phase.phase = Some("L4".into());
        let mut bad_exponent = reading("m", "active_power", 7, 1.0);
        bad_exponent.exponent = Some(10);
        let mut other_exponent = reading("m", "active_power", 8, 1.0);
        other_exponent.exponent = Some(0);
        let readings = [
            reading("m", "active_power", 1, 1.0),
            reading("bad meter", "active_power", 1, 1.0),
            reading("m", "power", 1, 1.0),
            reading("m", "active_power", -1, 1.0),
            reading("m", "active_power", MAX_TS_MS + 1, 1.0),
            both,
            neither,
            bad_ts,
            bad_phase,
            bad_exponent,
            other_exponent,
            reading("m", "active_power", 9, 1e300),
            reading("m", "active_power", 1, 2.0),
        ];
        assert_eq!(
            names(series_of(&readings).unwrap_err()),
            [
                "readings[1].meter",
                "readings[2].quantity",
                "readings[3].ts_ms",
                "readings[4].ts_ms",
                "readings[5].ts_ms",
                "readings[6].ts",
                "readings[7].ts",
                "readings[8].phase",
                "readings[9].exponent",
                "readings[10].exponent",
                "readings[11].value",
                "readings[12].ts_ms",
            ]
        );
        assert_eq!(names(series_of(&[]).unwrap_err()), ["readings"]);
        let all_bad: Vec<ReadingRequest> = (0..100)
            .map(|i| {
                let mut r = reading("bad meter", "power", -1, 1.0);
                r.phase = Some(format!("L{i}"));
                r
            })
            .collect();
        assert_eq!(names(series_of(&all_bad).unwrap_err()).len(), MAX_ERRORS);
        let many: Vec<ReadingRequest> = (0..=MAX_READINGS as i64)
            .map(|i| reading("m", "active_power", i, 1.0))
            .collect();
        assert_eq!(names(series_of(&many).unwrap_err()), ["readings"]);
    }

    #[test]
    fn json_errors_name_the_path() {
        let bad = |body: &str| names(parse(body.as_bytes()).unwrap_err());
        assert_eq!(bad(r#"{"readings": []}"#), ["ven_id"]);
        assert_eq!(
            bad(r#"{"ven_id": "v", "readings": [{"meter": "m", "quantity": "q", "ts_ms": 1}]}"#),
            ["readings[0].value"]
        );
        assert_eq!(
            bad(
                r#"{"ven_id": "v", "readings": [{"meter": "m", "quantity": "q", "ts_ms": 1, "value": "x"}]}"#
            ),
            ["readings[0].value"]
        );
        assert_eq!(
            bad(r#"{"ven_id": "v", "readings": [], "extra": 1}"#),
            ["extra"]
        );
        assert_eq!(bad("[1]"), ["body"]);
        assert_eq!(bad(r#" ["v", []]"#), ["body"]);
        for not_json in [
            "{",
            r#"{"ven_id": "v", "readings": []} x"#,
            "",
            r#"{"ven_id": NaN}"#,
        ] {
            assert!(
                matches!(
                    parse(not_json.as_bytes()),
                    Err(ApiError::InvalidBody {
                        status: StatusCode::BAD_REQUEST,
                        ..
                    })
                ),
                "{not_json}"
            );
        }
    }

    #[test]
    fn idempotent_seqs_are_above_allocated_ones_and_stable() {
        let ven = VenId::new("v").unwrap();
        let a = idempotent_seq(1, &ven, "req-1");
        assert_eq!(a, idempotent_seq(1, &ven, "req-1"));
        assert_ne!(a, idempotent_seq(2, &ven, "req-1"));
        assert_ne!(a, idempotent_seq(1, &ven, "req-2"));
        assert!(a >= crate::store::HTTP_SEQ_BASE | (1 << 62));
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).unwrap(), None);
        headers.insert(IDEMPOTENCY_KEY_HEADER, "a b".parse().unwrap());
        assert!(idempotency_key(&headers).is_err());
        headers.insert(IDEMPOTENCY_KEY_HEADER, "x".repeat(256).parse().unwrap());
        assert!(idempotency_key(&headers).is_err());
        headers.insert(IDEMPOTENCY_KEY_HEADER, "2026-11-22/42".parse().unwrap());
        assert_eq!(idempotency_key(&headers).unwrap(), Some("2026-11-22/42"));
    }

    #[test]
    fn refusals_are_labelled_by_status() {
        assert_eq!(
            rejection_of(&ApiError::InvalidBody {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                detail: String::new()
            }),
            IngestRejection::TooLarge
        );
    }
}
