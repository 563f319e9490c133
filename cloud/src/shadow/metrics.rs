//! The shadow service's counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Status codes a rejection can carry, in metrics label order.
const CODES: [u16; 5] = [400, 404, 409, 413, 500];

/// The shadow service's counters, rendered at `/metrics` with the rest.
#[derive(Debug, Default)]
pub struct ShadowMetrics {
    /// Requests received on `shadow/update` and `shadow/get`.
    pub requests: AtomicU64,
    /// Updates accepted (from VENs and from the API).
    pub updates_accepted: AtomicU64,
    /// `update/delta` messages published.
    pub deltas_published: AtomicU64,
    /// Requests whose payload was not JSON of the request's shape (also
    /// counted as rejected with 400).
    pub malformed: AtomicU64,
    /// 1 while the shadow service is connected to the broker.
    pub connected: AtomicU64,
    rejected: [AtomicU64; 5],
}

impl ShadowMetrics {
    /// Counts a rejection with `code`.
    pub fn rejected(&self, code: u16) {
        let i = CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(CODES.len() - 1);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections with `code` so far.
    pub fn rejected_count(&self, code: u16) -> u64 {
        CODES
            .iter()
            .position(|&c| c == code)
            .map_or(0, |i| self.rejected[i].load(Ordering::Relaxed))
    }

    /// Prometheus text for these counters.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (name, kind, help, value) in [
            (
                "gridlink_shadow_requests_total",
                "counter",
                "Shadow update and get requests received.",
                &self.requests,
            ),
            (
                "gridlink_shadow_updates_accepted_total",
                "counter",
                "Shadow updates accepted (VENs and API).",
                &self.updates_accepted,
            ),
            (
                "gridlink_shadow_deltas_published_total",
                "counter",
                "Shadow update/delta messages published.",
                &self.deltas_published,
            ),
            (
                "gridlink_shadow_malformed_total",
                "counter",
                "Shadow requests that were not JSON of the request's shape.",
                &self.malformed,
            ),
            (
                "gridlink_shadow_connected",
                "gauge",
                "1 while the shadow service is connected to the broker.",
                &self.connected,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gridlink_shadow_rejected_total Shadow requests rejected, by code.\n# TYPE gridlink_shadow_rejected_total counter"
        );
        for code in CODES {
            let _ = writeln!(
                out,
                "gridlink_shadow_rejected_total{{code=\"{code}\"}} {}",
                self.rejected_count(code)
            );
        }
        out
    }
}
