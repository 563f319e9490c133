//! No poison messages: every packet the broker can deliver, each of the
//! cloud's MQTT consumers reads, drops (acknowledged, counted by reason)
//! when it can never be stored, and goes on with the next message. Real
//! Mosquitto with mTLS and the per-VEN ACL, configured two ways: with the
//! `max_packet_size` that `gridlink-provision broker-config` writes
//! (132,096 bytes) and a 131,800-byte payload, as an operator saw it stall
//! ingest for every VEN; and with Mosquitto's own default (no limit) and a
//! 200 KB payload.
//!
//! Also here: an MQTT batch cannot claim HTTP ingest's sequence numbers,
//! neither from now on (refused on decode) nor through data stored before
//! the spaces were made disjoint (the migration moves HTTP's counter past
//! it).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_cloud::config::MQTT_MAX_PACKET_BYTES;
use gridlink_cloud::feed::{Feed, FeedItem};
use gridlink_cloud::ingest::DropReason;
use gridlink_cloud::ingest::{self, IngestSettings};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::mqtt::MqttSettings;
use gridlink_cloud::shadow::ShadowService;
use gridlink_cloud::store::{AnyStore, ApiKeyStore, IngestBatch, Store};
use gridlink_protocol::{
    AckState, CommandAck, Encoding, LoadChangeCause, LoadSnapshot, LoadState, MAX_BATCH_SEQ,
    ObjectId, Phase, Point, Quantity, Series, Status, TelemetryBatch, Timestamp, VenId, encode,
};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::mqtt::MqttTestClient;
use gridlink_testkit::postgres::PostgresCluster;
use rumqttc::QoS;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// `max_packet_size` of `gridlink-provision broker-config`.
const BROKER_CONFIG_MAX_PACKET: usize = gridlink_provision::broker::MAX_PACKET_BYTES;

fn ven(id: &str) -> VenId {
    VenId::new(id).unwrap()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms).unwrap()
}

fn batch(ven_id: &VenId, seq: u64) -> TelemetryBatch {
    TelemetryBatch {
        ven_id: ven_id.clone(),
        batch_seq: seq,
        series: vec![Series {
            meter: "main".into(),
            quantity: Quantity::ActivePower,
            phase: Phase::Total,
            exponent: 0,
            points: vec![Point {
                ts_ms: 1_795_262_400_000 + i64::try_from(seq % 1_000_000).unwrap() * 1000,
                raw: 1500,
            }],
        }],
    }
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<AnyStore> {
    let store = AnyStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("gridlink.db").display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

fn settings(broker: &Mosquitto, pki: &TestPki, client_id: &str) -> IngestSettings {
    let backend = pki.backend();
    IngestSettings {
        mqtt: MqttSettings {
            host: "127.0.0.1".into(),
            port: broker.port(),
            ca: pki.ca_cert().to_path_buf(),
            cert: backend.cert.clone(),
            key: backend.key.clone(),
            client_id: client_id.into(),
            share_group: String::new(),
            // The default of `mqtt.max_packet_bytes`.
            max_packet_bytes: MQTT_MAX_PACKET_BYTES,
            keep_alive: Duration::from_secs(10),
        },
        max_batches: 50,
        max_delay: Duration::from_millis(50),
        refuse_unknown_vens: false,
    }
}

/// A VEN's client that may send packets up to 1 MiB (the broker decides).
async fn ven_client(broker: &Mosquitto, pki: &TestPki, id: &str) -> MqttTestClient {
    let mut options = broker.client_options(pki, id);
    options.set_max_packet_size(1 << 20, 1 << 20);
    MqttTestClient::connect(options).await.unwrap()
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An ingest task on `broker`, connected and subscribed, with its own
/// metrics and shutdown switch.
struct RunningIngest {
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), gridlink_cloud::mqtt::MqttError>>,
}

impl RunningIngest {
    async fn start(
        broker: &Mosquitto,
        pki: &TestPki,
        client_id: &str,
        store: &Arc<AnyStore>,
        feed: Feed,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(ingest::run(
            settings(broker, pki, client_id),
            Arc::clone(store),
            Arc::clone(&metrics.ingest),
            feed,
            stopped,
        ));
        wait_for("ingest connected", Duration::from_secs(10), || {
            metrics.ingest.mqtt_connected.load(Ordering::Relaxed) == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await; // SUBSCRIBE round trip
        Self {
            metrics,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// Ingest's four consumers (telemetry, status, loads, acks): a poison
/// message of `size` bytes on each topic, then a good message on each,
/// which must be taken, with the poison counted as oversized and the
/// connection kept.
async fn ingest_survives_poison(max_packet: Option<usize>, size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &[ven("ven-1"), ven("ven-2")]).unwrap();
    let broker = Mosquitto::spawn_with_max_packet_size(&pki, max_packet).await;
    let store = sqlite_store(&dir).await;
    let feed = Feed::new();
    let mut feed_rx: broadcast::Receiver<Arc<FeedItem>> = feed.subscribe();
    let ingest = RunningIngest::start(&broker, &pki, "cloud-poison", &store, feed).await;
    let metrics = Arc::clone(&ingest.metrics);

    let mut poisoner = ven_client(&broker, &pki, "ven-1").await;
    let topics = [
        "oadr/meter/ven-1",
        "ven/status/ven-1",
        "ven/loads/ven-1",
        "ven/ack/ven-1",
    ];
    for topic in topics {
        poisoner.publish(topic, vec![b'P'; size]).await;
    }
    let status = publish_good_traffic(&broker, &pki, &mut poisoner).await;

    wait_for(
        "the good messages after the poison",
        Duration::from_secs(15),
        || {
            metrics.ingest.batches_ingested.load(Ordering::Relaxed) == 2
                && metrics.ingest.dropped_count(DropReason::UnknownEvent) == 1
        },
    )
    .await;
    assert_eq!(
        metrics.ingest.dropped_count(DropReason::Oversized),
        4,
        "one poison message per topic, each dropped once"
    );
    assert_eq!(metrics.ingest.mqtt_connected.load(Ordering::Relaxed), 1);
    let mut statuses = 0;
    while let Ok(item) = feed_rx.try_recv() {
        if let FeedItem::Status { status: s, .. } = item.as_ref() {
            assert_eq!(s, &status);
            statuses += 1;
        }
    }
    assert_eq!(statuses, 1, "the status after the poison was recorded");
    let stored = store.loads(&ven("ven-1")).await.unwrap();
    assert_eq!(stored.len(), 1, "the load snapshot after the poison");
    assert_eq!(stored[0].name, "heater");

    nothing_is_redelivered(&broker, &pki, &store, ingest).await;
}

/// Good traffic after the poison, on each topic, from the poisoner and
/// another VEN; returns the status sent.
async fn publish_good_traffic(
    broker: &Mosquitto,
    pki: &TestPki,
    poisoner: &mut MqttTestClient,
) -> Status {
    let at = ts(1_795_262_400_000);
    let status = Status::offline(ven("ven-1"), at);
    poisoner
        .publish(
            "ven/status/ven-1",
            encode(&status, Encoding::Postcard).unwrap(),
        )
        .await;
    let loads = LoadSnapshot {
        ven_id: ven("ven-1"),
        at,
        loads: vec![LoadState {
            name: "heater".into(),
            on: true,
            power_w: Some(1750.0),
            setpoint: None,
            controllable: true,
            last_change: None,
            cause: LoadChangeCause::Startup,
        }],
    };
    poisoner
        .publish(
            "ven/loads/ven-1",
            encode(&loads, Encoding::Postcard).unwrap(),
        )
        .await;
    let ack = CommandAck {
        ven_id: ven("ven-1"),
        command_id: 1,
        event_id: ObjectId::new("no-such-event").unwrap(),
        state: AckState::Received,
        at,
        reason: None,
    };
    poisoner
        .publish("ven/ack/ven-1", encode(&ack, Encoding::Postcard).unwrap())
        .await;
    poisoner
        .publish(
            "oadr/meter/ven-1",
            encode(&batch(&ven("ven-1"), 1), Encoding::Postcard).unwrap(),
        )
        .await;
    let mut other = ven_client(broker, pki, "ven-2").await;
    other
        .publish(
            "oadr/meter/ven-2",
            encode(&batch(&ven("ven-2"), 1), Encoding::Postcard).unwrap(),
        )
        .await;

    status
}

/// Stops ingest; a restarted ingest on the same persistent session finds
/// no poison waiting for it (everything was acknowledged).
async fn nothing_is_redelivered(
    broker: &Mosquitto,
    pki: &TestPki,
    store: &Arc<AnyStore>,
    ingest: RunningIngest,
) {
    ingest.stop().await;
    let again = RunningIngest::start(broker, pki, "cloud-poison", store, Feed::new()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        again
            .metrics
            .ingest
            .messages_received
            .load(Ordering::Relaxed),
        0
    );
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reads_past_a_poison_message_under_the_broker_config_limit() {
    ingest_survives_poison(Some(BROKER_CONFIG_MAX_PACKET), 131_800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reads_past_a_poison_message_with_mosquittos_default_limits() {
    ingest_survives_poison(None, 200_000).await;
}

/// The shadow service: an oversized `shadow/update` is answered with 413
/// on `update/rejected` and acknowledged; the next request is served.
async fn shadow_survives_poison(max_packet: Option<usize>, size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &[ven("ven-1")]).unwrap();
    let broker = Mosquitto::spawn_with_max_packet_size(&pki, max_packet).await;
    let store = sqlite_store(&dir).await;
    let metrics = Arc::new(Metrics::default());
    let service = ShadowService::new(
        settings(&broker, &pki, "cloud-shadow").mqtt,
        Arc::clone(&metrics.shadow),
    )
    .unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(service.run(Arc::clone(&store), stopped));
    wait_for(
        "the shadow service connected",
        Duration::from_secs(10),
        || metrics.shadow.connected.load(Ordering::Relaxed) == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut vn = ven_client(&broker, &pki, "ven-1").await;
    vn.subscribe("$aws/things/ven-1/shadow/update/+", QoS::AtLeastOnce)
        .await;
    vn.publish("$aws/things/ven-1/shadow/update", vec![b'P'; size])
        .await;
    let rejected = vn.expect_publish().await;
    assert_eq!(rejected.topic, "$aws/things/ven-1/shadow/update/rejected");
    let answer: Value = serde_json::from_slice(&rejected.payload).unwrap();
    assert_eq!(answer["code"], 413, "{answer}");

    vn.publish(
        "$aws/things/ven-1/shadow/update",
        br#"{"state":{"reported":{"firmware":"1.2.3"}},"clientToken":"after"}"#.to_vec(),
    )
    .await;
    let accepted = loop {
        let p = vn.expect_publish().await;
        if p.topic.ends_with("/accepted") {
            break p;
        }
    };
    let answer: Value = serde_json::from_slice(&accepted.payload).unwrap();
    assert_eq!(answer["clientToken"], "after", "{answer}");
    assert_eq!(metrics.shadow.rejected_count(413), 1);
    assert_eq!(metrics.shadow.connected.load(Ordering::Relaxed), 1);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_reads_past_a_poison_message_under_the_broker_config_limit() {
    shadow_survives_poison(Some(BROKER_CONFIG_MAX_PACKET), 131_800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_reads_past_a_poison_message_with_mosquittos_default_limits() {
    shadow_survives_poison(None, 200_000).await;
}

/// An MQTT batch numbered 2^63 + 1 (HTTP ingest's first number) is
/// refused on decode and counted; the VEN's HTTP batch that gets that
/// number is stored, not answered as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_batch_cannot_claim_an_http_ingest_number() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &[ven("ven-1")]).unwrap();
    let broker = Mosquitto::spawn(&pki).await;
    let store = sqlite_store(&dir).await;
    let ingest = RunningIngest::start(&broker, &pki, "cloud-seq", &store, Feed::new()).await;
    let metrics = Arc::clone(&ingest.metrics);

    let mut vn = ven_client(&broker, &pki, "ven-1").await;
    let claimed = MAX_BATCH_SEQ + 2;
    // `encode` refuses the number too: the JSON is edited by hand, as a
    // misbehaving device would send it.
    let mut good = batch(&ven("ven-1"), MAX_BATCH_SEQ);
    let json = String::from_utf8(encode(&good, Encoding::Json).unwrap())
        .unwrap()
        .replace(&MAX_BATCH_SEQ.to_string(), &claimed.to_string());
    vn.publish("oadr/meter/ven-1", json.into_bytes()).await;
    good.batch_seq = 7;
    vn.publish(
        "oadr/meter/ven-1",
        encode(&good, Encoding::Postcard).unwrap(),
    )
    .await;
    wait_for(
        "the claim refused, the good batch stored",
        Duration::from_secs(10),
        || {
            metrics.ingest.dropped_count(DropReason::Malformed) == 1
                && metrics.ingest.batches_ingested.load(Ordering::Relaxed) == 1
        },
    )
    .await;

    let seq = store.next_http_batch_seq(&ven("ven-1")).await.unwrap();
    assert_eq!(seq, claimed, "HTTP ingest's first number");
    let http = IngestBatch {
        ven_id: ven("ven-1"),
        batch_seq: seq,
        received_ms: 1_795_262_500_000,
        series: batch(&ven("ven-1"), 2).series,
    };
    let outcome = store.ingest(&[http]).await.unwrap();
    assert_eq!(
        (outcome.inserted_batches, outcome.duplicate_batches),
        (1, 0),
        "stored, not a duplicate"
    );
    ingest.stop().await;
}

/// Version of the migration that makes the spaces disjoint.
const DISJOINT_SEQ_MIGRATION: i64 = 20_261_207_010_000;

/// The old data: ven-1 claimed 2^63 + 1 and 2^63 + 5 over MQTT; ven-2
/// had two HTTP batches (counter at 2) and claimed 2^63 + 9; ven-3 has only
/// an Idempotency-Key number (top two bits set), which the counter never
/// reaches. Stored bit for bit as the store does (negative BIGINT).
fn old_batches() -> Vec<(&'static str, i64)> {
    let base = 1u64 << 63;
    [
        ("ven-1", base + 1),
        ("ven-1", base + 5),
        ("ven-1", 42),
        ("ven-2", base + 1),
        ("ven-2", base + 2),
        ("ven-2", base + 9),
        ("ven-3", base | (1 << 62) | 0x3039),
    ]
    .into_iter()
    .map(|(ven_id, seq)| (ven_id, i64::from_ne_bytes(seq.to_ne_bytes())))
    .collect()
}

/// Migrates a database that holds [`old_batches`] (written by the
/// migrations before the fix) to the end; HTTP ingest then hands out none
/// of the numbers MQTT VENs took.
async fn check_migrated(url: &str) {
    let base = 1u64 << 63;
    let store = AnyStore::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    for (ven_id, next) in [
        ("ven-1", base + 6),
        ("ven-2", base + 10),
        ("ven-3", base + 1),
    ] {
        assert_eq!(
            store.next_http_batch_seq(&ven(ven_id)).await.unwrap(),
            next,
            "{ven_id}"
        );
    }
}

/// Runs the migrations before the fix on `$pool` and stores the old data.
macro_rules! seed_before_the_fix {
    ($pool:expr, $migrator:expr) => {{
        let pool = $pool;
        $migrator
            .run_to(DISJOINT_SEQ_MIGRATION - 1, &pool)
            .await
            .unwrap();
        for (ven_id, seq) in old_batches() {
            sqlx::query(
                "INSERT INTO ingested_batches (ven_id, batch_seq, received, readings) \
                 VALUES ($1, $2, 0, 1)",
            )
            .bind(ven_id)
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query("INSERT INTO http_ingest_seq (ven_id, last_seq) VALUES ('ven-2', 2)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migration_moves_http_numbers_past_claimed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gridlink.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    seed_before_the_fix!(
        sqlx::SqlitePool::connect_with(options).await.unwrap(),
        sqlx::migrate!("migrations/sqlite")
    );
    check_migrated(&format!("sqlite://{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_moves_http_numbers_past_claimed_ones() {
    let cluster = PostgresCluster::start().await;
    let url = cluster.create_database("seq_spaces").await;
    seed_before_the_fix!(
        sqlx::PgPool::connect(&url).await.unwrap(),
        sqlx::migrate!("migrations/postgres")
    );
    check_migrated(&url).await;
}
