//! Energy projects: the pure computations behind `/api/v1/projects` —
//! energy generated and consumed per day or month from the hourly
//! rollups, milestones, money in exact minor units, the price of a DR
//! event and its revenue, and finance totals per period. No I/O here
//! except [`refresh_milestones`], which reads the store and records what
//! it computed.
//!
//! # Which meter, and generated vs consumed
//!
//! A project's energy is the sum over its VENs. Per VEN one meter is read:
//! the `site_meter` registered with `PUT /api/v1/vens/{id}` (the grid
//! connection, as the measured DR response reads), or without one the
//! VEN's only meter with an `active_power`, `energy_import` or
//! `energy_export` series on phase `total`. A VEN with several such meters
//! and no registered site meter is not measured (listed with a reason)
//! rather than measured twice. On that meter:
//!
//! * **consumed** = the increase of the `energy_import` counter (Wh);
//!   without that counter, the positive part of the hourly mean
//!   `active_power` × 1 h;
//! * **generated** = the increase of the `energy_export` counter; without
//!   it, the negative part of the hourly mean `active_power` × 1 h.
//!
//! Everything is read from the 1-hour rollups (`metrics_1h`), never raw
//! readings: a year of one VEN is 8760 rows per series.
//!
//! A counter's increase in an hour is its last value in the hour minus the
//! last value of the hour before it that has readings; the first hour of a
//! series counts only the increase within it (last − min). A counter that
//! went down (a meter reset or replacement) counts only what it rose since
//! the lowest reading of that hour (last − min): never negative, at worst
//! short by what accrued between the last reading before the reset and the
//! reset. An hourly mean power is taken to hold for the whole hour (so the
//! current, partial hour is extrapolated; a gap of several hours counts
//! nothing). Each hour's energy is attributed to the hour's UTC bucket and
//! from there to its UTC day or month.
//!
//! # Money
//!
//! Amounts are integer minor units (hundredths: cents) in the store and in
//! every sum; the API shows them as decimal numbers with at most two
//! decimals (`1234.56`) and accepts a number or a string with at most two
//! decimals, parsed exactly from its decimal text (no float arithmetic).

use std::collections::BTreeMap;
use std::str::FromStr as _;

use gridlink_protocol::IsoDuration;
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, Time};

pub use crate::model::projects::{
    DayRow, EnergySeries, FinanceKind, HOUR_MS, HourRow, MilestoneQuantity, Period, ProjectKind,
    ProjectStatus,
};

fn datetime(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn ms_of(date: Date) -> i64 {
    let t = date.with_time(Time::MIDNIGHT).assume_utc();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Period {
    /// The start of the period that contains `ms`; `None` out of range.
    pub fn start_of(self, ms: i64) -> Option<i64> {
        let date = datetime(ms)?.date();
        let first = match self {
            Self::Day => date,
            Self::Month => Date::from_calendar_date(date.year(), date.month(), 1).ok()?,
        };
        Some(ms_of(first))
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: i64) -> Option<i64> {
        let date = datetime(start)?.date();
        let next = match self {
            Self::Day => date.next_day()?,
            Self::Month => {
                let (year, month) = match date.month() {
                    Month::December => (date.year() + 1, Month::January),
                    m => (date.year(), m.next()),
                };
                Date::from_calendar_date(year, month, 1).ok()?
            }
        };
        Some(ms_of(next))
    }

    /// The period starts covering `[from, to)`, `from` rounded down and
    /// `to` up to whole periods; `None` if out of range or more than `max`.
    pub fn starts(self, from: i64, to: i64, max: usize) -> Option<Vec<i64>> {
        let mut out = Vec::new();
        let mut cursor = self.start_of(from)?;
        while cursor < to {
            if out.len() == max {
                return None;
            }
            out.push(cursor);
            cursor = self.next(cursor)?;
        }
        Some(out)
    }
}

/// Which series a VEN's energy is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesRole {
    /// `energy_import` / `total`: consumed.
    ImportCounter,
    /// `energy_export` / `total`: generated.
    ExportCounter,
    /// `active_power` / `total`: consumed (positive hourly mean) and/or
    /// generated (negative), for the directions without a counter.
    Power {
        /// Count positive means as consumed.
        consumed: bool,
        /// Count negative means as generated.
        generated: bool,
    },
}

/// What [`choose_series`] picked for a VEN: the meter and each series' role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenSources {
    /// The meter read.
    pub meter: String,
    /// Series id and role.
    pub series: Vec<(i64, SeriesRole)>,
}

/// Why a VEN's energy cannot be measured ([`choose_series`]); shown to
/// the client as the VEN's `unmeasured_reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The VEN has no energy series at all.
    #[error("no active_power, energy_import or energy_export series")]
    NoSeries,
    /// Several meters and no registered site meter to choose between them.
    #[error(
        "several meters ({}) and no registered site_meter: register one with \
         PUT /api/v1/vens/{{id}}",
        .0.join(", ")
    )]
    SeveralMeters(Vec<String>),
    /// The chosen meter has no energy series.
    #[error("meter {0:?} has no active_power, energy_import or energy_export series")]
    NoSeriesOnMeter(String),
}

/// Picks a VEN's meter and series (see the module docs); `Err` with the
/// reason when the VEN cannot be measured.
pub fn choose_series(
    site_meter: Option<&str>,
    series: &[EnergySeries],
) -> Result<VenSources, SourceError> {
    let meter = if let Some(meter) = site_meter {
        meter.to_owned()
    } else {
        let mut meters: Vec<&str> = series.iter().map(|s| s.meter.as_str()).collect();
        meters.sort_unstable();
        meters.dedup();
        match meters.as_slice() {
            [] => return Err(SourceError::NoSeries),
            [one] => (*one).to_owned(),
            several => {
                return Err(SourceError::SeveralMeters(
                    several.iter().map(|&m| m.to_owned()).collect(),
                ));
            }
        }
    };
    let on_meter: Vec<&EnergySeries> = series.iter().filter(|s| s.meter == meter).collect();
    let find = |code: i16| {
        on_meter
            .iter()
            .find(|s| s.quantity == code)
            .map(|s| s.series_id)
    };
    let import = find(crate::store::quantity_code(
        gridlink_protocol::Quantity::EnergyImport,
    ));
    let export = find(crate::store::quantity_code(
        gridlink_protocol::Quantity::EnergyExport,
    ));
    let power = find(crate::store::quantity_code(
        gridlink_protocol::Quantity::ActivePower,
    ));
    let mut out = Vec::new();
    if let Some(id) = import {
        out.push((id, SeriesRole::ImportCounter));
    }
    if let Some(id) = export {
        out.push((id, SeriesRole::ExportCounter));
    }
    if let Some(id) = power
        && (import.is_none() || export.is_none())
    {
        out.push((
            id,
            SeriesRole::Power {
                consumed: import.is_none(),
                generated: export.is_none(),
            },
        ));
    }
    if out.is_empty() {
        return Err(SourceError::NoSeriesOnMeter(meter));
    }
    Ok(VenSources { meter, series: out })
}

/// Energy of one hour, summed over series (and VENs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HourEnergy {
    /// Generated, Wh.
    pub generated_wh: f64,
    /// Consumed, Wh.
    pub consumed_wh: f64,
    /// Newest reading time that contributed, ms.
    pub last_ts: i64,
}

/// Adds one series' hourly energy into `into` (keyed by bucket start).
/// `previous` is the series' last row before `rows` (for the first
/// counter increase); `rows` are by bucket.
pub fn add_series_energy(
    into: &mut BTreeMap<i64, HourEnergy>,
    role: &SeriesRole,
    previous: Option<&HourRow>,
    rows: &[HourRow],
) {
    let mut prev_last = previous.map(|p| p.last_value);
    for row in rows {
        let hour = into.entry(row.bucket).or_default();
        hour.last_ts = hour.last_ts.max(row.last_ts);
        match role {
            SeriesRole::ImportCounter | SeriesRole::ExportCounter => {
                let delta = match prev_last {
                    Some(p) if row.last_value >= p => row.last_value - p,
                    _ => (row.last_value - row.min).max(0.0),
                };
                prev_last = Some(row.last_value);
                if matches!(role, SeriesRole::ImportCounter) {
                    hour.consumed_wh += delta;
                } else {
                    hour.generated_wh += delta;
                }
            }
            SeriesRole::Power {
                consumed,
                generated,
            } => {
                if row.count == 0 {
                    continue;
                }
                // W held for one hour is Wh.
                let mean_w = row.sum / row.count as f64;
                if mean_w > 0.0 && *consumed {
                    hour.consumed_wh += mean_w;
                } else if mean_w < 0.0 && *generated {
                    hour.generated_wh -= mean_w;
                }
            }
        }
    }
}

/// Adds one series' daily energy into `into` (keyed by day start).
pub fn add_series_days(into: &mut BTreeMap<i64, HourEnergy>, role: &SeriesRole, rows: &[DayRow]) {
    for row in rows {
        let day = into.entry(row.day).or_default();
        day.last_ts = day.last_ts.max(row.last_ts);
        match role {
            SeriesRole::ImportCounter => day.consumed_wh += row.rise,
            SeriesRole::ExportCounter => day.generated_wh += row.rise,
            SeriesRole::Power {
                consumed,
                generated,
            } => {
                if *consumed {
                    day.consumed_wh += row.positive_wh;
                }
                if *generated {
                    day.generated_wh += row.negative_wh;
                }
            }
        }
    }
}

/// Energy of one period, kWh.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EnergyTotals {
    /// Generated, kWh.
    pub generated_kwh: f64,
    /// Consumed, kWh.
    pub consumed_kwh: f64,
}

/// Sums hourly energy into the periods starting at `starts` (ascending;
/// the last one ends at `period.next`), and the total over all of them.
pub fn energy_per_period(
    hours: &BTreeMap<i64, HourEnergy>,
    period: Period,
    starts: &[i64],
) -> (Vec<(i64, EnergyTotals)>, EnergyTotals) {
    let mut rows: Vec<(i64, EnergyTotals)> = starts
        .iter()
        .map(|&s| (s, EnergyTotals::default()))
        .collect();
    let mut total = EnergyTotals::default();
    let end = starts.last().and_then(|&s| period.next(s));
    for (&bucket, hour) in hours {
        if starts.first().is_none_or(|&f| bucket < f) || end.is_none_or(|e| bucket >= e) {
            continue;
        }
        let i = starts.partition_point(|&s| s <= bucket) - 1;
        rows[i].1.generated_kwh += hour.generated_wh / 1000.0;
        rows[i].1.consumed_kwh += hour.consumed_wh / 1000.0;
        total.generated_kwh += hour.generated_wh / 1000.0;
        total.consumed_kwh += hour.consumed_wh / 1000.0;
    }
    (rows, total)
}

/// When each milestone `(quantity, threshold_kwh)` is reached: the time
/// of the newest reading of the hour in which the running total (over
/// `hours`, all time) first reaches the threshold; `None` if not yet.
pub fn milestones_reached(
    milestones: &[(MilestoneQuantity, f64)],
    hours: &BTreeMap<i64, HourEnergy>,
) -> Vec<Option<i64>> {
    let mut reached = vec![None; milestones.len()];
    let (mut generated, mut consumed) = (0.0, 0.0);
    for hour in hours.values() {
        generated += hour.generated_wh / 1000.0;
        consumed += hour.consumed_wh / 1000.0;
        for (i, &(quantity, threshold)) in milestones.iter().enumerate() {
            let total = match quantity {
                MilestoneQuantity::Generated => generated,
                MilestoneQuantity::Consumed => consumed,
            };
            if reached[i].is_none() && total >= threshold {
                reached[i] = Some(hour.last_ts);
            }
        }
    }
    reached
}

/// Why an amount of money is refused ([`parse_amount`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Neither a JSON number nor a string.
    #[error("must be a number (or a decimal string) like 1234.56")]
    NotNumber,
    /// Not a plain non-negative decimal.
    #[error("{0:?} is not an amount like 1234.56 (at least 0, at most 2 decimals)")]
    Malformed(String),
    /// More than two decimals (after trailing zeros).
    #[error("{0:?} has more than 2 decimals")]
    TooManyDecimals(String),
    /// Over [`MAX_AMOUNT_MINOR`].
    #[error("{:?} is too large; at most {}", .0, minor_to_decimal(MAX_AMOUNT_MINOR))]
    TooLarge(String),
}

/// Parses an amount of money into minor units (hundredths): a JSON number
/// or string, at least 0, at most two decimals. Exact: the decimal text
/// is parsed, never multiplied as a float.
pub fn parse_amount(value: &Value) -> Result<i64, AmountError> {
    let text = match value {
        // serde_json prints the shortest text that reads back as the same
        // f64: "1234.56" for 1234.56.
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err(AmountError::NotNumber),
    };
    parse_decimal_minor(&text)
}

fn parse_decimal_minor(text: &str) -> Result<i64, AmountError> {
    let bad = || AmountError::Malformed(text.to_owned());
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 2 {
        return Err(AmountError::TooManyDecimals(text.to_owned()));
    }
    let whole: i64 = int.parse().map_err(|_| bad())?;
    let cents: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(cents))
        .filter(|&m| m <= MAX_AMOUNT_MINOR)
        .ok_or_else(|| AmountError::TooLarge(text.to_owned()))
}

/// Largest amount accepted, in minor units (exact as an f64 / 100).
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000_000;

/// Minor units as a decimal number for JSON (`123456` → `1234.56`). The
/// nearest f64 to the two-decimal value, which JSON prints as such.
pub fn minor_to_decimal(minor: i64) -> f64 {
    // Integer division keeps both parts exact; the one rounding is the
    // final conversion of a two-decimal value.
    let text = format!(
        "{}{}.{:02}",
        if minor < 0 { "-" } else { "" },
        (minor / 100).unsigned_abs(),
        (minor % 100).unsigned_abs()
    );
    text.parse().unwrap_or(minor as f64 / 100.0)
}

/// The price of a DR event's energy.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// Per kWh, in `currency`.
    pub per_kwh: f64,
    /// From the PRICE payload descriptor; `None`: none given.
    pub currency: Option<String>,
    /// Where it came from: `event` or `program`.
    pub source: &'static str,
}

/// Why a DR event has no price ([`event_price`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// The PRICE payload descriptor's `units` are not an energy unit.
    #[error("PRICE units {0:?} are not per energy (expected KWH, MWH or WH)")]
    NotPerEnergy(String),
    /// Neither the event nor the program gives a price.
    #[error(
        "no price: the event's intervals have no PRICE payload and the program's \
                     attributes no PRICE entry"
    )]
    NoPrice,
}

/// The PRICE descriptor in a `payloadDescriptors` list: (per-kWh factor,
/// currency).
fn price_descriptor(body: &Value) -> Result<(f64, Option<String>), PriceError> {
    let descriptor = body["payloadDescriptors"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["payloadType"] == "PRICE"));
    let Some(d) = descriptor else {
        return Ok((1.0, None));
    };
    let factor = match d["units"].as_str().map(str::to_ascii_uppercase).as_deref() {
        None | Some("KWH") => 1.0,
        Some("MWH") => 0.001,
        Some("WH") => 1000.0,
        Some(other) => {
            return Err(PriceError::NotPerEnergy(other.to_owned()));
        }
    };
    Ok((factor, d["currency"].as_str().map(str::to_owned)))
}

fn duration_ms(period: &Value) -> Option<i64> {
    let text = period["duration"].as_str()?;
    let ms = IsoDuration::from_str(text).ok()?.millis()?;
    i64::try_from(ms).ok().filter(|&ms| ms > 0)
}

/// The price of an event's energy: the PRICE payloads of its intervals
/// (their mean weighted by interval duration; plain mean when a duration
/// is unknown), else the program's `attributes` entry of type PRICE; per
/// kWh after the PRICE payload descriptor's `units` (KWH, the default;
/// MWH; WH), in its `currency`. `Err` says why there is none.
pub fn event_price(event_body: &Value, program_body: &Value) -> Result<Price, PriceError> {
    let default_duration = duration_ms(&event_body["intervalPeriod"]);
    let mut prices = Vec::new();
    for interval in event_body["intervals"].as_array().into_iter().flatten() {
        let duration = duration_ms(&interval["intervalPeriod"]).or(default_duration);
        for payload in interval["payloads"].as_array().into_iter().flatten() {
            if payload["type"] == "PRICE"
                && let Some(value) = payload["values"][0].as_f64()
            {
                prices.push((value, duration));
            }
        }
    }
    if !prices.is_empty() {
        let weighted = prices.iter().all(|(_, d)| d.is_some());
        let (sum, weight) = prices.iter().fold((0.0, 0.0), |(s, w), &(p, d)| {
            let d = if weighted { d.unwrap_or(1) as f64 } else { 1.0 };
            (s + p * d, w + d)
        });
        let (factor, currency) = price_descriptor(event_body)?;
        let currency = currency.or_else(|| price_descriptor(program_body).ok().and_then(|d| d.1));
        return Ok(Price {
            per_kwh: sum / weight * factor,
            currency,
            source: "event",
        });
    }
    let attribute = program_body["attributes"]
        .as_array()
        .and_then(|attrs| attrs.iter().find(|a| a["type"] == "PRICE"))
        .and_then(|a| a["values"][0].as_f64());
    match attribute {
        Some(value) => {
            let (factor, currency) = price_descriptor(program_body)?;
            Ok(Price {
                per_kwh: value * factor,
                currency,
                source: "program",
            })
        }
        None => Err(PriceError::NoPrice),
    }
}

/// Shed energy in kWh: a mean shed of `shed_w` held for `duration_ms`.
pub fn shed_kwh(shed_w: f64, duration_ms: i64) -> f64 {
    shed_w / 1000.0 * (duration_ms as f64 / HOUR_MS as f64)
}

/// `kwh × per_kwh` rounded to minor units (half away from zero).
pub fn revenue_minor(kwh: f64, per_kwh: f64) -> i64 {
    (kwh * per_kwh * 100.0).round() as i64
}

/// Money of one period, minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MoneyTotals {
    /// Sum of expense entries.
    pub expenses: i64,
    /// Sum of revenue entries.
    pub revenue: i64,
    /// Sum of computed DR revenue (in the project's currency).
    pub dr_revenue: i64,
}

impl MoneyTotals {
    /// Revenue plus DR revenue minus expenses.
    pub const fn net(&self) -> i64 {
        self.revenue + self.dr_revenue - self.expenses
    }
}

/// What one amount is, for [`money_per_period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyKind {
    /// An expense entry.
    Expense,
    /// A revenue entry.
    Revenue,
    /// Computed DR revenue.
    DrRevenue,
}

/// Sums `(at_ms, kind, minor)` into the periods starting at `starts`, and
/// the total; amounts outside them are left out.
pub fn money_per_period(
    amounts: &[(i64, MoneyKind, i64)],
    period: Period,
    starts: &[i64],
) -> (Vec<(i64, MoneyTotals)>, MoneyTotals) {
    let mut rows: Vec<(i64, MoneyTotals)> = starts
        .iter()
        .map(|&s| (s, MoneyTotals::default()))
        .collect();
    let mut total = MoneyTotals::default();
    let end = starts.last().and_then(|&s| period.next(s));
    for &(at, kind, minor) in amounts {
        if starts.first().is_none_or(|&f| at < f) || end.is_none_or(|e| at >= e) {
            continue;
        }
        let i = starts.partition_point(|&s| s <= at) - 1;
        for totals in [&mut rows[i].1, &mut total] {
            match kind {
                MoneyKind::Expense => totals.expenses += minor,
                MoneyKind::Revenue => totals.revenue += minor,
                MoneyKind::DrRevenue => totals.dr_revenue += minor,
            }
        }
    }
    (rows, total)
}

/// The newly reached milestones of one project, as
/// [`refresh_milestones`] records them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReachedMilestone {
    /// The project.
    pub project_id: i64,
    /// The milestone's name.
    pub name: String,
    /// What it watches.
    pub quantity: MilestoneQuantity,
    /// Its threshold, kWh.
    pub threshold_kwh: f64,
    /// When it was reached, ms.
    pub reached_ms: i64,
}

/// The project's hourly energy over `[from_ms, to_ms)` (all of it for
/// `i64::MIN..i64::MAX`), and the VENs that cannot be measured with why.
pub async fn project_hours<S: crate::store::Store>(
    store: &S,
    vens: &[gridlink_protocol::VenId],
    from_ms: i64,
    to_ms: i64,
) -> Result<(BTreeMap<i64, HourEnergy>, VenChoices), crate::store::StoreError> {
    let (wanted, sources) = sources(store, vens).await?;
    let ids: Vec<i64> = wanted.iter().map(|(id, _)| *id).collect();
    let rows = store.hour_rows(&ids, from_ms, to_ms).await?;
    let previous = store.hour_rows_before(&ids, from_ms).await?;
    let mut hours = BTreeMap::new();
    for (id, role) in &wanted {
        let mine: Vec<HourRow> = rows
            .iter()
            .filter(|r| r.series_id == *id)
            .copied()
            .collect();
        let prev = previous.iter().find(|r| r.series_id == *id);
        add_series_energy(&mut hours, role, prev, &mine);
    }
    Ok((hours, sources))
}

/// Each VEN's meter and series ([`choose_series`]), or why it cannot be
/// measured.
pub type VenChoices = Vec<(gridlink_protocol::VenId, Result<VenSources, SourceError>)>;

/// The series to read per VEN, and each VEN's choice.
type Sources = (Vec<(i64, SeriesRole)>, VenChoices);

async fn sources<S: crate::store::Store>(
    store: &S,
    vens: &[gridlink_protocol::VenId],
) -> Result<Sources, crate::store::StoreError> {
    let stored = store.energy_series(vens).await?;
    let mut sources = Vec::with_capacity(vens.len());
    let mut wanted: Vec<(i64, SeriesRole)> = Vec::new();
    for ven in vens {
        let (site_meter, series) = stored
            .iter()
            .find(|(v, ..)| v == ven)
            .map_or((None, &[][..]), |(_, m, s)| (m.as_deref(), s.as_slice()));
        let chosen = choose_series(site_meter, series);
        if let Ok(c) = &chosen {
            wanted.extend(c.series.iter().cloned());
        }
        sources.push((ven.clone(), chosen));
    }
    Ok((wanted, sources))
}

/// The project's energy per UTC day over `[from_ms, to_ms)` (`from_ms`
/// a day start), summed in the database from the 1-hour rollups: one row
/// per series and day reaches the application, so months of many VENs
/// stay fast. Also the VENs' sources, as [`project_hours`].
pub async fn project_days<S: crate::store::Store>(
    store: &S,
    vens: &[gridlink_protocol::VenId],
    from_ms: i64,
    to_ms: i64,
) -> Result<(BTreeMap<i64, HourEnergy>, VenChoices), crate::store::StoreError> {
    let (wanted, sources) = sources(store, vens).await?;
    let ids: Vec<i64> = wanted.iter().map(|(id, _)| *id).collect();
    let rows = store.day_rows(&ids, from_ms, to_ms).await?;
    let mut days = BTreeMap::new();
    for (id, role) in &wanted {
        let mine: Vec<DayRow> = rows
            .iter()
            .filter(|r| r.series_id == *id)
            .copied()
            .collect();
        add_series_days(&mut days, role, &mine);
    }
    Ok((days, sources))
}

/// Computes which of the project's unreached milestones are reached now
/// (all-time totals, see [`milestones_reached`]), records each once
/// (`ProjectStore::set_milestone_reached`, only where still unset), and
/// returns those this call recorded: what an alert rule announces. A
/// milestone another process recorded first is not returned again.
pub async fn refresh_milestones<S: crate::store::Store>(
    store: &S,
    project_id: i64,
) -> Result<Vec<ReachedMilestone>, crate::store::StoreError> {
    let Some(project) = store.project(project_id).await? else {
        return Ok(Vec::new());
    };
    let open: Vec<&crate::store::MilestoneRecord> = project
        .milestones
        .iter()
        .filter(|m| m.reached_ms.is_none())
        .collect();
    if open.is_empty() || project.ven_ids.is_empty() {
        return Ok(Vec::new());
    }
    // The day of each crossing from the daily sums, then the hour from
    // that day's hourly rows.
    let (days, _) = project_days(store, &project.ven_ids, 0, i64::MAX).await?;
    let wanted: Vec<(MilestoneQuantity, f64)> =
        open.iter().map(|m| (m.quantity, m.threshold_kwh)).collect();
    let mut out = Vec::new();
    for (m, reached_day) in open.iter().zip(milestones_reached(&wanted, &days)) {
        let Some(day_last_ts) = reached_day else {
            continue;
        };
        let day = day_last_ts - day_last_ts.rem_euclid(86_400_000);
        let before: f64 = days
            .range(..day)
            .map(|(_, d)| match m.quantity {
                MilestoneQuantity::Generated => d.generated_wh,
                MilestoneQuantity::Consumed => d.consumed_wh,
            })
            .sum::<f64>()
            / 1000.0;
        let (hours, _) = project_hours(store, &project.ven_ids, day, day + 86_400_000).await?;
        let remaining = m.threshold_kwh - before;
        // Rounding may put the crossing a hair past the day's last hour:
        // then it is the day's newest reading.
        let reached_ms = if remaining <= 0.0 {
            None
        } else {
            milestones_reached(&[(m.quantity, remaining)], &hours)[0]
        }
        .unwrap_or(day_last_ts);
        if store
            .set_milestone_reached(project_id, &m.name, reached_ms)
            .await?
        {
            out.push(ReachedMilestone {
                project_id,
                name: m.name.clone(),
                quantity: m.quantity,
                threshold_kwh: m.threshold_kwh,
                reached_ms,
            });
        }
    }
    Ok(out)
}

/// [`refresh_milestones`] for every project with an open milestone: what
/// a periodic alert rule calls; each milestone is returned once, when it
/// is first recorded.
pub async fn refresh_all_milestones<S: crate::store::Store>(
    store: &S,
) -> Result<Vec<ReachedMilestone>, crate::store::StoreError> {
    let mut out = Vec::new();
    for project in store.projects().await? {
        if project.milestones.iter().any(|m| m.reached_ms.is_none()) {
            out.extend(refresh_milestones(store, project.id).await?);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the expected values are sums of small integers, exact in f64"
)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_the_clients_text() {
        let cases: [(String, &str); 9] = [
            (
                SourceError::NoSeries.to_string(),
                "no active_power, energy_import or energy_export series",
            ),
            (
                SourceError::SeveralMeters(vec!["main".into(), "pv".into()]).to_string(),
                "several meters (main, pv) and no registered site_meter: register one with PUT /api/v1/vens/{id}",
            ),
            (
                SourceError::NoSeriesOnMeter("grid".into()).to_string(),
                "meter \"grid\" has no active_power, energy_import or energy_export series",
            ),
            (
                AmountError::NotNumber.to_string(),
                "must be a number (or a decimal string) like 1234.56",
            ),
            (
                AmountError::Malformed("1e3".into()).to_string(),
                "\"1e3\" is not an amount like 1234.56 (at least 0, at most 2 decimals)",
            ),
            (
                AmountError::TooManyDecimals("1.234".into()).to_string(),
                "\"1.234\" has more than 2 decimals",
            ),
            (
                AmountError::TooLarge("1e300".into()).to_string(),
                "\"1e300\" is too large; at most 1000000000000",
            ),
            (
                PriceError::NotPerEnergy("KW".into()).to_string(),
                "PRICE units \"KW\" are not per energy (expected KWH, MWH or WH)",
            ),
            (
                PriceError::NoPrice.to_string(),
                "no price: the event's intervals have no PRICE payload and the program's attributes no PRICE entry",
            ),
        ];
        for (rendered, text) in cases {
            assert_eq!(rendered, text);
        }
    }
    use serde_json::json;

    const DAY: i64 = 86_400_000;

    fn row(bucket_h: i64, values: &[f64]) -> HourRow {
        HourRow {
            series_id: 1,
            bucket: bucket_h * HOUR_MS,
            count: values.len() as i64,
            sum: values.iter().sum(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            last_ts: bucket_h * HOUR_MS + 3_000_000,
            last_value: *values.last().unwrap(),
        }
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-01-31T13:00Z
        let t = 1_769_864_400_000;
        let jan31 = Period::Day.start_of(t).unwrap();
        assert_eq!(jan31, 1_769_817_600_000);
        assert_eq!(Period::Day.next(jan31), Some(jan31 + DAY));
        let jan = Period::Month.start_of(t).unwrap();
        assert_eq!(jan, 1_767_225_600_000);
        assert_eq!(Period::Month.next(jan), Some(jan31 + DAY));
        // December to January.
        let dec = Period::Month.start_of(jan - 1).unwrap();
        assert_eq!(Period::Month.next(dec), Some(jan));
        assert_eq!(
            Period::Month.starts(t, t + 1, 10),
            Some(vec![jan]),
            "to rounds up"
        );
        assert_eq!(Period::Day.starts(jan, jan + 3 * DAY, 2), None, "too many");
        assert_eq!(Period::Day.starts(jan, jan, 2), Some(vec![]));
    }

    #[test]
    fn names_round_trip() {
        for s in ProjectStatus::ALL {
            assert_eq!(ProjectStatus::from_name(s.as_str()), Ok(*s));
        }
        assert!(
            ProjectKind::from_name("wind")
                .unwrap_err()
                .to_string()
                .contains("renewable")
        );
    }

    #[test]
    fn counters_count_increases_and_survive_resets() {
        let mut hours = BTreeMap::new();
        let previous = row(0, &[100.0]);
        let rows = [
            row(1, &[110.0, 130.0]),     // +30 from the previous hour's last
            row(2, &[140.0, 5.0, 20.0]), // reset: 20 - 5 = 15
            row(4, &[50.0]),             // +30 across a gap
        ];
        add_series_energy(
            &mut hours,
            &SeriesRole::ImportCounter,
            Some(&previous),
            &rows,
        );
        let consumed: Vec<f64> = hours.values().map(|h| h.consumed_wh).collect();
        assert_eq!(consumed, [30.0, 15.0, 30.0]);
        assert!(hours.values().all(|h| h.generated_wh == 0.0));
        // Without a previous row the first hour counts last - min.
        let mut first = BTreeMap::new();
        add_series_energy(&mut first, &SeriesRole::ExportCounter, None, &rows[..1]);
        assert_eq!(first[&HOUR_MS].generated_wh, 20.0);
    }

    #[test]
    fn power_means_split_into_consumed_and_generated() {
        let mut hours = BTreeMap::new();
        let rows = [row(0, &[1000.0, 3000.0]), row(1, &[-500.0, -1500.0])];
        let role = SeriesRole::Power {
            consumed: true,
            generated: true,
        };
        add_series_energy(&mut hours, &role, None, &rows);
        assert_eq!(hours[&0].consumed_wh, 2000.0);
        assert_eq!(hours[&HOUR_MS].generated_wh, 1000.0);
        // A direction with a counter is not taken from power.
        let mut only = BTreeMap::new();
        let role = SeriesRole::Power {
            consumed: false,
            generated: true,
        };
        add_series_energy(&mut only, &role, None, &rows);
        assert_eq!(only[&0].consumed_wh, 0.0);
    }

    #[test]
    fn series_choice_follows_the_site_meter() {
        let s = |id, meter: &str, quantity| EnergySeries {
            series_id: id,
            meter: meter.into(),
            quantity,
        };
        let series = [s(1, "main", 0), s(2, "main", 7), s(3, "pv", 0)];
        let chosen = choose_series(Some("main"), &series).unwrap();
        assert_eq!(chosen.meter, "main");
        assert_eq!(
            chosen.series,
            [
                (2, SeriesRole::ImportCounter),
                (
                    1,
                    SeriesRole::Power {
                        consumed: false,
                        generated: true
                    }
                )
            ]
        );
        assert!(
            choose_series(None, &series)
                .unwrap_err()
                .to_string()
                .contains("main, pv")
        );
        assert_eq!(choose_series(None, &series[..2]).unwrap().meter, "main");
        assert!(choose_series(None, &[]).is_err());
        assert!(choose_series(Some("grid"), &series).is_err());
    }

    #[test]
    fn periods_sum_hours_and_milestones_use_running_totals() {
        let mut hours = BTreeMap::new();
        for h in 0..48 {
            hours.insert(
                h * HOUR_MS,
                HourEnergy {
                    generated_wh: 1000.0,
                    consumed_wh: 500.0,
                    last_ts: h * HOUR_MS + 10,
                },
            );
        }
        let starts = Period::Day.starts(0, 2 * DAY, 10).unwrap();
        let (rows, total) = energy_per_period(&hours, Period::Day, &starts);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].1.generated_kwh, 24.0);
        assert_eq!(total.consumed_kwh, 24.0);
        let reached = milestones_reached(
            &[
                (MilestoneQuantity::Generated, 10.0),
                (MilestoneQuantity::Consumed, 10.0),
                (MilestoneQuantity::Consumed, 1000.0),
            ],
            &hours,
        );
        assert_eq!(
            reached,
            [Some(9 * HOUR_MS + 10), Some(19 * HOUR_MS + 10), None]
        );
    }

    #[test]
    fn amounts_are_exact_minor_units() {
        assert_eq!(parse_amount(&json!(1234.56)), Ok(123_456));
        assert_eq!(parse_amount(&json!("0.1")), Ok(10));
        assert_eq!(parse_amount(&json!(7)), Ok(700));
        assert_eq!(parse_amount(&json!("12.50")), Ok(1250));
        assert!(parse_amount(&json!(-1)).is_err());
        assert!(
            parse_amount(&json!(1.234))
                .unwrap_err()
                .to_string()
                .contains("2 decimals")
        );
        assert!(parse_amount(&json!("1e3")).is_err());
        assert!(parse_amount(&json!(true)).is_err());
        assert!(parse_amount(&json!(1e300)).is_err());
        // 0.1 + 0.2 summed as minor units is exactly 0.3.
        let sum = parse_amount(&json!(0.1)).unwrap() + parse_amount(&json!(0.2)).unwrap();
        assert_eq!(minor_to_decimal(sum), 0.3);
        assert_eq!(minor_to_decimal(-123_456), -1234.56);
        assert_eq!(minor_to_decimal(5), 0.05);
    }

    #[test]
    fn prices_come_from_the_event_then_the_program() {
        let event = json!({
            "payloadDescriptors": [{"payloadType": "PRICE", "units": "MWH", "currency": "EUR"}],
            "intervalPeriod": {"start": "2026-01-01T00:00:00Z", "duration": "PT1H"},
            "intervals": [
                {"id": 0, "payloads": [{"type": "PRICE", "values": [100.0]}]},
                {"id": 1, "intervalPeriod": {"duration": "PT3H"},
                 "payloads": [{"type": "PRICE", "values": [200.0]}]}
            ]
        });
        let price = event_price(&event, &json!({})).unwrap();
        // (100 × 1 h + 200 × 3 h) / 4 h = 175 per MWh = 0.175 per kWh.
        assert!((price.per_kwh - 0.175).abs() < 1e-12);
        assert_eq!(price.currency.as_deref(), Some("EUR"));
        let program = json!({
            "attributes": [{"type": "PRICE", "values": [0.3]}],
            "payloadDescriptors": [{"payloadType": "PRICE", "currency": "USD"}]
        });
        let plain =
            json!({"intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]});
        let price = event_price(&plain, &program).unwrap();
        assert_eq!((price.per_kwh, price.source), (0.3, "program"));
        assert_eq!(price.currency.as_deref(), Some("USD"));
        assert!(
            event_price(&plain, &json!({}))
                .unwrap_err()
                .to_string()
                .contains("no price")
        );
        let kw = json!({"attributes": [{"type": "PRICE", "values": [1.0]}],
                        "payloadDescriptors": [{"payloadType": "PRICE", "units": "KW"}]});
        assert!(
            event_price(&plain, &kw)
                .unwrap_err()
                .to_string()
                .contains("KW")
        );
    }

    #[test]
    fn dr_revenue_and_money_totals() {
        // 2 kW shed for 90 minutes = 3 kWh, at 0.25 = 0.75.
        let kwh = shed_kwh(2000.0, 90 * 60_000);
        assert!((kwh - 3.0).abs() < 1e-12);
        assert_eq!(revenue_minor(kwh, 0.25), 75);
        let starts = Period::Day.starts(0, 2 * DAY, 10).unwrap();
        let amounts = [
            (10, MoneyKind::Expense, 1000),
            (DAY + 1, MoneyKind::Revenue, 2500),
            (DAY + 2, MoneyKind::DrRevenue, 75),
            (2 * DAY, MoneyKind::Revenue, 99_999), // outside
        ];
        let (rows, total) = money_per_period(&amounts, Period::Day, &starts);
        assert_eq!(rows[0].1.net(), -1000);
        assert_eq!(rows[1].1.net(), 2575);
        assert_eq!(total.net(), 1575);
        assert_eq!(total.dr_revenue, 75);
    }
}
