//! The device shadow end to end against real parts: Mosquitto with mTLS and
//! the per-VEN ACL, the cloud's shadow service on SQLite and PostgreSQL,
//! VEN clients with their own certificates, and the HTTP API (driven with
//! `oneshot`) publishing through the service's MQTT client.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use gridlink_cloud::api::auth;
use gridlink_cloud::api::{self, AppState};
use gridlink_cloud::ingest::IngestSettings;
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::mqtt::MqttSettings;
use gridlink_cloud::shadow::ShadowService;
use gridlink_cloud::store::{AnyStore, Role, ShadowStore, ShadowWrite, Store};
use gridlink_protocol::shadow::ShadowDocument;
use gridlink_protocol::{Status, Timestamp, VenId};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::mqtt::MqttTestClient;
use gridlink_testkit::postgres::PostgresCluster;
use rumqttc::{Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

fn ven(id: &str) -> VenId {
    VenId::new(id).unwrap()
}

/// A VEN's MQTT client subscribed to its own shadow answers, keeping what
/// it received until a test asks for it.
struct VenClient {
    id: String,
    mqtt: MqttTestClient,
    received: VecDeque<Publish>,
}

impl VenClient {
    async fn connect(broker: &Mosquitto, pki: &TestPki, id: &str, of: &str) -> Self {
        let mut mqtt = MqttTestClient::connect(broker.client_options(pki, id))
            .await
            .unwrap();
        for op in ["update", "get"] {
            mqtt.subscribe(&format!("$aws/things/{of}/shadow/{op}/+"), QoS::AtLeastOnce)
                .await;
        }
        Self {
            id: of.to_string(),
            mqtt,
            received: VecDeque::new(),
        }
    }

    async fn send(&mut self, op: &str, payload: &[u8]) {
        let topic = format!("$aws/things/{}/shadow/{op}", self.id);
        self.mqtt.publish(&topic, payload.to_vec()).await;
    }

    /// The next message on `shadow/{suffix}`, as JSON; panics after 10 s.
    async fn expect(&mut self, suffix: &str) -> Value {
        let topic = format!("$aws/things/{}/shadow/{suffix}", self.id);
        if let Some(i) = self.received.iter().position(|p| p.topic == topic) {
            let p = self.received.remove(i).unwrap();
            return serde_json::from_slice(&p.payload).unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(p) = self.mqtt.next_publish(left).await else {
                panic!(
                    "no message on {topic}; got {:?}",
                    self.received.iter().map(|p| &p.topic).collect::<Vec<_>>()
                );
            };
            if p.topic == topic {
                return serde_json::from_slice(&p.payload).unwrap();
            }
            self.received.push_back(p);
        }
    }

    /// Everything that arrives within `within`, kept for later.
    async fn drain(&mut self, within: Duration) -> Vec<String> {
        while let Some(p) = self.mqtt.next_publish(within).await {
            self.received.push_back(p);
        }
        self.received.iter().map(|p| p.topic.clone()).collect()
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    pki: TestPki,
    broker: Mosquitto,
    store: Arc<AnyStore>,
    metrics: Arc<Metrics>,
    router: Router,
    tokens: Vec<(Role, String)>,
    stop: watch::Sender<bool>,
    service: Option<JoinHandle<()>>,
}

impl Rig {
    async fn start(store: Arc<AnyStore>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path(), &[ven("ven-1"), ven("ven-2")]).unwrap();
        let broker = Mosquitto::spawn(&pki).await;
        let backend = pki.backend();
        let settings = IngestSettings {
            mqtt: MqttSettings {
                host: "127.0.0.1".into(),
                port: broker.port(),
                ca: pki.ca_cert().to_path_buf(),
                cert: backend.cert.clone(),
                key: backend.key.clone(),
                client_id: "cloud-a".into(),
                share_group: "gridlink".into(),
                max_packet_bytes: gridlink_cloud::config::MQTT_MAX_PACKET_BYTES,
                keep_alive: Duration::from_secs(10),
            },
            max_batches: 50,
            max_delay: Duration::from_millis(100),
            refuse_unknown_vens: false,
        };
        let metrics = Arc::new(Metrics::default());
        let service = ShadowService::new(settings.mqtt, Arc::clone(&metrics.shadow)).unwrap();
        let state =
            AppState::new(Arc::clone(&store), Arc::clone(&metrics)).with_shadow(service.handle());
        let router = api::router(state);
        let (stop, stopped) = watch::channel(false);
        let service_store = Arc::clone(&store);
        let service = tokio::spawn(async move {
            service.run(service_store, stopped).await.unwrap();
        });
        let mut tokens = Vec::new();
        for role in [Role::Viewer, Role::Installer, Role::Operator, Role::Admin] {
            let token = auth::issue_token().unwrap();
            store
                .create_token(role.as_str(), role, &token.hash)
                .await
                .unwrap();
            tokens.push((role, token.secret));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metrics.shadow.connected.load(Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "shadow service did not connect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // SUBSCRIBE round trip
        Self {
            _dir: dir,
            pki,
            broker,
            store,
            metrics,
            router,
            tokens,
            stop,
            service: Some(service),
        }
    }

    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        role: Role,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {}", self.token(role)));
        let body = match body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(service) = self.service.take() {
            tokio::time::timeout(Duration::from_secs(10), service)
                .await
                .expect("the shadow service stops")
                .unwrap();
        }
    }
}

/// The store's optimistic version check on its own.
async fn versions_are_checked(store: &AnyStore) {
    let id = ven("ven-9");
    assert_eq!(store.shadow(&id).await.unwrap(), None);
    let doc = ShadowDocument {
        version: 1,
        ..ShadowDocument::default()
    };
    assert_eq!(
        store.save_shadow(&id, &doc, 0, 1).await.unwrap(),
        ShadowWrite::Saved
    );
    assert_eq!(
        store.save_shadow(&id, &doc, 0, 1).await.unwrap(),
        ShadowWrite::Conflict
    );
    let next = ShadowDocument {
        version: 2,
        ..doc.clone()
    };
    assert_eq!(
        store.save_shadow(&id, &next, 5, 2).await.unwrap(),
        ShadowWrite::Conflict
    );
    assert_eq!(
        store.save_shadow(&id, &next, 1, 2).await.unwrap(),
        ShadowWrite::Saved
    );
    assert_eq!(store.shadow(&id).await.unwrap(), Some(next));
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario, step by step, each step depending on the last"
)]
async fn shadow_end_to_end(store: Arc<AnyStore>) {
    versions_are_checked(&store).await;
    let rig = Rig::start(store).await;
    // ven-1 is known to the cloud (it sent a status); ven-2 is not.
    rig.store
        .record_status(
            &Status {
                ven_id: ven("ven-1"),
                online: true,
                at: Timestamp::from_unix_ms(1_700_000_000_000).unwrap(),
                agent_version: "test".into(),
                backlog_batches: 0,
                dropped_readings: 0,
            },
            1_700_000_000_000,
        )
        .await
        .unwrap();
    let mut ven1 = VenClient::connect(&rig.broker, &rig.pki, "ven-1", "ven-1").await;

    // No shadow yet.
    ven1.send("get", br#"{"clientToken":"g0"}"#).await;
    let rejected = ven1.expect("get/rejected").await;
    assert_eq!(rejected["code"], 404);
    assert_eq!(rejected["message"], "No shadow exists with name: ven-1");
    assert_eq!(rejected["clientToken"], "g0");
    let (status, problem) = rig
        .call(Method::GET, "/api/v1/vens/ven-1/shadow", Role::Viewer, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "urn:gridlink:problem:no-shadow");

    // The agent reports: version 1, no delta.
    ven1.send(
        "update",
        br#"{"state":{"reported":{"poll_interval_ms":1000,"loads":{"hvac":{"dr_participation":true}}}},"clientToken":"r1"}"#,
    )
    .await;
    let accepted = ven1.expect("update/accepted").await;
    assert_eq!(accepted["version"], 1);
    assert_eq!(accepted["clientToken"], "r1");
    assert_eq!(accepted["state"]["reported"]["poll_interval_ms"], 1000);

    // An operator asks for other settings through the API: version 2 and
    // the VEN gets the delta.
    let (status, doc) = rig
        .call(
            Method::PATCH,
            "/api/v1/vens/ven-1/shadow",
            Role::Operator,
            Some(json!({"desired": {"poll_interval_ms": 5000, "loads": {"hvac": {"dr_participation": false}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["version"], 2);
    assert_eq!(
        doc["state"]["delta"],
        json!({"poll_interval_ms": 5000, "loads": {"hvac": {"dr_participation": false}}})
    );
    let delta = ven1.expect("update/delta").await;
    assert_eq!(delta["version"], 2);
    assert_eq!(
        delta["state"],
        json!({"poll_interval_ms": 5000, "loads": {"hvac": {"dr_participation": false}}})
    );
    assert_eq!(ven1.expect("update/accepted").await["version"], 2);

    // The agent applies and echoes: the delta clears, no new delta.
    ven1.send(
        "update",
        br#"{"state":{"reported":{"poll_interval_ms":5000,"loads":{"hvac":{"dr_participation":false}}}}}"#,
    )
    .await;
    assert_eq!(ven1.expect("update/accepted").await["version"], 3);

    // A stale version is refused with 409, a malformed request with 400.
    ven1.send(
        "update",
        br#"{"state":{"reported":{"x":1}},"version":1,"clientToken":"old"}"#,
    )
    .await;
    let conflict = ven1.expect("update/rejected").await;
    assert_eq!(conflict["code"], 409);
    assert_eq!(conflict["clientToken"], "old");
    ven1.send("update", b"{not json").await;
    let malformed = ven1.expect("update/rejected").await;
    assert_eq!(malformed["code"], 400);
    assert!(
        malformed["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON"),
        "{malformed}"
    );
    ven1.send("update", br#"{"state":{"desired":7},"clientToken":"m2"}"#)
        .await;
    let invalid = ven1.expect("update/rejected").await;
    assert_eq!(invalid["code"], 400);
    assert_eq!(invalid["clientToken"], "m2");
    assert_eq!(rig.metrics.shadow.malformed.load(Ordering::Relaxed), 1);
    assert_eq!(rig.metrics.shadow.rejected_count(400), 2);
    assert_eq!(rig.metrics.shadow.rejected_count(409), 1);
    assert!(
        rig.metrics
            .render()
            .contains("gridlink_shadow_rejected_total{code=\"400\"} 2\n")
    );

    // The whole document, over MQTT and the API.
    ven1.send("get", b"").await;
    let got = ven1.expect("get/accepted").await;
    assert_eq!(got["version"], 3);
    assert_eq!(got["state"]["desired"]["poll_interval_ms"], 5000);
    assert_eq!(got["state"]["reported"]["poll_interval_ms"], 5000);
    assert!(got["state"].get("delta").is_none(), "{got}");
    let (status, api_doc) = rig
        .call(Method::GET, "/api/v1/vens/ven-1/shadow", Role::Viewer, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api_doc["state"], got["state"]);
    assert_eq!(api_doc["version"], 3);
    assert!(
        ven1.drain(Duration::from_millis(300)).await.is_empty(),
        "no delta after the echo"
    );

    // The API: version conflicts, unknown keys, roles, unknown VENs.
    let (status, problem) = rig
        .call(
            Method::PATCH,
            "/api/v1/vens/ven-1/shadow",
            Role::Installer,
            Some(json!({"desired": {"max_shed_s": 600}, "version": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:gridlink:problem:conflict");
    assert!(
        problem["detail"].as_str().unwrap().contains("version 2"),
        "{problem}"
    );
    let (status, problem) = rig
        .call(
            Method::PATCH,
            "/api/v1/vens/ven-1/shadow",
            Role::Admin,
            Some(json!({"desired": {"colour": "red"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().contains("colour"),
        "{problem}"
    );
    let (status, _) = rig
        .call(
            Method::PATCH,
            "/api/v1/vens/ven-1/shadow",
            Role::Viewer,
            Some(json!({"desired": {"max_shed_s": 600}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) = rig
        .call(
            Method::PATCH,
            "/api/v1/vens/ven-2/shadow",
            Role::Operator,
            Some(json!({"desired": {"max_shed_s": 600}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "urn:gridlink:problem:unknown-ven");
    let (status, doc) = rig
        .call(
            Method::PATCH,
            "/api/v1/vens/ven-1/shadow",
            Role::Installer,
            Some(json!({"desired": {"max_shed_s": 600, "poll_interval_ms": null}, "version": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["version"], 4);
    assert_eq!(
        ven1.expect("update/delta").await["state"],
        json!({"max_shed_s": 600})
    );
    assert!(
        rig.store
            .shadow(&ven("ven-1"))
            .await
            .unwrap()
            .unwrap()
            .desired
            .get("poll_interval_ms")
            .is_none()
    );

    // Another VEN can neither read nor write ven-1's shadow: the broker's
    // ACL delivers nothing either way.
    let mut intruder = VenClient::connect(&rig.broker, &rig.pki, "ven-2", "ven-1").await;
    intruder
        .send("update", br#"{"state":{"desired":{"max_shed_s":1}}}"#)
        .await;
    intruder.send("get", b"").await;
    ven1.send("get", br#"{"clientToken":"after"}"#).await;
    let got = ven1.expect("get/accepted").await;
    assert_eq!(got["clientToken"], "after");
    assert_eq!(got["version"], 4, "the intruder's update never arrived");
    assert_eq!(got["state"]["desired"]["max_shed_s"], 600);
    assert!(
        intruder.drain(Duration::from_millis(500)).await.is_empty(),
        "ven-2 received ven-1's shadow messages"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shadow_over_mqtt_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("gridlink.db").display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    shadow_end_to_end(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shadow_over_mqtt_and_the_api() {
    let cluster = PostgresCluster::start().await;
    let url = cluster.create_database("shadow").await;
    let store = AnyStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    shadow_end_to_end(Arc::new(store)).await;
}

#[tokio::test]
async fn patch_answers_503_where_the_broker_runs_the_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::connect(&format!("sqlite://{}", dir.path().join("g.db").display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let token = auth::issue_token().unwrap();
    store
        .create_token("op", Role::Operator, &token.hash)
        .await
        .unwrap();
    let router = api::router(AppState::new(Arc::new(store), Arc::new(Metrics::default())));
    let response = router
        .oneshot(
            Request::builder()
                .method(Method::PATCH)
                .uri("/api/v1/vens/ven-1/shadow")
                .header(AUTHORIZATION, format!("Bearer {}", token.secret))
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"desired":{"max_shed_s":60}}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// Why the shadow service subscribes without `$share/`: Mosquitto does not
/// deliver `$aws/...` topics through a shared subscription, while it does
/// deliver the VEN topics (the control). If this starts failing, the
/// broker shares `$aws` topics: switch the service to shared
/// subscriptions so several `serve` processes can run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_does_not_share_aws_topics() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &[ven("ven-1")]).unwrap();
    let broker = Mosquitto::spawn(&pki).await;
    let mut backend = MqttTestClient::connect(broker.client_options(&pki, "backend"))
        .await
        .unwrap();
    backend
        .subscribe("$share/gridlink/$aws/things/+/shadow/get", QoS::AtLeastOnce)
        .await;
    backend
        .subscribe("$share/gridlink/ven/status/+", QoS::AtLeastOnce)
        .await;
    let mut ven1 = MqttTestClient::connect(broker.client_options(&pki, "ven-1"))
        .await
        .unwrap();
    ven1.publish("$aws/things/ven-1/shadow/get", b"{}".to_vec())
        .await;
    ven1.publish("ven/status/ven-1", b"{}".to_vec()).await;
    let got = backend.expect_publish().await;
    assert_eq!(got.topic, "ven/status/ven-1");
    assert!(
        backend
            .next_publish(Duration::from_millis(500))
            .await
            .is_none(),
        "Mosquitto delivered $aws through $share: use shared subscriptions in the shadow service"
    );
}
