//! The alert engine's and delivery's counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Channel;

/// Alert counters, rendered at `/metrics` with the rest.
#[derive(Debug, Default)]
pub struct AlertMetrics {
    /// Alerts opened by this process.
    pub opened: AtomicU64,
    /// Alerts resolved by this process.
    pub resolved: AtomicU64,
    /// Notifications delivered, per channel (in [`Channel::ALL`] order).
    pub sent: [AtomicU64; 3],
    /// Failed delivery attempts, per channel.
    pub failed: [AtomicU64; 3],
    /// Attempts that were retries (not the first), per channel.
    pub retries: [AtomicU64; 3],
    /// Notifications given up after the last attempt, per channel.
    pub gave_up: [AtomicU64; 3],
    /// Rule evaluations that failed (database errors; retried next time).
    pub rule_errors: AtomicU64,
    /// Feed items skipped because the engine fell behind.
    pub feed_lagged: AtomicU64,
}

impl AlertMetrics {
    /// Counts one delivery attempt's outcome.
    pub fn count(&self, channel: Channel, attempts: u32, delivered: bool, gave_up: bool) {
        let i = channel_index(channel);
        if attempts > 1 {
            self.retries[i].fetch_add(1, Ordering::Relaxed);
        }
        if delivered {
            self.sent[i].fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed[i].fetch_add(1, Ordering::Relaxed);
        }
        if gave_up {
            self.gave_up[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "gridlink_alerts_opened_total",
                "Alerts opened by this process.",
                &self.opened,
            ),
            (
                "gridlink_alerts_resolved_total",
                "Alerts resolved by this process.",
                &self.resolved,
            ),
            (
                "gridlink_alerts_rule_errors_total",
                "Rule evaluations that failed on a database error.",
                &self.rule_errors,
            ),
            (
                "gridlink_alerts_feed_lagged_total",
                "Feed items the alert engine skipped because it fell behind.",
                &self.feed_lagged,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        for (name, help, values) in [
            (
                "gridlink_alert_notifications_sent_total",
                "Notifications delivered, by channel.",
                &self.sent,
            ),
            (
                "gridlink_alert_notifications_failed_total",
                "Failed delivery attempts, by channel.",
                &self.failed,
            ),
            (
                "gridlink_alert_notifications_retries_total",
                "Delivery attempts that were retries, by channel.",
                &self.retries,
            ),
            (
                "gridlink_alert_notifications_gave_up_total",
                "Notifications given up after the last attempt, by channel.",
                &self.gave_up,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for channel in Channel::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{channel=\"{}\"}} {}",
                    channel.as_str(),
                    values[channel_index(channel)].load(Ordering::Relaxed)
                );
            }
        }
        out
    }
}

fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Webhook => 0,
        Channel::Email => 1,
        Channel::Sns => 2,
    }
}
