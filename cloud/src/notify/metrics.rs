//! The notifier's counters: webhook outcomes, the outbox depth, the
//! latency of each POST (a histogram), and the MQTT publisher's counts.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, seconds.
pub const LATENCY_BUCKETS_S: [f64; 11] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Notifier counters, rendered at `/metrics` with the rest.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    /// Webhook notifications delivered (2xx).
    pub delivered: AtomicU64,
    /// Failed attempts that will be retried.
    pub retried: AtomicU64,
    /// Notifications marked failed after the last attempt.
    pub failed: AtomicU64,
    /// Rows waiting in the outbox (not delivered, not failed), as last read.
    pub queue_depth: AtomicU64,
    /// Attempts per latency bucket ([`LATENCY_BUCKETS_S`], then +Inf), not
    /// cumulative.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    /// Sum of the attempts' latency, µs.
    latency_sum_us: AtomicU64,
    /// MQTT notifications the broker acknowledged.
    pub mqtt_published: AtomicU64,
    /// MQTT notifications dropped: queue full, or no publisher.
    pub mqtt_dropped: AtomicU64,
    /// 1 while the MQTT publisher is connected.
    pub mqtt_connected: AtomicU64,
}

impl NotifyMetrics {
    /// Records the duration of one POST (whatever its outcome).
    pub fn observe_latency(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS_S
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, value) in [
            (
                "gridlink_notify_webhooks_delivered_total",
                "counter",
                "OpenADR webhook notifications delivered (2xx).",
                &self.delivered,
            ),
            (
                "gridlink_notify_webhooks_retried_total",
                "counter",
                "Failed webhook attempts that will be retried.",
                &self.retried,
            ),
            (
                "gridlink_notify_webhooks_failed_total",
                "counter",
                "Webhook notifications marked failed after the last attempt.",
                &self.failed,
            ),
            (
                "gridlink_notify_webhooks_queued",
                "gauge",
                "Webhook notifications waiting in the outbox, as last read.",
                &self.queue_depth,
            ),
            (
                "gridlink_notify_mqtt_published_total",
                "counter",
                "MQTT notifications the broker acknowledged.",
                &self.mqtt_published,
            ),
            (
                "gridlink_notify_mqtt_dropped_total",
                "counter",
                "MQTT notifications dropped (queue full or no publisher).",
                &self.mqtt_dropped,
            ),
            (
                "gridlink_notify_mqtt_connected",
                "gauge",
                "1 while the MQTT notifier is connected to the broker.",
                &self.mqtt_connected,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let name = "gridlink_notify_webhook_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Duration of each webhook POST, seconds.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, count) in self.latency_buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS_S
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum of microseconds far below 2^52"
        )]
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_inf() {
        let m = NotifyMetrics::default();
        m.observe_latency(Duration::from_millis(5));
        m.observe_latency(Duration::from_millis(300));
        m.observe_latency(Duration::from_mins(1));
        m.delivered.store(2, Ordering::Relaxed);
        let text = m.render();
        let name = "gridlink_notify_webhook_latency_seconds";
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.01\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.5\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"30\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 3\n")),
            "{text}"
        );
        assert!(text.contains(&format!("{name}_count 3\n")), "{text}");
        assert!(text.contains(&format!("{name}_sum 60.305\n")), "{text}");
        assert!(text.contains("gridlink_notify_webhooks_delivered_total 2\n"));
        assert!(text.contains("# TYPE gridlink_notify_webhooks_queued gauge\n"));
    }
}
