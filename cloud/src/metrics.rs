//! The aggregate of every service's counters, rendered as Prometheus text
//! at `/metrics`. Each service owns its counters (`ingest::IngestMetrics`,
//! `dispatch::DispatchMetrics`, ...) and is handed only its own; this
//! module only gathers them, so it sits above the services and below the
//! API that serves it.

use std::sync::Arc;

use crate::alerts::AlertMetrics;
use crate::dispatch::DispatchMetrics;
use crate::export::ExportMetrics;
use crate::ingest::{HttpIngestMetrics, IngestMetrics};
use crate::notify::NotifyMetrics;
use crate::shadow::ShadowMetrics;

/// Every metric of the cloud, one part per service.
#[derive(Debug, Default)]
pub struct Metrics {
    /// MQTT ingest's counters.
    pub ingest: Arc<IngestMetrics>,
    /// The device shadow service's counters.
    pub shadow: Arc<ShadowMetrics>,
    /// The dispatcher's counters.
    pub dispatch: Arc<DispatchMetrics>,
    /// The daily export's counters.
    pub export: Arc<ExportMetrics>,
    /// HTTP ingest's counters.
    pub http_ingest: Arc<HttpIngestMetrics>,
    /// The alert engine's and delivery's counters.
    pub alerts: Arc<AlertMetrics>,
    /// The OpenADR notifier's counters (webhooks and MQTT).
    pub notify: Arc<NotifyMetrics>,
}

impl Metrics {
    /// The Prometheus text exposition of every service's counters.
    pub fn render(&self) -> String {
        let mut out = self.ingest.render();
        out.push_str(&self.shadow.render());
        out.push_str(&self.dispatch.render());
        out.push_str(&self.export.render());
        out.push_str(&self.http_ingest.render());
        out.push_str(&self.alerts.render());
        out.push_str(&self.notify.render());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::ingest::DropReason;

    #[test]
    fn renders_every_service_once() {
        let m = Metrics::default();
        m.ingest.dropped(DropReason::Malformed);
        m.dispatch.published.store(3, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains("gridlink_ingest_dropped_total{reason=\"malformed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gridlink_dispatch_commands_published_total 3\n"),
            "{text}"
        );
        for name in [
            "gridlink_mqtt_messages_total",
            "gridlink_dispatch_connected",
            "gridlink_ingest_dropped_total",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}: {text}"
            );
        }
    }
}
