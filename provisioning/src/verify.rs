//! `gridlink-provision verify BUNDLE`: the installer's diagnostics. Each
//! check passes or fails with a reason; later checks that depend on a
//! failed one are skipped and say so.
//!
//! 1. the bundle's files are there and parse (`agent.toml`, `cert.pem`,
//!    `ca.pem`, the key);
//! 2. the certificate is signed by `ca.pem` (for an AWS IoT bundle, whose
//!    `ca.pem` is Amazon's root, this check is skipped: the device
//!    certificate is signed by AWS's issuing CA, not the root);
//! 3. it is valid now (and how long it has left);
//! 4. the key matches the certificate;
//! 5. the certificate CN is the `ven_id` of `agent.toml`;
//! 6. the endpoint is reachable over TCP;
//! 7. the TLS handshake succeeds with the client certificate;
//! 8. an MQTT 3.1.1 CONNECT with client id = VEN id is accepted.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::OffsetDateTime;

use crate::pki;

/// How long network checks wait.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);

/// Certificates closer than this to expiry pass with a warning.
pub const EXPIRY_WARNING: time::Duration = time::Duration::days(30);

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed; the text says what was seen.
    Pass(String),
    /// It failed; the text says why.
    Fail(String),
    /// It was not run; the text says why.
    Skip(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it went.
    pub outcome: Outcome,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (word, text) = match &self.outcome {
            Outcome::Pass(t) => ("pass", t),
            Outcome::Fail(t) => ("FAIL", t),
            Outcome::Skip(t) => ("skip", t),
        };
        write!(f, "{word:4}  {:<22} {text}", self.name)
    }
}

/// The report: every check in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// True if no check failed.
    pub fn passed(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    fn push(&mut self, name: &'static str, outcome: Outcome) -> bool {
        let ok = matches!(outcome, Outcome::Pass(_));
        self.checks.push(Check { name, outcome });
        ok
    }
}

struct Files {
    ven_id: String,
    host: String,
    port: u16,
    alpn: bool,
    cert_path: PathBuf,
    ca_path: PathBuf,
    key_path: PathBuf,
    cert_pem: String,
    ca_pem: String,
    key_pem: String,
}

/// Runs every check on the bundle in `dir` at the time `now`.
pub fn verify(dir: &Path, now: OffsetDateTime) -> Report {
    let mut report = Report::default();
    let files = match read_files(dir) {
        Ok(files) => {
            report.push(
                "bundle files",
                Outcome::Pass(format!(
                    "agent.toml (ven_id {:?}, endpoint {}:{}), {}, {}, {}",
                    files.ven_id,
                    files.host,
                    files.port,
                    files.cert_path.display(),
                    files.ca_path.display(),
                    files.key_path.display()
                )),
            );
            files
        }
        Err(reason) => {
            report.push("bundle files", Outcome::Fail(reason));
            return report;
        }
    };
    let facts = match pki::inspect_certificate(&files.cert_pem) {
        Ok(facts) => facts,
        Err(e) => {
            report.push(
                "certificate",
                Outcome::Fail(format!("{}: {e}", files.cert_path.display())),
            );
            return report;
        }
    };
    let key_ok = local_checks(&files, &facts, now, &mut report);
    network_checks(&files, key_ok, &mut report);
    report
}

/// Chain, expiry, key and CN; returns whether the key matches.
fn local_checks(
    files: &Files,
    facts: &pki::CertificateFacts,
    now: OffsetDateTime,
    report: &mut Report,
) -> bool {
    let amazon_root =
        pki::inspect_certificate(&files.ca_pem).is_ok_and(|ca| ca.issuer.contains("Amazon"));
    let chain = if amazon_root {
        Outcome::Skip("ca.pem is Amazon's root; AWS IoT checks the chain at connect".into())
    } else {
        match pki::signed_by(&files.cert_pem, &files.ca_pem) {
            Ok(true) => Outcome::Pass(format!("signed by {}", first_subject(&files.ca_pem))),
            Ok(false) => Outcome::Fail(format!(
                "cert.pem (issuer {}) is not signed by ca.pem ({})",
                facts.issuer,
                first_subject(&files.ca_pem)
            )),
            Err(e) => Outcome::Fail(format!("ca.pem: {e}")),
        }
    };
    report.push("chain", chain);

    let expiry = if now < facts.not_before {
        Outcome::Fail(format!(
            "not valid before {} (is this machine's clock right?)",
            facts.not_before
        ))
    } else if now > facts.not_after {
        Outcome::Fail(format!("expired on {}", facts.not_after))
    } else if facts.not_after - now < EXPIRY_WARNING {
        Outcome::Pass(format!(
            "valid until {} - only {} days left, renew soon",
            facts.not_after,
            (facts.not_after - now).whole_days()
        ))
    } else {
        Outcome::Pass(format!("valid until {}", facts.not_after))
    };
    report.push("expiry", expiry);

    let key = match pki::key_public_key(&files.key_pem) {
        Ok(public) if public == facts.public_key => {
            Outcome::Pass("key.pem is cert.pem's key".into())
        }
        Ok(_) => Outcome::Fail(format!(
            "{} is not the key of {}: the certificate was issued for another key",
            files.key_path.display(),
            files.cert_path.display()
        )),
        Err(e) => Outcome::Fail(format!("{}: {e}", files.key_path.display())),
    };
    let key_ok = report.push("key matches", key);

    let cn = match &facts.common_name {
        Some(cn) if *cn == files.ven_id => Outcome::Pass(format!("CN {cn:?} = ven_id")),
        Some(cn) => Outcome::Fail(format!(
            "certificate CN is {cn:?} but agent.toml's ven_id is {:?}: the broker would take this gateway for {cn:?}",
            files.ven_id
        )),
        None => Outcome::Fail("certificate has no CN".into()),
    };
    report.push("CN matches ven_id", cn);
    key_ok
}

/// Endpoint, TLS and MQTT, each skipped when an earlier one failed.
fn network_checks(files: &Files, key_ok: bool, report: &mut Report) {
    let stream = match connect(&files.host, files.port) {
        Ok(stream) => {
            report.push(
                "endpoint reachable",
                Outcome::Pass(format!("TCP {}:{} connected", files.host, files.port)),
            );
            stream
        }
        Err(reason) => {
            report.push("endpoint reachable", Outcome::Fail(reason));
            report.push(
                "TLS handshake",
                Outcome::Skip("endpoint unreachable".into()),
            );
            report.push("MQTT connect", Outcome::Skip("endpoint unreachable".into()));
            return;
        }
    };
    if !key_ok {
        report.push(
            "TLS handshake",
            Outcome::Skip("the key does not match".into()),
        );
        report.push(
            "MQTT connect",
            Outcome::Skip("the key does not match".into()),
        );
        return;
    }
    let tls = match handshake(files, stream) {
        Ok(tls) => {
            report.push(
                "TLS handshake",
                Outcome::Pass("server certificate trusted, client certificate sent".into()),
            );
            tls
        }
        Err(reason) => {
            report.push("TLS handshake", Outcome::Fail(reason));
            report.push("MQTT connect", Outcome::Skip("no TLS session".into()));
            return;
        }
    };
    report.push(
        "MQTT connect",
        match mqtt_connect(tls, &files.ven_id) {
            Ok(()) => Outcome::Pass(format!("CONNACK accepted for client id {:?}", files.ven_id)),
            Err(reason) => Outcome::Fail(reason),
        },
    );
}

fn read_files(dir: &Path) -> Result<Files, String> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let toml_path = dir.join("agent.toml");
    let config: toml::Table = read(&toml_path)?
        .parse()
        .map_err(|e| format!("{}: {e}", toml_path.display()))?;
    let text = |table: &toml::Table, key: &str, at: &str| {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: {at}{key} is missing or not text", toml_path.display()))
    };
    let ven_id = text(&config, "ven_id", "")?;
    let mqtt = config
        .get("mqtt")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| format!("{}: [mqtt] is missing", toml_path.display()))?;
    let host = text(mqtt, "host", "mqtt.")?;
    let port = mqtt
        .get("port")
        .and_then(toml::Value::as_integer)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(8883);
    let alpn = mqtt
        .get("alpn")
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    let path = |key: &str| -> Result<PathBuf, String> { Ok(dir.join(text(mqtt, key, "mqtt.")?)) };
    let (cert_path, ca_path, key_path) = (path("cert")?, path("ca")?, path("key")?);
    Ok(Files {
        cert_pem: read(&cert_path)?,
        ca_pem: read(&ca_path)?,
        key_pem: read(&key_path)?,
        ven_id,
        host,
        port,
        alpn,
        cert_path,
        ca_path,
        key_path,
    })
}

fn first_subject(pem: &str) -> String {
    pki::inspect_certificate(pem).map_or_else(
        |_| "an unreadable certificate".into(),
        |f| f.common_name.unwrap_or_else(|| "a CA without CN".into()),
    )
}

fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, NETWORK_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(NETWORK_TIMEOUT));
                let _ = stream.set_write_timeout(Some(NETWORK_TIMEOUT));
                return Ok(stream);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(format!("cannot connect to {host}:{port}: {last}"))
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn handshake(files: &Files, mut stream: TcpStream) -> Result<TlsStream, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(files.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("ca.pem: {e}"))?;
        roots.add(cert).map_err(|e| format!("ca.pem: {e}"))?;
    }
    let chain = CertificateDer::pem_slice_iter(files.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert.pem: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(files.key_pem.as_bytes()).map_err(|e| format!("key: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| format!("client certificate: {e}"))?;
    if files.alpn {
        config.alpn_protocols = vec![b"x-amzn-mqtt-ca".to_vec()];
    }
    let name = ServerName::try_from(files.host.clone())
        .map_err(|e| format!("{:?} is not a valid server name: {e}", files.host))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream)
            .map_err(|e| format!("handshake with {}:{} failed: {e}", files.host, files.port))?;
    }
    Ok(rustls::StreamOwned::new(conn, stream))
}

/// Sends an MQTT 3.1.1 CONNECT (clean session, keep-alive 30 s) and reads
/// the CONNACK. In TLS 1.3 the server checks the client certificate after
/// the handshake, so a refused certificate shows up here as a closed
/// connection.
fn mqtt_connect(mut tls: TlsStream, client_id: &str) -> Result<(), String> {
    let id = client_id.as_bytes();
    let id_len = u16::try_from(id.len()).map_err(|_| "client id too long".to_string())?;
    let mut variable = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    variable.extend_from_slice(&id_len.to_be_bytes());
    variable.extend_from_slice(id);
    let mut packet = vec![0x10];
    let mut remaining = variable.len();
    loop {
        // MQTT's variable-length integer: 7 bits a byte, high bit = more.
        let byte = (remaining % 128) as u8;
        remaining /= 128;
        packet.push(if remaining > 0 { byte | 0x80 } else { byte });
        if remaining == 0 {
            break;
        }
    }
    packet.extend_from_slice(&variable);
    tls.write_all(&packet)
        .and_then(|()| tls.flush())
        .map_err(|e| format!("sending CONNECT failed: {e}"))?;
    let mut connack = [0_u8; 4];
    tls.read_exact(&mut connack).map_err(|e| {
        format!("no CONNACK ({e}): the broker closed the connection - certificate refused or revoked, or client id not allowed")
    })?;
    let _ = tls.write_all(&[0xe0, 0]); // DISCONNECT
    match connack {
        [0x20, 2, _, 0] => Ok(()),
        [0x20, 2, _, code] => Err(format!(
            "CONNACK refused the connection: {}",
            match code {
                1 => "unacceptable protocol version",
                2 => "client identifier rejected",
                3 => "server unavailable",
                4 => "bad user name or password",
                5 => "not authorised",
                _ => "unknown return code",
            }
        )),
        other => Err(format!("not an MQTT CONNACK: {other:02x?}")),
    }
}
