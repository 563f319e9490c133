//! The running agent: wires acquisition, the buffer writer, the uplink and
//! the health endpoint together, and shuts them down in the order that
//! loses nothing.
//!
//! Shutdown (SIGTERM, Ctrl-C): acquisition stops first; the writer appends
//! and seals what is still queued; DR stops, leaving every load as the
//! running events want it (the next start resumes them from the persisted
//! state; an event that ends while the agent is down is restored and
//! acknowledged `completed` at the next start); the uplink gets up to
//! [`DRAIN_ON_SHUTDOWN`] to publish what is sealed and the DR
//! acknowledgements; then the offline status goes out and the connection
//! closes. Whatever is not acknowledged by then stays in the buffer and the
//! DR outbox for the next start.
//!
//! Tasks and channels (see [`crate::channels`]):
//!
//! ```text
//! acquisition --readings--> writer --> buffer --> uplink <--> broker
//!      |  ^ poll interval (shadow)                  |  ^
//!      |  '------------------------- shadow <-------'  | acks (DR outbox), snapshots
//!      '--site power--> dr <---commands----------------'
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::buffer::{self, Buffer};
use crate::channels::{Connection, DrSettings, DrView, Outgoing, ShadowInbound};
use crate::config::AgentConfig;
use crate::dr::store::DrStore;
use crate::dr::{self, DrChannels, InboundCommand};
use crate::metrics::Metrics;
use crate::systemd;
use crate::uplink::{self, UplinkLinks, UplinkSettings};
use crate::{acquisition, health};

/// Commands waiting for DR; a full queue leaves the command unacknowledged
/// at the broker, which delivers it again.
const CHANNEL_COMMANDS: usize = 256;

/// Shadow messages between the uplink and the shadow client.
const CHANNEL_SHADOW: usize = 64;

/// SHA-256 (lower-case hex) of the config file's bytes, for the shadow's
/// reported `config_digest`.
pub fn config_digest(text: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, text);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

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
/// as they are ([`crate::config::load`] makes them absolute). The shadow's
/// config digest is that of the config's debug rendering; [`run_with`]
/// takes the file's.
pub async fn run(config: AgentConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Summary> {
    let digest = config_digest(format!("{config:?}").as_bytes());
    run_with(config, digest, shutdown).await
}

/// [`run`] with the SHA-256 hex digest of the config file the agent runs
/// from (see [`config_digest`]).
#[expect(
    clippy::too_many_lines,
    reason = "the wiring of every task and channel in one place, in shutdown order"
)]
pub async fn run_with(
    config: AgentConfig,
    config_digest: String,
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
    let (stop_dr, dr_stop) = watch::channel(false);
    let (stop_uplink, uplink_stop) = watch::channel(false);
    let (stop_health, health_stop) = watch::channel(false);
    let (stop_shadow, shadow_stop) = watch::channel(false);
    let (tx, rx) = mpsc::channel(CHANNEL_POLLS);
    let sealed = Arc::new(Notify::new());

    // DR and the shadow: the channels of crate::channels.
    let dr_store = {
        let buffer = Arc::clone(&buffer);
        Arc::new(
            crate::blocking::off_the_runtime(move || DrStore::open(buffer))
                .await
                .context("opening the DR store")?,
        )
    };
    let (commands_tx, commands_rx) = mpsc::channel::<InboundCommand>(CHANNEL_COMMANDS);
    let (shadow_inbound_tx, shadow_inbound_rx) = mpsc::channel::<ShadowInbound>(CHANNEL_SHADOW);
    let (outgoing_tx, outgoing_rx) = mpsc::channel::<Outgoing>(CHANNEL_SHADOW);
    let (connection_tx, connection_rx) = watch::channel(Connection::default());
    let (dr_view_tx, dr_view_rx) = watch::channel(DrView::default());
    let (dr_settings_tx, dr_settings_rx) = watch::channel(DrSettings {
        opted_out: std::collections::BTreeSet::new(),
        max_shed_s: config.dr.max_shed_s,
    });
    let (poll_interval_tx, poll_interval_rx) = watch::channel::<Option<Duration>>(None);
    let (site_power_tx, site_power_rx) = watch::channel(None);
    let (snapshot_tx, snapshot_rx) = watch::channel(None);

    let writer = tokio::spawn(buffer::run_writer(
        Arc::clone(&buffer),
        rx,
        Duration::from_millis(config.buffer.seal_interval_ms),
        Arc::clone(&sealed),
    ));
    let hooks = acquisition::Hooks {
        site_power: config
            .dr
            .site_meter
            .as_deref()
            .map(|name| (Arc::from(name), site_power_tx)),
        poll_override: Some(poll_interval_rx),
    };
    let acquisition = tokio::spawn(acquisition::run_with(
        Arc::clone(&config),
        tx,
        Arc::clone(&metrics),
        acquisition_stop,
        hooks,
    ));
    let dr = tokio::spawn(dr::run(
        Arc::clone(&config),
        Arc::clone(&dr_store),
        Arc::clone(&metrics),
        DrChannels {
            commands: commands_rx,
            site_power: site_power_rx,
            settings: dr_settings_rx,
            view: dr_view_tx,
            snapshot: snapshot_tx,
            shutdown: dr_stop,
        },
    ));
    let uplink = tokio::spawn(uplink::run_with(
        settings,
        Arc::clone(&buffer),
        Arc::clone(&sealed),
        Arc::clone(&metrics),
        uplink_stop,
        UplinkLinks {
            dr_store: Some(Arc::clone(&dr_store)),
            commands: Some(commands_tx),
            shadow_inbound: Some(shadow_inbound_tx),
            outgoing: Some(outgoing_rx),
            snapshot: Some(snapshot_rx),
            connection: Some(connection_tx),
        },
    ));
    let shadow = spawn_shadow(
        &config,
        &config_digest,
        &buffer,
        &metrics,
        ShadowEnds {
            inbound: shadow_inbound_rx,
            outgoing: outgoing_tx,
            connection: connection_rx,
            dr_view: dr_view_rx,
            dr_settings: dr_settings_tx,
            poll_interval: poll_interval_tx,
        },
        shadow_stop,
    );
    let health = tokio::spawn(health::serve(listener, Arc::clone(&metrics), health_stop));

    // systemd (Type=notify): ready now; the watchdog is pinged only while
    // every task still runs, so a dead task gets the agent restarted.
    let notifier = systemd::Notifier::from_env();
    notifier.notify("READY=1");
    if let Some(every) = notifier.watchdog_interval() {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|&stop| stop) => break,
                () = tokio::time::sleep(every) => {
                    let alive = [acquisition.is_finished(), writer.is_finished(), uplink.is_finished(), dr.is_finished()]
                        .iter()
                        .all(|finished| !finished);
                    if alive {
                        notifier.notify("WATCHDOG=1");
                    } else {
                        tracing::error!("a task has stopped; withholding the systemd watchdog ping");
                    }
                }
            }
        }
    } else {
        let _ = shutdown.wait_for(|&stop| stop).await;
    }
    notifier.notify("STOPPING=1");
    tracing::info!("stopping: acquisition first, then the buffer, then the uplink");
    let _ = stop_acquisition.send(true);
    acquisition.await.context("acquisition task")?;
    writer.await.context("buffer writer task")?;
    sealed.notify_one();
    // Loads stay as the running events want them; the next start resumes.
    let _ = stop_dr.send(true);
    dr.await.context("DR task")?;
    let _ = stop_shadow.send(true);
    let _ = shadow.await;
    dr_store.acks_added.notify_one();

    let deadline = tokio::time::Instant::now() + DRAIN_ON_SHUTDOWN;
    while (buffer.stats().records > 0 || dr_store.outbox_len() > 0)
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

/// The shadow client's ends of its channels.
struct ShadowEnds {
    inbound: mpsc::Receiver<ShadowInbound>,
    outgoing: mpsc::Sender<Outgoing>,
    connection: watch::Receiver<Connection>,
    dr_view: watch::Receiver<DrView>,
    dr_settings: watch::Sender<DrSettings>,
    poll_interval: watch::Sender<Option<Duration>>,
}

/// Starts the shadow client ([`crate::shadow::run`]) on its channels,
/// with the configured hard limits.
fn spawn_shadow(
    config: &AgentConfig,
    config_digest: &str,
    buffer: &Arc<Buffer>,
    metrics: &Arc<Metrics>,
    ends: ShadowEnds,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let context = crate::shadow::ShadowContext {
        ven_id: config.ven_id.clone(),
        config_digest: config_digest.to_string(),
        limits: gridlink_protocol::shadow::HardLimits {
            max_shed_s: config.dr.max_shed_s,
            min_poll_interval_ms: config.dr.min_poll_interval_ms,
            never_switch: config
                .loads
                .iter()
                .filter(|l| l.never_switch)
                .map(|l| l.name.clone())
                .collect(),
        },
        loads: config.loads.iter().map(|l| l.name.clone()).collect(),
        // Devices may differ; the shortest configured interval is reported.
        default_poll_interval_ms: config
            .devices
            .iter()
            .map(|d| d.poll_interval_ms)
            .min()
            .unwrap_or(crate::config::default_poll_interval_ms()),
        buffer: Arc::clone(buffer),
        metrics: Arc::clone(metrics),
    };
    tokio::spawn(crate::shadow::run(
        context,
        ends.inbound,
        ends.outgoing,
        ends.connection,
        ends.dr_view,
        ends.dr_settings,
        ends.poll_interval,
        shutdown,
    ))
}
