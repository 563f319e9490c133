//! How the uplink connects: the rustls client configuration and the MQTT
//! options (persistent session, last will, packet sizes, in-flight window).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gridlink_protocol::{Encoding, Status, Timestamp, Topic, encode};
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{AWS_IOT_ALPN, MAX_PACKET_BYTES, UplinkError, UplinkSettings};
use crate::metrics::now_ms;

/// Builds the rustls client configuration: ring provider, the given CA as
/// the only trust anchor, the VEN's certificate and key, and ALPN when asked.
pub fn tls_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    alpn: bool,
) -> Result<ClientConfig, UplinkError> {
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| UplinkError::Pem {
            path: path.clone(),
            reason: e.to_string(),
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(pem_err(ca))? {
        roots.add(cert.map_err(pem_err(ca))?)?;
    }
    if roots.is_empty() {
        return Err(UplinkError::Pem {
            path: ca.to_path_buf(),
            reason: "no certificate in file".into(),
        });
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    if chain.is_empty() {
        return Err(UplinkError::Pem {
            path: cert.to_path_buf(),
            reason: "no certificate in file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)?;
    if alpn {
        config.alpn_protocols = vec![AWS_IOT_ALPN.to_vec()];
    }
    Ok(config)
}

/// MQTT options for the VEN: persistent session, last will, packet sizes,
/// in-flight window and TLS.
pub fn mqtt_options(
    settings: &UplinkSettings,
    tls: ClientConfig,
) -> Result<MqttOptions, UplinkError> {
    let mut options = MqttOptions::new(
        settings.ven_id.as_str(),
        settings.host.clone(),
        settings.port,
    );
    let will = encode(
        &Status::offline(settings.ven_id.clone(), now()),
        Encoding::Postcard,
    )?;
    options
        .set_clean_session(false)
        .set_keep_alive(settings.keep_alive.max(Duration::from_secs(5)))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(settings.max_inflight.max(1))
        .set_request_channel_capacity(usize::from(settings.max_inflight.max(1)) + 8)
        .set_last_will(LastWill::new(
            Topic::status(settings.ven_id.clone()).to_string(),
            will,
            QoS::AtLeastOnce,
            true,
        ))
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    Ok(options)
}

/// The wall clock as a protocol timestamp, for status messages.
pub(super) fn now() -> Timestamp {
    Timestamp::from_unix_ms(now_ms()).unwrap_or(Timestamp::NOW_SENTINEL)
}
