//! The agent's counters and gauges, shared by every task and rendered as
//! Prometheus text by the health endpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How a Modbus request failed. Device errors and transport errors stay
/// apart all the way up: the first means the device answered "no", the
/// second means the link is broken and the connection is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModbusErrorKind {
    /// The device answered with a Modbus exception (illegal address, busy...).
    Exception,
    /// No answer within the request time-out.
    Timeout,
    /// Connecting, reading or writing the link failed.
    Transport,
}

impl ModbusErrorKind {
    /// The label value in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Exception => "exception",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
        }
    }
}

/// MQTT connection state as a gauge value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected, or reconnecting.
    Disconnected = 0,
    /// TCP/TLS/MQTT handshake under way.
    Connecting = 1,
    /// CONNACK received.
    Connected = 2,
}

/// Every metric of the agent. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Readings decoded from Modbus responses.
    pub readings_acquired: AtomicU64,
    /// Poll cycles completed (all points of a device read or failed).
    pub polls: AtomicU64,
    /// Readings made durable in the buffer (journal fsynced).
    pub readings_stored: AtomicU64,
    /// Records (batches) in the buffer waiting for a PUBACK.
    pub buffer_records: AtomicU64,
    /// Bytes the buffer holds (journal + batches).
    pub buffer_bytes: AtomicU64,
    /// Timestamp (ms) of the oldest reading not yet acknowledged, 0 if none.
    pub oldest_unsent_ms: AtomicI64,
    /// Batches acknowledged by the broker (PUBACK) and removed.
    pub batches_published: AtomicU64,
    /// Readings acknowledged by the broker.
    pub readings_published: AtomicU64,
    /// Payload bytes acknowledged by the broker.
    pub bytes_published: AtomicU64,
    /// Readings dropped because the buffer was full (oldest first).
    pub readings_dropped: AtomicU64,
    /// Readings lost because acquisition outran the buffer writer.
    pub readings_overflowed: AtomicU64,
    /// Readings dropped at seal time: their series already had a reading at
    /// the same timestamp.
    pub readings_duplicate: AtomicU64,
    /// Readings refused by the buffer because no batch can carry them (bad
    /// meter name, exponent or timestamp).
    pub readings_rejected: AtomicU64,
    /// Buffer records found corrupt and discarded, or buffers moved aside.
    pub buffer_corruptions: AtomicU64,
    /// MQTT connection state ([`ConnectionState`] as a number).
    pub connection_state: AtomicU64,
    /// Successful MQTT connections (CONNACK) since start.
    pub connections: AtomicU64,
    /// DR commands accepted and persisted.
    pub dr_commands: AtomicU64,
    /// DR commands dropped: malformed, oversized, for another VEN, or on an
    /// unexpected topic.
    pub dr_commands_rejected: AtomicU64,
    /// Load writes that succeeded.
    pub dr_writes: AtomicU64,
    /// Load writes that failed after their retries.
    pub dr_write_failures: AtomicU64,
    /// DR acknowledgements acknowledged by the broker.
    pub dr_acks_published: AtomicU64,
    /// DR acknowledgements waiting in the durable outbox.
    pub dr_outbox: AtomicU64,
    /// DR events active now.
    pub dr_active_events: AtomicU64,
    /// Loads DR holds shed now.
    pub dr_shed_loads: AtomicU64,
    modbus_errors: Mutex<BTreeMap<(String, ModbusErrorKind), u64>>,
}

impl Metrics {
    /// Counts one failed Modbus request of `device`.
    pub fn modbus_error(&self, device: &str, kind: ModbusErrorKind) {
        let mut map = self
            .modbus_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((device.to_string(), kind)).or_default() += 1;
    }

    /// Failed Modbus requests of `device` of `kind` so far.
    pub fn modbus_errors(&self, device: &str, kind: ModbusErrorKind) -> u64 {
        let map = self
            .modbus_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(device.to_string(), kind)).copied().unwrap_or(0)
    }

    /// Sets the connection-state gauge.
    pub fn set_connection_state(&self, state: ConnectionState) {
        self.connection_state.store(state as u64, Ordering::Relaxed);
    }

    /// The plain counters and gauges: name, help text, value.
    #[expect(
        clippy::too_many_lines,
        reason = "one table entry per metric, three lines each"
    )]
    fn counters(&self) -> [(&'static str, &'static str, &AtomicU64); 22] {
        [
            (
                "gridlink_readings_acquired_total",
                "Readings decoded from Modbus responses.",
                &self.readings_acquired,
            ),
            (
                "gridlink_polls_total",
                "Device poll cycles completed.",
                &self.polls,
            ),
            (
                "gridlink_readings_stored_total",
                "Readings made durable in the local buffer.",
                &self.readings_stored,
            ),
            (
                "gridlink_batches_published_total",
                "Batches acknowledged by the broker.",
                &self.batches_published,
            ),
            (
                "gridlink_readings_published_total",
                "Readings acknowledged by the broker.",
                &self.readings_published,
            ),
            (
                "gridlink_bytes_published_total",
                "Payload bytes acknowledged by the broker.",
                &self.bytes_published,
            ),
            (
                "gridlink_readings_dropped_total",
                "Readings dropped because the buffer was full.",
                &self.readings_dropped,
            ),
            (
                "gridlink_readings_overflowed_total",
                "Readings lost because acquisition outran the buffer writer.",
                &self.readings_overflowed,
            ),
            (
                "gridlink_readings_duplicate_total",
                "Readings dropped at seal: same series and timestamp as another.",
                &self.readings_duplicate,
            ),
            (
                "gridlink_readings_rejected_total",
                "Readings no batch can carry (bad name, exponent or timestamp).",
                &self.readings_rejected,
            ),
            (
                "gridlink_buffer_corruptions_total",
                "Corrupt buffer records or files set aside.",
                &self.buffer_corruptions,
            ),
            (
                "gridlink_mqtt_connections_total",
                "MQTT connections established.",
                &self.connections,
            ),
            (
                "gridlink_dr_commands_total",
                "DR commands accepted and persisted.",
                &self.dr_commands,
            ),
            (
                "gridlink_dr_commands_rejected_total",
                "DR commands dropped: malformed, oversized, foreign VEN or unexpected topic.",
                &self.dr_commands_rejected,
            ),
            (
                "gridlink_dr_writes_total",
                "Load writes (coils, setpoints) that succeeded.",
                &self.dr_writes,
            ),
            (
                "gridlink_dr_write_failures_total",
                "Load writes that failed after their retries.",
                &self.dr_write_failures,
            ),
            (
                "gridlink_dr_acks_published_total",
                "DR acknowledgements acknowledged by the broker.",
                &self.dr_acks_published,
            ),
            (
                "gridlink_dr_outbox",
                "DR acknowledgements waiting for the broker.",
                &self.dr_outbox,
            ),
            (
                "gridlink_dr_active_events",
                "DR events active now.",
                &self.dr_active_events,
            ),
            (
                "gridlink_dr_shed_loads",
                "Loads DR holds shed now.",
                &self.dr_shed_loads,
            ),
            (
                "gridlink_buffer_records",
                "Batches waiting for a broker acknowledgement.",
                &self.buffer_records,
            ),
            (
                "gridlink_buffer_bytes",
                "Bytes held by the local buffer.",
                &self.buffer_bytes,
            ),
        ]
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in self.counters() {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let oldest = self.oldest_unsent_ms.load(Ordering::Relaxed);
        let age = if oldest == 0 {
            0.0
        } else {
            (now_ms() - oldest).max(0) as f64 / 1000.0
        };
        let _ = writeln!(
            out,
            "# HELP gridlink_oldest_unsent_age_seconds Age of the oldest reading not yet acknowledged.\n\
             # TYPE gridlink_oldest_unsent_age_seconds gauge\ngridlink_oldest_unsent_age_seconds {age:.3}"
        );
        let _ = writeln!(
            out,
            "# HELP gridlink_mqtt_connection_state 0 disconnected, 1 connecting, 2 connected.\n\
             # TYPE gridlink_mqtt_connection_state gauge\ngridlink_mqtt_connection_state {}",
            self.connection_state.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gridlink_modbus_errors_total Failed Modbus requests by device and kind.\n\
             # TYPE gridlink_modbus_errors_total counter"
        );
        let map = self
            .modbus_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((device, kind), n) in map.iter() {
            let _ = writeln!(
                out,
                "gridlink_modbus_errors_total{{device=\"{}\",kind=\"{}\"}} {n}",
                escape_label(device),
                kind.as_str()
            );
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.readings_acquired.fetch_add(5, Ordering::Relaxed);
        m.modbus_error("meter \"a\"", ModbusErrorKind::Timeout);
        m.modbus_error("meter \"a\"", ModbusErrorKind::Timeout);
        m.modbus_error("b", ModbusErrorKind::Exception);
        m.set_connection_state(ConnectionState::Connected);
        let text = m.render();
        assert!(
            text.contains("gridlink_readings_acquired_total 5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "gridlink_modbus_errors_total{device=\"meter \\\"a\\\"\",kind=\"timeout\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("gridlink_modbus_errors_total{device=\"b\",kind=\"exception\"} 1\n"));
        assert!(text.contains("gridlink_mqtt_connection_state 2\n"));
        assert!(text.contains("# TYPE gridlink_buffer_bytes gauge"));
        assert_eq!(m.modbus_errors("b", ModbusErrorKind::Exception), 1);
        assert_eq!(m.modbus_errors("b", ModbusErrorKind::Timeout), 0);
    }
}
