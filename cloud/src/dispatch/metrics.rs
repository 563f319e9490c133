//! The dispatcher's counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Dispatch counters, rendered at `/metrics` with the rest.
#[derive(Debug, Default)]
pub struct DispatchMetrics {
    /// Commands published (including republications).
    pub published: AtomicU64,
    /// Commands the broker acknowledged.
    pub acknowledged: AtomicU64,
    /// 1 while the dispatcher is connected.
    pub connected: AtomicU64,
}

impl DispatchMetrics {
    /// The dispatcher's counters, Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "gridlink_dispatch_commands_published_total",
                "Commands published on ven/cmd (including republications).",
                self.published.load(Ordering::Relaxed),
            ),
            (
                "gridlink_dispatch_commands_acknowledged_total",
                "Commands the broker acknowledged (marked sent).",
                self.acknowledged.load(Ordering::Relaxed),
            ),
            (
                "gridlink_dispatch_connected",
                "1 while the dispatcher is connected to the broker.",
                self.connected.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                &mut out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
