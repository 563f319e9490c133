//! MQTT clients for tests: rumqttc over rustls (ring) with the test PKI's
//! certificates, and [`MqttTestClient`], which drives the event loop and
//! waits (bounded) for acknowledgements and messages.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gridlink_protocol::MAX_PAYLOAD_BYTES;
use gridlink_provision::pki::{IdentityFiles, TestPki};
use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Room for a PUBLISH packet's header beyond its payload: fixed header (5),
/// topic length (2), topic (AWS IoT allows 256 bytes), packet id (2).
const PUBLISH_HEADER_ALLOWANCE: usize = 512;

/// Largest MQTT packet clients send or accept (and the test broker's
/// `max_packet_size`): a [`MAX_PAYLOAD_BYTES`] payload plus its header.
/// rumqttc's default is 10 KiB, far below the 128 KB payload limit.
pub const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + PUBLISH_HEADER_ALLOWANCE;

/// How long [`MqttTestClient`] waits for a connection, an acknowledgement
/// or an expected message before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A rustls client configuration with the ring provider that trusts only
/// `ca_cert` and, if given, presents `client`'s certificate.
pub fn tls_config(ca_cert: &Path, client: Option<&IdentityFiles>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_cert)
        .unwrap_or_else(|e| panic!("read {}: {e}", ca_cert.display()))
    {
        let cert = cert.unwrap_or_else(|e| panic!("parse {}: {e}", ca_cert.display()));
        roots
            .add(cert)
            .unwrap_or_else(|e| panic!("trust {}: {e}", ca_cert.display()));
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots);
    match client {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .unwrap_or_else(|e| panic!("read {}: {e}", files.cert.display()));
            let key = PrivateKeyDer::from_pem_file(&files.key)
                .unwrap_or_else(|e| panic!("read {}: {e}", files.key.display()));
            builder
                .with_client_auth_cert(chain, key)
                .unwrap_or_else(|e| panic!("client certificate {}: {e}", files.cert.display()))
        }
    }
}

/// MQTT options over TLS with `tls`, client id `client_id`, packet size
/// limit [`MAX_PACKET_BYTES`] both ways and a clean session.
pub fn options(client_id: &str, host: &str, port: u16, tls: ClientConfig) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_keep_alive(Duration::from_secs(30));
    options
}

/// Options for `identity` (`"backend"` or a VEN id; also the client id)
/// with its client certificate from `pki`. Panics if `pki` has no such
/// identity.
pub fn client_options(pki: &TestPki, identity: &str, host: &str, port: u16) -> MqttOptions {
    let files = pki
        .identity(identity)
        .unwrap_or_else(|| panic!("the test PKI has no identity {identity:?}"));
    options(identity, host, port, tls_config(pki.ca_cert(), Some(files)))
}

/// Options that trust the broker but present no client certificate, which
/// the broker must refuse.
pub fn options_without_client_cert(
    pki: &TestPki,
    client_id: &str,
    host: &str,
    port: u16,
) -> MqttOptions {
    options(client_id, host, port, tls_config(pki.ca_cert(), None))
}

/// A connected MQTT client whose event loop runs in a task; incoming
/// packets are queued until a test waits for them.
#[derive(Debug)]
pub struct MqttTestClient {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Result<Packet, String>>,
    backlog: VecDeque<Packet>,
    driver: JoinHandle<()>,
    name: String,
}

impl MqttTestClient {
    /// Connects and waits for a successful CONNACK. Returns the error
    /// rumqttc reports if the broker refuses the TLS handshake or the
    /// connection; panics if neither happens within [`WAIT`].
    pub async fn connect(options: MqttOptions) -> Result<Self, ConnectionError> {
        let name = options.client_id();
        let (client, mut event_loop) = AsyncClient::new(options, 64);
        let handshake = tokio::time::timeout(WAIT, async {
            loop {
                if let Event::Incoming(Packet::ConnAck(ack)) = event_loop.poll().await? {
                    return Ok::<_, ConnectionError>(ack);
                }
            }
        });
        let Ok(connected) = handshake.await else {
            panic!("{name}: neither CONNACK nor an error within {WAIT:?}");
        };
        let connected = connected?;
        assert_eq!(
            connected.code,
            rumqttc::ConnectReturnCode::Success,
            "{name}: connection refused"
        );
        let (tx, incoming) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::PingResp) | Event::Outgoing(_)) => {}
                    Ok(Event::Incoming(packet)) => {
                        if tx.send(Ok(packet)).is_err() {
                            return;
                        }
                    }
                    // Polling again would reconnect; tests decide that.
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        Ok(Self {
            client,
            incoming,
            backlog: VecDeque::new(),
            driver,
            name,
        })
    }

    /// The rumqttc handle, for requests the helpers do not cover.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Subscribes to `filter` and returns the broker's SUBACK code.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, qos)
            .await
            .unwrap_or_else(|e| panic!("{}: subscribe {filter}: {e}", self.name));
        let packet = self
            .wait_for(|p| matches!(p, Packet::SubAck(_)), WAIT)
            .await
            .unwrap_or_else(|| panic!("{}: no SUBACK for {filter} within {WAIT:?}", self.name));
        let Packet::SubAck(ack) = packet else {
            unreachable!("wait_for returned a SUBACK")
        };
        ack.return_codes[0]
    }

    /// Publishes `payload` to `topic` with QoS 1 and waits for the PUBACK.
    /// Over MQTT 3.1.1 Mosquitto acknowledges a publish the ACL forbids and
    /// drops it, so a PUBACK does not mean delivery.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap_or_else(|e| panic!("{}: publish {topic}: {e}", self.name));
        self.wait_for(|p| matches!(p, Packet::PubAck(_)), WAIT)
            .await
            .unwrap_or_else(|| panic!("{}: no PUBACK for {topic} within {WAIT:?}", self.name));
    }

    /// The next message received, or `None` if none arrives within `within`.
    pub async fn next_publish(&mut self, within: Duration) -> Option<Publish> {
        let packet = self
            .wait_for(|p| matches!(p, Packet::Publish(_)), within)
            .await?;
        let Packet::Publish(publish) = packet else {
            unreachable!("wait_for returned a PUBLISH")
        };
        Some(publish)
    }

    /// The next message received; panics if none arrives within [`WAIT`].
    pub async fn expect_publish(&mut self) -> Publish {
        self.next_publish(WAIT)
            .await
            .unwrap_or_else(|| panic!("{}: no message within {WAIT:?}", self.name))
    }

    /// Waits for the broker to close the connection and returns rumqttc's
    /// error; packets that arrive meanwhile stay queued. Panics if the
    /// connection is still up after [`WAIT`].
    pub async fn expect_connection_lost(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.incoming.recv()).await else {
                panic!("{}: connection still up after {WAIT:?}", self.name);
            };
            match next {
                Some(Ok(packet)) => self.backlog.push_back(packet),
                Some(Err(e)) => return e,
                None => return "the event loop has stopped".to_owned(),
            }
        }
    }

    /// Sends DISCONNECT and waits (bounded) for the event loop to finish.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let driver = &mut self.driver;
        let _ = tokio::time::timeout(WAIT, driver).await;
    }

    /// The first queued or incoming packet matching `wanted`; others are
    /// kept in order for later calls. Panics if the connection fails.
    async fn wait_for(
        &mut self,
        wanted: impl Fn(&Packet) -> bool,
        within: Duration,
    ) -> Option<Packet> {
        if let Some(i) = self.backlog.iter().position(&wanted) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.incoming.recv())
                .await
                .ok()?;
            match next {
                Some(Ok(packet)) if wanted(&packet) => return Some(packet),
                Some(Ok(packet)) => self.backlog.push_back(packet),
                Some(Err(e)) => panic!("{}: connection lost: {e}", self.name),
                None => panic!("{}: the event loop has stopped", self.name),
            }
        }
    }
}

impl Drop for MqttTestClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
