//! The running agent: wires acquisition, the buffer writer, the uplink and
//! the health endpoint together, and shuts them down in the order that
//! loses nothing.
//!
//! Shutdown (SIGTERM, Ctrl-C): acquisition stops first; the writer appends
//! and seals what is still queued; the uplink gets up to
//! [`DRAIN_ON_SHUTDOWN`] to publish what is sealed; then the offline status
//! goes out and the connection closes. Whatever is not acknowledged by then
//! stays in the buffer for the next start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::buffer::{self, Buffer};
use crate::config::AgentConfig;
use crate::metrics::Metrics;
use crate::uplink::{self, UplinkSettings};
use crate::{acquisition, health};

/// How long a clean shutdown waits for the broker to acknowledge what is
/// sealed before it leaves the rest in the buffer.
pub const DRAIN_ON_SHUTDOWN: Duration = Duration::from_secs(5);

/// Polls queued between acquisition and the buffer writer. A full channel
/// means the disk cannot keep up; acquisition then counts what it drops
/// instead of blocking.
const CHANNEL_POLLS: usize = 4096;

/// Counts reported when the agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Readings decoded from Modbus.
    pub acquired: u64,
    /// Readings made durable.
    pub stored: u64,
    /// Readings acknowledged by the broker.
    pub published: u64,
    /// Readings dropped because the buffer was full.
    pub dropped: u64,
    /// Batches still in the buffer.
    pub buffered_batches: u64,
}

/// Runs the agent until `shutdown` turns true. Paths in `config` are used
/// as they are ([`crate::config::load`] makes them absolute).
pub async fn run(
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Summary> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());

    let buffer_config = buffer::BufferConfig {
        path: config.buffer.path.clone(),
        max_bytes: config.buffer.max_bytes,
        cache_bytes: config.buffer.cache_bytes,
        ven_id: config.ven_id.clone(),
        max_payload_bytes: config.buffer.max_payload_bytes as usize,
    };
    let buffer = {
        let metrics = Arc::clone(&metrics);
        let path = buffer_config.path.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || Buffer::open(buffer_config, metrics))
                .await?
                .with_context(|| format!("opening the buffer at {}", path.display()))?,
        )
    };

    let listener = TcpListener::bind(config.health.listen)
        .await
        .with_context(|| format!("binding the health endpoint to {}", config.health.listen))?;
    tracing::info!(
        ven_id = %config.ven_id,
        devices = config.devices.len(),
        health = %config.health.listen,
        broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
        "gridlink-agent started"
    );

    let settings = UplinkSettings {
        ven_id: config.ven_id.clone(),
        host: config.mqtt.host.clone(),
        port: config.mqtt.port,
        alpn: config.mqtt.alpn,
        ca: config.mqtt.ca.clone(),
        cert: config.mqtt.cert.clone(),
        key: config.mqtt.key.clone(),
        keep_alive: Duration::from_secs(u64::from(config.mqtt.keep_alive_s)),
        backoff_min: Duration::from_millis(config.mqtt.reconnect_backoff_min_ms),
        backoff_max: Duration::from_millis(config.mqtt.reconnect_backoff_max_ms),
        publishes_per_s: config.mqtt.publishes_per_s,
        bytes_per_s: config.mqtt.bytes_per_s,
        max_inflight: config.mqtt.max_inflight,
    };
    // Check certificates before anything runs, so a bad bundle fails start-up.
    uplink::tls_config(&settings.ca, &settings.cert, &settings.key, settings.alpn)?;

    let (stop_acquisition, acquisition_stop) = watch::channel(false);
    let (stop_uplink, uplink_stop) = watch::channel(false);
    let (stop_health, health_stop) = watch::channel(false);
    let (tx, rx) = mpsc::channel(CHANNEL_POLLS);
    let sealed = Arc::new(Notify::new());

    let writer = tokio::spawn(buffer::run_writer(
        Arc::clone(&buffer),
        rx,
        Duration::from_millis(config.buffer.seal_interval_ms),
        Arc::clone(&sealed),
    ));
    let acquisition = tokio::spawn(acquisition::run(
        Arc::clone(&config),
        tx,
        Arc::clone(&metrics),
        acquisition_stop,
    ));
    let uplink = tokio::spawn(uplink::run(
        settings,
        Arc::clone(&buffer),
        Arc::clone(&sealed),
        Arc::clone(&metrics),
        uplink_stop,
    ));
    let health = tokio::spawn(health::serve(listener, Arc::clone(&metrics), health_stop));

    let _ = shutdown.wait_for(|&stop| stop).await;
    tracing::info!("stopping: acquisition first, then the buffer, then the uplink");
    let _ = stop_acquisition.send(true);
    acquisition.await.context("acquisition task")?;
    writer.await.context("buffer writer task")?;
    sealed.notify_one();

    let deadline = tokio::time::Instant::now() + DRAIN_ON_SHUTDOWN;
    while buffer.stats().records > 0
        && tokio::time::Instant::now() < deadline
        && !uplink.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_uplink.send(true);
    match uplink.await.context("uplink task")? {
        Ok(()) => {}
        Err(error) => tracing::error!(%error, "uplink stopped with an error"),
    }
    let _ = stop_health.send(true);
    let _ = health.await;

    let summary = Summary {
        acquired: metrics.readings_acquired.load(Ordering::Relaxed),
        stored: metrics.readings_stored.load(Ordering::Relaxed),
        published: metrics.readings_published.load(Ordering::Relaxed),
        dropped: metrics.readings_dropped.load(Ordering::Relaxed),
        buffered_batches: buffer.stats().records,
    };
    tracing::info!(?summary, "gridlink-agent stopped");
    Ok(summary)
}
