//! The own-CA path end to end with the `gridlink-provision` binary and a
//! real Mosquitto started from the configuration `broker-config` writes:
//! a signed bundle connects, a revoked certificate is refused once the
//! broker reloads the CRL, a VEN cannot publish as another, a certificate
//! from another CA is refused, and `verify` names each failure.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gridlink_protocol::VenId;
use gridlink_provision::ca_dir::CaDir;
use gridlink_provision::pki;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::mqtt::{MqttTestClient, options};
use rumqttc::QoS;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn provision(args: &[&str]) -> Output {
    Command::new(gridlink_e2e::binary("gridlink-provision"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = provision(args);
    assert!(
        out.status.success(),
        "gridlink-provision {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A CA, a broker config from it, and Mosquitto running that config.
struct Site {
    dir: tempfile::TempDir,
    ca: PathBuf,
    port: u16,
    broker: Mosquitto,
}

impl Site {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        ok(&["ca", "init", "--dir", s(&ca)]);
        let port = gridlink_testkit::free_port();
        let broker_dir = dir.path().join("broker");
        ok(&[
            "broker-config",
            "--ca",
            s(&ca),
            "--out",
            s(&broker_dir),
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ]);
        let conf = fs::read_to_string(broker_dir.join("mosquitto.conf")).unwrap();
        assert!(conf.contains("require_certificate true"));
        assert!(conf.contains("use_identity_as_username true"));
        assert!(conf.contains(&format!("crlfile {}", s(&ca.join("crl.pem")))));
        let broker = Mosquitto::spawn_configured(&conf, port).await;
        let log = broker.log_tail(40);
        assert!(
            !log.contains("port 1883"),
            "the config opened a second, default listener:\n{log}"
        );
        Self {
            dir,
            ca,
            port,
            broker,
        }
    }

    /// keygen on the "gateway" (the library call `gridlink-agent keygen`
    /// makes), then `sign` into a bundle; the key is put beside it as the
    /// gateway would have it.
    fn signed_bundle(&self, ven: &str) -> PathBuf {
        let csr = pki::generate_csr(&VenId::new(ven).unwrap()).unwrap();
        let csr_path = self.dir.path().join(format!("{ven}.csr"));
        fs::write(&csr_path, &csr.csr_pem).unwrap();
        let bundle = self.dir.path().join(format!("bundle-{ven}"));
        let out = ok(&[
            "sign",
            "--ca",
            s(&self.ca),
            "--csr",
            s(&csr_path),
            "--out",
            s(&bundle),
            "--endpoint",
            &format!("127.0.0.1:{}", self.port),
        ]);
        assert!(out.contains(&format!("signed the CSR of {ven}")), "{out}");
        assert!(!bundle.join("key.pem").exists(), "sign never writes a key");
        pki::write_private(&bundle.join("key.pem"), &csr.key_pem).unwrap();
        bundle
    }

    fn backend_options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let broker = self.dir.path().join("broker");
        client_options(
            &self.ca.join("ca.pem"),
            &broker.join("backend.pem"),
            &broker.join("backend.key"),
            client_id,
            self.port,
        )
    }
}

fn client_options(
    ca: &Path,
    cert: &Path,
    key: &Path,
    client_id: &str,
    port: u16,
) -> rumqttc::MqttOptions {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    options(client_id, "127.0.0.1", port, tls)
}

fn bundle_options(bundle: &Path, client_id: &str, port: u16) -> rumqttc::MqttOptions {
    client_options(
        &bundle.join("ca.pem"),
        &bundle.join("cert.pem"),
        &bundle.join("key.pem"),
        client_id,
        port,
    )
}

fn verify(bundle: &Path) -> (bool, String) {
    let out = provision(&["verify", s(bundle)]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.contains(check))
        .unwrap_or_else(|| panic!("no {check:?} line in\n{report}"))
}

#[tokio::test]
async fn signed_bundle_connects_and_a_revoked_one_is_refused_after_reload() {
    let mut site = Site::start().await;
    let bundle = site.signed_bundle("site-1");

    let (passed, report) = verify(&bundle);
    assert!(passed, "{report}");
    assert!(
        line(&report, "MQTT connect").starts_with("pass"),
        "{report}"
    );
    assert!(line(&report, "chain").starts_with("pass"), "{report}");

    let client = MqttTestClient::connect(bundle_options(&bundle, "site-1", site.port))
        .await
        .unwrap();
    client.disconnect().await;

    let out = ok(&["revoke", "--ca", s(&site.ca), "--ven", "site-1"]);
    assert!(out.contains("revoked 1 certificate"), "{out}");
    site.broker.reload();
    // Mosquitto reloads on its next loop iteration after SIGHUP.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        let (passed, report) = verify(&bundle);
        if !passed {
            break report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked certificate still connects after the reload\n{report}\n{}",
            site.broker.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mqtt = line(&report, "MQTT connect");
    let tls = line(&report, "TLS handshake");
    assert!(
        mqtt.starts_with("FAIL") || tls.starts_with("FAIL"),
        "{report}"
    );

    // Another VEN of the same CA still connects.
    let other = site.signed_bundle("site-2");
    let (passed, report) = verify(&other);
    assert!(passed, "{report}");
}

#[tokio::test]
async fn a_ven_cannot_publish_as_another_and_a_foreign_ca_is_refused() {
    let site = Site::start().await;
    let one = site.signed_bundle("ven-1");

    let mut backend = MqttTestClient::connect(site.backend_options("backend-test"))
        .await
        .unwrap();
    backend.subscribe("oadr/meter/+", QoS::AtLeastOnce).await;

    let mut ven1 = MqttTestClient::connect(bundle_options(&one, "ven-1", site.port))
        .await
        .unwrap();
    ven1.publish("oadr/meter/ven-2", b"forged".to_vec()).await;
    ven1.publish("oadr/meter/ven-1", b"own".to_vec()).await;
    let got = backend.expect_publish().await;
    assert_eq!(
        got.topic, "oadr/meter/ven-1",
        "the forged publish got through"
    );
    assert_eq!(&got.payload[..], b"own");
    assert!(
        backend
            .next_publish(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing else may arrive"
    );

    // A bundle from another CA: the broker refuses the client certificate.
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign_ca = elsewhere.path().join("ca");
    ok(&[
        "ca",
        "init",
        "--dir",
        s(&foreign_ca),
        "--name",
        "someone else",
    ]);
    let foreign = elsewhere.path().join("bundle");
    ok(&[
        "issue",
        "--ca",
        s(&foreign_ca),
        "--ven",
        "ven-9",
        "--out",
        s(&foreign),
        "--endpoint",
        &format!("127.0.0.1:{}", site.port),
    ]);
    // Trust the real broker's CA so only the client side is foreign.
    fs::copy(site.ca.join("ca.pem"), foreign.join("ca.pem")).unwrap();
    let (passed, report) = verify(&foreign);
    assert!(!passed, "{report}");
    assert!(line(&report, "chain").starts_with("FAIL"), "{report}");
    let refused = line(&report, "TLS handshake").starts_with("FAIL")
        || line(&report, "MQTT connect").starts_with("FAIL");
    assert!(refused, "{report}");
}

#[tokio::test]
async fn verify_names_each_failure() {
    let site = Site::start().await;
    let ca = CaDir::open(&site.ca).unwrap();

    // Expired: issued with a validity that ended two days ago.
    let expired = site.dir.path().join("expired");
    let issued = ca
        .ca()
        .issue_ven_for(&VenId::new("old-1").unwrap(), time::Duration::days(-2))
        .unwrap();
    gridlink_provision::bundle::Bundle {
        ven: VenId::new("old-1").unwrap(),
        cert_pem: issued.cert_pem,
        ca_pem: ca.ca().cert_pem().to_owned(),
        key_pem: Some(issued.key_pem),
        endpoint: format!("127.0.0.1:{}", site.port).parse().unwrap(),
    }
    .write(&expired)
    .unwrap();
    let (passed, report) = verify(&expired);
    assert!(!passed);
    assert!(
        line(&report, "expiry").starts_with("FAIL")
            && line(&report, "expiry").contains("expired on"),
        "{report}"
    );

    // Wrong key: another gateway's key beside this certificate.
    let a = site.signed_bundle("gw-a");
    let b = site.signed_bundle("gw-b");
    fs::copy(b.join("key.pem"), a.join("key.pem")).unwrap();
    let (passed, report) = verify(&a);
    assert!(!passed);
    assert!(
        line(&report, "key matches").contains("is not the key of"),
        "{report}"
    );
    assert!(
        line(&report, "TLS handshake").starts_with("skip"),
        "{report}"
    );

    // Wrong CN: agent.toml says another VEN.
    let toml = fs::read_to_string(b.join("agent.toml")).unwrap();
    fs::write(
        b.join("agent.toml"),
        toml.replace("ven_id = \"gw-b\"", "ven_id = \"gw-c\""),
    )
    .unwrap();
    let (passed, report) = verify(&b);
    assert!(!passed);
    assert!(
        line(&report, "CN matches ven_id").contains("certificate CN is \"gw-b\""),
        "{report}"
    );

    // Unreachable endpoint.
    let c = site.signed_bundle("gw-d");
    let dead = gridlink_testkit::free_port();
    let toml = fs::read_to_string(c.join("agent.toml")).unwrap();
    fs::write(
        c.join("agent.toml"),
        toml.replace(&format!("port = {}", site.port), &format!("port = {dead}")),
    )
    .unwrap();
    let (passed, report) = verify(&c);
    assert!(!passed);
    assert!(
        line(&report, "endpoint reachable").contains("cannot connect"),
        "{report}"
    );
    assert!(
        line(&report, "MQTT connect").starts_with("skip"),
        "{report}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let out = dir.path().join("bundle");

    // Missing CA directory.
    let o = provision(&["sign", "--ca", s(&ca), "--csr", "x.csr", "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not a gridlink CA directory") && err.contains("ca init"),
        "{err}"
    );

    ok(&["ca", "init", "--dir", s(&ca)]);
    let again = provision(&["ca", "init", "--dir", s(&ca)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    // Unreadable CSR file.
    let o = provision(&[
        "sign",
        "--ca",
        s(&ca),
        "--csr",
        s(&dir.path().join("none.csr")),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("none.csr"));

    // Malformed CSR.
    let bad = dir.path().join("bad.csr");
    fs::write(
        &bad,
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let o = provision(&["sign", "--ca", s(&ca), "--csr", s(&bad), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("certificate signing request rejected"));

    // Invalid VEN id on the command line: clap refuses it (exit 2).
    let o = provision(&[
        "issue",
        "--ca",
        s(&ca),
        "--ven",
        "no spaces",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));

    // The reserved backend identity is never a VEN.
    let o = provision(&[
        "issue",
        "--ca",
        s(&ca),
        "--ven",
        "backend",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reserved"));

    assert!(!out.exists(), "no bundle after failures");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let index = CaDir::open(&ca).unwrap();
    assert!(
        index.issued().is_empty(),
        "nothing recorded for failed requests"
    );
}
