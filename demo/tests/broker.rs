//! The demo's embedded MQTT broker against real rumqttc clients over TLS:
//! it refuses clients without a certificate from the demo CA or with a
//! client id other than their CN, keeps each VEN on its own topics (the
//! device policy, including the `$aws` shadow topics rumqttd refused),
//! keeps persistent sessions across reconnects, delivers retained
//! messages and last wills, and splits shared subscriptions.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gridlink_demo::broker::{self, BrokerTls, EmbeddedBroker};
use gridlink_protocol::VenId;
use gridlink_provision::pki::{CertificateAuthority, TestPki, write_identity};
use gridlink_testkit::mqtt::{self, MqttTestClient};
use rumqttc::{LastWill, QoS, SubscribeReasonCode};
use tempfile::TempDir;

/// How long to wait for a message that must not arrive, after a later one
/// from the same publisher did (QoS 1 keeps one publisher's order).
const QUIET: Duration = Duration::from_millis(300);

struct Setup {
    dir: TempDir,
    pki: TestPki,
    broker: EmbeddedBroker,
}

async fn setup() -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let vens = ["ven-1", "ven-2"].map(|v| VenId::new(v).expect("ven id"));
    let pki = TestPki::generate(dir.path(), &vens).expect("test PKI");
    let broker = broker::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        BrokerTls {
            ca: pki.ca_cert(),
            cert: &pki.server().cert,
            key: &pki.server().key,
        },
    )
    .await
    .expect("broker starts");
    Setup { dir, pki, broker }
}

impl Setup {
    fn options(&self, identity: &str) -> rumqttc::MqttOptions {
        let addr = self.broker.addr();
        mqtt::client_options(&self.pki, identity, "127.0.0.1", addr.port())
    }

    async fn connect(&self, identity: &str) -> MqttTestClient {
        MqttTestClient::connect(self.options(identity))
            .await
            .unwrap_or_else(|e| panic!("{identity} could not connect: {e}"))
    }
}

async fn subscribe_ok(client: &mut MqttTestClient, filter: &str) {
    let code = client.subscribe(filter, QoS::AtLeastOnce).await;
    assert_eq!(
        code,
        SubscribeReasonCode::Success(QoS::AtLeastOnce),
        "{filter}"
    );
}

#[tokio::test]
async fn refuses_foreign_certificates_and_borrowed_client_ids() {
    let setup = setup().await;
    let port = setup.broker.addr().port();

    let no_cert = mqtt::options_without_client_cert(&setup.pki, "ven-1", "127.0.0.1", port);
    assert!(MqttTestClient::connect(no_cert).await.is_err());

    let rogue_ca = CertificateAuthority::create(Some("rogue CA")).expect("rogue CA");
    let rogue = write_identity(
        setup.dir.path(),
        "rogue",
        &rogue_ca
            .issue_ven(&VenId::new("ven-1").expect("ven id"))
            .expect("rogue certificate"),
    )
    .expect("rogue files");
    let tls = mqtt::tls_config(setup.pki.ca_cert(), Some(&rogue));
    let foreign = mqtt::options("ven-1", "127.0.0.1", port, tls);
    assert!(MqttTestClient::connect(foreign).await.is_err());

    // ven-1's certificate with ven-2's client id.
    let files = setup.pki.identity("ven-1").expect("ven-1");
    let tls = mqtt::tls_config(setup.pki.ca_cert(), Some(files));
    let borrowed = mqtt::options("ven-2", "127.0.0.1", port, tls);
    assert!(MqttTestClient::connect(borrowed).await.is_err());

    let stats = setup.broker.stats();
    assert_eq!(
        stats.refused.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "every refusal is counted"
    );
}

#[tokio::test]
async fn each_ven_stays_on_its_own_topics() {
    let setup = setup().await;
    let mut backend = setup.connect("backend").await;
    subscribe_ok(&mut backend, "$share/gridlink/oadr/meter/+").await;
    let mut ven1 = setup.connect("ven-1").await;
    let mut ven2 = setup.connect("ven-2").await;

    // Uplink: another VEN's topic is dropped, its own arrives.
    ven1.publish("oadr/meter/ven-2", b"forged".to_vec()).await;
    ven1.publish("oadr/meter/ven-1", b"mine".to_vec()).await;
    let got = backend.expect_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("oadr/meter/ven-1", &b"mine"[..])
    );
    assert!(backend.next_publish(QUIET).await.is_none());

    // Downlink: a VEN may not read another's commands, nor everything.
    for filter in [
        "ven/cmd/ven-2",
        "ven/cmd/+",
        "#",
        "$aws/things/ven-2/shadow/#",
    ] {
        assert_eq!(
            ven1.subscribe(filter, QoS::AtLeastOnce).await,
            SubscribeReasonCode::Failure,
            "{filter}"
        );
    }
    subscribe_ok(&mut ven1, "ven/cmd/ven-1").await;
    subscribe_ok(&mut ven2, "ven/cmd/ven-2").await;
    // The AWS IoT shadow topics work (rumqttd disconnected such clients).
    subscribe_ok(&mut ven1, "$aws/things/ven-1/shadow/update/delta").await;
    backend.publish("ven/cmd/ven-2", b"for 2".to_vec()).await;
    backend.publish("ven/cmd/ven-1", b"for 1".to_vec()).await;
    backend
        .publish("$aws/things/ven-1/shadow/update/delta", b"{}".to_vec())
        .await;
    assert_eq!(&ven1.expect_publish().await.payload[..], b"for 1");
    assert_eq!(
        ven1.expect_publish().await.topic,
        "$aws/things/ven-1/shadow/update/delta"
    );
    assert_eq!(&ven2.expect_publish().await.payload[..], b"for 2");
    assert!(ven1.next_publish(QUIET).await.is_none());

    // A VEN cannot send commands.
    ven1.publish("ven/cmd/ven-2", b"forged".to_vec()).await;
    assert!(ven2.next_publish(QUIET).await.is_none());
}

#[tokio::test]
async fn persistent_sessions_retained_messages_and_wills() {
    let setup = setup().await;
    let mut backend = setup.connect("backend").await;
    subscribe_ok(&mut backend, "$share/gridlink/ven/status/+").await;

    // ven-1, persistent, subscribes and goes away.
    let mut options = setup.options("ven-1");
    options.set_clean_session(false);
    let mut ven1 = MqttTestClient::connect(options.clone())
        .await
        .expect("ven-1 connects");
    subscribe_ok(&mut ven1, "ven/cmd/ven-1").await;
    ven1.disconnect().await;

    // Commands sent while it is away arrive, in order, when it is back.
    for n in 0..3u8 {
        backend.publish("ven/cmd/ven-1", vec![n]).await;
    }
    let mut ven1 = MqttTestClient::connect(options)
        .await
        .expect("ven-1 reconnects");
    for n in 0..3u8 {
        assert_eq!(&ven1.expect_publish().await.payload[..], [n]);
    }

    // A retained status reaches a later plain subscriber, flagged retained.
    ven1.client()
        .publish(
            "ven/status/ven-1",
            QoS::AtLeastOnce,
            true,
            b"online".to_vec(),
        )
        .await
        .expect("publish status");
    assert_eq!(&backend.expect_publish().await.payload[..], b"online");
    // (a second backend client: another client id, or it would take over)
    let tls = mqtt::tls_config(setup.pki.ca_cert(), Some(setup.pki.backend()));
    let port = setup.broker.addr().port();
    let mut viewer = MqttTestClient::connect(mqtt::options("viewer", "127.0.0.1", port, tls))
        .await
        .expect("a second backend client connects");
    subscribe_ok(&mut viewer, "ven/status/+").await;
    let retained = viewer.expect_publish().await;
    assert!(retained.retain);
    assert_eq!(&retained.payload[..], b"online");

    // ven-2 dies without DISCONNECT: its will is published.
    let mut options = setup.options("ven-2");
    options.set_last_will(LastWill::new(
        "ven/status/ven-2",
        b"offline".to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    let ven2 = MqttTestClient::connect(options)
        .await
        .expect("ven-2 connects");
    drop(ven2); // aborts the event loop: the connection just closes
    let will = backend.expect_publish().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("ven/status/ven-2", &b"offline"[..])
    );
}
