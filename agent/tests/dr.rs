//! Demand response end to end: the agent binary against the simulator over
//! Modbus TCP and Mosquitto with mTLS and the per-VEN ACL, with a test
//! "cloud" (identity `backend`) that publishes `Command`s on
//! `ven/cmd/ven-1` and collects the `CommandAck`s on `ven/ack/+`.
//!
//! Loads are read from the simulator directly (its coils and meter), so
//! what is checked is what the site did, not what the agent says.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridlink_protocol::openadr::{
    Event, Interval, IntervalPeriod, ObjectId, PayloadType, PayloadValue, ValuesMap,
};
use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Encoding, IsoDuration, LoadSnapshot,
    MAX_PAYLOAD_BYTES, Timestamp, VenId, decode, encode,
};
use gridlink_provision::pki::TestPki;
use gridlink_sim::{Site, SiteConfig, serve_tcp};
use gridlink_testkit::free_port;
use gridlink_testkit::mosquitto::Mosquitto;
use rumqttc::{AsyncClient, Event as MqttEvent, Packet, QoS};
use tempfile::TempDir;

mod common;
use common::Agent;
use tokio::task::JoinHandle;

const VEN: &str = "ven-1";
const CONTROL_MS: u64 = 500;
const POLL_MS: u64 = 200;

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// What the cloud has received.
#[derive(Default)]
struct Inbox {
    acks: Vec<CommandAck>,
    snapshots: Vec<LoadSnapshot>,
}

/// The test cloud: publishes commands, collects acknowledgements and load
/// snapshots, on a persistent session that survives a broker restart.
struct Cloud {
    client: AsyncClient,
    inbox: Arc<Mutex<Inbox>>,
    task: JoinHandle<()>,
}

impl Cloud {
    async fn start(broker: &Mosquitto, pki: &TestPki) -> Self {
        let mut options = broker.client_options(pki, "backend");
        options.set_clean_session(false);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let sink = Arc::clone(&inbox);
        let subscriber = client.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        for topic in ["ven/ack/+", "ven/loads/+"] {
                            subscriber.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let mut inbox = sink.lock().unwrap();
                        if p.topic.starts_with("ven/ack/") {
                            inbox.acks.push(decode(&p.payload).expect("acks decode"));
                        } else {
                            inbox
                                .snapshots
                                .push(decode(&p.payload).expect("snapshots decode"));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("cloud subscribed in time")
            .unwrap();
        Self {
            client,
            inbox,
            task,
        }
    }

    async fn send(&self, command: &Command) {
        self.send_raw(encode(command, Encoding::Postcard).unwrap())
            .await;
    }

    async fn send_raw(&self, payload: Vec<u8>) {
        self.client
            .publish(format!("ven/cmd/{VEN}"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// The states acknowledged for `event`, in arrival order, duplicates removed.
    fn states(&self, event: &str) -> Vec<AckState> {
        let mut out: Vec<AckState> = Vec::new();
        for ack in self
            .inbox
            .lock()
            .unwrap()
            .acks
            .iter()
            .filter(|a| a.event_id.as_str() == event)
        {
            if !out.contains(&ack.state) {
                out.push(ack.state);
            }
        }
        out
    }

    fn ack(&self, event: &str, state: AckState) -> Option<CommandAck> {
        self.inbox
            .lock()
            .unwrap()
            .acks
            .iter()
            .find(|a| a.event_id.as_str() == event && a.state == state)
            .cloned()
    }

    async fn wait_ack(&self, event: &str, state: AckState, within: Duration) -> CommandAck {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(ack) = self.ack(event, state) {
                return ack;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {} ack for {event} within {within:?}; got {:?}",
                state.name(),
                self.states(event)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_snapshot(&self, within: Duration) -> LoadSnapshot {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(s) = self.inbox.lock().unwrap().snapshots.last() {
                return s.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no load snapshot");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One configured load: its name and where it is on the simulator.
#[derive(Clone)]
struct LoadDef {
    name: String,
    coil: u16,
    /// The simulator's load number (1-based), if it is one of its loads.
    sim: Option<u16>,
    priority: u32,
    simple_level: u8,
    never_switch: bool,
    /// Also write its setpoint register (holding `k - 1`).
    setpoint: bool,
}

impl LoadDef {
    fn sim(k: u16, simple_level: u8) -> Self {
        Self {
            name: format!("load{k}"),
            coil: k - 1,
            sim: Some(k),
            priority: u32::from(k),
            simple_level,
            never_switch: false,
            setpoint: false,
        }
    }
}

/// The simulator, the broker, the PKI, the cloud and the agent's files.
struct Rig {
    dir: TempDir,
    pki: TestPki,
    broker: Mosquitto,
    site: Site,
    sim: JoinHandle<std::io::Result<()>>,
    modbus_port: u16,
    health_port: u16,
    cloud: Cloud,
}

impl Rig {
    async fn start(sim_loads: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        let pki = TestPki::generate(&dir.path().join("pki"), &[VenId::new(VEN).unwrap()]).unwrap();
        let broker = Mosquitto::spawn(&pki).await;
        let site = Site::new(SiteConfig {
            meters: 1,
            loads: sim_loads,
            seed: 5,
            ..SiteConfig::default()
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let modbus_port = listener.local_addr().unwrap().port();
        let sim = tokio::spawn(serve_tcp(site.clone(), listener));
        let cloud = Cloud::start(&broker, &pki).await;
        Self {
            dir,
            pki,
            broker,
            site,
            sim,
            modbus_port,
            health_port: free_port(),
            cloud,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    fn write_config(&self, loads: &[LoadDef]) {
        let ven = self.pki.identity(VEN).unwrap();
        let mut text = format!(
            r#"ven_id = "{VEN}"

[mqtt]
host = "127.0.0.1"
port = {port}
ca = "{ca}"
cert = "{cert}"
key = "{key}"
reconnect_backoff_min_ms = 100
reconnect_backoff_max_ms = 500

[buffer]
path = "{buffer}"
seal_interval_ms = 500

[health]
listen = "127.0.0.1:{health}"

[dr]
site_meter = "main"
control_interval_ms = {CONTROL_MS}
write_timeout_ms = 300
write_retries = 1
snapshot_interval_s = 60

[[devices]]
name = "main"
controller = "tcp://127.0.0.1:{modbus}"
unit_id = 1
poll_interval_ms = {POLL_MS}
timeout_ms = 500

  [[devices.points]]
  register = "input"
  address = 52
  type = "f32"
  quantity = "active_power"
"#,
            port = self.broker.port(),
            ca = self.pki.ca_cert().display(),
            cert = ven.cert.display(),
            key = ven.key.display(),
            buffer = self.dir.path().join("buffer").display(),
            health = self.health_port,
            modbus = self.modbus_port,
        );
        for load in loads {
            let rated = load
                .sim
                .and_then(|k| self.site.load(k))
                .map_or(1000.0, |l| f64::from(l.rated_power_w));
            write!(
                text,
                "\n[[loads]]\nname = \"{}\"\ncontroller = \"tcp://127.0.0.1:{}\"\nunit_id = 1\ncoil = {}\n\
                 rated_power_w = {rated}\npriority = {}\nsimple_level = {}\nnever_switch = {}\n",
                load.name,
                self.modbus_port,
                load.coil,
                load.priority,
                load.simple_level,
                load.never_switch,
            )
            .unwrap();
            if let (Some(k), true) = (load.sim, load.setpoint) {
                writeln!(text, "setpoint = {{ address = {} }}", k - 1).unwrap();
            }
            if let Some(k) = load.sim {
                writeln!(
                    text,
                    "power = {{ register = \"input\", address = {}, type = \"f32\" }}",
                    0x1000 + 2 * (k - 1)
                )
                .unwrap();
            }
        }
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Starts the agent and waits until it is connected and subscribed
    /// (its first load snapshot reached the cloud).
    async fn spawn_agent(&self) -> Agent {
        let snapshots_before = self.cloud.inbox.lock().unwrap().snapshots.len();
        let agent = self.spawn_agent_nowait();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.cloud.inbox.lock().unwrap().snapshots.len() <= snapshots_before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not connect\n{}",
                agent.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        agent
    }

    fn spawn_agent_nowait(&self) -> Agent {
        Agent::spawn(&self.config_path(), self.dir.path().join("agent.log"))
    }

    /// The relay state of simulator load `k`.
    fn on(&self, k: u16) -> bool {
        self.site.load(k).unwrap().on
    }

    async fn metric(&self, name: &str) -> Option<u64> {
        common::metric(self.health_port, name).await
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.sim.abort();
    }
}

/// An event with one interval of one payload from `start` (ms) for `secs`.
fn event(id: &str, start: i64, secs: u64, payload: PayloadType, value: PayloadValue) -> Event {
    Event {
        id: ObjectId::new(id).unwrap(),
        program_id: ObjectId::new("prog").unwrap(),
        event_name: None,
        priority: None,
        targets: vec![VEN.to_string()],
        payload_descriptors: Vec::new(),
        interval_period: Some(IntervalPeriod {
            start: Some(Timestamp::from_unix_ms(start).unwrap()),
            duration: Some(IsoDuration::from_secs(secs)),
            randomize_start: None,
        }),
        intervals: vec![Interval {
            id: 0,
            interval_period: None,
            payloads: vec![ValuesMap {
                payload_type: payload,
                values: vec![value],
            }],
        }],
    }
}

fn simple(id: &str, start: i64, secs: u64, level: i64) -> Event {
    event(
        id,
        start,
        secs,
        PayloadType::Simple,
        PayloadValue::Integer(level),
    )
}

fn command(command_id: u64, event: Event) -> Command {
    Command {
        ven_id: VenId::new(VEN).unwrap(),
        command_id,
        issued_at: Timestamp::from_unix_ms(now_ms()).unwrap(),
        action: CommandAction::Event(event),
    }
}

/// Sleeps until the wall clock reaches `at_ms`.
async fn sleep_until_ms(at_ms: i64) {
    let wait = at_ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap())).await;
    }
}

/// What the simulator's main meter and loads say now (W).
fn site_power(site: &Site) -> f64 {
    f64::from(site.meter(1).unwrap().total_power_w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_event_sheds_and_restores_with_every_ack() {
    let rig = Rig::start(3).await;
    rig.write_config(&[LoadDef::sim(1, 1), LoadDef::sim(2, 2), LoadDef::sim(3, 3)]);
    let agent = rig.spawn_agent().await;
    let snapshot = rig.cloud.wait_snapshot(Duration::from_secs(5)).await;
    assert_eq!(snapshot.loads.len(), 3);
    assert!(snapshot.loads.iter().all(|l| l.on && l.controllable));

    let start = now_ms() + 2500;
    rig.cloud
        .send(&command(1, simple("evt-a", start, 6, 3)))
        .await;
    rig.cloud
        .wait_ack("evt-a", AckState::Scheduled, Duration::from_secs(5))
        .await;
    assert_eq!(
        rig.cloud.states("evt-a"),
        [AckState::Received, AckState::Scheduled]
    );

    // Just before the start: everything on; the loads' power and the meter.
    sleep_until_ms(start - 300).await;
    assert!((1..=3).all(|k| rig.on(k)));
    let loads_w: f64 = (1..=3)
        .map(|k| f64::from(rig.site.load(k).unwrap().power_w))
        .sum();
    let before = site_power(&rig.site);

    rig.cloud
        .wait_ack("evt-a", AckState::Active, Duration::from_secs(5))
        .await;
    sleep_until_ms(start + 1500).await;
    assert!((1..=3).all(|k| !rig.on(k)), "{}", agent.log_text());
    let during = site_power(&rig.site);
    assert!(
        before - during >= 0.9 * loads_w,
        "meter {before} W -> {during} W, shed loads drew {loads_w} W"
    );

    rig.cloud
        .wait_ack("evt-a", AckState::Completed, Duration::from_secs(10))
        .await;
    sleep_until_ms(start + 6000 + 1500).await;
    assert!((1..=3).all(|k| rig.on(k)), "{}", agent.log_text());
    assert_eq!(
        rig.cloud.states("evt-a"),
        [
            AckState::Received,
            AckState::Scheduled,
            AckState::Active,
            AckState::Completed
        ]
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_while_offline_run_on_reconnect_or_expire() {
    let rig = Rig::start(2).await;
    rig.write_config(&[LoadDef::sim(1, 1), LoadDef::sim(2, 1)]);
    // Once connected, the VEN's persistent session holds its subscription.
    rig.spawn_agent().await.stop().await;

    let t0 = now_ms();
    // Ends while the VEN is offline.
    rig.cloud.send(&command(1, simple("gone", t0, 2, 1))).await;
    // Starts after it is back.
    let start = t0 + 7000;
    rig.cloud
        .send(&command(2, simple("later", start, 4, 1)))
        .await;
    sleep_until_ms(t0 + 3000).await;

    let agent = rig.spawn_agent_nowait();
    let expired = rig
        .cloud
        .wait_ack("gone", AckState::Failed, Duration::from_secs(10))
        .await;
    assert!(
        expired.reason.as_deref().unwrap().starts_with("expired:"),
        "{expired:?}"
    );
    assert_eq!(
        rig.cloud.states("gone"),
        [AckState::Received, AckState::Failed]
    );
    rig.cloud
        .wait_ack("later", AckState::Scheduled, Duration::from_secs(5))
        .await;
    // The expired event touched nothing.
    sleep_until_ms(start - 500).await;
    assert!(rig.on(1) && rig.on(2), "{}", agent.log_text());
    sleep_until_ms(start + 1500).await;
    assert!(!rig.on(1) && !rig.on(2), "{}", agent.log_text());
    rig.cloud
        .wait_ack("later", AckState::Completed, Duration::from_secs(8))
        .await;
    sleep_until_ms(start + 4000 + 1500).await;
    assert!(rig.on(1) && rig.on(2));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_are_restored_on_time_with_the_broker_down() {
    let mut rig = Rig::start(2).await;
    rig.write_config(&[LoadDef::sim(1, 1), LoadDef::sim(2, 1)]);
    let agent = rig.spawn_agent().await;
    let start = now_ms() + 2000;
    rig.cloud
        .send(&command(1, simple("evt-c", start, 5, 1)))
        .await;
    rig.cloud
        .wait_ack("evt-c", AckState::Active, Duration::from_secs(6))
        .await;
    sleep_until_ms(start + 1000).await;
    assert!(!rig.on(1) && !rig.on(2));

    rig.broker.stop();
    // The end passes with no broker: the loads come back on time.
    sleep_until_ms(start + 5000 + 1500).await;
    assert!(rig.on(1) && rig.on(2), "{}", agent.log_text());
    assert!(rig.cloud.ack("evt-c", AckState::Completed).is_none());
    // The completed ack waits in the durable outbox.
    assert!(
        rig.metric("gridlink_dr_outbox")
            .await
            .is_some_and(|n| n >= 1),
        "{:?}",
        rig.metric("gridlink_dr_outbox").await
    );

    rig.broker.start().await;
    rig.cloud
        .wait_ack("evt-c", AckState::Completed, Duration::from_secs(15))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rig.metric("gridlink_dr_outbox").await != Some(0) {
        assert!(tokio::time::Instant::now() < deadline, "outbox not emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_event_resumes_and_ends_it() {
    let rig = Rig::start(2).await;
    rig.write_config(&[LoadDef::sim(1, 1), LoadDef::sim(2, 1)]);
    let agent = rig.spawn_agent().await;
    let start = now_ms() + 2000;
    rig.cloud
        .send(&command(1, simple("evt-d", start, 9, 1)))
        .await;
    rig.cloud
        .wait_ack("evt-d", AckState::Active, Duration::from_secs(6))
        .await;
    sleep_until_ms(start + 1000).await;
    assert!(!rig.on(1) && !rig.on(2));

    agent.kill9();
    // Someone switches a load back on while the agent is dead.
    rig.site.set_load_on(1, true).unwrap();
    let agent = rig.spawn_agent_nowait();
    sleep_until_ms(start + 5000).await;
    assert!(!rig.on(1) && !rig.on(2), "resumed\n{}", agent.log_text());
    rig.cloud
        .wait_ack("evt-d", AckState::Completed, Duration::from_secs(10))
        .await;
    sleep_until_ms(start + 9000 + 1500).await;
    assert!(rig.on(1) && rig.on(2), "{}", agent.log_text());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_capacity_limit_is_held() {
    let rig = Rig::start(2).await;
    rig.write_config(&[LoadDef::sim(1, 1), LoadDef::sim(2, 1)]);
    let agent = rig.spawn_agent().await;
    let import = site_power(&rig.site);
    let p1 = f64::from(rig.site.load(1).unwrap().power_w);
    let p2 = f64::from(rig.site.load(2).unwrap().power_w);
    // Shedding load 1 is not enough; loads 1 and 2 are, with room for noise.
    let limit_w = import - p1 - 0.6 * p2;
    assert!(limit_w > 0.0, "{import} {p1} {p2}");
    let start = now_ms() + 2000;
    let secs = 6;
    rig.cloud
        .send(&command(
            1,
            event(
                "cap",
                start,
                secs,
                PayloadType::ImportCapacityLimit,
                PayloadValue::Number(limit_w / 1000.0),
            ),
        ))
        .await;
    // One control interval after the start (plus a meter poll to see it).
    let from = start + i64::try_from(2 * CONTROL_MS + POLL_MS).unwrap();
    let end = start + i64::try_from(secs * 1000).unwrap();
    sleep_until_ms(from).await;
    let mut samples = 0;
    while now_ms() < end - 200 {
        let w = site_power(&rig.site);
        assert!(
            w <= limit_w,
            "import {w} W above the limit {limit_w} W\n{}",
            agent.log_text()
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(samples > 10);
    assert!(!rig.on(1) && !rig.on(2));
    rig.cloud
        .wait_ack("cap", AckState::Completed, Duration::from_secs(5))
        .await;
    sleep_until_ms(end + 1500).await;
    assert!(rig.on(1) && rig.on(2));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_foreign_commands_are_dropped_and_counted() {
    let rig = Rig::start(1).await;
    rig.write_config(&[LoadDef::sim(1, 1)]);
    let agent = rig.spawn_agent().await;
    rig.cloud.send_raw(b"\x01not a command".to_vec()).await;
    rig.cloud.send_raw(vec![b'{'; MAX_PAYLOAD_BYTES + 64]).await;
    let mut foreign = command(1, simple("foreign", now_ms() + 1000, 2, 1));
    foreign.ven_id = VenId::new("ven-2").unwrap();
    rig.cloud.send(&foreign).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rig.metric("gridlink_dr_commands_rejected_total").await != Some(3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rejected: {:?}\n{}",
            rig.metric("gridlink_dr_commands_rejected_total").await,
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rig.cloud.states("foreign").is_empty());
    // Still working.
    let start = now_ms() + 1000;
    rig.cloud.send(&command(2, simple("ok", start, 2, 1))).await;
    rig.cloud
        .wait_ack("ok", AckState::Completed, Duration::from_secs(10))
        .await;
    assert_eq!(
        rig.metric("gridlink_dr_commands_rejected_total").await,
        Some(3)
    );
    assert!(rig.on(1));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_acks_failed_with_the_reason() {
    let rig = Rig::start(1).await;
    // Coil 40 is past the simulator's last load: it answers IllegalDataAddress.
    let broken = LoadDef {
        name: "broken".into(),
        coil: 40,
        sim: None,
        priority: 1,
        simple_level: 1,
        never_switch: false,
        setpoint: false,
    };
    rig.write_config(&[broken, LoadDef::sim(1, 3)]);
    let agent = rig.spawn_agent().await;
    let start = now_ms() + 1000;
    rig.cloud
        .send(&command(1, simple("evt-g", start, 4, 1)))
        .await;
    let failed = rig
        .cloud
        .wait_ack("evt-g", AckState::Failed, Duration::from_secs(8))
        .await;
    let reason = failed.reason.unwrap();
    assert!(reason.starts_with("load broken: coil 40 write"), "{reason}");
    assert!(reason.contains("IllegalDataAddress"), "{reason}");
    assert!(reason.contains("device error"), "{reason}");
    assert!(
        rig.metric("gridlink_dr_write_failures_total")
            .await
            .is_some_and(|n| n >= 1)
    );
    assert!(rig.on(1));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_switch_load_is_untouched_by_simple_3() {
    let rig = Rig::start(2).await;
    let mut never = LoadDef::sim(2, 1);
    never.never_switch = true;
    rig.write_config(&[LoadDef::sim(1, 1), never]);
    let agent = rig.spawn_agent().await;
    let snapshot = rig.cloud.wait_snapshot(Duration::from_secs(5)).await;
    assert!(!snapshot.loads[1].controllable);
    let start = now_ms() + 1500;
    rig.cloud
        .send(&command(1, simple("evt-h", start, 4, 3)))
        .await;
    rig.cloud
        .wait_ack("evt-h", AckState::Active, Duration::from_secs(5))
        .await;
    sleep_until_ms(start + 1500).await;
    assert!(!rig.on(1));
    assert!(rig.on(2), "never_switch load was switched");
    rig.cloud
        .wait_ack("evt-h", AckState::Completed, Duration::from_secs(8))
        .await;
    assert!(rig.on(2));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisition_feeds_site_power_and_follows_the_poll_override() {
    use std::sync::atomic::Ordering;

    use gridlink_agent::acquisition::{self, Hooks};
    use gridlink_agent::metrics::Metrics;

    let site = Site::new(SiteConfig {
        meters: 1,
        loads: 1,
        seed: 9,
        ..SiteConfig::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sim = tokio::spawn(serve_tcp(site.clone(), listener));
    let config = gridlink_agent::config::parse(
        &format!(
            "ven_id = \"{VEN}\"\n[mqtt]\nhost = \"h\"\n[buffer]\npath = \"b\"\n[dr]\nsite_meter = \"main\"\n\
             [[devices]]\nname = \"main\"\ncontroller = \"tcp://127.0.0.1:{port}\"\nunit_id = 1\npoll_interval_ms = 1000\n\
             [[devices.points]]\nregister = \"input\"\naddress = 52\ntype = \"f32\"\nquantity = \"active_power\"\n"
        ),
        "agent.toml",
    )
    .unwrap();
    let (power_tx, mut power_rx) = tokio::sync::watch::channel(None);
    let (override_tx, override_rx) = tokio::sync::watch::channel(None);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let metrics = Arc::new(Metrics::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(acquisition::run_with(
        Arc::new(config),
        tx,
        Arc::clone(&metrics),
        shutdown,
        Hooks {
            site_power: Some((Arc::from("main"), power_tx)),
            poll_override: Some(override_rx),
        },
    ));

    tokio::time::timeout(Duration::from_secs(5), power_rx.changed())
        .await
        .unwrap()
        .unwrap();
    let (ts, watts) = power_rx.borrow().unwrap();
    assert!((now_ms() - ts).abs() < 5000, "{ts}");
    let truth = site_power(&site);
    assert!(
        (watts - truth).abs() <= 0.1 * truth.abs() + 50.0,
        "fed {watts} W, meter {truth} W"
    );

    let polls_in = |ms: u64| {
        let metrics = Arc::clone(&metrics);
        async move {
            let before = metrics.polls.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            metrics.polls.load(Ordering::Relaxed) - before
        }
    };
    assert!(polls_in(2000).await <= 3);
    override_tx.send(Some(Duration::from_millis(100))).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(polls_in(2000).await >= 10);
    override_tx.send(None).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(polls_in(2000).await <= 3);

    stop.send(true).unwrap();
    task.await.unwrap();
    drain.abort();
    sim.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_opted_out_through_the_shadow_is_left_alone() {
    let rig = Rig::start(2).await;
    rig.write_config(&[LoadDef::sim(1, 1), LoadDef::sim(2, 1)]);
    let agent = rig.spawn_agent().await;
    let delta = serde_json::json!({
        "state": {"loads": {"load1": {"dr_participation": false}}},
        "version": 3,
        "timestamp": now_ms() / 1000,
    });
    rig.cloud
        .client
        .publish(
            format!("$aws/things/{VEN}/shadow/update/delta"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&delta).unwrap(),
        )
        .await
        .unwrap();
    // The delta is applied when the agent logs it; give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = now_ms() + 1000;
    rig.cloud
        .send(&command(1, simple("evt-s", start, 3, 1)))
        .await;
    rig.cloud
        .wait_ack("evt-s", AckState::Active, Duration::from_secs(5))
        .await;
    sleep_until_ms(start + 1500).await;
    assert!(rig.on(1), "opted-out load was shed\n{}", agent.log_text());
    assert!(!rig.on(2));
    rig.cloud
        .wait_ack("evt-s", AckState::Completed, Duration::from_secs(6))
        .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_setpoint_is_written_and_the_previous_one_restored() {
    let rig = Rig::start(2).await;
    let mut dial = LoadDef::sim(1, 1);
    dial.setpoint = true;
    rig.write_config(&[dial, LoadDef::sim(2, 1)]);
    rig.site.set_load_setpoint(1, 80).unwrap();
    let agent = rig.spawn_agent().await;
    let start = now_ms() + 1500;
    rig.cloud
        .send(&command(
            1,
            event(
                "sp",
                start,
                4,
                PayloadType::DispatchSetpoint,
                PayloadValue::Number(40.0),
            ),
        ))
        .await;
    rig.cloud
        .wait_ack("sp", AckState::Active, Duration::from_secs(5))
        .await;
    sleep_until_ms(start + 1500).await;
    assert_eq!(
        rig.site.load(1).unwrap().setpoint_percent,
        40,
        "{}",
        agent.log_text()
    );
    // Neither relay is touched, nor the load without a setpoint register.
    assert!(rig.on(1) && rig.on(2));
    assert_eq!(rig.site.load(2).unwrap().setpoint_percent, 100);
    rig.cloud
        .wait_ack("sp", AckState::Completed, Duration::from_secs(6))
        .await;
    assert_eq!(rig.site.load(1).unwrap().setpoint_percent, 80);
    agent.stop().await;
}
