//! Dispatch latency benchmark: from an event's POST until every target
//! VEN's `received` acknowledgement is stored, for 100 and 1,000 simulated
//! VENs, beside a raw MQTT round trip measured in the same run. Prints a
//! markdown table; asserts nothing about speed.
//!
//! ```text
//! cargo bench -p gridlink-cloud --bench dispatch
//! GRIDLINK_BENCH_VENS=100 cargo bench -p gridlink-cloud --bench dispatch   # one size only
//! GRIDLINK_BENCH_DB=postgres cargo bench -p gridlink-cloud --bench dispatch  # PostgreSQL
//! ```
//!
//! * A real Mosquitto with mTLS and the production ACL (gridlink-testkit);
//!   one certificate per VEN from one test CA.
//! * Each simulated VEN is a rumqttc client on its own mTLS connection and
//!   persistent session, subscribed to `ven/cmd/{venId}`; for every command
//!   it publishes a `received` `CommandAck` on `ven/ack/{venId}` at once.
//! * Dispatch: the cloud's `serve()` in this process (SQLite with the
//!   store's defaults: WAL, `synchronous = FULL`; or, with
//!   `GRIDLINK_BENCH_DB=postgres`, a throwaway PostgreSQL cluster from
//!   gridlink-testkit), an operator token, one
//!   `POST /openadr3/3.1.0/events` over HTTP targeting a group with every
//!   VEN. A VEN's latency is from just before the POST until its
//!   acknowledgement is visible in the store (polled every 5 ms through a
//!   second connection, so figures include up to ~5 ms of polling).
//!   [`RUNS`] events per size, pooled, after one warm-up event that is
//!   printed but not counted.
//! * Baseline: the same VEN clients, no cloud: a client with the backend
//!   identity publishes one command to every `ven/cmd/{venId}` at once and
//!   takes each VEN's reply from `ven/ack/+`; a VEN's latency is from just
//!   before the first publish until its reply arrives.
//! * OpenADR notification fan-out, same VENs and cloud: each VEN is also an
//!   OpenADR VEN client (a `ven` token named by its id, whose `ven` object
//!   the VTN keeps for every gridlink VEN) with a webhook subscription to
//!   events (a local HTTP receiver, `/hook/{venId}`, echo challenge
//!   answered), and its MQTT connection subscribes to its own
//!   `openadr3/vens/{venId}/#`. Per event (targeted at the group), each
//!   VEN's time from just before the POST until its webhook POST arrives,
//!   and until its MQTT notification arrives. The cloud runs with
//!   `[openadr.notify] allow_http`, `allow_private` (a local receiver).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use gridlink_cloud::config::CloudConfig;
use gridlink_cloud::store::dr::DrStore as _;
use gridlink_cloud::store::{AnyStore, Role, Store};
use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Encoding, ObjectId, Timestamp, Topic, VenId,
    decode, encode,
};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::postgres::PostgresCluster;
use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeFilter};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

/// Events (and baseline rounds) per size.
const RUNS: usize = 3;
/// Longest one run may take.
const RUN_TIMEOUT: Duration = Duration::from_mins(2);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sizes: Vec<usize> = match std::env::var("GRIDLINK_BENCH_VENS") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse().expect("GRIDLINK_BENCH_VENS: numbers"))
            .collect(),
        Err(_) => vec![100, 1000],
    };
    let mut rows = Vec::new();
    for n in sizes {
        rows.push(runtime.block_on(measure(n)));
    }
    println!(
        "\n| VENs | raw MQTT round trip p50 / p99 / max | dispatch POST -> `received` stored p50 / p99 / max | POST answered (median) | OpenADR webhook fan-out p50 / p99 / max | OpenADR MQTT fan-out p50 / p99 / max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:.1} / {:.1} / {:.1} ms",
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        ms(*samples.last().unwrap_or(&Duration::ZERO))
    )
}

async fn measure(n: usize) -> String {
    eprintln!("== {n} VENs");
    let dir = tempfile::tempdir().expect("temporary directory");
    let ids: Vec<VenId> = (0..n)
        .map(|i| VenId::new(format!("bench-{i:04}")).expect("VEN id"))
        .collect();
    let started = Instant::now();
    let pki = TestPki::generate(dir.path(), &ids).expect("test PKI");
    eprintln!("certificates for {n} VENs: {:?}", started.elapsed());
    let broker = Mosquitto::spawn(&pki).await;

    let started = Instant::now();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    let (notes_tx, mut notes) = mpsc::unbounded_channel::<(VenId, Instant)>();
    let mut vens = Vec::with_capacity(n);
    for id in &ids {
        vens.push(spawn_ven(
            &broker,
            &pki,
            id,
            ready_tx.clone(),
            notes_tx.clone(),
        ));
    }
    for _ in 0..n {
        ready.recv().await.expect("VEN subscribed");
    }
    eprintln!("{n} VENs connected and subscribed: {:?}", started.elapsed());

    // Baseline: raw MQTT, no cloud.
    let mut baseline = Vec::new();
    for run in 0..RUNS {
        baseline.extend(raw_round_trip(&broker, &pki, &ids, run).await);
    }

    // Dispatch through the cloud.
    let postgres = match std::env::var("GRIDLINK_BENCH_DB").as_deref() {
        Ok("postgres") => Some(PostgresCluster::start().await),
        _ => None,
    };
    let url = match &postgres {
        Some(cluster) => cluster.create_database("dispatch_bench").await,
        None => format!("sqlite://{}", dir.path().join("cloud.db").display()),
    };
    let store = AnyStore::connect(&url).await.expect("SQLite");
    store.migrate().await.expect("migrate");
    for id in &ids {
        store
            .set_ven_groups(id, &["bench".to_owned()])
            .await
            .expect("register VEN");
    }
    let token = gridlink_cloud::api::auth::issue_token().expect("token");
    store
        .create_token("bench", Role::Operator, &token.hash)
        .await
        .expect("store token");
    let (api, stop, cloud) = start_cloud(&url, &pki, broker.port()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, program) = http(
        api,
        "POST",
        "/openadr3/3.1.0/programs",
        &token.secret,
        Some(&json!({ "programName": "bench" })),
    )
    .await;
    let mut dispatch = Vec::new();
    let mut answered = Vec::new();
    // Run 0 warms up (first event after start: cold statement caches);
    // it is printed, not counted.
    for run in 0..=RUNS {
        let (latencies, post) = dispatch_run(&store, api, &token.secret, &program, n, run).await;
        if run > 0 {
            dispatch.extend(latencies);
            answered.push(post);
        }
    }
    answered.sort();
    let (webhook, mqtt) =
        notify_fan_out(&store, api, &token.secret, &program, &ids, &mut notes).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), cloud).await;
    for ven in vens {
        ven.abort();
    }
    format!(
        "| {n} | {} | {} | {:.1} ms | {} | {} |",
        summary(baseline),
        summary(dispatch),
        answered[answered.len() / 2].as_secs_f64() * 1000.0,
        summary(webhook),
        summary(mqtt)
    )
}

/// A simulated VEN: acknowledges every command as `received` at once.
fn spawn_ven(
    broker: &Mosquitto,
    pki: &TestPki,
    id: &VenId,
    ready: mpsc::UnboundedSender<()>,
    notes: mpsc::UnboundedSender<(VenId, Instant)>,
) -> tokio::task::JoinHandle<()> {
    let mut options = broker.client_options(pki, id.as_str());
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_mins(1));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let id = id.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // Commands, and the VEN's OpenADR notifications.
                    let _ = client.try_subscribe_many([
                        SubscribeFilter::new(Topic::cmd(id.clone()).to_string(), QoS::AtLeastOnce),
                        SubscribeFilter::new(format!("openadr3/vens/{id}/#"), QoS::AtLeastOnce),
                    ]);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready.send(());
                }
                Ok(Event::Incoming(Packet::Publish(publish)))
                    if publish.topic.starts_with("openadr3/") =>
                {
                    let _ = notes.send((id.clone(), Instant::now()));
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let Ok(command) = decode::<Command>(&publish.payload) else {
                        continue;
                    };
                    let ack = CommandAck {
                        ven_id: id.clone(),
                        command_id: command.command_id,
                        event_id: command.action.event_id().clone(),
                        state: AckState::Received,
                        at: Timestamp::from_unix_ms(now_ms()).expect("now"),
                        reason: None,
                    };
                    let payload = encode(&ack, Encoding::Postcard).expect("encode ack");
                    let _ = client.try_publish(
                        Topic::ack(id.clone()).to_string(),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    );
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// One raw round: the backend identity publishes a command to every VEN
/// and waits for every reply on `ven/ack/+`.
async fn raw_round_trip(
    broker: &Mosquitto,
    pki: &TestPki,
    ids: &[VenId],
    run: usize,
) -> Vec<Duration> {
    let mut options = broker.client_options(pki, "backend");
    options.set_client_id(format!("bench-baseline-{run}"));
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, ids.len() + 64);
    let (tx, mut rx) = mpsc::unbounded_channel::<(VenId, Instant)>();
    let (subscribed_tx, subscribed) = oneshot::channel::<()>();
    let poller = tokio::spawn({
        let client = client.clone();
        async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe("ven/ack/+", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = subscribed_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(ack) = decode::<CommandAck>(&p.payload) {
                            let _ = tx.send((ack.ven_id, Instant::now()));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    });
    subscribed.await.expect("baseline subscribed");
    let event_id = ObjectId::new(format!("baseline-{run}")).expect("id");
    let payloads: Vec<(String, Vec<u8>)> = ids
        .iter()
        .map(|id| {
            let command = Command {
                ven_id: id.clone(),
                command_id: 1_000_000 + run as u64,
                issued_at: Timestamp::from_unix_ms(now_ms()).expect("now"),
                action: CommandAction::Cancel {
                    event_id: event_id.clone(),
                },
            };
            (
                Topic::cmd(id.clone()).to_string(),
                encode(&command, Encoding::Postcard).expect("encode"),
            )
        })
        .collect();
    let start = Instant::now();
    for (topic, payload) in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }
    let mut seen: HashMap<VenId, Duration> = HashMap::new();
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while seen.len() < ids.len() {
        let Ok(Some((ven, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!("baseline: {} of {} replies", seen.len(), ids.len());
        };
        seen.entry(ven).or_insert(at - start);
    }
    let _ = client.disconnect().await;
    poller.abort();
    seen.into_values().collect()
}

/// One event to every VEN; each VEN's time until its ack is stored, and
/// how long the POST took to answer.
async fn dispatch_run(
    store: &AnyStore,
    api: SocketAddr,
    token: &str,
    program: &Value,
    n: usize,
    run: usize,
) -> (Vec<Duration>, Duration) {
    let body = json!({
        "programID": program["id"],
        "eventName": format!("bench {run}"),
        "targets": ["bench"],
        "intervalPeriod": { "start": "2099-01-01T00:00:00Z", "duration": "PT1H" },
        "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [1] }] }]
    });
    let start = Instant::now();
    let (status, event) = http(api, "POST", "/openadr3/3.1.0/events", token, Some(&body)).await;
    let post = start.elapsed();
    assert_eq!(status, 201, "{event}");
    let id = ObjectId::new(event["id"].as_str().expect("event id")).expect("id");
    let mut seen: HashMap<VenId, Duration> = HashMap::new();
    let deadline = Instant::now() + RUN_TIMEOUT;
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "dispatch: {} of {n} acks",
            seen.len()
        );
        let acks = store.event_acks(&id).await.expect("acks");
        let now = start.elapsed();
        for ack in acks {
            seen.entry(ack.ven_id).or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("run {run}: all {n} acks stored after {:?}", start.elapsed());
    (seen.into_values().collect(), post)
}

/// A local webhook receiver: answers the echo challenge on
/// `GET /hook/{venId}` and forwards each `POST /hook/{venId}`.
async fn webhook_receiver() -> (SocketAddr, mpsc::UnboundedReceiver<(String, Instant)>) {
    use axum::extract::{Path, Query, State};
    type Hooks = mpsc::UnboundedSender<(String, Instant)>;
    async fn echo(Query(query): Query<HashMap<String, String>>) -> String {
        query.get("echo").cloned().unwrap_or_default()
    }
    async fn notified(State(tx): State<Hooks>, Path(ven): Path<String>) -> &'static str {
        let _ = tx.send((ven, Instant::now()));
        ""
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hook/{ven}", axum::routing::get(echo).post(notified))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// Subscribes every VEN by webhook, then sends [`RUNS`] events (after a
/// warm-up) to the group: each VEN's time until its webhook and its MQTT
/// notification arrive.
async fn notify_fan_out(
    store: &AnyStore,
    api: SocketAddr,
    token: &str,
    program: &Value,
    ids: &[VenId],
    notes: &mut mpsc::UnboundedReceiver<(VenId, Instant)>,
) -> (Vec<Duration>, Vec<Duration>) {
    let (receiver, mut hooks) = webhook_receiver().await;
    let started = Instant::now();
    for id in ids {
        let ven_token = gridlink_cloud::api::auth::issue_token().expect("token");
        store
            .create_token(id.as_str(), Role::Ven, &ven_token.hash)
            .await
            .expect("store token");
        let body = json!({
            "clientName": id.as_str(), "programID": program["id"],
            "objectOperations": [{ "objects": ["EVENT"], "operations": ["CREATE"],
                "callbackUrl": format!("http://{receiver}/hook/{id}") }]
        });
        let (status, answer) = http(
            api,
            "POST",
            "/openadr3/3.1.0/subscriptions",
            &ven_token.secret,
            Some(&body),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    eprintln!(
        "{} webhook subscriptions: {:?}",
        ids.len(),
        started.elapsed()
    );
    let (mut webhook, mut mqtt) = (Vec::new(), Vec::new());
    for run in 0..=RUNS {
        tokio::time::sleep(Duration::from_millis(500)).await;
        while notes.try_recv().is_ok() {}
        while hooks.try_recv().is_ok() {}
        let body = json!({
            "programID": program["id"], "eventName": format!("fan-out {run}"), "targets": ["bench"],
            "intervalPeriod": { "start": "2099-01-01T00:00:00Z", "duration": "PT1H" },
            "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [1] }] }]
        });
        let start = Instant::now();
        let (status, event) = http(api, "POST", "/openadr3/3.1.0/events", token, Some(&body)).await;
        assert_eq!(status, 201, "{event}");
        let mut by_hook: HashMap<String, Duration> = HashMap::new();
        let mut by_mqtt: HashMap<VenId, Duration> = HashMap::new();
        let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
        while by_hook.len() < ids.len() || by_mqtt.len() < ids.len() {
            tokio::select! {
                Some((ven, at)) = hooks.recv() => { by_hook.entry(ven).or_insert(at - start); }
                Some((ven, at)) = notes.recv() => { by_mqtt.entry(ven).or_insert(at - start); }
                () = tokio::time::sleep_until(deadline) => panic!(
                    "fan-out: {} webhooks and {} MQTT notifications of {}",
                    by_hook.len(), by_mqtt.len(), ids.len()
                ),
            }
        }
        eprintln!(
            "fan-out run {run}: every VEN notified after {:?}",
            start.elapsed()
        );
        if run > 0 {
            webhook.extend(by_hook.into_values());
            mqtt.extend(by_mqtt.into_values());
        }
    }
    (webhook, mqtt)
}

async fn start_cloud(
    database_url: &str,
    pki: &TestPki,
    broker_port: u16,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let text = format!(
        "database_url = {database:?}\n[http]\nlisten = \"{api}\"\n[mqtt]\nhost = \"127.0.0.1\"\n\
         port = {broker_port}\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\nclient_id = \"bench-cloud\"\n\
         [openadr.notify]\nallow_http = true\nallow_private = true\n",
        database = database_url,
        ca = pki.ca_cert().display().to_string(),
        cert = pki.backend().cert.display().to_string(),
        key = pki.backend().key.display().to_string(),
    );
    let config = CloudConfig::parse(&text, "bench cloud.toml").expect("config");
    let settings = config.ingest_settings().expect("settings");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gridlink_cloud::server::serve(
        config,
        settings,
        async move {
            let _ = stopped.await;
        },
    ));
    while tokio::net::TcpStream::connect(api).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (api, stop, task)
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
