//! The daily export's counters.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The export's counters, rendered at `/metrics`.
#[derive(Debug, Default)]
pub struct ExportMetrics {
    /// Scheduled export runs that wrote a day.
    pub runs: AtomicU64,
    /// Scheduled export attempts that failed (retried).
    pub failures: AtomicU64,
    /// Rows written by the last successful run.
    pub last_rows: AtomicU64,
    /// Start of the last day exported, ms since the epoch (0: none yet).
    pub last_day_ms: AtomicI64,
    /// Duration of the last successful run, ms.
    pub last_duration_ms: AtomicU64,
}

impl ExportMetrics {
    /// Prometheus text.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (name, kind, help, value) in [
            (
                "gridlink_export_runs_total",
                "counter",
                "Daily exports written by this process.",
                self.runs.load(Ordering::Relaxed).to_string(),
            ),
            (
                "gridlink_export_failures_total",
                "counter",
                "Daily export attempts that failed (retried with backoff).",
                self.failures.load(Ordering::Relaxed).to_string(),
            ),
            (
                "gridlink_export_last_rows",
                "gauge",
                "Rows written by the last daily export.",
                self.last_rows.load(Ordering::Relaxed).to_string(),
            ),
            (
                "gridlink_export_last_day_timestamp_seconds",
                "gauge",
                "Start of the last day exported (0: none yet).",
                (self.last_day_ms.load(Ordering::Relaxed) / 1000).to_string(),
            ),
            (
                "gridlink_export_last_duration_seconds",
                "gauge",
                "Duration of the last daily export.",
                format!(
                    "{:.3}",
                    self.last_duration_ms.load(Ordering::Relaxed) as f64 / 1e3
                ),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
