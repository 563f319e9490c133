//! The harness against real servers: Mosquitto enforces mutual TLS and the
//! per-VEN ACL exactly as the design says, and a PostgreSQL cluster starts,
//! serves and goes away with its handle.

use std::time::Duration;

use gridlink_protocol::{
    Encoding, MAX_PAYLOAD_BYTES, Phase, Point, Quantity, Series, TelemetryBatch, Topic, VenId,
    decode, encode,
};
use gridlink_provision::pki::{CertificateAuthority, TestPki, write_identity};
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::mqtt::{self, MqttTestClient};
use gridlink_testkit::postgres::PostgresCluster;
use gridlink_testkit::process_exists;
use rumqttc::{QoS, SubscribeReasonCode};
use tempfile::TempDir;

/// How long to wait for a message that must NOT arrive, after a later
/// message from the same publisher already arrived (MQTT keeps one
/// publisher's QoS 1 order, so a forbidden message would have come first).
const QUIET: Duration = Duration::from_millis(500);

fn ven(id: &str) -> VenId {
    VenId::new(id).expect("valid ven id")
}

struct Setup {
    _dir: TempDir,
    pki: TestPki,
    broker: Mosquitto,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path(), &[ven("ven-1"), ven("ven-2")]).expect("test PKI");
    let broker = Mosquitto::spawn(&pki).await;
    Setup {
        _dir: dir,
        pki,
        broker,
    }
}

impl Setup {
    async fn connect(&self, identity: &str) -> MqttTestClient {
        MqttTestClient::connect(self.broker.client_options(&self.pki, identity))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{identity} could not connect: {e}\n{}",
                    self.broker.log_tail(20)
                )
            })
    }
}

fn batch(ven_id: &VenId, batch_seq: u64) -> TelemetryBatch {
    let points = (0..60)
        .map(|s| Point {
            ts_ms: 1_700_000_000_000 + s * 1000,
            raw: 1500 + s % 7,
        })
        .collect();
    TelemetryBatch {
        ven_id: ven_id.clone(),
        batch_seq,
        series: vec![Series {
            meter: "main".into(),
            quantity: Quantity::ActivePower,
            phase: Phase::Total,
            exponent: 0,
            points,
        }],
    }
}

async fn subscribe_ok(client: &mut MqttTestClient, filter: &str) {
    let code = client.subscribe(filter, QoS::AtLeastOnce).await;
    assert_eq!(
        code,
        SubscribeReasonCode::Success(QoS::AtLeastOnce),
        "subscribe {filter}"
    );
}

#[tokio::test]
async fn ven_telemetry_reaches_backend_shared_subscription_intact() {
    let s = setup().await;
    let mut backend = s.connect("backend").await;
    subscribe_ok(&mut backend, "$share/gridlink/oadr/meter/+").await;
    let mut ven1 = s.connect("ven-1").await;

    let ven_id = ven("ven-1");
    let sent = batch(&ven_id, 7);
    let topic = Topic::meter(ven_id).to_string();
    assert_eq!(topic, "oadr/meter/ven-1");
    ven1.publish(&topic, encode(&sent, Encoding::Postcard).expect("encode"))
        .await;

    let received = backend.expect_publish().await;
    assert_eq!(received.topic, topic);
    assert_eq!(received.qos, QoS::AtLeastOnce);
    let decoded: TelemetryBatch = decode(&received.payload).expect("decode");
    assert_eq!(decoded, sent);
}

#[tokio::test]
async fn full_size_payload_passes_and_an_oversize_packet_is_refused() {
    let s = setup().await;
    let mut backend = s.connect("backend").await;
    subscribe_ok(&mut backend, "$share/gridlink/ven/loads/+").await;

    let mut ven1 = s.connect("ven-1").await;
    let full: Vec<u8> = (0..MAX_PAYLOAD_BYTES).map(|i| (i % 251) as u8).collect();
    ven1.publish("ven/loads/ven-1", full.clone()).await;
    let received = backend.expect_publish().await;
    assert_eq!(received.payload.len(), MAX_PAYLOAD_BYTES);
    assert_eq!(&received.payload[..], &full[..]);

    // rumqttc itself refuses to send it, so lift the client's own limit to
    // see the broker's `max_packet_size` at work.
    let mut options = s.broker.client_options(&s.pki, "ven-1");
    options.set_max_packet_size(mqtt::MAX_PACKET_BYTES, 2 * mqtt::MAX_PACKET_BYTES);
    let mut ven1 = MqttTestClient::connect(options).await.expect("connect");
    ven1.client()
        .publish(
            "ven/loads/ven-1",
            QoS::AtLeastOnce,
            false,
            vec![0_u8; mqtt::MAX_PACKET_BYTES + 1],
        )
        .await
        .expect("queue the publish");
    ven1.expect_connection_lost().await;
    if let Some(late) = backend.next_publish(QUIET).await {
        panic!(
            "oversize packet delivered: {} bytes on {}",
            late.payload.len(),
            late.topic
        );
    }
}

#[tokio::test]
async fn ven_cannot_publish_on_another_vens_topic() {
    let s = setup().await;
    let mut backend = s.connect("backend").await;
    subscribe_ok(&mut backend, "$share/gridlink/oadr/meter/+").await;
    let mut ven1 = s.connect("ven-1").await;

    // Impersonation first, then a legitimate batch on the same connection.
    let forged = batch(&ven("ven-2"), 1);
    ven1.publish(
        "oadr/meter/ven-2",
        encode(&forged, Encoding::Postcard).expect("encode"),
    )
    .await;
    let own = batch(&ven("ven-1"), 2);
    ven1.publish(
        "oadr/meter/ven-1",
        encode(&own, Encoding::Postcard).expect("encode"),
    )
    .await;

    // The backend is live (it gets the legitimate batch), and what it gets
    // first is that batch: the forged one, published earlier, was dropped.
    let first = backend.expect_publish().await;
    assert_eq!(first.topic, "oadr/meter/ven-1");
    assert_eq!(
        decode::<TelemetryBatch>(&first.payload).expect("decode"),
        own
    );
    if let Some(late) = backend.next_publish(QUIET).await {
        panic!("forbidden publish delivered on {}", late.topic);
    }
}

#[tokio::test]
async fn clients_without_a_certificate_from_our_ca_are_refused() {
    let s = setup().await;
    let port = s.broker.port();

    let no_cert = mqtt::options_without_client_cert(&s.pki, "ven-1", s.broker.host(), port);
    let err = MqttTestClient::connect(no_cert)
        .await
        .expect_err("a client without certificate must not get a CONNACK");
    // rustls reports the broker's TLS alert: the refusal is for the reason
    // under test, not, say, a server name mismatch.
    assert!(err.to_string().contains("CertificateRequired"), "{err}");

    // A VEN certificate with the right CN, issued by another CA.
    let rogue_dir = tempfile::tempdir().expect("tempdir");
    let rogue_ca = CertificateAuthority::create(Some("rogue CA")).expect("rogue CA");
    let rogue = write_identity(
        rogue_dir.path(),
        "ven-1",
        &rogue_ca.issue_ven(&ven("ven-1")).expect("rogue cert"),
    )
    .expect("write rogue identity");
    let tls = mqtt::tls_config(s.pki.ca_cert(), Some(&rogue));
    let err = MqttTestClient::connect(mqtt::options("ven-1", s.broker.host(), port, tls))
        .await
        .expect_err("a certificate from another CA must not get a CONNACK");
    assert!(err.to_string().contains("UnknownCA"), "{err}");

    // The same broker still admits a proper client: the refusals were not
    // the broker being down.
    s.connect("ven-1").await.disconnect().await;
}

#[tokio::test]
async fn ven_receives_only_its_own_commands() {
    let s = setup().await;
    let mut ven1 = s.connect("ven-1").await;
    let code = ven1.subscribe("ven/cmd/+", QoS::AtLeastOnce).await;
    assert!(
        matches!(code, SubscribeReasonCode::Success(_)),
        "ven/cmd/+ refused: {code:?}"
    );
    let mut backend = s.connect("backend").await;

    backend
        .publish("ven/cmd/ven-2", b"for ven-2".to_vec())
        .await;
    backend
        .publish("ven/cmd/ven-1", b"for ven-1".to_vec())
        .await;

    let first = ven1.expect_publish().await;
    assert_eq!(first.topic, "ven/cmd/ven-1");
    assert_eq!(&first.payload[..], b"for ven-1");
    if let Some(late) = ven1.next_publish(QUIET).await {
        panic!("ven-1 received {}", late.topic);
    }
}

#[tokio::test]
async fn broker_restarts_on_the_same_port_with_persistent_sessions() {
    let mut s = setup().await;
    let port = s.broker.port();
    let first_pid = s.broker.pid().expect("running");

    // A persistent session for ven-1 with a subscription, then offline.
    let mut options = s.broker.client_options(&s.pki, "ven-1");
    options.set_clean_session(false);
    let mut ven1 = MqttTestClient::connect(options.clone())
        .await
        .expect("connect");
    subscribe_ok(&mut ven1, "ven/cmd/ven-1").await;
    ven1.disconnect().await;

    s.broker.stop();
    assert!(!process_exists(first_pid), "stopped broker still running");
    s.broker.start().await;
    assert_eq!(s.broker.port(), port);

    // ven-1 is offline: the command reaches it only because the broker
    // restored its persistent session (and subscription) from disk.
    let mut backend = s.connect("backend").await;
    backend.publish("ven/cmd/ven-1", b"queued".to_vec()).await;
    let mut ven1 = MqttTestClient::connect(options).await.expect("reconnect");
    let queued = ven1.expect_publish().await;
    assert_eq!(&queued.payload[..], b"queued");

    let pid = s.broker.pid().expect("running");
    drop(s);
    assert!(!process_exists(pid), "dropped broker still running");
}

#[tokio::test]
async fn postgres_cluster_serves_and_goes_away() {
    let cluster = PostgresCluster::start().await;
    let pid = cluster.pid();
    assert!(process_exists(pid));
    assert_eq!(
        cluster.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
    );

    let pool = sqlx::PgPool::connect(&cluster.url())
        .await
        .expect("connect");
    let version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&pool)
        .await
        .expect("version");
    assert!(version.starts_with("PostgreSQL "), "{version}");

    let url = cluster.create_database("harness_test").await;
    assert!(url.ends_with("/harness_test"), "{url}");
    let db = sqlx::PgPool::connect(&url).await.expect("connect new db");
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db)
        .await
        .expect("current_database");
    assert_eq!(name, "harness_test");
    sqlx::query("CREATE TABLE reading (ven_id text NOT NULL, ts timestamptz NOT NULL, w float8)")
        .execute(&db)
        .await
        .expect("create table");
    sqlx::query(
        "INSERT INTO reading VALUES ($1, to_timestamp($2), $3), ($1, to_timestamp($2 + 1), $3 + 1)",
    )
    .bind("ven-1")
    .bind(1_700_000_000_f64)
    .bind(1500.5_f64)
    .execute(&db)
    .await
    .expect("insert");
    let rows: Vec<(String, f64)> = sqlx::query_as("SELECT ven_id, w FROM reading ORDER BY ts")
        .fetch_all(&db)
        .await
        .expect("select");
    assert_eq!(
        rows,
        vec![("ven-1".to_owned(), 1500.5), ("ven-1".to_owned(), 1501.5)]
    );
    // The table is in the new database only.
    let in_default: Option<String> = sqlx::query_scalar("SELECT to_regclass('reading')::text")
        .fetch_one(&pool)
        .await
        .expect("to_regclass");
    assert_eq!(in_default, None);

    db.close().await;
    pool.close().await;
    drop(cluster);
    assert!(
        !process_exists(pid),
        "postgres PID {pid} still exists after drop"
    );
}
