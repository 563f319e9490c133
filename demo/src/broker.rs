//! The demo's embedded MQTT broker: MQTT 3.1.1 over TLS with client
//! certificates, enforcing the device policy of
//! [`gridlink_provision::policy`], in the demo's process.
//!
//! It is small on purpose and implements what gridlink uses, with the
//! rules of the design (AWS IoT Core's, which the Mosquitto ACL mirrors):
//!
//! * **Identity**: a client certificate signed by the demo CA is required;
//!   its CN is the identity. A VEN's MQTT client id must equal its CN
//!   (AWS IoT: client id = thing name); the CN `backend` is the cloud and
//!   may use any client id.
//! * **Authorisation**: every PUBLISH, SUBSCRIBE and last will is checked
//!   against [`DEVICE_RULES`] (with `{ven}` = the CN) or [`BACKEND_RULES`].
//!   A denied publish is dropped and counted (acknowledged, as Mosquitto
//!   does for MQTT 3.1.1); a denied subscription gets the SUBACK failure
//!   code `0x80`. So, unlike rumqttd, one VEN cannot read or write another
//!   VEN's topics.
//! * **QoS 0 and 1** (QoS 2 is refused with a disconnect, as AWS IoT does);
//!   at most [`MAX_INFLIGHT`] unacknowledged QoS 1 messages per
//!   connection; payloads up to [`MAX_PAYLOAD_BYTES`].
//! * **Persistent sessions** (`clean_session = false`): subscriptions,
//!   unacknowledged and queued QoS 1 messages are kept while the client is
//!   away and sent on reconnect (unacknowledged ones again, with DUP); at
//!   most [`MAX_QUEUED`] messages per session, the oldest dropped and
//!   counted beyond that.
//! * **Shared subscriptions** (`$share/{group}/{filter}`): each message
//!   goes to one member of the group, round robin over the connected
//!   members; with none connected, it is queued in a persistent member's
//!   session.
//! * **Retained messages** and **last wills** (published when a connection
//!   ends without DISCONNECT, or its keep-alive expires).
//!
//! Not implemented, because gridlink does not use it: MQTT 5, QoS 2,
//! user names and passwords, bridging, persistence across restarts of the
//! demo (everything is in memory).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use gridlink_protocol::VenId;
use gridlink_provision::pki::BACKEND_IDENTITY;
use gridlink_provision::policy::{Access, BACKEND_RULES, DEVICE_RULES, Rule, VEN};
use rumqttc::tokio_rustls::TlsAcceptor;
use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject as _;
use rumqttc::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rumqttc::tokio_rustls::rustls::server::WebPkiClientVerifier;
use rumqttc::tokio_rustls::rustls::{RootCertStore, ServerConfig};
use rumqttc::{
    ConnAck, ConnectReturnCode, LastWill, Packet, PubAck, Publish, QoS, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The line printed at start: what the embedded broker enforces.
pub const BROKER_NOTICE: &str = "the demo's embedded MQTT broker enforces the device policy (each VEN only its own topics) but keeps everything in memory: production uses AWS IoT Core or Mosquitto with the ACL";

/// Largest MQTT payload (the AWS IoT limit, 128 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// Largest packet read: the payload plus the topic, packet id and header.
const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + 4 * 1024;

/// Most unacknowledged QoS 1 messages sent to one connection (the AWS IoT
/// limit; the agents and the cloud keep the same on their side).
pub const MAX_INFLIGHT: usize = 100;

/// Most QoS 1 messages queued for one session (offline, or behind the
/// in-flight window); beyond it the oldest is dropped and counted.
pub const MAX_QUEUED: usize = 100_000;

/// Time for the TLS handshake and the CONNECT packet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS files of the broker.
#[derive(Debug, Clone, Copy)]
pub struct BrokerTls<'a> {
    /// CA certificate that signs every client certificate.
    pub ca: &'a Path,
    /// The server certificate (for 127.0.0.1 and localhost).
    pub cert: &'a Path,
    /// Its private key.
    pub key: &'a Path,
}

/// Counts since start.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Connections accepted (CONNACK success).
    pub connections: AtomicU64,
    /// Connections refused (TLS, identity, client id, protocol).
    pub refused: AtomicU64,
    /// PUBLISH packets received and routed.
    pub published: AtomicU64,
    /// PUBLISH packets (and wills) dropped by the policy.
    pub denied_publishes: AtomicU64,
    /// Subscriptions refused by the policy.
    pub denied_subscriptions: AtomicU64,
    /// Messages sent to subscribers.
    pub delivered: AtomicU64,
    /// Queued messages dropped because a session's queue was full.
    pub dropped: AtomicU64,
}

/// The running broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    broker: Arc<Broker>,
    stats: Arc<BrokerStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl EmbeddedBroker {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// Whether some session subscribes to `path` exactly as given (with
    /// any `$share/{group}/` prefix): lets the demo start the agents only
    /// once the cloud listens, so their first messages are not lost.
    pub fn has_subscription(&self, path: &str) -> bool {
        self.broker
            .state()
            .sessions
            .values()
            .any(|s| s.subscriptions.iter().any(|sub| sub.path == path))
    }

    /// Whether it stopped on its own (its listener failed).
    pub fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Closes every connection (without publishing wills) and stops.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for EmbeddedBroker {
    /// Dropping the handle stops the broker too (without waiting).
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the broker on `listen` (port 0: any free port).
pub async fn start(listen: SocketAddr, tls: BrokerTls<'_>) -> anyhow::Result<EmbeddedBroker> {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(tls)?));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("the MQTT broker cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(BrokerStats::default());
    let (stop, stopped) = watch::channel(false);
    let broker = Arc::new(Broker {
        state: Mutex::new(State::default()),
        stats: Arc::clone(&stats),
        next_connection: AtomicU64::new(1),
    });
    let task = tokio::spawn(accept_loop(
        Arc::clone(&broker),
        listener,
        acceptor,
        stopped,
    ));
    Ok(EmbeddedBroker {
        addr,
        broker,
        stats,
        stop,
        task,
    })
}

/// TLS 1.2/1.3 with ring; a client certificate signed by `tls.ca` required.
fn server_config(tls: BrokerTls<'_>) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rumqttc::tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls.ca)
        .with_context(|| format!("cannot read {}", tls.ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("bad certificate in {}", tls.ca.display()))?)
            .with_context(|| format!("bad CA certificate in {}", tls.ca.display()))?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .context("client certificate verifier")?;
    let chain = CertificateDer::pem_file_iter(tls.cert)
        .with_context(|| format!("cannot read {}", tls.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad certificate in {}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(tls.key)
        .with_context(|| format!("cannot read the key {}", tls.key.display()))?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the broker's certificate and key")
}

/// Who a connection is, from its certificate's CN.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// The cloud (CN [`BACKEND_IDENTITY`]).
    Backend,
    /// A VEN (CN = VEN id).
    Ven(String),
}

impl Identity {
    fn from_certificate(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("unparsable certificate: {e}"))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or("the certificate has no CN")?;
        if cn == BACKEND_IDENTITY {
            Ok(Self::Backend)
        } else {
            VenId::new(cn)
                .map(|ven| Self::Ven(ven.as_str().to_owned()))
                .map_err(|e| format!("CN {cn:?} is not a VEN id: {e}"))
        }
    }

    /// Whether the policy lets this identity publish to `topic` or
    /// subscribe to `filter`.
    fn may(&self, access: Access, topic: &str) -> bool {
        let allowed = |rules: &[Rule], ven: Option<&str>| {
            rules.iter().filter(|r| r.access == access).any(|rule| {
                let pattern = match ven {
                    Some(ven) => rule.topic.replace(VEN, ven),
                    None => rule.topic.to_owned(),
                };
                covers(&pattern, topic)
            })
        };
        match self {
            Self::Backend => allowed(BACKEND_RULES, None),
            Self::Ven(ven) => allowed(DEVICE_RULES, Some(ven)),
        }
    }
}

/// Whether the policy pattern `rule` (`+` and a trailing `#` are
/// wildcards) covers the topic or filter `name`: every topic `name` can
/// match is matched by `rule`.
fn covers(rule: &str, name: &str) -> bool {
    let mut names = name.split('/');
    for level in rule.split('/') {
        if level == "#" {
            return true;
        }
        match names.next() {
            Some("#") | None => return false,
            Some(n) if level == "+" || level == n && n != "+" => {}
            Some(_) => return false,
        }
    }
    names.next().is_none()
}

/// MQTT topic matching: `filter` (with `+` and `#`) against `topic`.
/// Wildcards at the first level do not match topics beginning with `$`.
fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topics = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topics.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topics.next().is_none()
}

/// Whether `filter` is a valid MQTT filter (`#` only as the whole last
/// level, `+` only as a whole level).
fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| {
            (!level.contains('#') || (*level == "#" && i == levels.len() - 1))
                && (!level.contains('+') || *level == "+")
        })
}

/// A shared subscription's group and filter, or `None` for a plain one.
fn split_share(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("$share/")?;
    rest.split_once('/')
        .filter(|(group, filter)| !group.is_empty() && !filter.is_empty())
}

/// What a connection task is told to send.
#[derive(Debug)]
enum Outgoing {
    Packet(Packet),
    Close,
}

#[derive(Debug)]
struct Subscription {
    /// The filter as subscribed (with any `$share/{group}/` prefix).
    path: String,
    /// The filter to match topics with.
    filter: String,
    /// The share group, if shared.
    group: Option<String>,
    qos: QoS,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
}

#[derive(Debug)]
struct Session {
    clean: bool,
    subscriptions: Vec<Subscription>,
    connection: Option<Connection>,
    will: Option<LastWill>,
    /// Sent and not yet acknowledged, in sending order.
    inflight: VecDeque<Publish>,
    /// Waiting for a connection or for room in the in-flight window.
    queue: VecDeque<Publish>,
    next_pkid: u16,
}

impl Session {
    fn new(clean: bool) -> Self {
        Self {
            clean,
            subscriptions: Vec::new(),
            connection: None,
            will: None,
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            next_pkid: 0,
        }
    }

    fn send(&self, packet: Packet) {
        if let Some(connection) = &self.connection {
            let _ = connection.tx.send(Outgoing::Packet(packet));
        }
    }

    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            let pkid = self.next_pkid;
            if !self.inflight.iter().any(|p| p.pkid == pkid) {
                return pkid;
            }
        }
    }

    /// Sends queued messages while the connection's window has room.
    fn pump(&mut self, counters: &BrokerStats) {
        while self.connection.is_some() && self.inflight.len() < MAX_INFLIGHT {
            let Some(mut publish) = self.queue.pop_front() else {
                break;
            };
            publish.pkid = self.pkid();
            self.inflight.push_back(publish.clone());
            self.send(Packet::Publish(publish));
            counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Delivers one message at `qos` (already the lower of the publish's
    /// and the subscription's).
    fn deliver(
        &mut self,
        client_id: &str,
        publish: &Publish,
        qos: QoS,
        retain: bool,
        counters: &BrokerStats,
    ) {
        let mut publish = Publish {
            dup: false,
            qos,
            retain,
            topic: publish.topic.clone(),
            pkid: 0,
            payload: publish.payload.clone(),
        };
        if qos == QoS::AtMostOnce {
            if self.connection.is_some() {
                self.send(Packet::Publish(publish));
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        publish.qos = QoS::AtLeastOnce;
        self.queue.push_back(publish);
        if self.queue.len() > MAX_QUEUED {
            self.queue.pop_front();
            let dropped = counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    client_id,
                    dropped,
                    "MQTT session queue full: oldest messages dropped"
                );
            }
        }
        self.pump(counters);
    }
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Session>,
    retained: HashMap<String, Publish>,
    /// Round-robin position per (group, filter).
    share_turns: HashMap<(String, String), usize>,
}

#[derive(Debug)]
struct Broker {
    state: Mutex<State>,
    stats: Arc<BrokerStats>,
    next_connection: AtomicU64,
}

impl Broker {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves consistent-enough state
        // for a demo; keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection for `client_id`; returns whether a session
    /// was present. CONNACK and any resent messages are queued on `tx`.
    fn connect(
        &self,
        client_id: &str,
        clean: bool,
        will: Option<LastWill>,
        connection: Connection,
    ) -> bool {
        let mut state = self.state();
        if let Some(old) = state.sessions.get_mut(client_id)
            && let Some(previous) = old.connection.take()
        {
            tracing::info!(
                client_id,
                "MQTT client connected again: closing its older connection"
            );
            let _ = previous.tx.send(Outgoing::Close);
        }
        if clean {
            state.sessions.remove(client_id);
        }
        let present = state.sessions.contains_key(client_id);
        let session = state
            .sessions
            .entry(client_id.to_owned())
            .or_insert_with(|| Session::new(clean));
        session.clean = clean;
        session.will = will;
        session.connection = Some(connection);
        session.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            present,
        )));
        for publish in &session.inflight {
            let mut again = publish.clone();
            again.dup = true;
            session.send(Packet::Publish(again));
        }
        session.pump(&self.stats);
        present
    }

    /// The connection `connection` of `client_id` ended; `graceful` if by
    /// DISCONNECT (or the broker stopping), so no will is published.
    fn disconnect(&self, client_id: &str, connection: u64, graceful: bool) {
        let mut state = self.state();
        let Some(session) = state.sessions.get_mut(client_id) else {
            return;
        };
        if session
            .connection
            .as_ref()
            .is_none_or(|c| c.id != connection)
        {
            return; // taken over by a newer connection
        }
        session.connection = None;
        let will = session.will.take();
        if session.clean {
            state.sessions.remove(client_id);
        }
        if !graceful && let Some(will) = will {
            let mut publish = Publish::new(will.topic, will.qos, will.message.to_vec());
            publish.retain = will.retain;
            Self::route(&mut state, &publish, &self.stats);
        }
    }

    /// Handles SUBSCRIBE: each filter checked against the policy, SUBACK,
    /// then the retained messages matching the new plain subscriptions.
    fn subscribe(
        &self,
        identity: &Identity,
        client_id: &str,
        subscribe: &Subscribe,
        tx: &mpsc::UnboundedSender<Outgoing>,
    ) {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut state = self.state();
        for request in &subscribe.filters {
            let (group, filter) = match split_share(&request.path) {
                Some((group, filter)) => (Some(group.to_owned()), filter),
                None => (None, request.path.as_str()),
            };
            if !valid_filter(filter) || request.path.starts_with("$share") && group.is_none() {
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            if !identity.may(Access::Subscribe, filter) {
                self.stats
                    .denied_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    client_id,
                    filter = request.path,
                    "subscription refused by the policy"
                );
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            let qos = min_qos(request.qos, QoS::AtLeastOnce);
            codes.push(SubscribeReasonCode::Success(qos));
            if group.is_none() {
                retained.extend(
                    state
                        .retained
                        .values()
                        .filter(|p| matches(filter, &p.topic))
                        .map(|p| (p.clone(), min_qos(p.qos, qos))),
                );
            }
            if let Some(session) = state.sessions.get_mut(client_id) {
                session.subscriptions.retain(|s| s.path != request.path);
                session.subscriptions.push(Subscription {
                    path: request.path.clone(),
                    filter: filter.to_owned(),
                    group,
                    qos,
                });
            }
        }
        let _ = tx.send(Outgoing::Packet(Packet::SubAck(SubAck::new(
            subscribe.pkid,
            codes,
        ))));
        if let Some(session) = state.sessions.get_mut(client_id) {
            for (publish, qos) in retained {
                session.deliver(client_id, &publish, qos, true, &self.stats);
            }
        }
    }

    /// Stores a retained message and delivers `publish` to every matching
    /// subscription.
    fn route(state: &mut State, publish: &Publish, counters: &BrokerStats) {
        if publish.retain {
            if publish.payload.is_empty() {
                state.retained.remove(&publish.topic);
            } else {
                state
                    .retained
                    .insert(publish.topic.clone(), publish.clone());
            }
        }
        let topic = publish.topic.as_str();
        // Plain subscriptions: once per session, at the highest QoS.
        let mut shared: HashMap<(String, String), Vec<(String, QoS)>> = HashMap::new();
        let mut plain: Vec<(String, QoS)> = Vec::new();
        for (client_id, session) in &state.sessions {
            let mut best: Option<QoS> = None;
            for sub in &session.subscriptions {
                if !matches(&sub.filter, topic) {
                    continue;
                }
                match &sub.group {
                    Some(group) => shared
                        .entry((group.clone(), sub.filter.clone()))
                        .or_default()
                        .push((client_id.clone(), sub.qos)),
                    None => best = Some(best.map_or(sub.qos, |q| max_qos(q, sub.qos))),
                }
            }
            if let Some(qos) = best {
                plain.push((client_id.clone(), qos));
            }
        }
        for (client_id, qos) in plain {
            if let Some(session) = state.sessions.get_mut(&client_id) {
                session.deliver(
                    &client_id,
                    publish,
                    min_qos(publish.qos, qos),
                    false,
                    counters,
                );
            }
        }
        for (key, mut members) in shared {
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let connected: Vec<&(String, QoS)> = members
                .iter()
                .filter(|(id, _)| {
                    state
                        .sessions
                        .get(id)
                        .is_some_and(|s| s.connection.is_some())
                })
                .collect();
            let chosen = if connected.is_empty() {
                members
                    .iter()
                    .find(|(id, _)| state.sessions.get(id).is_some_and(|s| !s.clean))
                    .cloned()
            } else {
                let turn = state.share_turns.entry(key).or_default();
                *turn = turn.wrapping_add(1);
                Some(connected[*turn % connected.len()].clone())
            };
            if let Some((client_id, qos)) = chosen
                && let Some(session) = state.sessions.get_mut(&client_id)
            {
                session.deliver(
                    &client_id,
                    publish,
                    min_qos(publish.qos, qos),
                    false,
                    counters,
                );
            }
        }
    }
}

fn qos_level(qos: QoS) -> u8 {
    qos as u8
}

fn min_qos(a: QoS, b: QoS) -> QoS {
    if qos_level(a) <= qos_level(b) { a } else { b }
}

fn max_qos(a: QoS, b: QoS) -> QoS {
    if qos_level(a) >= qos_level(b) { a } else { b }
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let for_connections = stop.clone();
    let mut stopped = std::pin::pin!(async move {
        let _ = stop.wait_for(|&s| s).await;
    });
    loop {
        tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(serve_connection(
                        Arc::clone(&broker),
                        acceptor.clone(),
                        tcp,
                        peer,
                        for_connections.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "MQTT broker: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
    while connections.join_next().await.is_some() {}
}

/// Why a connection ended.
enum End {
    /// DISCONNECT, or the broker stopping: no will.
    Graceful,
    /// Anything else: the will is published.
    Lost(String),
}

/// The reading and writing halves of a client's TLS stream.
type TlsReader = tokio::io::ReadHalf<rumqttc::tokio_rustls::server::TlsStream<TcpStream>>;
type TlsWriter = tokio::io::WriteHalf<rumqttc::tokio_rustls::server::TlsStream<TcpStream>>;

/// TLS handshake, the client's identity from its certificate, and its
/// CONNECT packet; or why the connection is refused.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
) -> Result<(Identity, rumqttc::Connect, TlsReader, TlsWriter, BytesMut), String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(format!("TLS handshake failed: {error}")),
        Err(_) => return Err("no TLS handshake in time".into()),
    };
    let identity = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
    {
        Some(cert) => match Identity::from_certificate(cert) {
            Ok(identity) => identity,
            Err(reason) => return Err(reason),
        },
        None => return Err("no client certificate".into()),
    };
    let (mut reader, writer) = tokio::io::split(stream);
    let mut buffer = BytesMut::with_capacity(8 * 1024);
    let connect =
        match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut reader, &mut buffer)).await {
            Ok(Ok(Some(Packet::Connect(connect)))) => connect,
            Ok(Ok(Some(_))) => return Err("the first packet is not CONNECT".into()),
            Ok(Ok(None)) => return Err("closed before CONNECT".into()),
            Ok(Err(error)) => return Err(format!("bad CONNECT: {error}")),
            Err(_) => return Err("no CONNECT in time".into()),
        };
    Ok((identity, connect, reader, writer, buffer))
}

async fn serve_connection(
    broker: Arc<Broker>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let (identity, connect, reader, mut writer, buffer) = match handshake(acceptor, tcp).await {
        Ok(accepted) => accepted,
        Err(reason) => {
            broker.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, reason, "MQTT connection refused");
            return;
        }
    };
    let refuse = |reason: &str| {
        broker.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, reason, "MQTT connection refused");
    };
    let client_id = connect.client_id.clone();
    let code = match &identity {
        _ if client_id.is_empty() => ConnectReturnCode::BadClientId,
        Identity::Ven(ven) if *ven != client_id => ConnectReturnCode::NotAuthorized,
        _ => ConnectReturnCode::Success,
    };
    if code != ConnectReturnCode::Success {
        let mut out = BytesMut::new();
        if Packet::ConnAck(ConnAck::new(code, false))
            .write(&mut out, MAX_PACKET_BYTES)
            .is_ok()
        {
            let _ = writer.write_all(&out).await;
        }
        let _ = writer.shutdown().await;
        return refuse(&format!(
            "client id {client_id:?} not allowed for {identity:?}"
        ));
    }
    let will = connect.last_will.filter(|will| {
        let allowed = identity.may(Access::Publish, &will.topic) && will.qos != QoS::ExactlyOnce;
        if !allowed {
            broker
                .stats
                .denied_publishes
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                client_id,
                topic = will.topic,
                "last will refused by the policy; ignored"
            );
        }
        allowed
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let connection_id = broker.next_connection.fetch_add(1, Ordering::Relaxed);
    let present = broker.connect(
        &client_id,
        connect.clean_session,
        will,
        Connection {
            id: connection_id,
            tx: tx.clone(),
        },
    );
    broker.stats.connections.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        client_id,
        ?identity,
        session_present = present,
        "MQTT client connected"
    );

    let write_loop = async move {
        let mut out = BytesMut::with_capacity(8 * 1024);
        while let Some(Outgoing::Packet(packet)) = rx.recv().await {
            out.clear();
            if let Err(error) = packet.write(&mut out, MAX_PACKET_BYTES) {
                tracing::warn!(%error, "MQTT broker: cannot encode a packet");
                continue;
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let read_loop = read_loop(
        &broker,
        &identity,
        &client_id,
        connect.keep_alive,
        reader,
        buffer,
        &tx,
        stop,
    );
    let end = tokio::select! {
        end = read_loop => end,
        () = write_loop => End::Lost("the connection was closed".into()),
    };
    if let End::Lost(reason) = &end {
        tracing::debug!(client_id, reason, "MQTT connection lost");
    }
    broker.disconnect(&client_id, connection_id, matches!(end, End::Graceful));
}

#[expect(clippy::too_many_arguments, reason = "one connection's whole context")]
async fn read_loop(
    broker: &Broker,
    identity: &Identity,
    client_id: &str,
    keep_alive: u16,
    mut reader: impl AsyncRead + Unpin,
    mut buffer: BytesMut,
    tx: &mpsc::UnboundedSender<Outgoing>,
    mut stop: watch::Receiver<bool>,
) -> End {
    // MQTT 3.1.1: the server closes after 1.5 keep-alive periods of silence.
    let silence = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    loop {
        let read = async {
            match silence {
                Some(limit) => tokio::time::timeout(limit, read_packet(&mut reader, &mut buffer))
                    .await
                    .unwrap_or_else(|_| Err("keep-alive expired".into())),
                None => read_packet(&mut reader, &mut buffer).await,
            }
        };
        let packet = tokio::select! {
            _ = stop.wait_for(|&s| s) => return End::Graceful,
            packet = read => packet,
        };
        let packet = match packet {
            Ok(Some(packet)) => packet,
            Ok(None) => return End::Lost("closed by the client".into()),
            Err(error) => return End::Lost(error),
        };
        let send = |packet: Packet| {
            let _ = tx.send(Outgoing::Packet(packet));
        };
        match packet {
            Packet::Publish(publish) => {
                if publish.qos == QoS::ExactlyOnce {
                    return End::Lost("QoS 2 is not supported".into());
                }
                if publish.topic.is_empty() || publish.topic.contains(['+', '#']) {
                    return End::Lost(format!("invalid topic {:?}", publish.topic));
                }
                if identity.may(Access::Publish, &publish.topic) {
                    broker.stats.published.fetch_add(1, Ordering::Relaxed);
                    let mut state = broker.state();
                    Broker::route(&mut state, &publish, &broker.stats);
                } else {
                    let denied = broker
                        .stats
                        .denied_publishes
                        .fetch_add(1, Ordering::Relaxed)
                        + 1;
                    if denied.is_power_of_two() {
                        tracing::warn!(
                            client_id,
                            topic = publish.topic,
                            denied,
                            "publish refused by the policy (dropped)"
                        );
                    }
                }
                if publish.qos == QoS::AtLeastOnce {
                    send(Packet::PubAck(PubAck::new(publish.pkid)));
                }
            }
            Packet::PubAck(ack) => {
                let mut state = broker.state();
                if let Some(session) = state.sessions.get_mut(client_id) {
                    session.inflight.retain(|p| p.pkid != ack.pkid);
                    session.pump(&broker.stats);
                }
            }
            Packet::Subscribe(subscribe) => broker.subscribe(identity, client_id, &subscribe, tx),
            Packet::Unsubscribe(unsubscribe) => {
                let mut state = broker.state();
                if let Some(session) = state.sessions.get_mut(client_id) {
                    session
                        .subscriptions
                        .retain(|s| !unsubscribe.topics.contains(&s.path));
                }
                send(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)));
            }
            Packet::PingReq => send(Packet::PingResp),
            Packet::Disconnect => return End::Graceful,
            other => return End::Lost(format!("unexpected packet {other:?}")),
        }
    }
}

/// Reads the next packet; `None` at a clean end of stream.
async fn read_packet(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
) -> Result<Option<Packet>, String> {
    loop {
        match Packet::read(buffer, MAX_PACKET_BYTES) {
            Ok(packet) => return Ok(Some(packet)),
            Err(rumqttc::Error::InsufficientBytes(_)) => {}
            Err(error) => return Err(format!("malformed packet: {error}")),
        }
        buffer.reserve(16 * 1024);
        match reader.read_buf(buffer).await {
            Ok(0) if buffer.is_empty() => return Ok(None),
            Ok(0) => return Err("closed in the middle of a packet".into()),
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching_follows_mqtt() {
        assert!(matches("ven/cmd/+", "ven/cmd/site-1"));
        assert!(matches("oadr/#", "oadr/meter/site-1"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$aws/things/x/shadow/get"));
        assert!(!matches(
            "+/things/x/shadow/get",
            "$aws/things/x/shadow/get"
        ));
        assert!(matches(
            "$aws/things/+/shadow/get",
            "$aws/things/x/shadow/get"
        ));
        assert!(!matches("ven/cmd/+", "ven/cmd/a/b"));
        assert!(!matches("ven/cmd", "ven/cmd/a"));
        assert!(valid_filter("a/+/#") && valid_filter("#") && valid_filter("+"));
        assert!(
            !valid_filter("a/#/b")
                && !valid_filter("a+")
                && !valid_filter("")
                && !valid_filter("a/b#")
        );
        assert_eq!(
            split_share("$share/g/oadr/meter/+"),
            Some(("g", "oadr/meter/+"))
        );
        assert_eq!(split_share("$share/g"), None);
        assert_eq!(split_share("oadr/meter/+"), None);
    }

    #[test]
    fn policy_keeps_each_ven_on_its_own_topics() {
        let ven = Identity::Ven("site-1".into());
        assert!(ven.may(Access::Publish, "oadr/meter/site-1"));
        assert!(ven.may(Access::Publish, "$aws/things/site-1/shadow/update"));
        assert!(!ven.may(Access::Publish, "oadr/meter/site-2"));
        assert!(!ven.may(Access::Publish, "ven/cmd/site-1"));
        assert!(ven.may(Access::Subscribe, "ven/cmd/site-1"));
        assert!(ven.may(Access::Subscribe, "$aws/things/site-1/shadow/update/delta"));
        assert!(ven.may(Access::Subscribe, "$aws/things/site-1/shadow/#"));
        assert!(!ven.may(Access::Subscribe, "ven/cmd/+"));
        assert!(!ven.may(Access::Subscribe, "ven/cmd/#"));
        assert!(!ven.may(Access::Subscribe, "#"));
        assert!(!ven.may(Access::Subscribe, "$aws/things/+/shadow/#"));

        let backend = Identity::Backend;
        assert!(backend.may(Access::Subscribe, "oadr/meter/+"));
        assert!(backend.may(Access::Subscribe, "$aws/things/+/shadow/update"));
        assert!(backend.may(Access::Publish, "ven/cmd/site-1"));
        assert!(backend.may(Access::Publish, "$aws/things/site-1/shadow/update/accepted"));
        assert!(!backend.may(Access::Publish, "oadr/meter/site-1"));
        assert!(!backend.may(Access::Subscribe, "#"));
    }

    #[test]
    fn shared_delivery_goes_to_one_member_and_queues_for_persistent_sessions() {
        let counters = BrokerStats::default();
        let mut state = State::default();
        let (tx_a, mut rx_a) = mpsc::unbounded_channel();
        for (id, connection) in [("a", Some(Connection { id: 1, tx: tx_a })), ("b", None)] {
            let mut session = Session::new(false);
            session.connection = connection;
            session.subscriptions.push(Subscription {
                path: "$share/g/oadr/meter/+".into(),
                filter: "oadr/meter/+".into(),
                group: Some("g".into()),
                qos: QoS::AtLeastOnce,
            });
            state.sessions.insert(id.into(), session);
        }
        let publish = Publish::new("oadr/meter/site-1", QoS::AtLeastOnce, vec![1]);
        for _ in 0..3 {
            Broker::route(&mut state, &publish, &counters);
        }
        let mut pkids = Vec::new();
        while let Ok(Outgoing::Packet(Packet::Publish(p))) = rx_a.try_recv() {
            pkids.push(p.pkid);
        }
        assert_eq!(pkids, [1, 2, 3], "the connected member gets every message");
        assert!(state.sessions["b"].queue.is_empty());

        // With no member connected, the message waits in a persistent session.
        state.sessions.get_mut("a").unwrap().connection = None;
        Broker::route(&mut state, &publish, &counters);
        let queued: usize = state.sessions.values().map(|s| s.queue.len()).sum();
        assert_eq!(queued, 1);
        assert_eq!(
            state.sessions["a"].inflight.len(),
            3,
            "unacknowledged, kept for a resend"
        );
    }
}
