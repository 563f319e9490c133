//! The demo's embedded MQTT broker: rumqttd with TLS and client
//! certificates from the demo CA.
//!
//! rumqttd authenticates every client by its certificate
//! (`verify-client-cert`), but it authorises nothing per client: it reads
//! only the certificate's O field (as a tenant; the demo certificates have
//! none) and has no ACL hook, so any demo VEN could publish on another
//! VEN's topics. Production uses AWS IoT Core (policy per thing) or
//! Mosquitto with the ACL in `gridlink-testkit`. It also refuses
//! subscriptions to topics beginning with `$` other than `$share/...`
//! (it disconnects the client), so the AWS IoT shadow topics
//! (`$aws/things/...`) cannot be used through it.
//!
//! rumqttd has no stop API: its router and listener threads live until
//! the process exits. [`start`] runs it on its own threads, off the tokio
//! runtime.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};

/// The warning printed at start: the embedded broker does not isolate VENs.
pub const ISOLATION_WARNING: &str = "the demo broker (rumqttd) checks client certificates but does not isolate VENs' topics (no per-client ACL): use AWS IoT Core or Mosquitto with the ACL in production";

/// Largest MQTT payload the agents send (the AWS IoT limit, 128 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// rumqttd compares its limit with the packet's remaining length: the
/// payload plus the topic and packet id. Room for any gridlink topic.
const MAX_PACKET_OVERHEAD: usize = 4 * 1024;

/// Unacknowledged QoS 1 messages per connection: the agents and the cloud
/// keep at most 100 in flight (the AWS IoT limit); some headroom.
const MAX_INFLIGHT: usize = 200;

/// Memory kept per topic filter (the commitlog that holds QoS 1 messages
/// for persistent sessions while a client is away): `SEGMENT_COUNT`
/// segments of `SEGMENT_BYTES` each; the oldest segment is dropped when
/// full.
const SEGMENT_BYTES: usize = 16 * 1024 * 1024;
const SEGMENT_COUNT: usize = 8;

/// How long to wait for the listener to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS files of the broker (paths must be UTF-8: rumqttd takes strings).
#[derive(Debug, Clone, Copy)]
pub struct BrokerTls<'a> {
    /// CA certificate that signs every client certificate.
    pub ca: &'a Path,
    /// The server certificate (for 127.0.0.1 and localhost).
    pub cert: &'a Path,
    /// Its private key.
    pub key: &'a Path,
}

/// The rumqttd configuration of the demo: one MQTT 3.1.1 TLS listener on
/// `listen` that requires a client certificate signed by `tls.ca`.
pub fn config(listen: SocketAddr, tls: BrokerTls<'_>) -> anyhow::Result<Config> {
    let text = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not UTF-8", path.display()))
    };
    let server = ServerSettings {
        name: "gridlink-demo".to_owned(),
        listen,
        tls: Some(TlsConfig::Rustls {
            capath: Some(text(tls.ca)?),
            certpath: text(tls.cert)?,
            keypath: text(tls.key)?,
        }),
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD_BYTES + MAX_PACKET_OVERHEAD,
            max_inflight_count: MAX_INFLIGHT,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Ok(Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: MAX_INFLIGHT as u64,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENT_COUNT,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("tls".to_owned(), server)])),
        ..Config::default()
    })
}

/// The running broker: its thread ends only if every listener failed.
#[derive(Debug)]
pub struct EmbeddedBroker {
    thread: std::thread::JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Whether the broker has stopped (its listener could not bind or
    /// failed); it never stops otherwise.
    pub fn has_stopped(&self) -> bool {
        self.thread.is_finished()
    }
}

/// Starts rumqttd on its own threads and waits until `listen` is in the
/// listening state. The broker runs until the process exits.
///
/// The wait reads `/proc/net/tcp` rather than connecting: rumqttd performs
/// TLS handshakes one at a time in its accept loop, so a probe that
/// connects without a handshake would hold up clients and log an error.
/// Where `/proc` is missing, it waits a fixed moment; clients retry anyway.
pub async fn start(listen: SocketAddr, tls: BrokerTls<'_>) -> anyhow::Result<EmbeddedBroker> {
    let config = config(listen, tls)?;
    let thread = std::thread::Builder::new()
        .name("mqtt-broker".to_owned())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(error) = broker.start() {
                tracing::error!(%error, "the embedded MQTT broker stopped");
            }
        })
        .context("cannot start the broker thread")?;
    let broker = EmbeddedBroker { thread };
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if broker.has_stopped() {
            anyhow::bail!(
                "the embedded MQTT broker could not listen on {listen} (see its log above)"
            );
        }
        match is_listening(listen) {
            Some(true) => return Ok(broker),
            Some(false) if tokio::time::Instant::now() < deadline => {}
            Some(false) => anyhow::bail!(
                "the embedded MQTT broker did not listen on {listen} within {START_TIMEOUT:?}"
            ),
            None => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(broker);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether an IPv4 TCP socket listens on `addr`, from `/proc/net/tcp`;
/// `None` where that file cannot be read.
fn is_listening(addr: SocketAddr) -> Option<bool> {
    let SocketAddr::V4(addr) = addr else {
        return None;
    };
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // Local address as the kernel prints it: the IPv4 address in host byte
    // order (little-endian here) as hex, then the port; state 0A = LISTEN.
    let ip = u32::from_ne_bytes(addr.ip().octets());
    let local = format!("{ip:08X}:{:04X}", addr.port());
    Some(table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        fields.nth(1) == Some(local.as_str()) && fields.nth(1) == Some("0A")
    }))
}

/// A loopback port free at the time of the call (bound, then released), for
/// servers that bind by themselves (rumqttd, the cloud's API, the agents'
/// health endpoints).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}
