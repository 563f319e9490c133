//! The MQTT adapter: the backend identity's TLS configuration and the
//! client options every MQTT client of the cloud connects with (ingest,
//! dispatch, the shadow service).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gridlink_protocol::MAX_PAYLOAD_BYTES;
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Largest MQTT packet the cloud's clients send: a full 128 KB payload
/// plus header. What they *read* is [`MqttSettings::max_packet_bytes`].
const MAX_OUTGOING_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + 512;
/// The broker connection of the cloud's MQTT clients (ingest, dispatch,
/// the shadow service).
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// CA certificate(s) of the broker (PEM).
    pub ca: PathBuf,
    /// The backend's client certificate (PEM).
    pub cert: PathBuf,
    /// The backend's key (PEM).
    pub key: PathBuf,
    /// MQTT client id; must differ between `serve` processes.
    pub client_id: String,
    /// Shared-subscription group name; empty for plain subscriptions.
    pub share_group: String,
    /// The largest packet the broker may deliver (at least its own limit):
    /// the clients read everything up to it, so an oversized message is
    /// dropped and acknowledged by the consumer instead of failing the
    /// connection and being redelivered forever.
    pub max_packet_bytes: usize,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
}

/// Why a client could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A certificate or key file could not be read.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The rustls configuration for the backend identity (ring provider).
pub fn tls_config(settings: &MqttSettings) -> Result<ClientConfig, MqttError> {
    let pem = |path: &PathBuf| {
        let path = path.clone();
        move |e: rustls::pki_types::pem::Error| MqttError::Pem {
            path: path.clone(),
            reason: e.to_string(),
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&settings.ca).map_err(pem(&settings.ca))? {
        roots.add(cert.map_err(pem(&settings.ca))?)?;
    }
    let chain = CertificateDer::pem_file_iter(&settings.cert)
        .map_err(pem(&settings.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(&settings.cert))?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(pem(&settings.key))?;
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?,
    )
}

/// MQTT options for the backend identity with client id `client_id`: mTLS
/// ([`tls_config`]), a persistent session, manual acknowledgements, packets
/// read up to [`MqttSettings::max_packet_bytes`] (never below what the
/// broker may deliver: a smaller client limit turns one oversized message
/// into a reconnect loop that stalls every VEN) and sent up to 128 KB plus
/// header. Ingest, dispatch and the shadow service (`crate::shadow`) all
/// connect with these.
pub fn mqtt_options(settings: &MqttSettings, client_id: &str) -> Result<MqttOptions, MqttError> {
    let tls = tls_config(settings)?;
    let mut options = MqttOptions::new(client_id, settings.host.clone(), settings.port);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(settings.keep_alive.max(Duration::from_secs(5)))
        .set_max_packet_size(
            settings.max_packet_bytes.max(MAX_OUTGOING_PACKET_BYTES),
            MAX_OUTGOING_PACKET_BYTES,
        )
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    Ok(options)
}
