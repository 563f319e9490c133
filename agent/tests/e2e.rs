//! The agent binary end to end against real parts: the simulator over
//! Modbus TCP, Mosquitto with mTLS and the per-VEN ACL, and a backend
//! subscriber that dedups by `(ven_id, batch_seq)` as the cloud does.
//!
//! Each test counts readings from the meter to the subscriber: none lost,
//! none doubled, values as the simulator's registers hold them.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridlink_protocol::telemetry::quantize;
use gridlink_protocol::{Phase, Quantity, TelemetryBatch, VenId, decode};
use gridlink_provision::pki::TestPki;
use gridlink_sim::encoding::{ByteOrder, Value};
use gridlink_sim::{Site, SiteConfig, serve_tcp, test_pattern};
use gridlink_testkit::free_port;
use gridlink_testkit::mosquitto::Mosquitto;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tempfile::TempDir;
use tokio::task::JoinHandle;

mod common;
use common::{Agent, http_get};

const POLL_MS: u64 = 200;
const SEAL_MS: u64 = 500;

/// What the backend has received, deduplicated by batch sequence number.
#[derive(Default)]
struct Received {
    batches: BTreeMap<u64, TelemetryBatch>,
    /// Batch seqs in order of first arrival.
    arrival: Vec<u64>,
    duplicates: usize,
}

impl Received {
    fn readings(&self) -> usize {
        self.batches
            .values()
            .map(TelemetryBatch::reading_count)
            .sum()
    }
}

/// A backend subscriber with a persistent session on the shared
/// subscription, reconnecting until dropped.
struct Backend {
    received: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start(broker: &Mosquitto, pki: &TestPki) -> Self {
        let mut options = broker.client_options(pki, "backend");
        options.set_clean_session(false);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = Arc::clone(&received);
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client
                            .subscribe("$share/gridlink/oadr/meter/+", QoS::AtLeastOnce)
                            .await
                            .expect("subscribe");
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        assert_eq!(publish.topic, "oadr/meter/ven-1");
                        let batch: TelemetryBatch =
                            decode(&publish.payload).expect("every payload decodes");
                        assert_eq!(batch.ven_id.as_str(), "ven-1");
                        let mut r = sink.lock().unwrap();
                        if r.batches.contains_key(&batch.batch_seq) {
                            assert_eq!(
                                r.batches[&batch.batch_seq], batch,
                                "same seq, different content"
                            );
                            r.duplicates += 1;
                        } else {
                            r.arrival.push(batch.batch_seq);
                            r.batches.insert(batch.batch_seq, batch);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("backend subscribed in time")
            .expect("backend task alive");
        Self { received, task }
    }

    fn readings(&self) -> usize {
        self.received.lock().unwrap().readings()
    }

    /// Waits until at least `n` readings arrived.
    async fn wait_for(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.readings() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} readings arrived within {within:?}",
                self.readings()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The simulator, the broker, the PKI and the agent's files.
struct Rig {
    dir: TempDir,
    pki: TestPki,
    broker: Mosquitto,
    site: Site,
    sim: JoinHandle<std::io::Result<()>>,
    modbus_port: u16,
    health_port: u16,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        let pki =
            TestPki::generate(&dir.path().join("pki"), &[VenId::new("ven-1").unwrap()]).unwrap();
        let broker = Mosquitto::spawn(&pki).await;
        let site = Site::new(SiteConfig {
            meters: 2,
            loads: 3,
            seed: 11,
            ..SiteConfig::default()
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let modbus_port = listener.local_addr().unwrap().port();
        let sim = tokio::spawn(serve_tcp(site.clone(), listener));
        Self {
            dir,
            pki,
            broker,
            site,
            sim,
            modbus_port,
            health_port: free_port(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    fn buffer_path(&self) -> PathBuf {
        self.dir.path().join("buffer")
    }

    /// Writes agent.toml: the main meter (unit 1) and the test pattern
    /// (unit 247) on the simulator, polled every 200 ms.
    fn write_config(&self) {
        let ven = self.pki.identity("ven-1").unwrap();
        let mut text = format!(
            r#"ven_id = "ven-1"

[mqtt]
host = "127.0.0.1"
port = {port}
ca = "{ca}"
cert = "{cert}"
key = "{key}"
reconnect_backoff_min_ms = 100
reconnect_backoff_max_ms = 1000

[buffer]
path = "{buffer}"
seal_interval_ms = {SEAL_MS}

[health]
listen = "127.0.0.1:{health}"

[[devices]]
name = "main"
controller = "tcp://127.0.0.1:{modbus}"
unit_id = 1
poll_interval_ms = {POLL_MS}
timeout_ms = 500

  [[devices.points]]
  register = "input"
  address = 0
  type = "f32"
  quantity = "voltage"
  phase = "L1"

  [[devices.points]]
  register = "input"
  address = 52
  type = "f32"
  quantity = "active_power"
  phase = "total"

  [[devices.points]]
  register = "input"
  address = 70
  type = "f32"
  quantity = "frequency"

  [[devices.points]]
  register = "input"
  address = 72
  type = "f32"
  scale = 1000.0
  quantity = "energy_import"

[[devices]]
name = "pattern"
controller = "tcp://127.0.0.1:{modbus}"
unit_id = {unit}
poll_interval_ms = {POLL_MS}
timeout_ms = 500
"#,
            port = self.broker.port(),
            ca = self.pki.ca_cert().display(),
            cert = ven.cert.display(),
            key = ven.key.display(),
            buffer = self.buffer_path().display(),
            health = self.health_port,
            modbus = self.modbus_port,
            unit = test_pattern::UNIT,
        );
        for (entry, (quantity, phase, exponent, _)) in
            test_pattern::ENTRIES.iter().zip(pattern_expectations())
        {
            let (ty, wide) = match entry.value {
                Value::U16(_) => ("u16", false),
                Value::I16(_) => ("i16", false),
                Value::U32(_) => ("u32", true),
                Value::I32(_) => ("i32", true),
                Value::U64(_) => ("u64", true),
                Value::F32(_) => ("f32", true),
                Value::F64(_) => ("f64", true),
            };
            let order = match (entry.order, wide) {
                (ByteOrder::Abcd, false) => "AB",
                (_, false) => "BA",
                (ByteOrder::Abcd, true) => "ABCD",
                (ByteOrder::Dcba, true) => "DCBA",
                (ByteOrder::Badc, true) => "BADC",
                (ByteOrder::Cdab, true) => "CDAB",
            };
            write!(
                text,
                "\n  [[devices.points]]\n  register = \"holding\"\n  address = {}\n  type = \"{ty}\"\n  byte_order = \"{order}\"\n  quantity = \"{}\"\n  phase = \"{}\"\n  exponent = {exponent}\n",
                entry.address,
                quantity.name(),
                phase.name(),
            )
            .unwrap();
        }
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn spawn_agent(&self) -> Agent {
        let log = self
            .dir
            .path()
            .join(format!("agent-{}.log", std::process::id()));
        Agent::spawn(&self.config_path(), log)
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

/// For each test-pattern entry: the (quantity, phase) it is filed under, its
/// exponent, and the raw integer the agent must report.
fn pattern_expectations() -> Vec<(Quantity, Phase, i8, i64)> {
    let slots = Quantity::ALL
        .iter()
        .flat_map(|&q| Phase::ALL.iter().map(move |&p| (q, p)));
    test_pattern::ENTRIES
        .iter()
        .zip(slots)
        .map(|(entry, (quantity, phase))| {
            let (exponent, raw) = match entry.value {
                Value::U16(v) => (0, i64::from(v)),
                Value::I16(v) => (0, i64::from(v)),
                Value::U32(v) => (0, i64::from(v)),
                Value::I32(v) => (0, i64::from(v)),
                Value::U64(v) => (0, i64::try_from(v).unwrap()),
                Value::F32(v) => (-1, quantize(f64::from(v), -1).unwrap()),
                Value::F64(v) => (-6, quantize(v, -6).unwrap()),
            };
            (quantity, phase, exponent, raw)
        })
        .collect()
}

/// The agent's closing summary line: (acquired, stored, published, buffered batches).
fn summary(log: &str) -> (u64, u64, u64, u64) {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("gridlink-agent stopped"))
        .unwrap_or_else(|| panic!("no summary in the log:\n{log}"));
    let field = |name: &str| -> u64 {
        let start = line
            .find(&format!("{name}: "))
            .unwrap_or_else(|| panic!("{name} in {line}"))
            + name.len()
            + 2;
        line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    (
        field("acquired"),
        field("stored"),
        field("published"),
        field("buffered_batches"),
    )
}

/// Every (series, timestamp) at most once across all batches, every series
/// in time order when batches are read in seq order, and the test pattern
/// exactly as the simulator holds it.
fn check_contents(received: &Received) {
    let expected: BTreeMap<(Quantity, Phase), (i8, i64)> = pattern_expectations()
        .into_iter()
        .map(|(q, p, e, raw)| ((q, p), (e, raw)))
        .collect();
    let mut seen = HashSet::new();
    let mut last_ts: BTreeMap<(String, Quantity, Phase), i64> = BTreeMap::new();
    for batch in received.batches.values() {
        for series in &batch.series {
            let key = (series.meter.clone(), series.quantity, series.phase);
            for p in &series.points {
                assert!(
                    seen.insert((key.clone(), p.ts_ms)),
                    "reading {key:?} at {} arrived in two batches",
                    p.ts_ms
                );
                if let Some(prev) = last_ts.insert(key.clone(), p.ts_ms) {
                    assert!(
                        p.ts_ms > prev,
                        "{key:?}: {} after {prev} in seq order",
                        p.ts_ms
                    );
                    // Timestamps are the poll schedule: whole poll periods apart.
                    assert_eq!(
                        (p.ts_ms - prev) % i64::try_from(POLL_MS).unwrap(),
                        0,
                        "{key:?} off schedule"
                    );
                }
            }
            match series.meter.as_str() {
                "pattern" => {
                    let (exponent, raw) = expected[&(series.quantity, series.phase)];
                    assert_eq!(series.exponent, exponent, "{key:?}");
                    for p in &series.points {
                        assert_eq!(p.raw, raw, "{key:?} decoded wrong");
                    }
                }
                "main" => {
                    for p in &series.points {
                        let v = series.value(*p);
                        match series.quantity {
                            Quantity::Voltage => {
                                assert!((200.0..260.0).contains(&v), "voltage {v}");
                            }
                            Quantity::Frequency => {
                                assert!((49.0..51.0).contains(&v), "frequency {v}");
                            }
                            Quantity::EnergyImport => assert!(v > 0.0, "energy {v}"),
                            _ => {}
                        }
                    }
                }
                other => panic!("unexpected meter {other}"),
            }
        }
    }
    assert_eq!(
        expected.len(),
        received
            .batches
            .values()
            .flat_map(|b| &b.series)
            .filter(|s| s.meter == "pattern")
            .map(|s| (s.quantity, s.phase))
            .collect::<HashSet<_>>()
            .len(),
        "every test-pattern point arrived"
    );
}

/// True if `seqs` is the union of two increasing subsequences (the backlog
/// and the live stream), i.e. each stream kept its order.
fn two_ordered_streams(seqs: &[u64]) -> bool {
    let mut tops: [Option<u64>; 2] = [None, None];
    for &s in seqs {
        // Put s on the pile with the largest top below it.
        let pile = (0..2)
            .filter(|&i| tops[i].is_none_or(|t| t < s))
            .max_by_key(|&i| tops[i]);
        match pile {
            Some(i) => tops[i] = Some(s),
            None => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_arrives_once_with_the_simulators_values() {
    let rig = Rig::start().await;
    rig.write_config();
    let backend = Backend::start(&rig.broker, &rig.pki).await;
    let agent = rig.spawn_agent();

    backend.wait_for(500, Duration::from_secs(20)).await;
    let log = agent.stop().await;
    let (acquired, stored, published, buffered) = summary(&log);
    assert_eq!(buffered, 0, "a clean stop drains the buffer\n{log}");
    assert_eq!(stored, acquired, "every acquired reading was stored");
    assert_eq!(published, acquired, "every stored reading was acknowledged");
    backend
        .wait_for(usize::try_from(acquired).unwrap(), Duration::from_secs(10))
        .await;

    let received = backend.received.lock().unwrap();
    assert_eq!(
        received.readings() as u64,
        acquired,
        "exactly once after dedup"
    );
    check_contents(&received);
    assert!(rig.site.requests_served() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_30_s_loses_nothing_and_drains_in_order() {
    let mut rig = Rig::start().await;
    rig.write_config();
    let backend = Backend::start(&rig.broker, &rig.pki).await;
    let agent = rig.spawn_agent();
    backend.wait_for(100, Duration::from_secs(20)).await;

    rig.broker.stop();
    let before = backend.readings();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let buffered = rig
        .metric("gridlink_buffer_records")
        .await
        .expect("metrics while the broker is down");
    assert!(buffered >= 30, "backlog grew to only {buffered} batches");
    rig.broker.start().await;

    // The backlog (30 s of data) drains. How fast is the uplink bench's to
    // measure; the deadline only keeps a hung drain from hanging the run
    // (CI shares 2 cores between this and every other test).
    let target = before + 30 * 1000 / usize::try_from(POLL_MS).unwrap() * 28;
    let reconnected = std::time::Instant::now();
    backend.wait_for(target, Duration::from_mins(2)).await;
    eprintln!("backlog drained in {:?}", reconnected.elapsed());
    let log = agent.stop().await;
    let (acquired, _, published, left) = summary(&log);
    assert_eq!(left, 0, "{log}");
    assert_eq!(published, acquired);
    backend
        .wait_for(usize::try_from(acquired).unwrap(), Duration::from_secs(10))
        .await;

    let received = backend.received.lock().unwrap();
    assert_eq!(
        received.readings() as u64,
        acquired,
        "nothing lost across the outage"
    );
    check_contents(&received);
    assert!(
        two_ordered_streams(&received.arrival),
        "order broken: {:?}",
        received.arrival
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_that_was_stored() {
    let rig = Rig::start().await;
    rig.write_config();
    let backend = Backend::start(&rig.broker, &rig.pki).await;

    let agent = rig.spawn_agent();
    backend.wait_for(200, Duration::from_secs(20)).await;
    // Kill it mid-flight: polls, appends, seals and publishes are all running.
    let stored_before_kill = rig
        .metric("gridlink_readings_stored_total")
        .await
        .expect("metrics");
    agent.kill9();

    let agent = rig.spawn_agent();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = agent.stop().await;
    let (acquired_after, _, _, left) = summary(&log);
    assert_eq!(left, 0, "{log}");
    let must_arrive = usize::try_from(stored_before_kill + acquired_after).unwrap();
    backend.wait_for(must_arrive, Duration::from_secs(10)).await;

    // A seq reused for different data after the restart would have failed
    // the backend's "same seq, different content" check already.
    let received = backend.received.lock().unwrap();
    check_contents(&received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_buffer_is_moved_aside_and_the_agent_runs() {
    let rig = Rig::start().await;
    rig.write_config();
    let buffer = rig.buffer_path();
    std::fs::create_dir_all(&buffer).unwrap();
    std::fs::write(buffer.join("conf"), b"this is not a sled config").unwrap();
    std::fs::write(buffer.join("db"), vec![0xa5; 4096]).unwrap();
    let backend = Backend::start(&rig.broker, &rig.pki).await;

    let agent = rig.spawn_agent();
    backend.wait_for(100, Duration::from_secs(20)).await;
    let health = http_get(rig.health_port, "/health")
        .await
        .expect("health answers");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let corruptions = rig.metric("gridlink_buffer_corruptions_total").await;
    let log = agent.stop().await;
    assert_eq!(corruptions, Some(1), "{log}");
    let aside: Vec<PathBuf> = std::fs::read_dir(rig.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("buffer.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "moved aside: {aside:?}\n{log}");
    assert!(log.contains("corrupt"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_an_unreadable_certificate_fails_at_start_naming_the_file() {
    let rig = Rig::start().await;
    rig.write_config();
    let missing = rig.dir.path().join("no-such-cert.pem");
    let ven = rig.pki.identity("ven-1").unwrap();
    let text = std::fs::read_to_string(rig.config_path())
        .unwrap()
        .replacen(
            &ven.cert.display().to_string(),
            &missing.display().to_string(),
            1,
        );
    let config = rig.dir.path().join("bad-cert.toml");
    std::fs::write(&config, text).unwrap();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run_cli(&["run", "--config"], &config))
            .await
            .unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no-such-cert.pem"), "{err}");
}

fn run_cli(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gridlink-agent"))
        .args(args)
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_values_and_bad_configs_exit_2_with_the_line() {
    let rig = Rig::start().await;
    rig.write_config();
    let config = rig.config_path();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run_cli(&["check", "--config"], &config))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("main") && out.contains("pattern") && out.contains("230.5"),
        "{out}"
    );

    // A point at an address the meter does not have: a device error, exit 1.
    let text = std::fs::read_to_string(rig.config_path())
        .unwrap()
        .replacen("address = 70", "address = 400", 1);
    let bad_point = rig.dir.path().join("bad-point.toml");
    std::fs::write(&bad_point, text).unwrap();
    let (code, out, _) =
        tokio::task::spawn_blocking(move || run_cli(&["check", "--config"], &bad_point))
            .await
            .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("IllegalDataAddress") || out.contains("exception"),
        "{out}"
    );

    // A misspelt field: exit 2, file, line and column.
    let text = std::fs::read_to_string(rig.config_path())
        .unwrap()
        .replacen("unit_id = 1\n", "unit_id = 1\nadress = 3\n", 1);
    let line = text.lines().position(|l| l.starts_with("adress")).unwrap() + 1;
    let bad = rig.dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    for command in ["run", "check"] {
        let bad = bad.clone();
        let (code, out, err) =
            tokio::task::spawn_blocking(move || run_cli(&[command, "--config"], &bad))
                .await
                .unwrap();
        assert_eq!(code, 2, "{command}: {out}{err}");
        assert!(
            err.contains(&format!("bad.toml:{line}:")) && err.contains("adress"),
            "{command}: {err}"
        );
    }
}
