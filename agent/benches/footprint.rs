//! Footprint of the real agent binary on a realistic site: resident
//! memory, CPU, acquisition rate and bytes on the wire.
//!
//! `cargo bench -p gridlink-agent --bench footprint` builds the agent with
//! the `gateway` profile (the ARM gateway build: `opt-level = "z"`, fat LTO,
//! `panic = "abort"`) by running `cargo build --profile gateway` and reading
//! the executable's path from cargo's JSON messages; if that fails, or with
//! `GRIDLINK_FOOTPRINT_PROFILE=bench`, it uses the binary cargo built for
//! this bench (`CARGO_BIN_EXE_gridlink-agent`, release settings). On
//! `x86_64` Linux it builds for `x86_64-unknown-linux-musl` when that
//! target is installed (`GRIDLINK_FOOTPRINT_TARGET` overrides; empty means
//! this host): the shipped arm64 package is static musl, and the allocator
//! decides the footprint more than the instruction set does;
//! `GRIDLINK_FOOTPRINT_AGENT=/path/to/gridlink-agent` measures a binary
//! built elsewhere (another allocator, a patched dependency). The output
//! says which.
//!
//! The rig: Mosquitto with mTLS and the per-VEN ACL, gridlink-sim with 100
//! SDM630 meters (units 1-100) on one Modbus TCP port, and the agent with
//! 100 devices (one per unit, 12 points each: per-phase voltage, current
//! and power, total power, frequency, import energy) polled every second,
//! sealing every 10 s. The agent reaches the broker through a byte-counting
//! TCP proxy in this process, so the TLS bytes it sends and receives are
//! counted exactly; a backend subscriber decodes and counts every batch.
//! It runs for `GRIDLINK_FOOTPRINT_SECS` (default 60) seconds, sampling
//! `/proc/<pid>/status` (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile`, threads),
//! `/proc/<pid>/stat` (utime + stime, in `getconf CLK_TCK` ticks) and
//! `/proc/<pid>/io` (`write_bytes`) once a second, scrapes `/metrics` at
//! the start and the end, stops the agent with SIGTERM and checks that it
//! exits 0. Runs in the same environment as the bench, so e.g.
//! `MALLOC_ARENA_MAX=2` reaches the agent.
//!
//! Nothing is asserted about size or speed. What is measured is checked:
//! no Modbus error and nothing dropped, 12 readings per poll, everything
//! acquired stored, and the backend received (deduplicated by `batch_seq`)
//! exactly the readings and bytes the agent reports as published.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridlink_protocol::{TelemetryBatch, VenId, decode};
use gridlink_provision::pki::TestPki;
use gridlink_sim::registers::sdm630;
use gridlink_sim::{Site, SiteConfig, serve_tcp};
use gridlink_testkit::free_port;
use gridlink_testkit::mosquitto::Mosquitto;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const METERS: u8 = 100;
const POLL_MS: u64 = 1000;
const SEAL_MS: u64 = 10_000;
const POINTS_PER_DEVICE: u64 = 12;
/// The samples averaged for "mean RSS" (the last 30 s, or fewer on a
/// short run).
const LATE_SAMPLES: usize = 30;

/// The twelve points of each meter: (address, quantity, phase, scale).
const POINTS: [(u16, &str, &str, f64); 12] = [
    (sdm630::PHASE_1_VOLTAGE, "voltage", "L1", 1.0),
    (sdm630::PHASE_2_VOLTAGE, "voltage", "L2", 1.0),
    (sdm630::PHASE_3_VOLTAGE, "voltage", "L3", 1.0),
    (sdm630::PHASE_1_CURRENT, "current", "L1", 1.0),
    (sdm630::PHASE_2_CURRENT, "current", "L2", 1.0),
    (sdm630::PHASE_3_CURRENT, "current", "L3", 1.0),
    (sdm630::PHASE_1_POWER, "active_power", "L1", 1.0),
    (sdm630::PHASE_2_POWER, "active_power", "L2", 1.0),
    (sdm630::PHASE_3_POWER, "active_power", "L3", 1.0),
    (sdm630::TOTAL_POWER, "active_power", "total", 1.0),
    (sdm630::FREQUENCY, "frequency", "total", 1.0),
    (sdm630::IMPORT_ENERGY, "energy_import", "total", 1000.0),
];

fn run_secs() -> u64 {
    std::env::var("GRIDLINK_FOOTPRINT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(60)
}

// ---------------------------------------------------------------- binary

/// The agent binary to measure and a description of its build.
fn agent_binary() -> (PathBuf, String) {
    let bench_binary = || {
        (
            PathBuf::from(env!("CARGO_BIN_EXE_gridlink-agent")),
            "`bench` profile (= release: opt-level 3, thin LTO), built by cargo for this bench"
                .to_string(),
        )
    };
    if let Some(path) = std::env::var_os("GRIDLINK_FOOTPRINT_AGENT") {
        return (
            PathBuf::from(path),
            "given by GRIDLINK_FOOTPRINT_AGENT".to_string(),
        );
    }
    if std::env::var("GRIDLINK_FOOTPRINT_PROFILE").as_deref() == Ok("bench") {
        return bench_binary();
    }
    let target = gateway_target();
    eprintln!(
        "building gridlink-agent with --profile gateway{} ...",
        target
            .as_deref()
            .map_or(String::new(), |t| format!(" --target {t}"))
    );
    let mut cargo = Command::new(env!("CARGO"));
    // Cargo gives this process the bench package's CARGO_PKG_* and
    // CARGO_MANIFEST_* variables; build scripts that watch them (ring's)
    // would see a change and rebuild on every run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo.args([
        "build",
        "--profile",
        "gateway",
        "-p",
        "gridlink-agent",
        "--bin",
        "gridlink-agent",
        "--message-format=json-render-diagnostics",
    ]);
    if let Some(target) = &target {
        cargo.args(["--target", target]);
    }
    let output = cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output();
    let built = output.ok().filter(|o| o.status.success()).and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
            .find_map(|l| {
                let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
                let end = start + l[start..].find('"')?;
                Some(PathBuf::from(&l[start..end]))
            })
    });
    match built {
        Some(path) if path.is_file() => (
            path,
            format!(
                "`gateway` profile (opt-level z, fat LTO, codegen-units 1, panic abort, stripped), {}",
                target.as_deref().map_or(
                    "for this host (its C library's allocator)".to_string(),
                    |t| format!("{t}: static musl, the allocator of the shipped arm64 package")
                )
            ),
        ),
        _ => {
            eprintln!("the gateway build failed; measuring the bench profile's binary");
            bench_binary()
        }
    }
}

/// The target to build the gateway binary for: `GRIDLINK_FOOTPRINT_TARGET`
/// if set (empty: this host's); else, on `x86_64` Linux with the musl
/// standard library installed, `x86_64-unknown-linux-musl`, because the
/// shipped arm64 package is a static musl binary and memory depends on
/// the allocator more than on the instruction set: the same agent peaked
/// at 16.1 MiB over 300 s with musl and grew to 40 MiB with glibc (see
/// README.md, Performance).
fn gateway_target() -> Option<String> {
    if let Ok(target) = std::env::var("GRIDLINK_FOOTPRINT_TARGET") {
        return Some(target).filter(|t| !t.is_empty());
    }
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return None;
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let musl = "x86_64-unknown-linux-musl";
    sysroot
        .join("lib/rustlib")
        .join(musl)
        .is_dir()
        .then(|| musl.to_string())
}

// ---------------------------------------------------------------- proxy

/// Bytes through the byte-counting proxy between the agent and the broker.
#[derive(Debug, Default)]
struct Wire {
    /// Agent to broker.
    up: AtomicU64,
    /// Broker to agent.
    down: AtomicU64,
    connections: AtomicU64,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<Wire>,
    up: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let counter = if up { &count.up } else { &count.down };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

/// Forwards every connection on `listener` to the broker, counting bytes.
async fn proxy(listener: TcpListener, broker_port: u16, wire: Arc<Wire>) {
    while let Ok((agent, _)) = listener.accept().await {
        let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
            continue;
        };
        wire.connections.fetch_add(1, Ordering::Relaxed);
        let _ = agent.set_nodelay(true);
        let _ = broker.set_nodelay(true);
        let (agent_rx, agent_tx) = agent.into_split();
        let (broker_rx, broker_tx) = broker.into_split();
        tokio::spawn(pump(agent_rx, broker_tx, Arc::clone(&wire), true));
        tokio::spawn(pump(broker_rx, agent_tx, Arc::clone(&wire), false));
    }
}

// ---------------------------------------------------------------- backend

/// What the backend subscriber received, deduplicated by `batch_seq`.
#[derive(Debug, Default)]
struct Received {
    /// `batch_seq` -> (readings, payload bytes).
    batches: BTreeMap<u64, (u64, u64)>,
    duplicates: u64,
    first_at: Option<Instant>,
}

impl Received {
    fn readings(&self) -> u64 {
        self.batches.values().map(|b| b.0).sum()
    }

    fn bytes(&self) -> u64 {
        self.batches.values().map(|b| b.1).sum()
    }
}

/// Subscribes as the backend to every VEN's telemetry; returns once the
/// subscription is acknowledged.
async fn backend(broker: &Mosquitto, pki: &TestPki) -> Arc<Mutex<Received>> {
    let (client, mut eventloop) = AsyncClient::new(broker.client_options(pki, "backend"), 64);
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = Arc::clone(&received);
    let (subscribed, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => client
                    .subscribe("oadr/meter/+", QoS::AtLeastOnce)
                    .await
                    .expect("subscribe"),
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let batch: TelemetryBatch =
                        decode(&publish.payload).expect("every payload decodes");
                    let mut r = sink.lock().expect("backend lock");
                    r.first_at.get_or_insert_with(Instant::now);
                    let entry = (batch.reading_count() as u64, publish.payload.len() as u64);
                    if r.batches.insert(batch.batch_seq, entry).is_some() {
                        r.duplicates += 1;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("backend subscribed within 10 s")
        .expect("backend task alive");
    received
}

// ---------------------------------------------------------------- agent

fn write_config(
    dir: &Path,
    pki: &TestPki,
    mqtt_port: u16,
    modbus_port: u16,
    health_port: u16,
) -> PathBuf {
    use std::fmt::Write as _;
    let ven = pki.identity("ven-1").expect("ven-1 in the PKI");
    let mut text = format!(
        "ven_id = \"ven-1\"\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [buffer]\npath = \"{}\"\nseal_interval_ms = {SEAL_MS}\n{}\n[health]\nlisten = \"127.0.0.1:{health_port}\"\n",
        pki.ca_cert().display(),
        ven.cert.display(),
        ven.key.display(),
        dir.join("buffer").display(),
        // GRIDLINK_FOOTPRINT_CACHE_BYTES: the sled cache to measure with
        // (default: the agent's own default).
        std::env::var("GRIDLINK_FOOTPRINT_CACHE_BYTES")
            .map(|bytes| format!("cache_bytes = {bytes}\n"))
            .unwrap_or_default(),
    );
    for unit in 1..=METERS {
        write!(
            text,
            "\n[[devices]]\nname = \"meter-{unit}\"\ncontroller = \"tcp://127.0.0.1:{modbus_port}\"\nunit_id = {unit}\npoll_interval_ms = {POLL_MS}\n"
        )
        .expect("write to a String");
        for (address, quantity, phase, scale) in POINTS {
            write!(
                text,
                "  [[devices.points]]\n  register = \"input\"\n  address = {address}\n  type = \"f32\"\n  scale = {scale:?}\n  quantity = \"{quantity}\"\n  phase = \"{phase}\"\n"
            )
            .expect("write to a String");
        }
    }
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write agent.toml");
    path
}

/// The agent process, killed if still running when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn spawn(binary: &Path, config: &Path, log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).expect("agent log");
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .env("GRIDLINK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start gridlink-agent");
        Self { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits up to 30 s for the exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {}", self.pid());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the agent") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop within 30 s of SIGTERM\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- sampling

/// One sample of the agent process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    /// `RssAnon` (heap, stacks) and `RssFile` (the binary's pages).
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
    /// `write_bytes` of `/proc/<pid>/io`: bytes sent to the storage layer.
    disk_write_bytes: u64,
    cpu_ticks: u64,
    at: Instant,
    wire_up: u64,
    wire_down: u64,
}

fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn sample(pid: u32, wire: &Wire) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat has (comm)")
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 (utime, stime); the slice starts at field 3.
    let cpu_ticks = fields[11..=12]
        .iter()
        .map(|f| f.parse::<u64>().expect("utime/stime"))
        .sum();
    Sample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
        threads: field("Threads:"),
        disk_write_bytes: std::fs::read_to_string(format!("/proc/{pid}/io"))
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("write_bytes:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0),
        cpu_ticks,
        at: Instant::now(),
        wire_up: wire.up.load(Ordering::Relaxed),
        wire_down: wire.down.load(Ordering::Relaxed),
    }
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// `/metrics` as name -> value, summing labelled series by name.
async fn scrape(port: u16) -> BTreeMap<String, f64> {
    let text = http_get(port, "/metrics").await.expect("GET /metrics");
    let mut metrics = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ') {
            let name = name.split('{').next().unwrap_or(name).to_string();
            if let Ok(value) = value.parse::<f64>() {
                *metrics.entry(name).or_insert(0.0) += value;
            }
        }
    }
    metrics
}

fn metric(metrics: &BTreeMap<String, f64>, name: &str) -> u64 {
    metrics.get(name).copied().unwrap_or(0.0) as u64
}

// ---------------------------------------------------------------- main

/// The agent's closing summary line.
fn summary(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("gridlink-agent stopped"))
        .unwrap_or_else(|| panic!("no summary in the agent's log:\n{log}"))
        .to_string()
}

fn summary_field(line: &str, name: &str) -> u64 {
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
        .expect("a count")
}

struct Rig {
    dir: tempfile::TempDir,
    pki: TestPki,
    broker: Mosquitto,
    wire: Arc<Wire>,
    proxy_port: u16,
    modbus_port: u16,
    health_port: u16,
    received: Arc<Mutex<Received>>,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("pki")).expect("pki dir");
    let pki = TestPki::generate(
        &dir.path().join("pki"),
        &[VenId::new("ven-1").expect("valid")],
    )
    .expect("test PKI");
    let broker = Mosquitto::spawn(&pki).await;
    let wire = Arc::new(Wire::default());
    let proxy_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let proxy_port = proxy_listener.local_addr().expect("proxy address").port();
    tokio::spawn(proxy(proxy_listener, broker.port(), Arc::clone(&wire)));
    let site = Site::new(SiteConfig {
        meters: METERS,
        seed: 42,
        ..SiteConfig::default()
    })
    .expect("valid site");
    let sim_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the simulator");
    let modbus_port = sim_listener.local_addr().expect("simulator address").port();
    tokio::spawn(serve_tcp(site, sim_listener));
    let received = backend(&broker, &pki).await;
    Rig {
        dir,
        pki,
        broker,
        wire,
        proxy_port,
        modbus_port,
        health_port: free_port(),
        received,
    }
}

fn main() {
    let (binary, build) = agent_binary();
    let binary_bytes = std::fs::metadata(&binary).expect("agent binary").len();
    // One thread for the rig (simulator, proxy, backend), so the bench
    // takes at most one core from the agent on a small machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(measure(&binary, &build, binary_bytes));
}

async fn measure(binary: &Path, build: &str, binary_bytes: u64) {
    let rig = rig().await;
    let config = write_config(
        rig.dir.path(),
        &rig.pki,
        rig.proxy_port,
        rig.modbus_port,
        rig.health_port,
    );
    let secs = run_secs();
    let load_before = load_average();
    let mut agent = Agent::spawn(binary, &config, rig.dir.path().join("agent.log"));
    let started = Instant::now();
    // GRIDLINK_FOOTPRINT_READY_SECS: longer for an agent under a profiler.
    let ready = Duration::from_secs(
        std::env::var("GRIDLINK_FOOTPRINT_READY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    while http_get(rig.health_port, "/health").await.is_none() {
        assert!(
            started.elapsed() < ready && matches!(agent.child.try_wait(), Ok(None)),
            "the agent did not serve /health within {ready:?}\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_metrics = scrape(rig.health_port).await;
    let mut samples = vec![sample(agent.pid(), &rig.wire)];
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    for _ in 0..secs {
        tick.tick().await;
        samples.push(sample(agent.pid(), &rig.wire));
    }
    let last_metrics = scrape(rig.health_port).await;
    let status = agent.terminate().await;
    let log = agent.log_text();
    assert!(status.success(), "the agent exited with {status}\n{log}");
    let summary = summary(&log);
    // The shutdown drain publishes what was sealed last; let it arrive.
    let published = summary_field(&summary, "published");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.received.lock().expect("backend lock").readings() < published
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report(&Report {
        binary,
        build,
        binary_bytes,
        secs,
        samples: &samples,
        first: &first_metrics,
        last: &last_metrics,
        summary: &summary,
        rig: &rig,
        wire_final: (
            rig.wire.up.load(Ordering::Relaxed),
            rig.wire.down.load(Ordering::Relaxed),
        ),
        load_before,
    });
    drop(rig.broker);
}

struct Report<'a> {
    binary: &'a Path,
    build: &'a str,
    binary_bytes: u64,
    secs: u64,
    samples: &'a [Sample],
    first: &'a BTreeMap<String, f64>,
    last: &'a BTreeMap<String, f64>,
    summary: &'a str,
    rig: &'a Rig,
    /// Proxy byte counts (up, down) after the agent exited.
    wire_final: (u64, u64),
    load_before: String,
}

fn report(r: &Report<'_>) {
    verify(r);
    println!(
        "gridlink-agent footprint: {METERS} meters x {POINTS_PER_DEVICE} points every {POLL_MS} ms, \
         seal every {SEAL_MS} ms, {} s run",
        r.secs
    );
    println!("binary: {} ({})\n", r.binary.display(), r.build);
    println!("| measure | value | goal |");
    println!("|---|---:|---|");
    print_resources(r);
    print_flow(r);
    println!("| exit status after SIGTERM | 0 | 0 |");
    println!("\nRSS every 10 s (MiB): {}", rss_timeline(r.samples));
    println!(
        "load average (1 min): {} at the start, {} at the end",
        r.load_before,
        load_average()
    );
    println!("\nagent summary: {}", strip_ansi(r.summary.trim()));
}

/// What is measured is what happened: panics otherwise.
fn verify(r: &Report<'_>) {
    let count = |name: &str| metric(r.last, name);
    assert_eq!(count("gridlink_modbus_errors_total"), 0, "Modbus errors");
    assert_eq!(count("gridlink_readings_overflowed_total"), 0, "overflowed");
    assert_eq!(count("gridlink_readings_dropped_total"), 0, "dropped");
    let acquired = count("gridlink_readings_acquired_total");
    assert_eq!(
        acquired,
        count("gridlink_polls_total") * POINTS_PER_DEVICE,
        "12 readings per poll"
    );
    assert!(
        acquired > 0 && summary_field(r.summary, "published") > 0,
        "readings flowed"
    );
    assert_eq!(
        summary_field(r.summary, "stored"),
        summary_field(r.summary, "acquired"),
        "everything acquired was stored"
    );
    let received = r.rig.received.lock().expect("backend lock");
    assert_eq!(
        received.readings(),
        summary_field(r.summary, "published"),
        "the backend received what the agent published"
    );
    assert_eq!(received.duplicates, 0, "no batch delivered twice");
}

fn print_resources(r: &Report<'_>) {
    let first = r.samples[0];
    let last = *r.samples.last().expect("samples");
    let window = last.at.duration_since(first.at).as_secs_f64();
    let tck = clock_ticks_per_s();
    let cpu_mean = (last.cpu_ticks - first.cpu_ticks) as f64 / tck / window * 100.0;
    let cpu_peak = r
        .samples
        .windows(2)
        .map(|w| {
            (w[1].cpu_ticks - w[0].cpu_ticks) as f64
                / tck
                / w[1].at.duration_since(w[0].at).as_secs_f64()
                * 100.0
        })
        .fold(0.0, f64::max);
    let late = &r.samples[r.samples.len().saturating_sub(LATE_SAMPLES)..];
    let rss_mean = late.iter().map(|s| s.rss_kib).sum::<u64>() as f64 / late.len() as f64;
    let hwm = r.samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0);
    let rss_max = r.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let mib = |kib: f64| kib / 1024.0;
    println!(
        "| binary size | {:.2} MiB ({} bytes) | |",
        r.binary_bytes as f64 / 1_048_576.0,
        r.binary_bytes
    );
    println!(
        "| peak RSS (VmHWM) | {:.1} MiB | ≤ 20 MB |",
        mib(hwm as f64)
    );
    println!(
        "| largest sampled RSS (VmRSS) | {:.1} MiB | |",
        mib(rss_max as f64)
    );
    println!(
        "| mean RSS, last {} s | {:.1} MiB | ≤ 20 MB |",
        late.len(),
        mib(rss_mean)
    );
    println!(
        "| RSS at the end: anonymous (heap, stacks) / file-backed (binary) | {:.1} / {:.1} MiB | |",
        mib(last.anon_kib as f64),
        mib(last.file_kib as f64)
    );
    println!(
        "| threads: at the end / most sampled | {} / {} | |",
        last.threads,
        r.samples.iter().map(|s| s.threads).max().unwrap_or(0)
    );
    println!("| CPU, mean over {window:.0} s | {cpu_mean:.2} % of one core | ≤ 5 % |");
    println!("| CPU, busiest second | {cpu_peak:.1} % of one core | |");
    let written = last.disk_write_bytes - first.disk_write_bytes;
    let acquired = metric(r.last, "gridlink_readings_acquired_total")
        - metric(r.first, "gridlink_readings_acquired_total");
    println!(
        "| disk writes (`/proc/<pid>/io` `write_bytes`) | {:.1} KiB/s, {:.0} bytes per reading acquired | |",
        written as f64 / 1024.0 / window,
        written as f64 / acquired.max(1) as f64
    );
}

/// RSS every 10 s, to show growth.
fn rss_timeline(samples: &[Sample]) -> String {
    samples
        .iter()
        .step_by(10)
        .map(|s| format!("{:.1}", s.rss_kib as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_flow(r: &Report<'_>) {
    let window = r
        .samples
        .last()
        .expect("samples")
        .at
        .duration_since(r.samples[0].at)
        .as_secs_f64();
    let delta = |name: &str| metric(r.last, name) - metric(r.first, name);
    let published = metric(r.last, "gridlink_readings_published_total");
    let payload_bytes = metric(r.last, "gridlink_bytes_published_total");
    let at_exit = summary_field(r.summary, "published");
    let received = r.rig.received.lock().expect("backend lock");
    let (received_bytes, received_batches) = (received.bytes(), received.batches.len() as u64);
    // Connection set-up (TLS handshake, CONNECT, SUBSCRIBE, online status)
    // is everything up to the last sample taken at least 0.5 s before the
    // first batch reached the backend; the rest is publishing.
    let setup = received.first_at.and_then(|first_batch| {
        r.samples
            .iter()
            .rev()
            .find(|s| s.at + Duration::from_millis(500) <= first_batch)
            .copied()
    });
    drop(received);
    let (up, down) = r.wire_final;

    println!(
        "| polls/s ({} scheduled) | {:.1} | |",
        u64::from(METERS) * 1000 / POLL_MS,
        delta("gridlink_polls_total") as f64 / window
    );
    println!(
        "| readings/s acquired | {:.0} | |",
        delta("gridlink_readings_acquired_total") as f64 / window
    );
    println!(
        "| readings published: PUBACKed at the last scrape / at exit | {published} / {at_exit} | |"
    );
    println!(
        "| batches published: last scrape / received by the backend by exit | {} / {received_batches} | |",
        metric(r.last, "gridlink_batches_published_total")
    );
    println!(
        "| payload bytes per reading: `bytes_published` / `readings_published` at the last scrape; all batches received | {:.2}; {:.2} | |",
        payload_bytes as f64 / published.max(1) as f64,
        received_bytes as f64 / at_exit.max(1) as f64
    );
    println!(
        "| TLS bytes agent→broker per reading published (everything, whole run) | {:.2} | |",
        up as f64 / at_exit.max(1) as f64
    );
    if let Some(setup) = setup {
        let per_publish = 1.0 / received_batches.max(1) as f64;
        println!(
            "| connection set-up: agent→broker / broker→agent | {} / {} bytes | |",
            setup.wire_up, setup.wire_down
        );
        println!(
            "| MQTT + TLS bytes per publish beyond the payload, agent→broker (no TCP/IP headers) | {:.0} | |",
            (up - setup.wire_up).saturating_sub(received_bytes) as f64 * per_publish
        );
        println!(
            "| broker→agent bytes per publish (PUBACK in TLS) | {:.0} | |",
            (down - setup.wire_down) as f64 * per_publish
        );
    }
    println!(
        "| TCP connections to the broker | {} | 1 |",
        r.rig.wire.connections.load(Ordering::Relaxed)
    );
}

/// The 1-minute load average: other work on the machine skews the CPU
/// figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `text` without ANSI escape sequences (the agent's log colours them).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (0x40..=0x7e).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
