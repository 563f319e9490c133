//! Acquisition throughput: readings per second through the agent's own
//! Modbus poll + decode (+ durable buffer append) path, beside a bare
//! tokio-modbus read loop against the same simulator in the same run.
//!
//! `cargo bench -p gridlink-agent --bench acquisition` prints a markdown
//! table. Every device is an SDM630 on gridlink-sim over Modbus TCP on
//! 127.0.0.1, its whole input block (`0x0000..0x0050`, 80 registers) mapped
//! as 40 float32 points, so the agent sends exactly the request the raw
//! loop sends (one read of 80 input registers) and a reading is one float32
//! point. The simulator runs on its own thread and runtime; the client side
//! (raw loop or agent) on a current-thread runtime on the main thread, with
//! the buffer's sled work on tokio's blocking pool, as in the agent.
//!
//! * Tight-loop rows run interleaved in rounds (raw, then each agent
//!   variant, `ROUNDS` times), so drift on a shared machine hits them alike.
//!   They poll through `Link::poll` and build `Reading`s as the agent's
//!   (private) poller does. The `run_writer` row sends with `send().await`,
//!   so the loop runs at the writer's pace instead of dropping what does
//!   not fit (the agent's `try_send`); its rounds end when the writer has
//!   stored everything sent.
//! * CPU per request is split into the client runtime's thread (the raw
//!   loop, or the agent's poll, decode and the writer's async side) and
//!   this process's other threads except the simulator's (tokio's blocking
//!   pool running sled appends and seals, sled's threads): the thread's
//!   `schedstat`, and `/proc/self/stat` minus both threads.
//! * The poll-interval rows run the agent's scheduler (`acquisition::run`)
//!   and count over whole intervals between two aligned ticks. Devices on
//!   one controller share one connection and take turns (the agent's
//!   design for a Modbus TCP gateway or an RS-485 bus); devices on
//!   different controllers poll in parallel.
//! * `GRIDLINK_BENCH_SECS` sets the seconds per row (default 3).
//!
//! Nothing is asserted about speed. Every row checks what it counts: each
//! response holds 80 registers, each agent poll yields 40 readings and no
//! error, the simulator served exactly the requests counted, and every
//! reading appended is in the buffer (sealed batches decoded and counted,
//! scheduler timestamps on the poll grid, voltages plausible).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridlink_agent::acquisition::{self, DevicePlan, DevicePoll, Link};
use gridlink_agent::buffer::{self, Buffer, BufferConfig};
use gridlink_agent::config::{self, AgentConfig};
use gridlink_agent::metrics::{Metrics, ModbusErrorKind, now_ms};
use gridlink_agent::reading::Reading;
use gridlink_protocol::{MAX_PAYLOAD_BYTES, Phase, Quantity, TelemetryBatch, VenId, decode};
use gridlink_sim::registers::sdm630;
use gridlink_sim::{Site, SiteConfig, serve_tcp};
use tokio::sync::{Notify, mpsc, watch};
use tokio_modbus::Slave;
use tokio_modbus::client::Reader as _;

/// Rounds each tight-loop row is split into.
const ROUNDS: u32 = 10;
/// The simulator's meters (unit ids `1..=METERS`).
const METERS: u8 = 50;
/// The unit the tight loops read (a sub-meter).
const TIGHT_UNIT: u8 = 2;
/// Polls per `Buffer::append` in the inline group-commit row.
const GROUP_POLLS: usize = 10;
/// The agent's channel between acquisition and the buffer writer
/// (`service::CHANNEL_POLLS`, private there).
const CHANNEL_POLLS: usize = 4096;
/// The agent's default seal interval.
const SEAL_INTERVAL: Duration = Duration::from_secs(10);
/// Devices of the scale row: 10,000 polls/s scheduled on one link.
const SCALE_DEVICES: usize = 1000;
/// Devices and interval of the poll-interval rows.
const PACED_DEVICES: usize = 50;
const PACED_INTERVAL_MS: u64 = 100;

/// The 40 float32 slots of the SDM630 input block, in address order, as
/// (quantity, phase, scale). Slots with no matching agent quantity (phase
/// angles, averages, reactive energy, unmapped gaps) are filed under
/// otherwise unused (quantity, phase) pairs: they cost the same to decode.
const BLOCK: [(&str, &str, f64); 40] = [
    ("voltage", "L1", 1.0),
    ("voltage", "L2", 1.0),
    ("voltage", "L3", 1.0),
    ("current", "L1", 1.0),
    ("current", "L2", 1.0),
    ("current", "L3", 1.0),
    ("active_power", "L1", 1.0),
    ("active_power", "L2", 1.0),
    ("active_power", "L3", 1.0),
    ("apparent_power", "L1", 1.0),
    ("apparent_power", "L2", 1.0),
    ("apparent_power", "L3", 1.0),
    ("reactive_power", "L1", 1.0),
    ("reactive_power", "L2", 1.0),
    ("reactive_power", "L3", 1.0),
    ("power_factor", "L1", 1.0),
    ("power_factor", "L2", 1.0),
    ("power_factor", "L3", 1.0),
    ("power_factor", "L1L2", 1.0), // phase 1 angle
    ("power_factor", "L2L3", 1.0), // phase 2 angle
    ("power_factor", "L3L1", 1.0), // phase 3 angle
    ("voltage", "N", 1.0),         // average voltage
    ("voltage", "L1L2", 1.0),      // gap
    ("current", "N", 1.0),         // average current
    ("current", "total", 1.0),     // sum of currents
    ("current", "L1L2", 1.0),      // gap
    ("active_power", "total", 1.0),
    ("active_power", "N", 1.0), // gap
    ("apparent_power", "total", 1.0),
    ("apparent_power", "N", 1.0), // gap
    ("reactive_power", "total", 1.0),
    ("power_factor", "total", 1.0),
    ("power_factor", "N", 1.0), // gap
    ("frequency", "L1", 1.0),   // total phase angle
    ("frequency", "L2", 1.0),   // gap
    ("frequency", "total", 1.0),
    ("energy_import", "total", 1000.0),
    ("energy_export", "total", 1000.0),
    ("energy_import", "N", 1000.0), // import reactive energy
    ("energy_export", "N", 1000.0), // export reactive energy
];

fn bench_secs() -> f64 {
    std::env::var("GRIDLINK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(3.0)
}

// ---------------------------------------------------------------- simulator

/// gridlink-sim on its own thread and current-thread runtime.
struct Sim {
    site: Site,
    addrs: Vec<SocketAddr>,
    /// `/proc/self/task/<tid>/schedstat` of the simulator's thread.
    schedstat: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sim {
    /// A site of `METERS` meters served on `listeners` TCP ports.
    fn start(listeners: usize) -> Self {
        let site = Site::new(SiteConfig {
            meters: METERS,
            loads: 0,
            seed: 7,
            ..SiteConfig::default()
        })
        .expect("valid site");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = site.clone();
        let thread = std::thread::Builder::new()
            .name("gridlink-sim".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("simulator runtime");
                runtime.block_on(async move {
                    let mut addrs = Vec::with_capacity(listeners);
                    for _ in 0..listeners {
                        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                            .await
                            .expect("bind the simulator");
                        addrs.push(listener.local_addr().expect("simulator address"));
                        tokio::spawn(serve_tcp(served.clone(), listener));
                    }
                    let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
                    ready_tx.send((addrs, me)).expect("main thread waits");
                    let _ = stopped.await;
                });
            })
            .expect("spawn the simulator thread");
        let (addrs, me) = ready_rx.recv().expect("simulator started");
        Self {
            site,
            addrs,
            schedstat: PathBuf::from("/proc").join(me).join("schedstat"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------- CPU time

/// CPU time of this process, split into the thread running the client
/// runtime (the poll loop, or the agent's acquisition and the writer's
/// async side) and every other thread but the simulator's (tokio's
/// blocking pool running sled appends and seals, and sled's own threads).
struct ClientCpu {
    ticks_per_s: f64,
    sim: PathBuf,
    main: PathBuf,
}

/// CPU time spent so far.
#[derive(Debug, Default, Clone, Copy)]
struct CpuTime {
    /// The client runtime's thread.
    poll: Duration,
    /// Every other thread except the simulator's.
    buffer: Duration,
}

impl CpuTime {
    fn since(self, earlier: Self) -> Self {
        Self {
            poll: self.poll.saturating_sub(earlier.poll),
            buffer: self.buffer.saturating_sub(earlier.buffer),
        }
    }
}

fn schedstat_run_time(path: &std::path::Path) -> Duration {
    let ns = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("schedstat run time");
    Duration::from_nanos(ns)
}

impl ClientCpu {
    /// Call on the thread that runs the client runtime.
    fn new(sim: &Sim) -> Self {
        let ticks_per_s = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0);
        let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        Self {
            ticks_per_s,
            sim: sim.schedstat.clone(),
            main: PathBuf::from("/proc").join(me).join("schedstat"),
        }
    }

    fn now(&self) -> CpuTime {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat has (comm)")
            .1
            .split_whitespace()
            .collect();
        // Fields 14 and 15 (utime, stime); the slice starts at field 3.
        // They include threads that have exited; schedstat does not.
        let ticks: f64 = fields[11..=12]
            .iter()
            .map(|f| f.parse::<f64>().expect("utime/stime"))
            .sum();
        let process = Duration::from_secs_f64(ticks / self.ticks_per_s);
        let poll = schedstat_run_time(&self.main);
        let sim = schedstat_run_time(&self.sim);
        CpuTime {
            poll,
            buffer: process.saturating_sub(poll + sim),
        }
    }
}

/// The 1-minute load average: other work on the machine skews every row.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------- tallies

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    requests: u64,
    readings: u64,
    elapsed: Duration,
    cpu: CpuTime,
}

impl Tally {
    fn add(&mut self, other: Self) {
        self.requests += other.requests;
        self.readings += other.readings;
        self.elapsed += other.elapsed;
        self.cpu.poll += other.cpu.poll;
        self.cpu.buffer += other.cpu.buffer;
    }

    fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn readings_per_s(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_us_per_request(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn row(path: &str, tally: &Tally, raw: Option<&Tally>, notes: &str) {
    let ratio = raw.map_or_else(
        || "n/a".to_string(),
        |raw| format!("{:.3}", tally.readings_per_s() / raw.readings_per_s()),
    );
    println!(
        "| {path} | {} | {} | {ratio} | {:.1} | {:.1} | {notes} |",
        rate(tally.requests_per_s()),
        rate(tally.readings_per_s()),
        tally.cpu_us_per_request(tally.cpu.poll),
        tally.cpu_us_per_request(tally.cpu.buffer),
    );
}

// ---------------------------------------------------------------- config

/// An agent config with one SDM630 device per `(name, controller, unit)`,
/// each mapping the whole input block, polled every `interval_ms`.
fn agent_config(devices: &[(String, String, u8)], interval_ms: u64) -> AgentConfig {
    use std::fmt::Write as _;
    let mut text = String::from(
        "ven_id = \"ven-bench\"\n[mqtt]\nhost = \"127.0.0.1\"\n[buffer]\npath = \"unused\"\n",
    );
    for (name, controller, unit) in devices {
        write!(
            text,
            "\n[[devices]]\nname = \"{name}\"\ncontroller = \"{controller}\"\nunit_id = {unit}\n\
             poll_interval_ms = {interval_ms}\ntimeout_ms = 2000\nbackoff_max_ms = 60000\n"
        )
        .expect("write to a String");
        for (i, (quantity, phase, scale)) in BLOCK.iter().enumerate() {
            write!(
                text,
                "[[devices.points]]\nregister = \"input\"\naddress = {}\ntype = \"f32\"\n\
                 scale = {scale:?}\nquantity = \"{quantity}\"\nphase = \"{phase}\"\n",
                2 * i
            )
            .expect("write to a String");
        }
    }
    config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("bench config: {e}"))
}

fn open_buffer(dir: &std::path::Path, name: &str, metrics: &Arc<Metrics>) -> Arc<Buffer> {
    Arc::new(
        Buffer::open(
            BufferConfig {
                path: dir.join(name),
                max_bytes: 4 << 30,
                cache_bytes: 4 << 20,
                ven_id: VenId::new("ven-bench").expect("valid"),
                max_payload_bytes: MAX_PAYLOAD_BYTES,
            },
            Arc::clone(metrics),
        )
        .expect("open the buffer"),
    )
}

/// Seals what is left, decodes every batch and checks: `expected`
/// readings in all, none rejected or dropped as duplicates, every voltage
/// L1 plausible, and (if `grid_ms`) every timestamp on the poll grid.
fn verify_buffer(buffer: &Buffer, expected: u64, grid_ms: Option<i64>) {
    buffer.seal().expect("seal");
    let stats = buffer.stats();
    assert_eq!(stats.duplicates_dropped, 0, "duplicates dropped at seal");
    assert_eq!(stats.readings_rejected, 0, "readings rejected by append");
    let mut readings = 0u64;
    for record in buffer.pending(None, usize::MAX).expect("pending") {
        let batch: TelemetryBatch = decode(&record.payload).expect("batch decodes");
        readings += batch.reading_count() as u64;
        for series in &batch.series {
            for point in &series.points {
                if let Some(grid) = grid_ms {
                    assert_eq!(point.ts_ms % grid, 0, "timestamp off the poll grid");
                }
                if (series.quantity, series.phase) == (Quantity::Voltage, Phase::L1) {
                    assert!(
                        (2000..=2600).contains(&point.raw),
                        "implausible voltage {} dV",
                        point.raw
                    );
                }
            }
        }
    }
    assert_eq!(readings, expected, "readings in the buffer's batches");
}

// ---------------------------------------------------------------- tight loops

/// One read of the whole block with a bare tokio-modbus client: returns the
/// float32 points an agent mapping the block would extract.
async fn raw_read(context: &mut tokio_modbus::client::Context) -> u64 {
    let words = context
        .read_input_registers(0, sdm630::BLOCK_LEN)
        .await
        .expect("raw read: transport")
        .expect("raw read: exception");
    assert_eq!(
        words.len(),
        usize::from(sdm630::BLOCK_LEN),
        "short response"
    );
    words
        .chunks_exact(2)
        .filter(|w| f32::from_bits((u32::from(w[0]) << 16) | u32::from(w[1])).is_finite())
        .count() as u64
}

async fn raw_round(addr: SocketAddr, window: Duration, cpu: &ClientCpu) -> Tally {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect the raw client");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut context = tokio_modbus::client::tcp::attach_slave(stream, Slave(TIGHT_UNIT));
    raw_read(&mut context).await; // warm-up, untimed
    let mut tally = Tally::default();
    let cpu0 = cpu.now();
    let started = Instant::now();
    while started.elapsed() < window {
        tally.readings += raw_read(&mut context).await;
        tally.requests += 1;
    }
    tally.elapsed = started.elapsed();
    tally.cpu = cpu.now().since(cpu0);
    tally
}

/// A poll's readings, built as the agent's poller builds them (its
/// `readings` is private); panics on any error, since none is expected.
fn readings_of(plan: &DevicePlan, poll: DevicePoll, ts_ms: i64) -> Vec<Reading> {
    assert!(
        poll.errors.is_empty() && !poll.link_failed,
        "poll failed: {:?}",
        poll.errors
    );
    plan.points
        .iter()
        .zip(poll.values)
        .map(|(point, value)| Reading {
            meter: Arc::clone(&plan.name),
            quantity: point.quantity,
            phase: point.phase,
            exponent: point.exponent(),
            ts_ms,
            raw: value.expect("every point decodes"),
        })
        .collect()
}

/// Where the agent's tight loop puts each poll's readings.
enum Sink {
    /// Nowhere: poll + decode only.
    Discard,
    /// `Buffer::append` every `GROUP_POLLS` polls, in the loop (and of
    /// the rest at the end of a round).
    Inline {
        buffer: Arc<Buffer>,
        group: Vec<Reading>,
        polls: usize,
    },
    /// The agent's writer task (`buffer::run_writer`) over a channel, kept
    /// across rounds; a round ends when all it sent is stored.
    Writer {
        buffer: Arc<Buffer>,
        metrics: Arc<Metrics>,
        tx: Option<mpsc::Sender<Vec<Reading>>>,
        task: Option<tokio::task::JoinHandle<()>>,
        sent: u64,
    },
}

impl Sink {
    fn writer(buffer: Arc<Buffer>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_POLLS);
        let task = tokio::spawn(buffer::run_writer(
            Arc::clone(&buffer),
            rx,
            SEAL_INTERVAL,
            Arc::new(Notify::new()),
        ));
        Self::Writer {
            buffer,
            metrics,
            tx: Some(tx),
            task: Some(task),
            sent: 0,
        }
    }

    /// Takes one poll's readings.
    async fn put(&mut self, readings: Vec<Reading>) {
        match self {
            Self::Discard => drop(readings),
            Self::Inline {
                buffer,
                group,
                polls,
            } => {
                group.extend(readings);
                *polls += 1;
                if *polls == GROUP_POLLS {
                    buffer.append(group).expect("append");
                    group.clear();
                    *polls = 0;
                }
            }
            Self::Writer { tx, sent, .. } => {
                *sent += readings.len() as u64;
                let tx = tx.as_ref().expect("writer open");
                tx.send(readings).await.expect("writer alive");
            }
        }
    }

    /// Returns once everything put so far is durable.
    async fn settle(&mut self) {
        match self {
            Self::Discard => {}
            Self::Inline {
                buffer,
                group,
                polls,
            } => {
                buffer.append(group).expect("append");
                group.clear();
                *polls = 0;
            }
            Self::Writer { metrics, sent, .. } => {
                while metrics.readings_stored.load(Ordering::Relaxed) < *sent {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// Stops the writer (it seals what is left) and returns the buffer.
    async fn close(&mut self) -> Option<&Arc<Buffer>> {
        match self {
            Self::Discard => None,
            Self::Inline { buffer, .. } => Some(buffer),
            Self::Writer {
                buffer, tx, task, ..
            } => {
                drop(tx.take());
                if let Some(task) = task.take() {
                    task.await.expect("writer task");
                }
                Some(buffer)
            }
        }
    }
}

/// The agent's path in a tight loop for `window`, continuing its
/// timestamps at `*ts_ms`.
async fn agent_round(
    plan: &DevicePlan,
    controller: &config::Controller,
    sink: &mut Sink,
    ts_ms: &mut i64,
    window: Duration,
    cpu: &ClientCpu,
) -> Tally {
    let mut link = Link::new(controller.clone(), None);
    let warm_up = link.poll(plan).await;
    assert!(warm_up.errors.is_empty(), "warm-up: {:?}", warm_up.errors);
    let requests_per_poll = plan.plan.requests.len() as u64;
    let mut tally = Tally::default();
    let cpu0 = cpu.now();
    let started = Instant::now();
    while started.elapsed() < window {
        let readings = readings_of(plan, link.poll(plan).await, *ts_ms);
        *ts_ms += 1;
        tally.requests += requests_per_poll;
        tally.readings += readings.len() as u64;
        sink.put(readings).await;
    }
    sink.settle().await;
    tally.elapsed = started.elapsed();
    tally.cpu = cpu.now().since(cpu0);
    tally
}

/// Raw and the three agent variants, interleaved in rounds.
async fn tight_loops(sim: &Sim, cpu: &ClientCpu, dir: &std::path::Path) {
    let addr = sim.addrs[0];
    let device = ("sdm630".to_string(), format!("tcp://{addr}"), TIGHT_UNIT);
    let config = agent_config(std::slice::from_ref(&device), PACED_INTERVAL_MS);
    let plan = DevicePlan::new(&config.devices[0]);
    assert_eq!(plan.plan.requests.len(), 1, "the block is one request");
    let controller = config.devices[0].controller.clone();

    let inline_metrics = Arc::new(Metrics::default());
    let writer_metrics = Arc::new(Metrics::default());
    let mut sinks = [
        Sink::Discard,
        Sink::Inline {
            buffer: open_buffer(dir, "inline", &inline_metrics),
            group: Vec::new(),
            polls: 0,
        },
        Sink::writer(
            open_buffer(dir, "writer", &writer_metrics),
            Arc::clone(&writer_metrics),
        ),
    ];
    let window = Duration::from_secs_f64(bench_secs() / f64::from(ROUNDS));
    let mut raw = Tally::default();
    let mut agent = [Tally::default(); 3];
    let mut ts_ms = now_ms();
    let served_before = sim.site.requests_served();
    for _ in 0..ROUNDS {
        raw.add(raw_round(addr, window, cpu).await);
        for (sink, tally) in sinks.iter_mut().zip(&mut agent) {
            tally.add(agent_round(&plan, &controller, sink, &mut ts_ms, window, cpu).await);
        }
    }
    // Each round also sent one untimed warm-up request per path.
    let counted = raw.requests + agent.iter().map(|t| t.requests).sum::<u64>();
    assert_eq!(
        sim.site.requests_served() - served_before,
        counted + u64::from(ROUNDS) * 4,
        "the simulator served exactly the requests counted"
    );
    let [_, inline, writer] = &mut sinks;
    for (sink, tally, metrics) in [
        (inline, &agent[1], &inline_metrics),
        (writer, &agent[2], &writer_metrics),
    ] {
        let buffer = sink.close().await.expect("a buffered sink");
        assert_eq!(
            metrics.readings_stored.load(Ordering::Relaxed),
            tally.readings
        );
        verify_buffer(buffer, tally.readings, None);
    }

    row(
        "raw tokio-modbus loop: read 80 input registers, count finite f32",
        &raw,
        Some(&raw),
        "baseline",
    );
    row(
        "agent `Link::poll` + decode into `Reading`s",
        &agent[0],
        Some(&raw),
        "no buffer",
    );
    row(
        &format!("agent poll + decode + `Buffer::append` every {GROUP_POLLS} polls, inline"),
        &agent[1],
        Some(&raw),
        "durable; fsync serial with polling",
    );
    row(
        "agent poll + decode + `buffer::run_writer` (channel, group commit, seals), until stored",
        &agent[2],
        Some(&raw),
        "durable; as in the agent",
    );
}

// ---------------------------------------------------------------- scheduler

/// What one scheduler row measured.
struct SchedulerRun {
    tally: Tally,
    /// Polls the config asks for in the window.
    scheduled: u64,
    /// Durable syncs (buffer appends and seals) per second.
    syncs_per_s: f64,
}

/// Sleeps until the wall clock is half an interval past a multiple of
/// `interval_ms`, where the agent's aligned ticks are furthest away.
async fn between_ticks(interval_ms: u64) {
    let interval = interval_ms as i64;
    let wait = (interval / 2 - now_ms().rem_euclid(interval)).rem_euclid(interval);
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
}

/// `acquisition::run` with `devices` (name, controller, unit) at
/// `interval_ms`, feeding the agent's writer. Counted over whole poll
/// intervals (about `bench_secs()`), from half an interval between two
/// ticks, after a second of warm-up.
async fn scheduler_row(
    cpu: &ClientCpu,
    dir: &std::path::Path,
    name: &str,
    devices: &[(String, String, u8)],
    interval_ms: u64,
) -> SchedulerRun {
    let config = Arc::new(agent_config(devices, interval_ms));
    let metrics = Arc::new(Metrics::default());
    let buffer = open_buffer(dir, name, &metrics);
    let (tx, rx) = mpsc::channel(CHANNEL_POLLS);
    let (stop, shutdown) = watch::channel(false);
    let writer = tokio::spawn(buffer::run_writer(
        Arc::clone(&buffer),
        rx,
        SEAL_INTERVAL,
        Arc::new(Notify::new()),
    ));
    let acquisition = tokio::spawn(acquisition::run(
        Arc::clone(&config),
        tx,
        Arc::clone(&metrics),
        shutdown,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    between_ticks(interval_ms).await;
    let intervals = (bench_secs() * 1000.0 / interval_ms as f64)
        .round()
        .max(1.0) as u64;
    let polls0 = metrics.polls.load(Ordering::Relaxed);
    let readings0 = metrics.readings_acquired.load(Ordering::Relaxed);
    let syncs0 = buffer.stats().syncs;
    let cpu0 = cpu.now();
    let started = Instant::now();
    tokio::time::sleep_until(
        tokio::time::Instant::from_std(started) + Duration::from_millis(intervals * interval_ms),
    )
    .await;
    let polls = metrics.polls.load(Ordering::Relaxed) - polls0;
    let readings = metrics.readings_acquired.load(Ordering::Relaxed) - readings0;
    let syncs = buffer.stats().syncs - syncs0;
    let tally = Tally {
        requests: polls, // one request per poll (asserted by the tight loops)
        readings,
        elapsed: started.elapsed(),
        cpu: cpu.now().since(cpu0),
    };
    stop.send(true).expect("acquisition listens");
    acquisition.await.expect("acquisition task");
    writer.await.expect("writer task");

    let acquired = metrics.readings_acquired.load(Ordering::Relaxed);
    assert_eq!(readings, polls * BLOCK.len() as u64, "40 readings per poll");
    assert_eq!(metrics.readings_overflowed.load(Ordering::Relaxed), 0);
    for (device, _, _) in devices {
        for kind in [
            ModbusErrorKind::Exception,
            ModbusErrorKind::Timeout,
            ModbusErrorKind::Transport,
        ] {
            assert_eq!(metrics.modbus_errors(device, kind), 0, "{device}: {kind:?}");
        }
    }
    assert_eq!(metrics.readings_stored.load(Ordering::Relaxed), acquired);
    verify_buffer(&buffer, acquired, Some(interval_ms as i64));
    SchedulerRun {
        syncs_per_s: syncs as f64 / tally.elapsed.as_secs_f64(),
        tally,
        scheduled: devices.len() as u64 * intervals,
    }
}

fn devices_on(addrs: &[SocketAddr], count: usize) -> Vec<(String, String, u8)> {
    (0..count)
        .map(|i| {
            (
                format!("m{i}"),
                format!("tcp://{}", addrs[i % addrs.len()]),
                (i % usize::from(METERS)) as u8 + 1,
            )
        })
        .collect()
}

async fn scheduler_rows(sim: &Sim, cpu: &ClientCpu, dir: &std::path::Path) {
    let one = &sim.addrs[..1];
    let many = &sim.addrs[1..=PACED_DEVICES];
    for (devices, addrs, label) in [
        (PACED_DEVICES, one, "one controller (one connection)"),
        (PACED_DEVICES, many, "a controller each (50 connections)"),
        (SCALE_DEVICES, one, "one controller (one connection)"),
    ] {
        let name = format!("scheduler-{devices}-{}", addrs.len());
        let run = scheduler_row(
            cpu,
            dir,
            &name,
            &devices_on(addrs, devices),
            PACED_INTERVAL_MS,
        )
        .await;
        let per_s = 1000.0 / PACED_INTERVAL_MS as f64;
        row(
            &format!(
                "poll interval mode: `acquisition::run`, {devices} devices @ {PACED_INTERVAL_MS} ms, {label}, + `run_writer`"
            ),
            &run.tally,
            None,
            &format!(
                "{} polls/s scheduled; {} of {} polls done ({:.2} %); {:.0} buffer syncs/s",
                rate(devices as f64 * per_s),
                run.tally.requests,
                run.scheduled,
                100.0 * run.tally.requests as f64 / run.scheduled as f64,
                run.syncs_per_s,
            ),
        );
    }
}

fn main() {
    let sim = Sim::start(1 + PACED_DEVICES);
    let cpu = ClientCpu::new(&sim);
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let load_before = load_average();
    println!(
        "gridlink-agent acquisition benchmark: SDM630 input block (80 registers = 40 float32 points per request) \
         from gridlink-sim over Modbus TCP on 127.0.0.1; {:.1} s per row\n",
        bench_secs()
    );
    println!(
        "| path | requests/s | readings/s | ratio to raw | CPU µs/request, poll thread | CPU µs/request, other threads | notes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    runtime.block_on(async {
        tight_loops(&sim, &cpu, dir.path()).await;
        scheduler_rows(&sim, &cpu, dir.path()).await;
    });
    println!(
        "\nload average (1 min): {load_before} before, {} after",
        load_average()
    );
}
