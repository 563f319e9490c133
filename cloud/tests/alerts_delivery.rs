//! Alert delivery against real peers on 127.0.0.1, with the outbox in
//! SQLite and in PostgreSQL: a webhook receiver (signature checked here,
//! failing twice before it accepts), an SMTP sink (headers and body
//! checked), an unreachable SMTP server (given up after `max_attempts`),
//! and SNS on a moto server (an HTTP subscription of the topic receives the
//! published notification).

#![expect(
    clippy::unwrap_used,
    reason = "test bodies: a panic is the failure report"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ApiApp;
use gridlink_cloud::alerts::delivery::sns::SnsSender;
use gridlink_cloud::alerts::delivery::{DeliveryWorker, Senders, smtp, webhook};
use gridlink_cloud::alerts::{
    self, AlertSettings, AlertStore, AlertsConfig, Channel, Condition, EmailSettings, HoldDown,
    Raised, Rule, Severity, WebhookSettings,
};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::AnyStore;
use gridlink_protocol::VenId;
use gridlink_testkit::moto::MotoServer;
use gridlink_testkit::smtp::SmtpSink;
use gridlink_testkit::webhook::WebhookReceiver;
use serde_json::{Value, json};

/// A hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_mins(1);
const SECRET: &str = "s3cret-for-tests";

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// No hold-down, fast retries, no channel yet.
fn settings() -> AlertSettings {
    let mut s = AlertsConfig::default().settings();
    for rule in Rule::ALL {
        s.hold.insert(rule, HoldDown::default());
    }
    s.delivery.backoff_initial_ms = 20;
    s.delivery.backoff_max_ms = 100;
    s
}

fn offline(ven: &str) -> Condition {
    let mut c = Condition::new(
        Rule::VenOffline,
        ven,
        Severity::Critical,
        format!("{ven} is offline (last will or shutdown)"),
    );
    c.ven_id = Some(VenId::new(ven).unwrap());
    c.details = json!({ "reason": "last_will" });
    c
}

async fn open(app: &ApiApp, settings: &AlertSettings, ven: &str) -> i64 {
    match alerts::raise(&*app.store, settings, &offline(ven), now_ms())
        .await
        .unwrap()
    {
        Raised::Opened(alert) => alert.id,
        other => panic!("not opened: {other:?}"),
    }
}

fn worker(
    app: &ApiApp,
    settings: &AlertSettings,
    metrics: &Arc<Metrics>,
    senders: Senders,
) -> DeliveryWorker<AnyStore> {
    DeliveryWorker::new(
        Arc::clone(&app.store),
        Arc::new(settings.clone()),
        Arc::clone(&metrics.alerts),
        senders,
    )
}

/// Runs delivery rounds (a new worker each time, as after a restart: all
/// state is in the database) until `done` holds; panics after the guard.
async fn deliver_until(
    app: &ApiApp,
    settings: &AlertSettings,
    metrics: &Arc<Metrics>,
    senders: &Senders,
    mut done: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "delivery hangs");
        worker(app, settings, metrics, senders.clone())
            .deliver_due(now_ms())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, message)
        .as_ref()
        .iter()
        .fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// The webhook fails twice, then accepts: three signed POSTs of the same
/// notification, delivered once, counted in the metrics; the resolution is
/// a second notification.
async fn webhook_is_signed_and_retried(app: &ApiApp) {
    let receiver = WebhookReceiver::start(2).await;
    let mut s = settings();
    s.webhook = Some(WebhookSettings {
        url: receiver.url(),
        secret: SECRET.into(),
        timeout: Duration::from_secs(10),
    });
    s.channels = vec![Channel::Webhook];
    let senders = Senders::from_settings(&s).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let id = open(app, &s, "ven-1").await;
    assert_eq!(
        app.store.alert_deliveries(id).await.unwrap(),
        vec![("opened".to_owned(), Channel::Webhook, false, 0)]
    );
    deliver_until(app, &s, &metrics, &senders, || {
        receiver.requests().len() >= 3
    })
    .await;
    let requests = receiver.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let delivery_id = requests[0].header("x-gridlink-delivery").unwrap();
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-gridlink-delivery"), Some(delivery_id));
        let timestamp = request.header("x-gridlink-timestamp").unwrap();
        let ts: i64 = timestamp.parse().unwrap();
        assert!((ts - now_ms() / 1000).abs() < 600, "{ts}");
        let mut signed = format!("{timestamp}.").into_bytes();
        signed.extend_from_slice(&request.body);
        let expected = format!("sha256={}", hmac_hex(SECRET, &signed));
        assert_eq!(
            request.header("x-gridlink-signature"),
            Some(expected.as_str())
        );
        assert_ne!(
            request.header("x-gridlink-signature"),
            Some(format!("sha256={}", hmac_hex("wrong", &signed)).as_str())
        );
        assert_eq!(
            webhook::signature(SECRET, ts, &request.body),
            expected,
            "the library's signature is the one a receiver computes"
        );
    }
    let body: Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert_eq!(body["event"], "opened");
    assert_eq!(body["alert"]["id"], id);
    assert_eq!(body["alert"]["rule"], "ven_offline");
    assert_eq!(body["alert"]["severity"], "critical");
    assert_eq!(body["alert"]["subject"], "ven-1");
    assert_eq!(body["alert"]["state"], "open");
    assert_eq!(body["alert"]["details"]["reason"], "last_will");
    assert_eq!(
        app.store.alert_deliveries(id).await.unwrap(),
        vec![("opened".to_owned(), Channel::Webhook, true, 3)]
    );
    let text = metrics.render();
    for line in [
        "gridlink_alert_notifications_sent_total{channel=\"webhook\"} 1",
        "gridlink_alert_notifications_failed_total{channel=\"webhook\"} 2",
        "gridlink_alert_notifications_retries_total{channel=\"webhook\"} 2",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    // Delivered once: nothing more is sent.
    let tried = worker(app, &s, &metrics, senders.clone())
        .deliver_due(now_ms() + 3_600_000)
        .await
        .unwrap();
    assert_eq!(tried, 0);

    alerts::clear(&*app.store, &s, Rule::VenOffline, "ven-1", now_ms())
        .await
        .unwrap();
    deliver_until(app, &s, &metrics, &senders, || {
        receiver.requests().len() >= 4
    })
    .await;
    let body: Value = serde_json::from_slice(&receiver.requests()[3].body).unwrap();
    assert_eq!(body["event"], "resolved");
    assert_eq!(body["alert"]["state"], "resolved");
    assert!(body["alert"]["resolved_ms"].is_i64());
}

/// One e-mail per notification, with the configured envelope and headers
/// and the alert in the body.
async fn email_headers_and_body(app: &ApiApp) {
    let sink = SmtpSink::start().await;
    let mut s = settings();
    s.email = Some(EmailSettings {
        host: "127.0.0.1".into(),
        port: sink.port(),
        from: "gridlink@example.com".into(),
        to: vec!["ops@example.com".into(), "oncall@example.com".into()],
        timeout: Duration::from_secs(10),
    });
    s.channels = vec![Channel::Email];
    let senders = Senders::from_settings(&s).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let id = open(app, &s, "ven-7").await;
    deliver_until(app, &s, &metrics, &senders, || !sink.messages().is_empty()).await;
    alerts::clear(&*app.store, &s, Rule::VenOffline, "ven-7", now_ms())
        .await
        .unwrap();
    deliver_until(app, &s, &metrics, &senders, || sink.messages().len() >= 2).await;
    let mails = sink.messages();
    let opened = &mails[0];
    assert_eq!(opened.from, "gridlink@example.com");
    assert_eq!(opened.to, ["ops@example.com", "oncall@example.com"]);
    assert!(!opened.helo.is_empty());
    assert_eq!(opened.header("From"), Some("gridlink@example.com"));
    assert_eq!(
        opened.header("To"),
        Some("ops@example.com, oncall@example.com")
    );
    assert_eq!(
        opened.header("Subject"),
        Some("[gridlink] OPENED critical ven_offline: ven-7")
    );
    assert!(
        opened
            .header("Message-ID")
            .unwrap()
            .starts_with(&format!("<alert-{id}-opened-")),
        "{:?}",
        opened.header("Message-ID")
    );
    assert!(opened.header("Date").unwrap().ends_with("+0000"));
    assert_eq!(
        opened.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    let body = opened.body();
    assert!(
        body.starts_with("ven-7 is offline (last will or shutdown)\r\n"),
        "{body}"
    );
    assert!(body.contains("rule:     ven_offline\r\n"), "{body}");
    assert!(body.contains("state:    open\r\n"), "{body}");
    assert!(body.contains("\"reason\": \"last_will\""), "{body}");
    let resolved = &mails[1];
    assert_eq!(
        resolved.header("Subject"),
        Some("[gridlink] RESOLVED critical ven_offline: ven-7")
    );
    assert!(resolved.body().contains("state:    resolved\r\n"));
    assert_eq!(
        app.store.alert_deliveries(id).await.unwrap(),
        vec![
            ("opened".to_owned(), Channel::Email, true, 1),
            ("resolved".to_owned(), Channel::Email, true, 1)
        ]
    );
    let composed = smtp::compose("opened", &app.store.alert(id).await.unwrap().unwrap());
    assert!(composed.0.starts_with("[gridlink] OPENED"));
}

/// A server that is not there: retried, then given up after
/// `max_attempts`, and not tried again.
async fn unreachable_smtp_is_given_up(app: &ApiApp) {
    let mut s = settings();
    s.email = Some(EmailSettings {
        host: "127.0.0.1".into(),
        port: gridlink_testkit::free_port(),
        from: "gridlink@example.com".into(),
        to: vec!["ops@example.com".into()],
        timeout: Duration::from_secs(10),
    });
    s.channels = vec![Channel::Email];
    s.delivery.max_attempts = 3;
    let senders = Senders::from_settings(&s).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let id = open(app, &s, "ven-2").await;
    let store = Arc::clone(&app.store);
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never given up");
        worker(app, &s, &metrics, senders.clone())
            .deliver_due(now_ms())
            .await
            .unwrap();
        if metrics
            .render()
            .contains("gridlink_alert_notifications_gave_up_total{channel=\"email\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.alert_deliveries(id).await.unwrap(),
        vec![("opened".to_owned(), Channel::Email, false, 3)]
    );
    let tried = worker(app, &s, &metrics, senders)
        .deliver_due(now_ms() + 86_400_000)
        .await
        .unwrap();
    assert_eq!(tried, 0, "given up is final");
    assert!(
        metrics
            .render()
            .contains("gridlink_alert_notifications_failed_total{channel=\"email\"} 3")
    );
}

/// SNS Publish to a topic on moto: an HTTP subscription of the topic
/// receives the notification as the message, with the alert's summary as
/// the subject.
async fn sns_publishes_to_the_topic(app: &ApiApp) {
    let moto = MotoServer::spawn();
    let subscriber = WebhookReceiver::start(0).await;
    let config = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .http_client(gridlink_cloud::alerts::delivery::sns::http_client())
        .region(aws_sdk_sns::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let client = aws_sdk_sns::Client::from_conf(config);
    let topic = client
        .create_topic()
        .name("gridlink-alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    client
        .subscribe()
        .topic_arn(&topic)
        .protocol("http")
        .endpoint(subscriber.url())
        .send()
        .await
        .unwrap();
    let mut s = settings();
    s.sns = Some(alerts::SnsSettings {
        topic_arn: topic.clone(),
        endpoint_url: Some(moto.url()),
    });
    s.channels = vec![Channel::Sns];
    let senders = Senders {
        sns: Some(SnsSender::from_client(client, topic.clone())),
        ..Senders::default()
    };
    let metrics = Arc::new(Metrics::default());
    let id = open(app, &s, "ven-3").await;
    let notification = || {
        subscriber.requests().into_iter().find_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            (body["Type"] == "Notification").then_some(body)
        })
    };
    deliver_until(app, &s, &metrics, &senders, || notification().is_some()).await;
    let sent = notification().unwrap();
    assert_eq!(sent["TopicArn"], topic.as_str());
    assert_eq!(
        sent["Subject"],
        "[gridlink] OPENED critical ven_offline: ven-3"
    );
    let message: Value = serde_json::from_str(sent["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["event"], "opened");
    assert_eq!(message["alert"]["id"], id);
    assert_eq!(message["alert"]["subject"], "ven-3");
    assert_eq!(
        app.store.alert_deliveries(id).await.unwrap(),
        vec![("opened".to_owned(), Channel::Sns, true, 1)]
    );
}

/// Two stores on one database, as two `serve` processes have.
struct TwoProcesses {
    a: AnyStore,
    b: AnyStore,
    _dir: Option<tempfile::TempDir>,
    _cluster: Option<gridlink_testkit::postgres::PostgresCluster>,
}

impl TwoProcesses {
    async fn open(url: &str) -> (AnyStore, AnyStore) {
        let a = AnyStore::connect(url).await.unwrap();
        gridlink_cloud::store::Store::migrate(&a).await.unwrap();
        let b = AnyStore::connect(url).await.unwrap();
        (a, b)
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("two.db").display());
        let (a, b) = Self::open(&url).await;
        Self {
            a,
            b,
            _dir: Some(dir),
            _cluster: None,
        }
    }

    async fn postgres() -> Self {
        let cluster = gridlink_testkit::postgres::PostgresCluster::start().await;
        let url = cluster.create_database("two_processes").await;
        let (a, b) = Self::open(&url).await;
        Self {
            a,
            b,
            _dir: None,
            _cluster: Some(cluster),
        }
    }
}

/// Two processes claiming the outbox at the same time get disjoint
/// notifications, together all of them; a claim whose process died is
/// claimed again once its lease expired.
async fn two_processes_claim_disjoint_notifications(p: TwoProcesses) {
    const N: usize = 40;
    let now = now_ms();
    for i in 0..N {
        let c = offline(&format!("ven-{i}"));
        let raised =
            p.a.raise_alert(&c, now, 0, &[Channel::Webhook, Channel::Email])
                .await
                .unwrap();
        assert!(matches!(raised, Raised::Opened(_)));
    }
    let mut claimed_a = Vec::new();
    let mut claimed_b = Vec::new();
    loop {
        let (a, b) = tokio::join!(
            p.a.claim_deliveries(now, 60_000, 7),
            p.b.claim_deliveries(now, 60_000, 7)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        if a.is_empty() && b.is_empty() {
            break;
        }
        claimed_a.extend(a.into_iter().map(|d| d.id));
        claimed_b.extend(b.into_iter().map(|d| d.id));
    }
    let mut all: Vec<i64> = claimed_a.iter().chain(&claimed_b).copied().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a notification was claimed twice");
    assert_eq!(all.len(), 2 * N, "every notification once");

    // Process a "dies" holding its claims: they come back after the lease.
    let first = claimed_a.first().copied().unwrap_or(claimed_b[0]);
    assert!(
        p.b.claim_deliveries(now + 59_000, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let again =
        p.b.claim_deliveries(now + 60_000, 60_000, 100)
            .await
            .unwrap();
    assert_eq!(again.len(), 2 * N);
    let d = again.iter().find(|d| d.id == first).unwrap();
    assert_eq!(d.attempts, 2, "the lost attempt counts");
}

#[tokio::test]
async fn sqlite_two_processes_claim_disjoint_notifications() {
    two_processes_claim_disjoint_notifications(TwoProcesses::sqlite().await).await;
}

#[tokio::test]
async fn postgres_two_processes_claim_disjoint_notifications() {
    two_processes_claim_disjoint_notifications(TwoProcesses::postgres().await).await;
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::ApiApp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::ApiApp::postgres(stringify!($name)).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    webhook_is_signed_and_retried,
    email_headers_and_body,
    unreachable_smtp_is_given_up,
    sns_publishes_to_the_topic,
);
