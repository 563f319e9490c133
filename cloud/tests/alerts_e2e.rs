//! Alerts end to end, on SQLite and on PostgreSQL: a VEN connects to a
//! real Mosquitto (mTLS, production ACL) with its last will, ingest and
//! the alert service run as `serve` runs them, the VEN's connection breaks,
//! the broker publishes the last will, and `ven_offline` opens and is
//! delivered to a webhook; the VEN comes back and the alert resolves.

#![expect(
    clippy::unwrap_used,
    reason = "test bodies: a panic is the failure report"
)]
#![expect(
    clippy::too_many_lines,
    reason = "the scenario reads best as one function, step by step"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_cloud::alerts::config::HoldDownSeconds;
use gridlink_cloud::alerts::{self, AlertFilter, AlertState, AlertStore, AlertsConfig, Rule};
use gridlink_cloud::feed::Feed;
use gridlink_cloud::ingest::{self, IngestSettings};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::mqtt::MqttSettings;
use gridlink_cloud::store::{AnyStore, Store};
use gridlink_protocol::codec::{Encoding, encode};
use gridlink_protocol::{Status, Timestamp, VenId};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::mqtt::MqttTestClient;
use gridlink_testkit::postgres::PostgresCluster;
use gridlink_testkit::webhook::WebhookReceiver;
use rumqttc::{LastWill, QoS};
use serde_json::Value;
use tokio::sync::watch;

/// A hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_mins(1);

fn status(online: bool) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let status = Status {
        ven_id: VenId::new("ven-1").unwrap(),
        online,
        at: Timestamp::from_unix_ms(i64::try_from(now).unwrap()).unwrap(),
        agent_version: if online { "1.0".into() } else { String::new() },
        backlog_batches: 0,
        dropped_readings: 0,
    };
    encode(&status, Encoding::Json).unwrap()
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn last_will_to_webhook(store: Arc<AnyStore>) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &[VenId::new("ven-1").unwrap()]).unwrap();
    let broker = Mosquitto::spawn(&pki).await;
    let receiver = WebhookReceiver::start(0).await;
    let backend = pki.backend();
    let settings = IngestSettings {
        mqtt: MqttSettings {
            host: "127.0.0.1".into(),
            port: broker.port(),
            ca: pki.ca_cert().to_path_buf(),
            cert: backend.cert.clone(),
            key: backend.key.clone(),
            client_id: "cloud-alerts".into(),
            share_group: "gridlink".into(),
            max_packet_bytes: gridlink_cloud::config::MQTT_MAX_PACKET_BYTES,
            keep_alive: Duration::from_secs(10),
        },
        max_batches: 50,
        max_delay: Duration::from_millis(50),
        refuse_unknown_vens: false,
    };
    let mut config = AlertsConfig {
        scan_interval_s: 1,
        ..AlertsConfig::default()
    };
    config.hold_down.ven_offline = HoldDownSeconds {
        open_after_s: Some(0),
        resolve_after_s: Some(0),
    };
    config.webhook.url = Some(receiver.url());
    config.webhook.secret = Some("e2e".into());
    let metrics = Arc::new(Metrics::default());
    let feed = Feed::new();
    let (stop, stopped) = watch::channel(false);
    let service = alerts::service(&store, &config, &metrics.alerts, &feed, &stopped)
        .await
        .unwrap()
        .unwrap();
    let alerts_task = tokio::spawn(service);
    let ingest_task = tokio::spawn(ingest::run(
        settings,
        Arc::clone(&store),
        Arc::clone(&metrics.ingest),
        feed,
        stopped,
    ));
    wait_for("ingest connects", async || {
        (metrics.ingest.mqtt_connected.load(Ordering::Relaxed) == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the SUBSCRIBE's round trip

    let mut options = broker.client_options(&pki, "ven-1");
    options.set_last_will(LastWill::new(
        "ven/status/ven-1",
        status(false),
        QoS::AtLeastOnce,
        false,
    ));
    let mut ven = MqttTestClient::connect(options.clone()).await.unwrap();
    ven.publish("ven/status/ven-1", status(true)).await;
    wait_for("the online status is stored", async || {
        let record = store.ven(&VenId::new("ven-1").unwrap()).await.unwrap()?;
        (record.online == Some(true)).then_some(())
    })
    .await;
    // The connection breaks without DISCONNECT: the broker sends the will.
    drop(ven);
    let opened = wait_for("the webhook gets the opened alert", async || {
        receiver.requests().into_iter().find_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            (body["event"] == "opened").then_some(body)
        })
    })
    .await;
    assert_eq!(opened["alert"]["rule"], "ven_offline");
    assert_eq!(opened["alert"]["subject"], "ven-1");
    assert_eq!(opened["alert"]["details"]["reason"], "last_will");
    let stored = store
        .alerts(&AlertFilter {
            rule: Some(Rule::VenOffline),
            limit: 10,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(Some(stored[0].id), opened["alert"]["id"].as_i64());

    // Back online: resolved, and notified.
    let mut ven = MqttTestClient::connect(options).await.unwrap();
    ven.publish("ven/status/ven-1", status(true)).await;
    wait_for("the webhook gets the resolution", async || {
        receiver.requests().into_iter().find_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            (body["event"] == "resolved").then_some(())
        })
    })
    .await;
    let alert = store.alert(stored[0].id).await.unwrap().unwrap();
    assert_eq!(alert.state, AlertState::Resolved);
    assert!(
        metrics
            .render()
            .contains("gridlink_alert_notifications_sent_total{channel=\"webhook\"} 2")
    );
    ven.disconnect().await;

    let _ = stop.send(true);
    let (task, result) = tokio::time::timeout(HANG_GUARD, alerts_task)
        .await
        .expect("alerts stop")
        .unwrap();
    assert_eq!(task, "alerts");
    result.unwrap();
    tokio::time::timeout(HANG_GUARD, ingest_task)
        .await
        .expect("ingest stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn sqlite_last_will_opens_ven_offline_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e2e.db").display());
    let store = Arc::new(AnyStore::connect(&url).await.unwrap());
    store.migrate().await.unwrap();
    last_will_to_webhook(store).await;
}

#[tokio::test]
async fn postgres_last_will_opens_ven_offline_and_notifies() {
    let cluster = PostgresCluster::start().await;
    let url = cluster.create_database("alerts_e2e").await;
    let store = Arc::new(AnyStore::connect(&url).await.unwrap());
    store.migrate().await.unwrap();
    last_will_to_webhook(store).await;
}
