//! MQTT ingest's counters: messages, batches, readings, database writes
//! and drops by reason.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why ingest dropped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The payload did not decode or failed validation.
    Malformed,
    /// Over the 128 KB payload limit.
    Oversized,
    /// The ven id in the payload differs from the topic's.
    VenMismatch,
    /// A topic that is not one of ours.
    ForeignTopic,
    /// A VEN the cloud does not know, when unknown VENs are refused.
    UnknownVen,
    /// An acknowledgement for an event that does not exist or was never
    /// sent to the acknowledging VEN.
    UnknownEvent,
    /// The database refused the batch for a reason other than being
    /// unreachable (it would fail again on every retry).
    Rejected,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 7] = [
        Self::Malformed,
        Self::Oversized,
        Self::VenMismatch,
        Self::ForeignTopic,
        Self::UnknownVen,
        Self::UnknownEvent,
        Self::Rejected,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Oversized => "oversized",
            Self::VenMismatch => "ven_mismatch",
            Self::ForeignTopic => "foreign_topic",
            Self::UnknownVen => "unknown_ven",
            Self::UnknownEvent => "unknown_event",
            Self::Rejected => "rejected",
        }
    }
}

/// MQTT ingest's counters, rendered at `/metrics` with the rest.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// MQTT messages received on any subscribed topic.
    pub messages_received: AtomicU64,
    /// Telemetry batches stored.
    pub batches_ingested: AtomicU64,
    /// Readings stored.
    pub readings_ingested: AtomicU64,
    /// Batches skipped as already stored.
    pub duplicate_batches: AtomicU64,
    /// Database write transactions (groups of batches).
    pub db_writes: AtomicU64,
    /// Sum of database write latencies, microseconds.
    pub db_write_micros: AtomicU64,
    /// Longest database write, microseconds.
    pub db_write_max_micros: AtomicU64,
    /// Failed database writes (retried; nothing acknowledged).
    pub db_write_errors: AtomicU64,
    /// Receive time minus newest reading time of the last batch, ms.
    pub ingest_lag_ms: AtomicI64,
    /// 1 while the MQTT connection is up.
    pub mqtt_connected: AtomicU64,
    dropped: [AtomicU64; 7],
}

impl IngestMetrics {
    /// Counts a dropped message.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Messages dropped for `reason` so far.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    /// Records one database write of `micros`.
    pub fn db_write(&self, micros: u64) {
        self.db_writes.fetch_add(1, Ordering::Relaxed);
        self.db_write_micros.fetch_add(micros, Ordering::Relaxed);
        self.db_write_max_micros
            .fetch_max(micros, Ordering::Relaxed);
    }

    /// Ingest's part of the Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let plain: [(&str, &str, &str, u64); 10] = [
            (
                "gridlink_mqtt_messages_total",
                "counter",
                "MQTT messages received.",
                self.messages_received.load(Ordering::Relaxed),
            ),
            (
                "gridlink_ingest_batches_total",
                "counter",
                "Telemetry batches stored.",
                self.batches_ingested.load(Ordering::Relaxed),
            ),
            (
                "gridlink_ingest_readings_total",
                "counter",
                "Readings stored.",
                self.readings_ingested.load(Ordering::Relaxed),
            ),
            (
                "gridlink_ingest_duplicate_batches_total",
                "counter",
                "Batches already stored, skipped.",
                self.duplicate_batches.load(Ordering::Relaxed),
            ),
            (
                "gridlink_db_writes_total",
                "counter",
                "Database write transactions.",
                self.db_writes.load(Ordering::Relaxed),
            ),
            (
                "gridlink_db_write_seconds_sum",
                "counter",
                "Total database write time.",
                0,
            ),
            (
                "gridlink_db_write_errors_total",
                "counter",
                "Failed database writes (retried).",
                self.db_write_errors.load(Ordering::Relaxed),
            ),
            (
                "gridlink_db_write_max_seconds",
                "gauge",
                "Longest database write.",
                0,
            ),
            (
                "gridlink_ingest_lag_seconds",
                "gauge",
                "Receive time minus newest reading time of the last batch.",
                0,
            ),
            (
                "gridlink_mqtt_connected",
                "gauge",
                "1 while connected to the broker.",
                self.mqtt_connected.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in plain {
            let value = match name {
                "gridlink_db_write_seconds_sum" => format!(
                    "{:.6}",
                    self.db_write_micros.load(Ordering::Relaxed) as f64 / 1e6
                ),
                "gridlink_db_write_max_seconds" => format!(
                    "{:.6}",
                    self.db_write_max_micros.load(Ordering::Relaxed) as f64 / 1e6
                ),
                "gridlink_ingest_lag_seconds" => format!(
                    "{:.3}",
                    self.ingest_lag_ms.load(Ordering::Relaxed) as f64 / 1e3
                ),
                _ => value.to_string(),
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        self.render_drops(&mut out);
        out
    }
}

impl IngestMetrics {
    /// Dropped messages by reason, Prometheus text.
    fn render_drops(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gridlink_ingest_dropped_total Messages dropped, by reason.\n# TYPE gridlink_ingest_dropped_total counter"
        );
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "gridlink_ingest_dropped_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.dropped_count(reason)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_drop_reasons() {
        let m = IngestMetrics::default();
        m.dropped(DropReason::VenMismatch);
        m.dropped(DropReason::VenMismatch);
        m.db_write(1500);
        m.db_write(500);
        m.readings_ingested.store(7, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains("gridlink_ingest_dropped_total{reason=\"ven_mismatch\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("gridlink_ingest_dropped_total{reason=\"malformed\"} 0\n"));
        assert!(
            text.contains("gridlink_db_write_seconds_sum 0.002000\n"),
            "{text}"
        );
        assert!(
            text.contains("gridlink_db_write_max_seconds 0.001500\n"),
            "{text}"
        );
        assert!(text.contains("gridlink_ingest_readings_total 7\n"));
        assert_eq!(m.dropped_count(DropReason::Oversized), 0);
    }
}
