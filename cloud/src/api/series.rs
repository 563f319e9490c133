//! `/api/v1/series` and `/api/v1/network`: data over time, at a step.
//!
//! - `from` (default `to` minus 24 h) and `to` (default now) are rounded
//!   outward to whole steps (steps are aligned to the Unix epoch, so a
//!   `P1D` step starts at midnight UTC); points are `[ts, ts + step)`.
//! - `step` (default `PT1M`) picks what is read: the coarsest stored
//!   resolution whose bucket is no wider than the step and divides it
//!   ([`Resolution::for_step`], going finer when its bucket does not divide
//!   the step: `PT20M` reads 1-minute rollups, `PT90S` raw readings). The
//!   answer names the resolution it read.
//! - At most `max_points` steps fit between `from` and `to`; more is a 400
//!   that names `step` and the smallest step that fits.
//! - Stored points are merged into steps: `avg` weighted by `count`, `min`
//!   of the minima, `max` of the maxima, `last` of the last, `count`
//!   summed. So every step gives the same answer whichever resolution it
//!   was computed from.
//! - One query reads at most [`MAX_ROWS_PER_QUERY`] rows (raw readings
//!   can be dense); an answer cut there says `truncated` and gives
//!   `next_from_ms` to continue from.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use gridlink_protocol::{IsoDuration, Phase, Quantity, Timestamp, VenId};
use serde::Serialize;

use super::error::ApiError;
use super::params::{self, ParamError, QueryParams};
use super::{AppState, now_ms};
use crate::store::{NetworkPoint, Resolution, SeriesPoint, SeriesQuery, Store};

/// Most stored rows one series query reads.
pub(crate) const MAX_ROWS_PER_QUERY: u32 = 500_000;
/// Range when `from` is not given.
const DEFAULT_RANGE_MS: i64 = 86_400_000;
/// Step when `step` is not given.
const DEFAULT_STEP_MS: i64 = 60_000;
/// Longest meter name (as the protocol allows).
const MAX_METER_NAME_LEN: usize = 64;

/// A query's time window after defaults and alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Start, inclusive, a whole number of steps since the epoch.
    pub from_ms: i64,
    /// End, exclusive, a whole number of steps since the epoch.
    pub to_ms: i64,
    /// Width of one point.
    pub step_ms: i64,
    /// What is read.
    pub resolution: Resolution,
}

/// The name of a resolution in answers.
pub(crate) const fn resolution_name(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Raw => "raw",
        Resolution::Minute => "PT1M",
        Resolution::QuarterHour => "PT15M",
        Resolution::Hour => "PT1H",
    }
}

const fn finer(resolution: Resolution) -> Resolution {
    match resolution {
        Resolution::Hour => Resolution::QuarterHour,
        Resolution::QuarterHour => Resolution::Minute,
        Resolution::Minute | Resolution::Raw => Resolution::Raw,
    }
}

/// The coarsest resolution no wider than `step_ms` whose bucket divides it.
pub(crate) fn resolution_for(step_ms: i64) -> Resolution {
    let mut resolution = Resolution::for_step(step_ms);
    while resolution != Resolution::Raw && step_ms % resolution.bucket_ms() != 0 {
        resolution = finer(resolution);
    }
    resolution
}

const fn align_down(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

const fn align_up(ms: i64, step: i64) -> i64 {
    -(-ms).div_euclid(step) * step
}

fn points_between(from_ms: i64, to_ms: i64, step_ms: i64) -> i64 {
    (align_up(to_ms, step_ms) - align_down(from_ms, step_ms)) / step_ms
}

/// The smallest round step (whole seconds below a minute, whole minutes
/// above) that fits `from..to` into `max_points` (at least 3).
fn smallest_step(from_ms: i64, to_ms: i64, max_points: u32) -> i64 {
    let round = |ms: i64| match ms {
        ..1000 => ms.max(1),
        1000..60_000 => align_up(ms, 1000),
        _ => align_up(ms, 60_000),
    };
    let range = to_ms - from_ms;
    let max = i64::from(max_points);
    // Rounding outward adds at most two steps, so this one always fits.
    let upper = round(range.div_euclid((max - 2).max(1)) + 1);
    let mut step = round(range.div_euclid(max).max(1));
    while step < upper && points_between(from_ms, to_ms, step) > max {
        step = round(step + 1);
    }
    step.min(upper)
}

fn iso(ms: i64) -> String {
    IsoDuration::from_millis(u64::try_from(ms).unwrap_or(0)).to_string()
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_unix_ms(ms).map_or_else(|_| format!("{ms} ms"), |t| t.to_string())
}

/// Reads `from`, `to` and `step`, applies defaults, checks the point
/// bound and picks the resolution (at least `coarsest_needed`). Errors are
/// recorded in `params`.
pub(crate) fn window(
    params: &mut QueryParams,
    now_ms: i64,
    max_points: u32,
    finest_allowed: Resolution,
) -> Option<Window> {
    let from = params.optional("from", params::time);
    let to = params.optional("to", params::time);
    let step = params.optional("step", params::step);
    if params.has_errors() {
        return None;
    }
    let to_ms = to.unwrap_or(now_ms);
    let from_ms = from.unwrap_or(to_ms - DEFAULT_RANGE_MS);
    let step_ms = step.unwrap_or(DEFAULT_STEP_MS);
    // `from == to` is an empty window (to is exclusive), as the schema
    // allows; only a `from` after `to` is refused.
    if from_ms > to_ms {
        params.reject(
            "from",
            format!(
                "must not be after to ({} is after {})",
                rfc3339(from_ms),
                rfc3339(to_ms)
            ),
        );
        return None;
    }
    let points = points_between(from_ms, to_ms, step_ms);
    if points > i64::from(max_points) {
        params.reject(
            "step",
            format!(
                "{points} points of {} from {} to {}; at most {max_points}: use a step of at least {}",
                iso(step_ms),
                rfc3339(from_ms),
                rfc3339(to_ms),
                iso(smallest_step(from_ms, to_ms, max_points)),
            ),
        );
        return None;
    }
    let resolution = resolution_for(step_ms);
    if resolution < finest_allowed {
        params.reject(
            "step",
            format!(
                "{} cannot be read from the stored {} rollups: use a whole multiple of {}",
                iso(step_ms),
                resolution_name(finest_allowed),
                iso(finest_allowed.bucket_ms()),
            ),
        );
        return None;
    }
    Some(Window {
        from_ms: align_down(from_ms, step_ms),
        to_ms: align_up(to_ms, step_ms),
        step_ms,
        resolution,
    })
}

/// Merges stored points (oldest first) into one point per step.
pub(crate) fn aggregate_series(rows: &[SeriesPoint], step_ms: i64) -> Vec<SeriesPoint> {
    let mut out: Vec<SeriesPoint> = Vec::new();
    let mut weighted_sum = 0.0;
    for row in rows {
        let ts_ms = align_down(row.ts_ms, step_ms);
        let weight = row.count.max(1);
        match out.last_mut() {
            Some(point) if point.ts_ms == ts_ms => {
                weighted_sum += row.avg * weight as f64;
                point.count += weight;
                point.avg = weighted_sum / point.count as f64;
                point.min = point.min.min(row.min);
                point.max = point.max.max(row.max);
                point.last = row.last;
            }
            _ => {
                weighted_sum = row.avg * weight as f64;
                out.push(SeriesPoint {
                    ts_ms,
                    count: weight,
                    ..*row
                });
            }
        }
    }
    out
}

/// Merges network points (oldest first) into one point per step: the mean
/// of import and export over the stored buckets of the step, and the most
/// VENs that reported in any of them.
pub(crate) fn aggregate_network(rows: &[NetworkPoint], step_ms: i64) -> Vec<NetworkPoint> {
    let mut out: Vec<(NetworkPoint, f64, f64, u32)> = Vec::new();
    for row in rows {
        let ts_ms = align_down(row.ts_ms, step_ms);
        match out.last_mut() {
            Some((point, import, export, buckets)) if point.ts_ms == ts_ms => {
                *import += row.import_w;
                *export += row.export_w;
                *buckets += 1;
                point.import_w = *import / f64::from(*buckets);
                point.export_w = *export / f64::from(*buckets);
                point.vens_reporting = point.vens_reporting.max(row.vens_reporting);
            }
            _ => out.push((
                NetworkPoint { ts_ms, ..*row },
                row.import_w,
                row.export_w,
                1,
            )),
        }
    }
    out.into_iter().map(|(point, ..)| point).collect()
}

/// When a read stopped at the row limit, drops the last (maybe partial)
/// step and says where to continue; keeps a lone step (and continues after
/// it) so a client always moves forward.
fn cut_at_last_step(mut rows: Vec<SeriesPoint>, step_ms: i64) -> (Vec<SeriesPoint>, i64) {
    let Some(last) = rows.last() else {
        return (rows, 0);
    };
    let last_step = align_down(last.ts_ms, step_ms);
    let first_step = rows
        .first()
        .map_or(last_step, |first| align_down(first.ts_ms, step_ms));
    if first_step == last_step {
        return (rows, last_step + step_ms);
    }
    rows.retain(|row| row.ts_ms < last_step);
    (rows, last_step)
}

/// One point of a series answer.
#[derive(Debug, Serialize)]
pub(crate) struct SeriesPointBody {
    ts_ms: i64,
    avg: f64,
    min: f64,
    max: f64,
    last: f64,
    count: u64,
}

/// The answer of `GET /api/v1/series`.
#[derive(Debug, Serialize)]
pub(crate) struct SeriesAnswer {
    ven_id: VenId,
    meter: String,
    quantity: Quantity,
    unit: &'static str,
    phase: Phase,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
    step: String,
    resolution: &'static str,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_from_ms: Option<i64>,
    points: Vec<SeriesPointBody>,
}

fn meter_name(value: &str) -> Result<String, ParamError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_METER_NAME_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(ParamError::NotMeterName {
            value: value.to_owned(),
            max: MAX_METER_NAME_LEN,
        })
    }
}

/// `GET /api/v1/series?ven=&meter=&quantity=&phase=&from=&to=&step=`.
pub(crate) async fn series<S: Store>(
    State(state): State<AppState<S>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<SeriesAnswer>, ApiError> {
    let mut params = QueryParams::new(
        query,
        &["ven", "meter", "quantity", "phase", "from", "to", "step"],
    )?;
    let ven_id = params.required("ven", params::ven_id);
    let meter = params.required("meter", meter_name);
    let quantity = params.required("quantity", params::quantity);
    let phase = params
        .optional("phase", params::phase)
        .unwrap_or(Phase::Total);
    let window = window(&mut params, now_ms(), state.max_points, Resolution::Raw);
    let parsed = match (ven_id, meter, quantity, window) {
        (Some(ven_id), Some(meter), Some(quantity), Some(window)) => {
            Some((ven_id, meter, quantity, window))
        }
        _ => None,
    };
    let (ven_id, meter, quantity, window) = params.finish(parsed)?;

    if state.store.ven(&ven_id).await?.is_none() {
        return Err(ApiError::UnknownVen(ven_id));
    }
    let bucket = window.resolution.bucket_ms();
    let limit = if bucket == 0 {
        MAX_ROWS_PER_QUERY
    } else {
        u32::try_from((window.to_ms - window.from_ms) / bucket + 1)
            .unwrap_or(MAX_ROWS_PER_QUERY)
            .min(MAX_ROWS_PER_QUERY)
    };
    let query = SeriesQuery {
        ven_id: ven_id.clone(),
        meter: meter.clone(),
        quantity,
        phase,
        from_ms: window.from_ms,
        to_ms: window.to_ms,
        resolution: window.resolution,
        limit,
    };
    let rows = state.store.series(&query).await?;
    let truncated = limit == MAX_ROWS_PER_QUERY && rows.len() >= limit as usize;
    let (rows, next_from_ms) = if truncated {
        let (rows, next) = cut_at_last_step(rows, window.step_ms);
        (rows, Some(next))
    } else {
        (rows, None)
    };
    let points = aggregate_series(&rows, window.step_ms)
        .into_iter()
        .map(|p| SeriesPointBody {
            ts_ms: p.ts_ms,
            avg: p.avg,
            min: p.min,
            max: p.max,
            last: p.last,
            count: p.count,
        })
        .collect();
    Ok(Json(SeriesAnswer {
        ven_id,
        meter,
        quantity,
        unit: quantity.unit(),
        phase,
        from_ms: window.from_ms,
        to_ms: window.to_ms,
        step_ms: window.step_ms,
        step: iso(window.step_ms),
        resolution: resolution_name(window.resolution),
        truncated,
        next_from_ms,
        points,
    }))
}

/// One point of a network answer.
#[derive(Debug, Serialize)]
pub(crate) struct NetworkPointBody {
    ts_ms: i64,
    import_w: f64,
    export_w: f64,
    vens_reporting: u64,
}

/// The answer of `GET /api/v1/network`.
#[derive(Debug, Serialize)]
pub(crate) struct NetworkAnswer {
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
    step: String,
    resolution: &'static str,
    vens_total: usize,
    vens_online: usize,
    points: Vec<NetworkPointBody>,
}

/// `GET /api/v1/network?from=&to=&step=`.
pub(crate) async fn network<S: Store>(
    State(state): State<AppState<S>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<NetworkAnswer>, ApiError> {
    let mut params = QueryParams::new(query, &["from", "to", "step"])?;
    let window = window(&mut params, now_ms(), state.max_points, Resolution::Minute);
    let window = params.finish(window)?;
    let rows = state
        .store
        .network(window.from_ms, window.to_ms, window.resolution)
        .await?;
    let vens = state.store.vens().await?;
    let points = aggregate_network(&rows, window.step_ms)
        .into_iter()
        .map(|p| NetworkPointBody {
            ts_ms: p.ts_ms,
            import_w: p.import_w,
            export_w: p.export_w,
            vens_reporting: p.vens_reporting,
        })
        .collect();
    Ok(Json(NetworkAnswer {
        from_ms: window.from_ms,
        to_ms: window.to_ms,
        step_ms: window.step_ms,
        step: iso(window.step_ms),
        resolution: resolution_name(window.resolution),
        vens_total: vens.len(),
        vens_online: vens.iter().filter(|v| v.online == Some(true)).count(),
        points,
    }))
}

#[cfg(test)]
mod tests {
    use axum::extract::Query;

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        let pairs = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        QueryParams::new(Ok(Query(pairs)), &["from", "to", "step"]).unwrap()
    }

    fn point(ts_ms: i64, avg: f64, min: f64, max: f64, last: f64, count: u64) -> SeriesPoint {
        SeriesPoint {
            ts_ms,
            avg,
            min,
            max,
            last,
            count,
        }
    }

    #[test]
    fn resolution_is_the_coarsest_that_divides_the_step() {
        assert_eq!(resolution_for(1_000), Resolution::Raw);
        assert_eq!(resolution_for(60_000), Resolution::Minute);
        assert_eq!(resolution_for(90_000), Resolution::Raw);
        assert_eq!(resolution_for(300_000), Resolution::Minute);
        assert_eq!(resolution_for(900_000), Resolution::QuarterHour);
        assert_eq!(resolution_for(1_200_000), Resolution::Minute);
        assert_eq!(resolution_for(1_800_000), Resolution::QuarterHour);
        assert_eq!(resolution_for(3_600_000), Resolution::Hour);
        assert_eq!(resolution_for(86_400_000), Resolution::Hour);
        assert_eq!(resolution_for(5_400_000), Resolution::QuarterHour);
    }

    #[test]
    fn window_defaults_aligns_and_bounds_points() {
        let now = 1_767_225_630_500; // 2026-01-01T00:00:30.5Z
        let mut p = params(&[]);
        let w = window(&mut p, now, 10_000, Resolution::Raw).unwrap();
        assert_eq!(w.step_ms, 60_000);
        assert_eq!(
            w.to_ms, 1_767_225_660_000,
            "to is rounded up to a whole step"
        );
        assert_eq!(w.from_ms, 1_767_225_600_000 - 86_400_000);
        assert_eq!(w.resolution, Resolution::Minute);

        let mut p = params(&[("from", "0"), ("to", "86400000"), ("step", "PT1S")]);
        assert_eq!(window(&mut p, now, 10_000, Resolution::Raw), None);
        let Err(ApiError::InvalidParams(errors)) = p.finish(None::<()>) else {
            panic!()
        };
        assert_eq!(errors[0].name, "step");
        assert!(
            errors[0].reason.contains("86400 points"),
            "{}",
            errors[0].reason
        );
        assert!(
            errors[0].reason.contains("at least PT9S"),
            "{}",
            errors[0].reason
        );

        let mut p = params(&[
            ("from", "2026-01-02T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z"),
        ]);
        assert_eq!(window(&mut p, now, 10_000, Resolution::Raw), None);
        let Err(ApiError::InvalidParams(errors)) = p.finish(None::<()>) else {
            panic!()
        };
        assert_eq!(errors[0].name, "from");

        let mut p = params(&[("from", "0"), ("to", "3600000"), ("step", "PT30S")]);
        assert_eq!(
            window(&mut p, now, 10_000, Resolution::Minute),
            None,
            "network needs minutes"
        );
        let mut p = params(&[("from", "0"), ("to", "3600000"), ("step", "PT20M")]);
        let w = window(&mut p, now, 10_000, Resolution::Minute).unwrap();
        assert_eq!(
            (w.resolution, w.from_ms, w.to_ms),
            (Resolution::Minute, 0, 3_600_000)
        );
    }

    #[test]
    fn smallest_step_fits() {
        for (from, to, max) in [
            (0, 86_400_000, 10_000),
            (17, 2_592_000_017, 10_000),
            (0, 1000, 3),
            (999, 1001, 10),
            (-86_400_001, 31_622_400_000_000, 10),
        ] {
            let step = smallest_step(from, to, max);
            assert!(
                points_between(from, to, step) <= i64::from(max),
                "{from} {to} {max} {step}"
            );
        }
        assert_eq!(
            smallest_step(0, 2_592_000_000, 10_000),
            300_000,
            "30 days at 10k points: PT5M"
        );
    }

    #[test]
    fn series_merge_is_count_weighted() {
        let rows = [
            point(0, 10.0, 5.0, 20.0, 12.0, 2),
            point(60_000, 40.0, 30.0, 50.0, 35.0, 6),
            point(120_000, 1.0, 1.0, 1.0, 1.0, 1),
        ];
        let merged = aggregate_series(&rows, 120_000);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], point(0, 32.5, 5.0, 50.0, 35.0, 8));
        assert_eq!(merged[1], point(120_000, 1.0, 1.0, 1.0, 1.0, 1));
        assert_eq!(
            aggregate_series(&rows, 60_000),
            rows.to_vec(),
            "one row per step is unchanged"
        );
    }

    #[test]
    fn network_merge_averages_buckets() {
        let rows = [
            NetworkPoint {
                ts_ms: 0,
                import_w: 100.0,
                export_w: 0.0,
                vens_reporting: 2,
            },
            NetworkPoint {
                ts_ms: 60_000,
                import_w: 200.0,
                export_w: 10.0,
                vens_reporting: 3,
            },
        ];
        let merged = aggregate_network(&rows, 300_000);
        assert_eq!(
            merged,
            [NetworkPoint {
                ts_ms: 0,
                import_w: 150.0,
                export_w: 5.0,
                vens_reporting: 3,
            }]
        );
    }

    #[test]
    fn a_cut_read_drops_its_partial_last_step() {
        let rows = vec![
            point(0, 1.0, 1.0, 1.0, 1.0, 1),
            point(1000, 1.0, 1.0, 1.0, 1.0, 1),
            point(10_500, 1.0, 1.0, 1.0, 1.0, 1),
        ];
        let (kept, next) = cut_at_last_step(rows, 10_000);
        assert_eq!((kept.len(), next), (2, 10_000));
        let (kept, next) = cut_at_last_step(kept, 10_000);
        assert_eq!(
            (kept.len(), next),
            (2, 10_000),
            "a lone step is kept and skipped"
        );
    }
}
