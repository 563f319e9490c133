//! Dispatch end to end: the cloud's `serve()` (HTTP on a socket, SQLite)
//! against a real Mosquitto with mTLS and the production ACL, and VEN
//! clients (rumqttc, each with its own certificate) that receive commands
//! on `ven/cmd/{venId}` and acknowledge on `ven/ack/{venId}`.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use gridlink_cloud::config::CloudConfig;
use gridlink_cloud::store::dr::DrStore as _;
use gridlink_cloud::store::{AnyStore, Role, Store};
use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Encoding, Timestamp, Topic, VenId, decode, encode,
};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

fn ven(id: &str) -> VenId {
    VenId::new(id).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on a fresh connection; the status and JSON body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    (status, json)
}

/// A running `serve()`.
struct Cloud {
    api: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Cloud {
    async fn start(dir: &Path, pki: &TestPki, broker_port: u16) -> Self {
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let text = format!(
            "database_url = {database:?}\n[http]\nlisten = \"{api}\"\n[mqtt]\nhost = \"127.0.0.1\"\n\
             port = {broker_port}\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\
             client_id = \"cloud-test\"\nkeep_alive_s = 5\n",
            database = format!("sqlite://{}", dir.join("cloud.db").display()),
            ca = pki.ca_cert().display().to_string(),
            cert = pki.backend().cert.display().to_string(),
            key = pki.backend().key.display().to_string(),
        );
        let config = CloudConfig::parse(&text, "test cloud.toml").unwrap();
        let settings = config.ingest_settings().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gridlink_cloud::server::serve(
            config,
            settings,
            async move {
                let _ = stopped.await;
            },
        ));
        // Ready when the API answers.
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(api).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the API never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            api,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("serve stops")
            .unwrap()
            .unwrap();
    }
}

/// A simulated VEN: receives its commands and acknowledges each
/// `received` (when `acks` is on).
struct Ven {
    commands: mpsc::UnboundedReceiver<Command>,
    client: AsyncClient,
    task: JoinHandle<()>,
}

impl Ven {
    fn connect(broker: &Mosquitto, pki: &TestPki, id: &str, acks: bool) -> Self {
        let mut options = broker.client_options(pki, id);
        options.set_clean_session(false);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, commands) = mpsc::unbounded_channel();
        let subscriber = client.clone();
        let ven_id = ven(id);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let topic = Topic::cmd(ven_id.clone()).to_string();
                        subscriber.try_subscribe(topic, QoS::AtLeastOnce).unwrap();
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let command: Command = decode(&publish.payload).unwrap();
                        if acks {
                            let ack = CommandAck {
                                ven_id: ven_id.clone(),
                                command_id: command.command_id,
                                event_id: command.action.event_id().clone(),
                                state: match command.action {
                                    CommandAction::Event(_) => AckState::Received,
                                    CommandAction::Cancel { .. } => AckState::Cancelled,
                                },
                                at: Timestamp::from_unix_ms(now_ms()).unwrap(),
                                reason: None,
                            };
                            subscriber
                                .try_publish(
                                    Topic::ack(ven_id.clone()).to_string(),
                                    QoS::AtLeastOnce,
                                    false,
                                    encode(&ack, Encoding::Postcard).unwrap(),
                                )
                                .unwrap();
                        }
                        if tx.send(command).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self {
            commands,
            client,
            task,
        }
    }

    async fn next(&mut self) -> Command {
        tokio::time::timeout(WAIT, self.commands.recv())
            .await
            .expect("a command arrives")
            .unwrap()
    }

    async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.task.abort();
    }
}

impl Drop for Ven {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

struct Rig {
    dir: tempfile::TempDir,
    pki: TestPki,
    broker: Mosquitto,
    token: String,
}

impl Rig {
    /// Broker, PKI for `vens`, a migrated database with the VENs
    /// registered (group `north` for all) and an operator token.
    async fn start(vens: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<VenId> = vens.iter().map(|v| ven(v)).collect();
        let pki = TestPki::generate(dir.path(), &ids).unwrap();
        let broker = Mosquitto::spawn(&pki).await;
        let store = AnyStore::connect(&format!(
            "sqlite://{}",
            dir.path().join("cloud.db").display()
        ))
        .await
        .unwrap();
        store.migrate().await.unwrap();
        for id in &ids {
            store.set_ven_groups(id, &["north".into()]).await.unwrap();
        }
        let token = gridlink_cloud::api::auth::issue_token().unwrap();
        store
            .create_token("operator", Role::Operator, &token.hash)
            .await
            .unwrap();
        Self {
            dir,
            pki,
            broker,
            token: token.secret,
        }
    }

    async fn cloud(&self) -> Cloud {
        Cloud::start(self.dir.path(), &self.pki, self.broker.port()).await
    }

    async fn store(&self) -> AnyStore {
        AnyStore::connect(&format!(
            "sqlite://{}",
            self.dir.path().join("cloud.db").display()
        ))
        .await
        .unwrap()
    }

    async fn create_event(&self, cloud: &Cloud, targets: Value) -> String {
        let (status, program) = http(
            cloud.api,
            "POST",
            "/openadr3/3.1.0/programs",
            &self.token,
            Some(&json!({ "programName": format!("p-{}", now_ms()) })),
        )
        .await;
        assert_eq!(status, 201, "{program}");
        let event = json!({
            "programID": program["id"],
            "targets": targets,
            "intervalPeriod": { "start": "2099-01-01T00:00:00Z", "duration": "PT1H" },
            "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [2] }] }]
        });
        let (status, event) = http(
            cloud.api,
            "POST",
            "/openadr3/3.1.0/events",
            &self.token,
            Some(&event),
        )
        .await;
        assert_eq!(status, 201, "{event}");
        event["id"].as_str().unwrap().to_owned()
    }
}

/// The value of a `/metrics` line.
async fn metric(cloud: &Cloud, line_start: &str) -> Option<u64> {
    let mut stream = tokio::net::TcpStream::connect(cloud.api).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

async fn wait_for_status(rig: &Rig, cloud: &Cloud, event: &str, want: Value) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, json) = http(
            cloud.api,
            "GET",
            &format!("/api/v1/events/{event}/status"),
            &rig.token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{json}");
        if json["states"] == want {
            return json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "states never became {want}: {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
#[tokio::test]
async fn an_event_reaches_three_vens_their_acks_are_shown_and_delete_cancels() {
    let rig = Rig::start(&["ven-1", "ven-2", "ven-3", "ven-x"]).await;
    let mut vens: Vec<Ven> = ["ven-1", "ven-2", "ven-3"]
        .iter()
        .map(|id| Ven::connect(&rig.broker, &rig.pki, id, true))
        .collect();
    let mut bystander = Ven::connect(&rig.broker, &rig.pki, "ven-x", true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cloud = rig.cloud().await;

    let event = rig
        .create_event(&cloud, json!(["ven-1", "ven-2", "ven-3"]))
        .await;
    let mut ids = Vec::new();
    for (i, v) in vens.iter_mut().enumerate() {
        let command = v.next().await;
        assert_eq!(command.ven_id, ven(&format!("ven-{}", i + 1)));
        match &command.action {
            CommandAction::Event(e) => {
                assert_eq!(e.id.as_str(), event);
                assert_eq!(e.targets, ["ven-1", "ven-2", "ven-3"]);
            }
            CommandAction::Cancel { .. } => panic!("expected the event"),
        }
        ids.push(command.command_id);
    }
    let status = wait_for_status(&rig, &cloud, &event, json!({ "received": 3 })).await;
    for v in status["vens"].as_array().unwrap() {
        assert_eq!(v["history"].as_array().unwrap().len(), 1);
        assert_eq!(v["history"][0]["command_id"], 1);
    }

    let (code, _) = http(
        cloud.api,
        "DELETE",
        &format!("/openadr3/3.1.0/events/{event}"),
        &rig.token,
        None,
    )
    .await;
    assert_eq!(code, 200);
    for v in &mut vens {
        let command = v.next().await;
        assert!(
            matches!(&command.action, CommandAction::Cancel { event_id } if event_id.as_str() == event),
            "{command:?}"
        );
        assert_eq!(command.command_id, 2, "strictly increasing per VEN");
    }
    // The cancelled acknowledgements are stored although the event is gone.
    let store = rig.store().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let acks = store
            .event_acks(&gridlink_protocol::ObjectId::new(event.clone()).unwrap())
            .await
            .unwrap();
        if acks
            .iter()
            .filter(|a| a.state == AckState::Cancelled)
            .count()
            == 3
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cancel acks: {acks:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every command was acknowledged by the broker and marked sent.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !store.unsent_commands(10).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "commands left unsent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bystander.commands.recv())
            .await
            .is_err(),
        "a VEN not targeted gets nothing"
    );

    // Bad acknowledgements are dropped, counted and acknowledged: one for
    // an event never sent to the VEN, one naming another VEN, one garbled.
    let ack = |from: &str| CommandAck {
        ven_id: ven(from),
        command_id: 1,
        event_id: gridlink_protocol::ObjectId::new(event.clone()).unwrap(),
        state: AckState::Completed,
        at: Timestamp::from_unix_ms(now_ms()).unwrap(),
        reason: None,
    };
    let topic = Topic::ack(ven("ven-x")).to_string();
    for payload in [
        encode(&ack("ven-x"), Encoding::Postcard).unwrap(),
        encode(&ack("ven-1"), Encoding::Postcard).unwrap(),
        b"garbage".to_vec(),
    ] {
        bystander
            .client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    for reason in ["unknown_event", "ven_mismatch", "malformed"] {
        let line = format!("gridlink_ingest_dropped_total{{reason=\"{reason}\"}}");
        let deadline = tokio::time::Instant::now() + WAIT;
        while metric(&cloud, &line).await != Some(1) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{reason} not counted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let acks = store
        .event_acks(&gridlink_protocol::ObjectId::new(event.clone()).unwrap())
        .await
        .unwrap();
    assert!(
        acks.iter().all(|a| a.state != AckState::Completed),
        "no bad acknowledgement stored: {acks:?}"
    );
    cloud.stop().await;
}

#[tokio::test]
async fn a_ven_offline_at_creation_gets_its_command_on_reconnect() {
    let rig = Rig::start(&["ven-1"]).await;
    // The VEN's persistent session exists (it subscribed once), then it goes away.
    let first = Ven::connect(&rig.broker, &rig.pki, "ven-1", false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.disconnect().await;
    let cloud = rig.cloud().await;
    let event = rig.create_event(&cloud, json!(["north"])).await;
    // Published and acknowledged by the broker while the VEN is away.
    let store = rig.store().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !store.unsent_commands(10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut back = Ven::connect(&rig.broker, &rig.pki, "ven-1", true);
    let command = back.next().await;
    assert_eq!(command.action.event_id().as_str(), event);
    wait_for_status(&rig, &cloud, &event, json!({ "received": 1 })).await;
    cloud.stop().await;
}

#[tokio::test]
async fn commands_recorded_while_the_broker_is_down_are_delivered_after_a_restart() {
    let mut rig = Rig::start(&["ven-1", "ven-2"]).await;
    let mut vens: Vec<Ven> = ["ven-1", "ven-2"]
        .iter()
        .map(|id| Ven::connect(&rig.broker, &rig.pki, id, true))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cloud = rig.cloud().await;
    rig.broker.stop();
    // The API still takes the event: it and its commands are committed.
    let event = rig.create_event(&cloud, json!(["north"])).await;
    let store = rig.store().await;
    assert_eq!(store.unsent_commands(10).await.unwrap().len(), 2);
    // The cloud stops before it could publish anything.
    cloud.stop().await;
    rig.broker.start().await;
    let cloud = rig.cloud().await;
    for v in &mut vens {
        let command = v.next().await;
        assert_eq!(command.action.event_id().as_str(), event);
    }
    wait_for_status(&rig, &cloud, &event, json!({ "received": 2 })).await;
    cloud.stop().await;
}

#[tokio::test]
async fn load_snapshots_a_ven_publishes_are_served() {
    let rig = Rig::start(&["ven-1"]).await;
    let cloud = rig.cloud().await;
    let v = Ven::connect(&rig.broker, &rig.pki, "ven-1", false);
    let at = now_ms();
    let snapshot = gridlink_protocol::LoadSnapshot {
        ven_id: ven("ven-1"),
        at: Timestamp::from_unix_ms(at).unwrap(),
        loads: vec![
            gridlink_protocol::LoadState {
                name: "boiler".into(),
                on: false,
                power_w: Some(0.0),
                setpoint: None,
                controllable: true,
                last_change: Some(Timestamp::from_unix_ms(at - 1000).unwrap()),
                cause: gridlink_protocol::LoadChangeCause::Event {
                    event_id: gridlink_protocol::ObjectId::new("event-7").unwrap(),
                },
            },
            gridlink_protocol::LoadState {
                name: "lights".into(),
                on: true,
                power_w: Some(350.5),
                setpoint: None,
                controllable: false,
                last_change: None,
                cause: gridlink_protocol::LoadChangeCause::Startup,
            },
        ],
    };
    v.client
        .publish(
            Topic::loads(ven("ven-1")).to_string(),
            QoS::AtLeastOnce,
            false,
            encode(&snapshot, Encoding::Postcard).unwrap(),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let loads = loop {
        let (status, json) = http(
            cloud.api,
            "GET",
            "/api/v1/vens/ven-1/loads",
            &rig.token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{json}");
        if json["loads"].as_array().is_some_and(|l| l.len() == 2) {
            break json["loads"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "loads never stored: {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        loads,
        json!([
            { "name": "boiler", "on": false, "power_w": 0.0, "setpoint": null, "controllable": true,
              "last_change_ms": at - 1000, "cause": { "event": { "event_id": "event-7" } }, "snapshot_ms": at },
            { "name": "lights", "on": true, "power_w": 350.5, "setpoint": null, "controllable": false,
              "last_change_ms": null, "cause": "startup", "snapshot_ms": at }
        ])
    );
    cloud.stop().await;
}
