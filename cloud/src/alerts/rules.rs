//! The rules as pure functions: what a condition is, given readings or a
//! VEN's record and the time. No I/O; the engine (`super::engine`) feeds
//! them from the store and the feed and turns their findings into
//! [`raise`](super::raise) and [`clear`](super::clear).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::alerts::Rule;
use crate::store::VenRecord;

/// A rule's finding about one subject: the alert's message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// A human sentence.
    pub message: String,
    /// Rule-specific JSON.
    pub details: Value,
}

/// What a series measures, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// A cumulative counter (`energy_import`, `energy_export`), Wh.
    EnergyCounter,
    /// `active_power`, W.
    ActivePower,
}

/// The thresholds of the series rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesRules {
    /// What the series measures.
    pub kind: SeriesKind,
    /// Whether its meter is declared import-only.
    pub import_only: bool,
    /// Largest allowed |Δ power| between consecutive readings, W.
    pub spike_w: Option<f64>,
    /// Intervals of missing readings that make a gap.
    pub gap_intervals: Option<u32>,
}

/// Checks new readings of one series against the readings stored before
/// them. `before` holds up to two stored readings `(ts_ms, value)`, newest
/// first; `new` the new readings, oldest first. Returns, for every rule
/// that applies to the series, the first finding in `new` (`None`: the
/// readings are clean for that rule, so its condition is clear).
pub fn check_series(
    rules: &SeriesRules,
    before: &[(i64, f64)],
    new: &[(i64, f64)],
) -> BTreeMap<Rule, Option<Finding>> {
    let mut out = BTreeMap::new();
    let counter = rules.kind == SeriesKind::EnergyCounter;
    let power = rules.kind == SeriesKind::ActivePower;
    if counter {
        out.insert(Rule::EnergyCounterBackwards, None);
    }
    if power && rules.import_only {
        out.insert(Rule::NegativeImport, None);
    }
    if power && rules.spike_w.is_some() {
        out.insert(Rule::PowerSpike, None);
    }
    if rules.gap_intervals.is_some() {
        out.insert(Rule::DataGap, None);
    }
    // History, oldest first: the stored readings, then each new one as it
    // is checked.
    let mut history: Vec<(i64, f64)> = before.iter().take(2).rev().copied().collect();
    for &(ts, value) in new {
        let previous = history.last().copied();
        let interval = match history.as_slice() {
            [.., (t0, _), (t1, _)] => Some(t1 - t0),
            _ => None,
        };
        if let Some((prev_ts, prev_value)) = previous {
            if counter && value < prev_value {
                first(&mut out, Rule::EnergyCounterBackwards, || Finding {
                    message: format!(
                        "energy counter went backwards from {prev_value} to {value} Wh"
                    ),
                    details: json!({
                        "previous_ts_ms": prev_ts, "previous_value": prev_value,
                        "ts_ms": ts, "value": value, "delta": value - prev_value,
                    }),
                });
            }
            if let (true, Some(bound)) = (power, rules.spike_w) {
                let delta = value - prev_value;
                if delta.abs() > bound {
                    first(&mut out, Rule::PowerSpike, || Finding {
                        message: format!(
                            "active power jumped by {delta} W between readings (bound {bound} W)"
                        ),
                        details: json!({
                            "previous_ts_ms": prev_ts, "previous_value": prev_value,
                            "ts_ms": ts, "value": value, "delta_w": delta, "bound_w": bound,
                        }),
                    });
                }
            }
            if let (Some(intervals), Some(interval)) = (rules.gap_intervals, interval) {
                let gap = ts - prev_ts;
                if interval > 0 && gap > interval.saturating_mul(i64::from(intervals)) {
                    first(&mut out, Rule::DataGap, || Finding {
                        message: format!(
                            "no readings for {} s (interval {} s)",
                            gap / 1000,
                            interval / 1000
                        ),
                        details: json!({
                            "from_ms": prev_ts, "to_ms": ts, "gap_ms": gap,
                            "interval_ms": interval, "intervals": intervals,
                        }),
                    });
                }
            }
        }
        if power && rules.import_only && value < 0.0 {
            first(&mut out, Rule::NegativeImport, || Finding {
                message: format!("negative active power {value} W on an import-only meter"),
                details: json!({ "ts_ms": ts, "value": value }),
            });
        }
        history.push((ts, value));
        if history.len() > 2 {
            history.remove(0);
        }
    }
    out
}

fn first(out: &mut BTreeMap<Rule, Option<Finding>>, rule: Rule, finding: impl FnOnce() -> Finding) {
    if let Some(slot @ None) = out.get_mut(&rule) {
        *slot = Some(finding());
    }
}

/// How long a VEN may be silent before it is offline: `offline_after_ms`
/// if configured, else `intervals` times its reporting interval (at least
/// 60 s), or 300 s while no interval is known.
pub fn silence_limit_ms(
    offline_after_ms: Option<i64>,
    intervals: u32,
    reporting_interval_ms: Option<i64>,
) -> i64 {
    offline_after_ms.unwrap_or_else(|| {
        reporting_interval_ms.map_or(300_000, |interval| {
            interval.saturating_mul(i64::from(intervals)).max(60_000)
        })
    })
}

/// Whether a VEN is offline at `now_ms`: its last status was offline (a
/// last will or a clean shutdown), or it was silent longer than
/// `silence_limit_ms`. A VEN never heard from is not judged.
pub fn offline(ven: &VenRecord, now_ms: i64, silence_limit_ms: i64) -> Option<Finding> {
    let last_seen = ven.last_seen_ms?;
    let silent_ms = now_ms.saturating_sub(last_seen);
    if ven.online == Some(false) {
        return Some(Finding {
            message: format!("{} is offline (last will or shutdown)", ven.ven_id),
            details: json!({ "reason": "last_will", "last_seen_ms": last_seen }),
        });
    }
    (silent_ms > silence_limit_ms).then(|| Finding {
        message: format!("{} has been silent for {} s", ven.ven_id, silent_ms / 1000),
        details: json!({
            "reason": "silence", "last_seen_ms": last_seen, "silent_ms": silent_ms,
            "limit_ms": silence_limit_ms,
        }),
    })
}

/// The `dr_no_shed` finding for a VEN of an ended event, from its mean
/// site power in the baseline window and during the event: shed =
/// baseline − during, a finding when it is at most `min_shed_w`.
pub fn no_shed(
    event_id: &str,
    ven_id: &str,
    baseline_w: f64,
    during_w: f64,
    min_shed_w: f64,
) -> Option<Finding> {
    let shed = baseline_w - during_w;
    (shed <= min_shed_w).then(|| Finding {
        message: format!(
            "{ven_id} shed {shed:.0} W during event {event_id} (at most {min_shed_w:.0} W)"
        ),
        details: json!({
            "baseline_w": baseline_w, "during_w": during_w, "shed_w": shed,
            "min_shed_w": min_shed_w,
        }),
    })
}

#[cfg(test)]
mod tests {
    use gridlink_protocol::VenId;

    use super::*;

    fn power(import_only: bool, spike: Option<f64>) -> SeriesRules {
        SeriesRules {
            kind: SeriesKind::ActivePower,
            import_only,
            spike_w: spike,
            gap_intervals: Some(3),
        }
    }

    #[test]
    fn counter_backwards_is_found_against_the_stored_reading() {
        let rules = SeriesRules {
            kind: SeriesKind::EnergyCounter,
            import_only: false,
            spike_w: None,
            gap_intervals: None,
        };
        let found = check_series(&rules, &[(2000, 100.0), (1000, 90.0)], &[(3000, 95.0)]);
        let finding = found[&Rule::EnergyCounterBackwards].as_ref().unwrap();
        assert_eq!(finding.details["previous_value"], 100.0);
        assert_eq!(found.len(), 1, "{found:?}");
        let clean = check_series(&rules, &[(2000, 100.0)], &[(3000, 100.0), (4000, 101.0)]);
        assert_eq!(clean[&Rule::EnergyCounterBackwards], None);
        let within = check_series(&rules, &[], &[(1000, 5.0), (2000, 4.0)]);
        assert!(within[&Rule::EnergyCounterBackwards].is_some());
    }

    #[test]
    fn negative_import_only_on_import_only_meters() {
        let found = check_series(&power(true, None), &[], &[(1000, 10.0), (2000, -5.0)]);
        assert_eq!(
            found[&Rule::NegativeImport].as_ref().unwrap().details["value"],
            -5.0
        );
        let found = check_series(&power(false, None), &[], &[(1000, -5.0)]);
        assert!(!found.contains_key(&Rule::NegativeImport));
    }

    #[test]
    fn spikes_beyond_the_bound() {
        let rules = power(false, Some(1000.0));
        let found = check_series(&rules, &[(1000, 500.0)], &[(2000, 1600.0)]);
        assert_eq!(
            found[&Rule::PowerSpike].as_ref().unwrap().details["delta_w"],
            1100.0
        );
        let found = check_series(&rules, &[(1000, 500.0)], &[(2000, 1500.0), (3000, 600.0)]);
        assert_eq!(found[&Rule::PowerSpike], None, "exactly the bound is fine");
    }

    #[test]
    fn gaps_are_multiples_of_the_interval() {
        let rules = power(false, None);
        // Interval 1 s from the stored readings; 3.5 s missing > 3 intervals.
        let found = check_series(&rules, &[(2000, 1.0), (1000, 1.0)], &[(5500, 1.0)]);
        let gap = found[&Rule::DataGap].as_ref().unwrap();
        assert_eq!(gap.details["gap_ms"], 3500);
        assert_eq!(gap.details["interval_ms"], 1000);
        let found = check_series(&rules, &[(2000, 1.0), (1000, 1.0)], &[(5000, 1.0)]);
        assert_eq!(found[&Rule::DataGap], None);
        // Without two earlier readings the interval is unknown.
        let found = check_series(&rules, &[(2000, 1.0)], &[(90_000, 1.0)]);
        assert_eq!(found[&Rule::DataGap], None);
    }

    #[test]
    fn offline_by_last_will_or_silence() {
        let mut ven = VenRecord {
            ven_id: VenId::new("ven-1").unwrap(),
            online: Some(true),
            last_seen_ms: Some(1_000),
            last_reading_ms: None,
            ingest_lag_ms: None,
            agent_version: None,
            site: None,
            site_meter: None,
        };
        assert_eq!(offline(&ven, 50_000, 60_000), None);
        assert!(offline(&ven, 62_000, 60_000).is_some());
        ven.online = Some(false);
        assert_eq!(
            offline(&ven, 2_000, 60_000).unwrap().details["reason"],
            "last_will"
        );
        ven.last_seen_ms = None;
        assert_eq!(offline(&ven, 1_000_000, 60_000), None);
        assert_eq!(silence_limit_ms(Some(5_000), 3, Some(100_000)), 5_000);
        assert_eq!(silence_limit_ms(None, 3, Some(100_000)), 300_000);
        assert_eq!(silence_limit_ms(None, 3, Some(1_000)), 60_000);
        assert_eq!(silence_limit_ms(None, 3, None), 300_000);
    }

    #[test]
    fn no_shed_at_or_below_the_threshold() {
        assert!(no_shed("e1", "ven-1", 1000.0, 1000.0, 0.0).is_some());
        assert!(no_shed("e1", "ven-1", 1000.0, 1200.0, 0.0).is_some());
        assert!(no_shed("e1", "ven-1", 1000.0, 400.0, 0.0).is_none());
        assert!(no_shed("e1", "ven-1", 1000.0, 400.0, 600.0).is_some());
    }
}
