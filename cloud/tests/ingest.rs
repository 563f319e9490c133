//! Ingest end to end against real parts: Mosquitto with mTLS and the
//! per-VEN ACL, PostgreSQL (and SQLite), VEN certificates publishing
//! agent-shaped batches. Every reading is counted: none lost, none doubled.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_cloud::feed::{Feed, FeedItem};
use gridlink_cloud::ingest::{self, IngestSettings};
use gridlink_cloud::ingest::{DropReason, IngestMetrics};
use gridlink_cloud::mqtt::MqttSettings;
use gridlink_cloud::store::{AnyStore, Resolution, SeriesQuery, Store};
use gridlink_protocol::{
    Encoding, MAX_PAYLOAD_BYTES, Phase, Point, Quantity, Series, TelemetryBatch, VenId, encode,
};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::postgres::PostgresCluster;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

const T0: i64 = 1_795_262_400_000;
/// Per batch: 4 series × 10 readings, as an agent seals 10 polls of a small meter.
const SERIES: [(Quantity, Phase, i8); 4] = [
    (Quantity::ActivePower, Phase::Total, 0),
    (Quantity::Voltage, Phase::L1, -1),
    (Quantity::Frequency, Phase::Total, -2),
    (Quantity::EnergyImport, Phase::Total, 0),
];
const POINTS: i64 = 10;
const READINGS_PER_BATCH: u64 = 4 * 10;

fn ven(id: &str) -> VenId {
    VenId::new(id).unwrap()
}

/// Batch `seq` of `ven`: ten 1 s polls starting at `T0 + seq * 10 s`.
fn batch(ven_id: &VenId, seq: u64) -> TelemetryBatch {
    let t = T0 + i64::try_from(seq).unwrap() * POINTS * 1000;
    TelemetryBatch {
        ven_id: ven_id.clone(),
        batch_seq: seq,
        series: SERIES
            .iter()
            .enumerate()
            .map(|(i, &(quantity, phase, exponent))| Series {
                meter: "main".into(),
                quantity,
                phase,
                exponent,
                points: (0..POINTS)
                    .map(|k| Point {
                        ts_ms: t + k * 1000,
                        raw: 1000 * i64::try_from(i).unwrap() + k + i64::try_from(seq).unwrap(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    pki: TestPki,
    broker: Mosquitto,
}

impl Rig {
    async fn start(vens: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<VenId> = vens.iter().map(|v| ven(v)).collect();
        let pki = TestPki::generate(dir.path(), &ids).unwrap();
        let broker = Mosquitto::spawn(&pki).await;
        Self {
            _dir: dir,
            pki,
            broker,
        }
    }

    fn settings(&self, client_id: &str) -> IngestSettings {
        let backend = self.pki.backend();
        IngestSettings {
            mqtt: MqttSettings {
                host: "127.0.0.1".into(),
                port: self.broker.port(),
                ca: self.pki.ca_cert().to_path_buf(),
                cert: backend.cert.clone(),
                key: backend.key.clone(),
                client_id: client_id.into(),
                share_group: "gridlink".into(),
                max_packet_bytes: gridlink_cloud::config::MQTT_MAX_PACKET_BYTES,
                keep_alive: Duration::from_secs(10),
            },
            max_batches: 50,
            max_delay: Duration::from_millis(100),
            refuse_unknown_vens: false,
        }
    }

    /// A VEN's publisher: QoS 1, waits for every PUBACK.
    fn publisher(&self, identity: &str) -> Publisher {
        let (client, mut eventloop) =
            AsyncClient::new(self.broker.client_options(&self.pki, identity), 256);
        let (acked_tx, acked) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut n = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        n += 1;
                        let _ = acked_tx.send(n);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Publisher {
            client,
            acked,
            sent: 0,
            task,
        }
    }
}

struct Publisher {
    client: AsyncClient,
    acked: watch::Receiver<u64>,
    sent: u64,
    task: JoinHandle<()>,
}

impl Publisher {
    async fn publish(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        self.sent += 1;
    }

    async fn all_acked(&mut self) {
        let sent = self.sent;
        tokio::time::timeout(Duration::from_secs(30), self.acked.wait_for(|&n| n >= sent))
            .await
            .expect("broker acknowledged every publish")
            .unwrap();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An ingest task with its own metrics and shutdown switch.
struct Ingest {
    metrics: Arc<IngestMetrics>,
    feed: broadcast::Receiver<Arc<FeedItem>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Ingest {
    fn spawn(settings: IngestSettings, store: Arc<AnyStore>) -> Self {
        let metrics = Arc::new(IngestMetrics::default());
        let feed = Feed::new();
        let feed_rx = feed.subscribe();
        let (stop, stopped) = watch::channel(false);
        let m = Arc::clone(&metrics);
        let task = tokio::spawn(async move {
            ingest::run(settings, store, m, feed, stopped)
                .await
                .unwrap();
        });
        Self {
            metrics,
            feed: feed_rx,
            stop,
            task,
        }
    }

    /// The `(ven, batch_seq)` of every telemetry batch the feed carried so
    /// far (redeliveries may repeat one).
    fn fed_batches(&mut self) -> std::collections::BTreeSet<(String, u64)> {
        let mut seen = std::collections::BTreeSet::new();
        while let Ok(item) = self.feed.try_recv() {
            if let FeedItem::Telemetry(batch) = item.as_ref() {
                seen.insert((batch.ven_id.to_string(), batch.batch_seq));
            }
        }
        seen
    }

    async fn wait_connected(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.metrics.mqtt_connected.load(Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "ingest did not connect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the SUBSCRIBE its round trip.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("ingest stops")
            .unwrap();
    }
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

/// Readings stored for `ven` across the test's series, each checked against
/// the batch it came from; panics on any value not published.
async fn stored_readings(store: &AnyStore, ven_id: &VenId, batches: u64) -> u64 {
    let mut total = 0;
    for (i, &(quantity, phase, exponent)) in SERIES.iter().enumerate() {
        let points = store
            .series(&SeriesQuery {
                ven_id: ven_id.clone(),
                meter: "main".into(),
                quantity,
                phase,
                from_ms: T0,
                to_ms: T0 + i64::try_from(batches).unwrap() * POINTS * 1000 + 1,
                resolution: Resolution::Raw,
                limit: 1_000_000,
            })
            .await
            .unwrap();
        for p in &points {
            let k = (p.ts_ms - T0) / 1000;
            let (seq, within) = (k / POINTS, k % POINTS);
            let raw = 1000 * i64::try_from(i).unwrap() + within + seq;
            let expected = raw as f64 * 10f64.powi(i32::from(exponent));
            assert!(
                (p.avg - expected).abs() < 1e-9,
                "{ven_id} {quantity:?} at {}: {} != {expected}",
                p.ts_ms,
                p.avg
            );
        }
        let mut ts: Vec<i64> = points.iter().map(|p| p.ts_ms).collect();
        ts.dedup();
        assert_eq!(ts.len(), points.len(), "a reading stored twice");
        total += points.len() as u64;
    }
    total
}

async fn postgres_store(cluster: &PostgresCluster, name: &str) -> Arc<AnyStore> {
    let url = cluster.create_database(name).await;
    let store = AnyStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

async fn exactly_once_with_bad_traffic(store: Arc<AnyStore>) {
    let rig = Rig::start(&["ven-1", "ven-2", "ven-3"]).await;
    let mut ingest = Ingest::spawn(rig.settings("cloud-a"), Arc::clone(&store));
    ingest.wait_connected().await;

    let mut publishers = Vec::new();
    for id in ["ven-1", "ven-2", "ven-3"] {
        publishers.push((ven(id), rig.publisher(id)));
    }
    for (ven_id, p) in &mut publishers {
        let topic = format!("oadr/meter/{ven_id}");
        for seq in 0..20 {
            p.publish(
                &topic,
                encode(&batch(ven_id, seq), Encoding::Postcard).unwrap(),
            )
            .await;
        }
        // Retransmissions, as after a lost PUBACK: stored once.
        for seq in 5..10 {
            p.publish(
                &topic,
                encode(&batch(ven_id, seq), Encoding::Postcard).unwrap(),
            )
            .await;
        }
    }
    let (ven1, p1) = &mut publishers[0];
    let topic = format!("oadr/meter/{ven1}");
    p1.publish(&topic, b"\x01garbage".to_vec()).await;
    p1.publish(&topic, vec![0x01; MAX_PAYLOAD_BYTES + 100])
        .await;
    p1.publish(
        &topic,
        encode(&batch(&ven("ven-2"), 99), Encoding::Postcard).unwrap(),
    )
    .await;
    // On another VEN's topic: the broker's ACL drops it, ingest never sees it.
    p1.publish(
        "oadr/meter/ven-2",
        encode(&batch(ven1, 500), Encoding::Postcard).unwrap(),
    )
    .await;
    // Good traffic after the bad: JSON, as a third-party device sends it.
    p1.publish(&topic, encode(&batch(ven1, 20), Encoding::Json).unwrap())
        .await;
    for (_, p) in &mut publishers {
        p.all_acked().await;
    }

    let m = Arc::clone(&ingest.metrics);
    wait_for("every batch stored", Duration::from_secs(20), || {
        m.batches_ingested.load(Ordering::Relaxed) == 61
            && m.duplicate_batches.load(Ordering::Relaxed) == 15
    })
    .await;
    wait_for("bad messages counted", Duration::from_secs(5), || {
        m.dropped_count(DropReason::Malformed) == 1
            && m.dropped_count(DropReason::Oversized) == 1
            && m.dropped_count(DropReason::VenMismatch) == 1
    })
    .await;
    // The feed carried exactly the stored batches, nothing refused.
    let fed = ingest.fed_batches();
    let mut expected = std::collections::BTreeSet::new();
    for id in ["ven-1", "ven-2", "ven-3"] {
        expected.extend((0..20).map(|seq| (id.to_string(), seq)));
    }
    expected.insert(("ven-1".to_string(), 20));
    assert_eq!(fed, expected);
    ingest.stop().await;
    assert_eq!(
        m.readings_ingested.load(Ordering::Relaxed),
        61 * READINGS_PER_BATCH
    );
    assert_eq!(
        m.dropped_count(DropReason::ForeignTopic),
        0,
        "the ACL kept ven-1 off ven-2's topic"
    );
    assert_eq!(
        stored_readings(&store, &ven("ven-1"), 21).await,
        21 * READINGS_PER_BATCH
    );
    assert_eq!(
        stored_readings(&store, &ven("ven-2"), 20).await,
        20 * READINGS_PER_BATCH
    );
    assert_eq!(
        stored_readings(&store, &ven("ven-3"), 20).await,
        20 * READINGS_PER_BATCH
    );
    // Nothing from the forged batch 500 on ven-2's topic.
    assert_eq!(
        stored_readings(&store, &ven("ven-2"), 600).await,
        20 * READINGS_PER_BATCH
    );
}

/// With `refuse_unknown_vens`, a VEN registered through the store (as
/// `PUT /api/v1/vens/{id}` does) is known: its batches are stored; an
/// unregistered VEN's are dropped, counted and never stored.
/// With `share_group = ""` ingest subscribes plainly, and Mosquitto keeps a
/// plain subscription of a persistent session across its own restart: what
/// VENs publish after the broker restarted, while ingest is still away,
/// is queued for it and stored when it comes back. (With a shared group,
/// Mosquitto 2.0.11 restores the queued messages but not the shared
/// subscription, and drops what arrives before ingest subscribes again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_subscriptions_survive_a_broker_restart_while_ingest_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("gridlink.db").display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let mut rig = Rig::start(&["ven-1"]).await;
    let mut settings = rig.settings("cloud-plain");
    settings.mqtt.share_group = String::new();

    let ingest = Ingest::spawn(settings.clone(), Arc::clone(&store));
    ingest.wait_connected().await;
    let topic = "oadr/meter/ven-1";
    let mut p = rig.publisher("ven-1");
    for seq in 0..5 {
        p.publish(
            topic,
            encode(&batch(&ven("ven-1"), seq), Encoding::Postcard).unwrap(),
        )
        .await;
    }
    p.all_acked().await;
    let m = Arc::clone(&ingest.metrics);
    wait_for("the first batches stored", Duration::from_secs(20), || {
        m.batches_ingested.load(Ordering::Relaxed) == 5
    })
    .await;
    drop(p);
    ingest.stop().await;

    rig.broker.stop();
    rig.broker.start().await;
    let mut p = rig.publisher("ven-1");
    for seq in 5..10 {
        p.publish(
            topic,
            encode(&batch(&ven("ven-1"), seq), Encoding::Postcard).unwrap(),
        )
        .await;
    }
    p.all_acked().await;

    let ingest = Ingest::spawn(settings, Arc::clone(&store));
    let m = Arc::clone(&ingest.metrics);
    wait_for(
        "the batches published while ingest was away",
        Duration::from_secs(30),
        || m.batches_ingested.load(Ordering::Relaxed) == 5,
    )
    .await;
    ingest.stop().await;
    assert_eq!(
        stored_readings(&store, &ven("ven-1"), 10).await,
        10 * READINGS_PER_BATCH
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_unknown_vens_but_takes_registered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("gridlink.db").display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let registration = gridlink_cloud::store::VenRegistration {
        site: "Depot North".into(),
        site_meter: None,
        groups: None,
        loads: None,
    };
    store
        .register_ven(&ven("ven-1"), &registration, T0)
        .await
        .unwrap();
    let store = Arc::new(store);

    let rig = Rig::start(&["ven-1", "ven-2"]).await;
    let mut settings = rig.settings("cloud-refuse");
    settings.refuse_unknown_vens = true;
    let ingest = Ingest::spawn(settings, Arc::clone(&store));
    ingest.wait_connected().await;
    let mut publishers = Vec::new();
    for id in ["ven-1", "ven-2"] {
        let mut p = rig.publisher(id);
        for seq in 0..3 {
            p.publish(
                &format!("oadr/meter/{id}"),
                encode(&batch(&ven(id), seq), Encoding::Postcard).unwrap(),
            )
            .await;
        }
        publishers.push(p);
    }
    for p in &mut publishers {
        p.all_acked().await;
    }
    let m = Arc::clone(&ingest.metrics);
    wait_for(
        "the registered VEN's batches stored, the other's dropped",
        Duration::from_secs(20),
        || {
            m.batches_ingested.load(Ordering::Relaxed) == 3
                && m.dropped_count(DropReason::UnknownVen) == 3
        },
    )
    .await;
    ingest.stop().await;
    assert_eq!(
        stored_readings(&store, &ven("ven-1"), 3).await,
        3 * READINGS_PER_BATCH
    );
    assert_eq!(store.ven(&ven("ven-2")).await.unwrap(), None);
    let record = store.ven(&ven("ven-1")).await.unwrap().unwrap();
    assert_eq!(record.site.as_deref(), Some("Depot North"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batches_land_exactly_once_and_bad_traffic_is_counted() {
    let cluster = PostgresCluster::start().await;
    exactly_once_with_bad_traffic(postgres_store(&cluster, "exactly_once").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batches_land_exactly_once_and_bad_traffic_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("gridlink.db").display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    exactly_once_with_bad_traffic(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_20_s_loses_and_doubles_nothing() {
    let mut cluster = PostgresCluster::start().await;
    let store = postgres_store(&cluster, "outage").await;
    let rig = Rig::start(&["ven-1"]).await;
    let ingest = Ingest::spawn(rig.settings("cloud-a"), Arc::clone(&store));
    ingest.wait_connected().await;
    let mut p = rig.publisher("ven-1");
    let ven_id = ven("ven-1");

    // Steady traffic: a batch every 100 ms for 26 s, the database away for
    // 20 of them.
    let mut seq = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..30 {
        tick.tick().await;
        p.publish(
            "oadr/meter/ven-1",
            encode(&batch(&ven_id, seq), Encoding::Postcard).unwrap(),
        )
        .await;
        seq += 1;
    }
    cluster.stop();
    for _ in 0..200 {
        tick.tick().await;
        p.publish(
            "oadr/meter/ven-1",
            encode(&batch(&ven_id, seq), Encoding::Postcard).unwrap(),
        )
        .await;
        seq += 1;
    }
    assert!(
        ingest.metrics.db_write_errors.load(Ordering::Relaxed) > 0,
        "the outage was seen"
    );
    cluster.start_again().await;
    for _ in 0..30 {
        tick.tick().await;
        p.publish(
            "oadr/meter/ven-1",
            encode(&batch(&ven_id, seq), Encoding::Postcard).unwrap(),
        )
        .await;
        seq += 1;
    }
    p.all_acked().await;

    let m = Arc::clone(&ingest.metrics);
    wait_for("the backlog stored", Duration::from_secs(30), || {
        m.batches_ingested.load(Ordering::Relaxed) == seq
    })
    .await;
    ingest.stop().await;
    assert_eq!(
        stored_readings(&store, &ven_id, seq).await,
        seq * READINGS_PER_BATCH
    );
}

/// A `gridlink-cloud serve` process, killed when dropped.
struct Serve {
    child: std::process::Child,
    http_port: u16,
}

impl Serve {
    fn spawn(rig: &Rig, database_url: &str, client_id: &str) -> Self {
        let backend = rig.pki.backend();
        let http_port = gridlink_testkit::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gridlink-cloud"))
            .arg("serve")
            .env_clear()
            .env("GRIDLINK_DATABASE_URL", database_url)
            .env("GRIDLINK_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .env("GRIDLINK_MQTT_HOST", "127.0.0.1")
            .env("GRIDLINK_MQTT_PORT", rig.broker.port().to_string())
            .env("GRIDLINK_MQTT_CA", rig.pki.ca_cert())
            .env("GRIDLINK_MQTT_CERT", &backend.cert)
            .env("GRIDLINK_MQTT_KEY", &backend.key)
            .env("GRIDLINK_MQTT_CLIENT_ID", client_id)
            // Splitting the VENs' messages needs a share group, which
            // `serve` takes only for a broker declared to keep shared
            // subscriptions across its restart. Mosquitto does not, but
            // this test never restarts it: it shows the split itself.
            .env("GRIDLINK_MQTT_SHARE_GROUP", "gridlink")
            .env("GRIDLINK_MQTT_SHARED_SUBSCRIPTIONS_PERSIST", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start gridlink-cloud serve");
        Self { child, http_port }
    }

    /// A counter from the process's `/metrics`, `None` until it answers.
    async fn metric(&self, name: &str) -> Option<u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.http_port))
            .await
            .ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_binaries_share_the_subscription_exactly() {
    let cluster = PostgresCluster::start().await;
    let url = cluster.create_database("two_processes").await;
    let rig = Rig::start(&["ven-1", "ven-2"]).await;
    let a = Serve::spawn(&rig, &url, "cloud-a");
    let b = Serve::spawn(&rig, &url, "cloud-b");
    for serve in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while serve.metric("gridlink_mqtt_connected").await != Some(1) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve did not connect to the broker"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // SUBSCRIBE round trips

    let mut publishers = Vec::new();
    for id in ["ven-1", "ven-2"] {
        let mut p = rig.publisher(id);
        let ven_id = ven(id);
        for seq in 0..100 {
            p.publish(
                &format!("oadr/meter/{id}"),
                encode(&batch(&ven_id, seq), Encoding::Postcard).unwrap(),
            )
            .await;
        }
        publishers.push(p);
    }
    for p in &mut publishers {
        p.all_acked().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (na, nb) = loop {
        let na = a.metric("gridlink_ingest_batches_total").await.unwrap_or(0);
        let nb = b.metric("gridlink_ingest_batches_total").await.unwrap_or(0);
        if na + nb >= 200 {
            break (na, nb);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {na} + {nb} of 200 batches stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(na + nb, 200, "no batch stored twice");
    assert!(na > 0 && nb > 0, "both processes took a share: {na} + {nb}");
    drop((a, b));
    let store = AnyStore::connect(&url).await.unwrap();
    for id in ["ven-1", "ven-2"] {
        assert_eq!(
            stored_readings(&store, &ven(id), 100).await,
            100 * READINGS_PER_BATCH
        );
    }
}
