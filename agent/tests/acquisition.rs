//! Acquisition against real Modbus servers on 127.0.0.1: the gridlink
//! simulator over TCP and over RTU on a socat pty pair, a listener that
//! accepts and never answers, and a port nobody listens on.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridlink_agent::acquisition::{self, DevicePlan, Link, PointError, RequestError};
use gridlink_agent::check::check;
use gridlink_agent::config::{self, AgentConfig};
use gridlink_agent::metrics::{Metrics, ModbusErrorKind, now_ms};
use gridlink_agent::reading::Reading;
use gridlink_protocol::{Phase, Quantity};
use gridlink_sim::encoding::{ByteOrder as SimOrder, Value};
use gridlink_sim::registers::sdm630;
use gridlink_sim::{Site, SiteConfig, serve_rtu, serve_tcp, test_pattern};
use gridlink_testkit::serial::PtyPair;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_modbus::ExceptionCode;

const HEAD: &str = "ven_id = \"ven-1\"\n[mqtt]\nhost = \"broker\"\n[buffer]\npath = \"buffer\"\n";

/// The simulator serving a site over Modbus TCP on a free port.
struct TcpSim {
    site: Site,
    addr: SocketAddr,
    server: JoinHandle<io::Result<()>>,
}

impl TcpSim {
    async fn start(config: SiteConfig) -> Self {
        let site = Site::new(config).expect("valid site");
        Self::serve(site).await
    }

    /// Another listener serving the same site (another endpoint).
    async fn serve(site: Site) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(serve_tcp(site.clone(), listener));
        Self { site, addr, server }
    }

    fn controller(&self) -> String {
        format!("tcp://{}", self.addr)
    }
}

impl Drop for TcpSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A TCP listener that accepts connections and never answers: a device
/// that hangs.
async fn silent_listener() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (format!("tcp://{addr}"), task)
}

/// A loopback port with no listener: connecting is refused.
fn refused_controller() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("tcp://{addr}")
}

/// The simulator on the `b` end of a pty pair; the agent opens `a`.
struct RtuSim {
    server: JoinHandle<()>,
    pair: PtyPair,
}

impl RtuSim {
    fn start(config: SiteConfig) -> Self {
        let site = Site::new(config).expect("valid site");
        let pair = PtyPair::spawn();
        let path = pair.b().to_path_buf();
        let server = tokio::spawn(async move {
            if let Err(err) = serve_rtu(site, &path, 19_200).await {
                panic!("RTU simulator: {err}");
            }
        });
        Self { server, pair }
    }

    fn controller(&self) -> String {
        format!("file://{}", self.pair.a().display())
    }
}

impl Drop for RtuSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The n-th distinct (quantity, phase) pair, so many points fit one device.
fn slot(n: usize) -> (Quantity, Phase) {
    (Quantity::ALL[n / 8], Phase::ALL[n % 8])
}

fn point(
    text: &mut String,
    register: &str,
    address: u16,
    type_order: Option<(&str, &str)>,
    n: usize,
    exponent: i8,
) {
    let (quantity, phase) = slot(n);
    let _ = write!(
        text,
        "  [[devices.points]]\n  register = \"{register}\"\n  address = {address}\n  \
         quantity = \"{}\"\n  phase = \"{}\"\n  exponent = {exponent}\n",
        quantity.name(),
        phase.name()
    );
    if let Some((value_type, order)) = type_order {
        let _ = write!(
            text,
            "  type = \"{value_type}\"\n  byte_order = \"{order}\"\n"
        );
    }
}

/// What a test-pattern point must decode to.
struct Expected {
    device: &'static str,
    point: usize,
    raw: i64,
    what: String,
}

/// Devices on unit 247 reading every entry of the test pattern, as
/// holding and as input registers, plus every coil and discrete input.
fn pattern_devices(controller: &str, serial: &str) -> (String, Vec<Expected>) {
    let mut text = String::new();
    let mut expected = Vec::new();
    for (device, register) in [("pattern-holding", "holding"), ("pattern-input", "input")] {
        let _ = write!(
            text,
            "[[devices]]\nname = \"{device}\"\ncontroller = \"{controller}\"\n{serial}unit_id = {}\n",
            test_pattern::UNIT
        );
        let mut n = 0;
        for entry in test_pattern::ENTRIES {
            let (value_type, exponent, raw) = match entry.value {
                Value::U16(v) => ("u16", 0, i64::from(v)),
                Value::I16(v) => ("i16", 0, i64::from(v)),
                Value::U32(v) => ("u32", 0, i64::from(v)),
                Value::I32(v) => ("i32", 0, i64::from(v)),
                Value::U64(v) => ("u64", 0, i64::try_from(v).expect("fits")),
                Value::F32(v) => ("f32", -1, (f64::from(v) * 10.0).round() as i64),
                Value::F64(v) => ("f64", -6, (v * 1e6).round() as i64),
            };
            let order = match (entry.value.register_count(), entry.order) {
                (1, SimOrder::Abcd | SimOrder::Cdab) => "AB",
                (1, SimOrder::Badc | SimOrder::Dcba) => "BA",
                (_, order) => order.name(),
            };
            point(
                &mut text,
                register,
                entry.address,
                Some((value_type, order)),
                n,
                exponent,
            );
            expected.push(Expected {
                device,
                point: n,
                raw,
                what: format!("{register} {value_type} {order} at {:#06x}", entry.address),
            });
            n += 1;
            // The positive u64 reads the same as i64: the signed 64-bit path.
            if let Value::U64(_) = entry.value {
                point(
                    &mut text,
                    register,
                    entry.address,
                    Some(("i64", order)),
                    n,
                    exponent,
                );
                expected.push(Expected {
                    device,
                    point: n,
                    raw,
                    what: format!("{register} i64 {order} at {:#06x}", entry.address),
                });
                n += 1;
            }
        }
    }
    let _ = write!(
        text,
        "[[devices]]\nname = \"pattern-bits\"\ncontroller = \"{controller}\"\n{serial}unit_id = {}\n",
        test_pattern::UNIT
    );
    let bits = test_pattern::COILS.iter().map(|&b| ("coil", b));
    let inputs = test_pattern::DISCRETE_INPUTS
        .iter()
        .map(|&b| ("discrete", b));
    for (n, (register, bit)) in bits.chain(inputs).enumerate() {
        point(&mut text, register, (n % 16) as u16, None, n, 0);
        expected.push(Expected {
            device: "pattern-bits",
            point: n,
            raw: i64::from(bit),
            what: format!("{register} {}", n % 16),
        });
    }
    (text, expected)
}

fn parse(devices: &str) -> AgentConfig {
    let text = format!("{HEAD}{devices}");
    config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn assert_pattern_decodes(controller: &str, serial: &str) {
    let (devices, expected) = pattern_devices(controller, serial);
    let config = parse(&devices);
    let polls = tokio::time::timeout(Duration::from_secs(10), acquisition::read_once(&config))
        .await
        .expect("read within 10 s");
    let index: HashMap<&str, usize> = config
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    for e in &expected {
        let poll = &polls[index[e.device]];
        assert!(poll.errors.is_empty(), "{}: {:?}", e.device, poll.errors);
        match &poll.values[e.point] {
            Ok(raw) => assert_eq!(*raw, e.raw, "{}", e.what),
            Err(err) => panic!("{}: {err}", e.what),
        }
    }
    // Adjacent entries were merged: the holding device reads its 28
    // points with one request per contiguous block of the pattern.
    let holding = DevicePlan::new(&config.devices[index["pattern-holding"]]);
    let requests: Vec<(u16, u16)> = holding
        .plan
        .requests
        .iter()
        .map(|r| (r.address, r.count))
        .collect();
    assert_eq!(
        requests,
        [(0x00, 4), (0x10, 8), (0x20, 8), (0x30, 8), (0x40, 32)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_every_type_and_byte_order_decodes() {
    let sim = TcpSim::start(SiteConfig::default()).await;
    assert_pattern_decodes(&sim.controller(), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_every_type_and_byte_order_decodes() {
    let sim = RtuSim::start(SiteConfig::default());
    assert_pattern_decodes(&sim.controller(), "baud_rate = 19200\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_is_a_device_error_and_the_connection_stays_up() {
    let sim = TcpSim::start(SiteConfig::default()).await;
    // Holding register 0x0100 is past the test pattern's image.
    let devices = format!(
        "[[devices]]\nname = \"pattern\"\ncontroller = \"{}\"\nunit_id = 247\n\
         [[devices.points]]\nregister = \"holding\"\naddress = 256\ntype = \"u16\"\nquantity = \"voltage\"\n\
         [[devices.points]]\nregister = \"holding\"\naddress = 0\ntype = \"u16\"\nquantity = \"current\"\n",
        sim.controller()
    );
    let config = parse(&devices);
    let device = DevicePlan::new(&config.devices[0]);
    let endpoint = acquisition::endpoints(&config).remove(0);
    let mut link = Link::new(endpoint.controller, endpoint.serial);
    for _ in 0..3 {
        let poll = link.poll(&device).await;
        assert!(!poll.link_failed);
        assert_eq!(poll.errors.len(), 1);
        assert_eq!(poll.errors[0].kind(), ModbusErrorKind::Exception);
        match &poll.values[0] {
            Err(PointError::Request(e)) => {
                assert!(
                    matches!(
                        **e,
                        RequestError::Exception(ExceptionCode::IllegalDataAddress)
                    ),
                    "{e}"
                );
                assert_eq!(e.to_string(), "Modbus exception IllegalDataAddress");
            }
            other => panic!("expected an exception, got {other:?}"),
        }
        assert_eq!(
            poll.values[1].as_ref().ok().copied(),
            Some(i64::from(test_pattern::U16) * 100)
        );
        assert!(
            link.is_connected(),
            "an exception must not drop the connection"
        );
    }
}

/// Runs acquisition for `duration` and returns the readings by meter.
async fn run_for(
    config: AgentConfig,
    duration: Duration,
    metrics: &Arc<Metrics>,
) -> HashMap<String, Vec<Vec<Reading>>> {
    let (tx, mut rx) = mpsc::channel(1024);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(acquisition::run(
        Arc::new(config),
        tx,
        Arc::clone(metrics),
        shutdown,
    ));
    let mut by_meter: HashMap<String, Vec<Vec<Reading>>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + duration;
    while let Ok(Some(readings)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        by_meter
            .entry(readings[0].meter.to_string())
            .or_default()
            .push(readings);
    }
    stop.send(true).expect("acquisition listens");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("acquisition stops promptly on shutdown")
        .expect("acquisition does not panic");
    by_meter
}

fn meter_device(name: &str, controller: &str, unit: u8, poll_ms: u64, timeout_ms: u64) -> String {
    format!(
        "[[devices]]\nname = \"{name}\"\ncontroller = \"{controller}\"\nunit_id = {unit}\n\
         poll_interval_ms = {poll_ms}\ntimeout_ms = {timeout_ms}\nbackoff_max_ms = 2000\n\
         [[devices.points]]\nregister = \"input\"\naddress = {}\ntype = \"f32\"\nquantity = \"voltage\"\nphase = \"L1\"\n\
         [[devices.points]]\nregister = \"input\"\naddress = {}\ntype = \"f32\"\nquantity = \"active_power\"\n",
        sdm630::PHASE_1_VOLTAGE,
        sdm630::TOTAL_POWER,
    )
}

/// Timestamps of one meter's polls: every step exactly `period_ms`, on
/// multiples of it, close to the wall clock.
fn assert_regular(polls: &[Vec<Reading>], period_ms: i64) {
    let ts: Vec<i64> = polls.iter().map(|p| p[0].ts_ms).collect();
    for p in polls {
        assert!(
            p.iter().all(|r| r.ts_ms == p[0].ts_ms),
            "one timestamp per poll"
        );
    }
    for pair in ts.windows(2) {
        assert!(pair[1] > pair[0], "{ts:?}");
        assert_eq!((pair[1] - pair[0]) % period_ms, 0, "{ts:?}");
    }
    assert!(
        ts.iter().all(|t| t % period_ms == 0),
        "aligned to the period: {ts:?}"
    );
    let last = *ts.last().expect("polls");
    assert!(
        (now_ms() - last).abs() < 2000,
        "timestamps follow the wall clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_and_a_refusing_device_do_not_slow_a_healthy_one() {
    let sim = TcpSim::start(SiteConfig {
        meters: 2,
        ..SiteConfig::default()
    })
    .await;
    let other = TcpSim::serve(sim.site.clone()).await;
    let (hanging, _held) = silent_listener().await;
    let mut devices = meter_device("healthy", &sim.controller(), 1, 100, 300);
    devices += &meter_device("hanging", &hanging, 1, 100, 300);
    // Unit 2 is a sub-meter: its holding registers answer IllegalDataAddress.
    let _ = write!(
        devices,
        "[[devices]]\nname = \"refusing\"\ncontroller = \"{}\"\nunit_id = 2\npoll_interval_ms = 100\n\
         [[devices.points]]\nregister = \"holding\"\naddress = 0\ntype = \"u16\"\nquantity = \"current\"\n\
         [[devices.points]]\nregister = \"input\"\naddress = {}\ntype = \"f32\"\nquantity = \"frequency\"\n",
        other.controller(),
        sdm630::FREQUENCY
    );
    let config = parse(&devices);
    let metrics = Arc::new(Metrics::default());
    let seconds = 3;
    let by_meter = run_for(config, Duration::from_secs(seconds), &metrics).await;

    let healthy = &by_meter["healthy"];
    // 30 ticks in 3 s (the first waits for the next multiple of 100 ms).
    // If the failing devices held it up it would get about 15.
    assert!(
        healthy.len() >= 25,
        "healthy meter polled {} times in {seconds} s",
        healthy.len()
    );
    assert_regular(healthy, 100);
    for poll in healthy {
        assert_eq!(poll.len(), 2);
        let volts = poll
            .iter()
            .find(|r| r.quantity == Quantity::Voltage)
            .expect("voltage");
        assert_eq!((volts.phase, volts.exponent), (Phase::L1, -1));
        assert!((2200..2400).contains(&volts.raw), "{volts:?}");
    }
    // The refusing device answers: it keeps its rate, and only its good point is sent.
    let refusing = &by_meter["refusing"];
    assert!(
        refusing.len() >= 25,
        "refusing meter polled {} times",
        refusing.len()
    );
    assert!(
        refusing
            .iter()
            .all(|p| p.len() == 1 && p[0].quantity == Quantity::Frequency)
    );
    assert!(metrics.modbus_errors("refusing", ModbusErrorKind::Exception) >= 25);
    assert_eq!(
        metrics.modbus_errors("refusing", ModbusErrorKind::Transport),
        0
    );
    assert_eq!(
        metrics.modbus_errors("refusing", ModbusErrorKind::Timeout),
        0
    );
    // The hanging device sends nothing, times out and backs off: 300 ms
    // time-outs at ticks 0, 0.3, 0.6, 1.0, 1.8 s ... instead of 10 in 3 s.
    assert!(!by_meter.contains_key("hanging"));
    let timeouts = metrics.modbus_errors("hanging", ModbusErrorKind::Timeout);
    assert!((3..=6).contains(&timeouts), "{timeouts} time-outs");
    let sent: u64 = by_meter.values().flatten().map(|p| p.len() as u64).sum();
    assert_eq!(metrics.readings_acquired.load(Ordering::Relaxed), sent);
    assert_eq!(metrics.readings_overflowed.load(Ordering::Relaxed), 0);
    assert!(metrics.polls.load(Ordering::Relaxed) >= 50 + timeouts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_on_a_shared_bus_costs_one_timeout_per_backoff_period() {
    let sim = RtuSim::start(SiteConfig {
        meters: 2,
        silent_units: vec![2],
        ..SiteConfig::default()
    });
    let serial = "baud_rate = 19200\n";
    let controller = sim.controller();
    let with_serial = |text: String| text.replacen("unit_id", &format!("{serial}unit_id"), 1);
    let mut devices = with_serial(meter_device("alive", &controller, 1, 100, 300));
    devices += &with_serial(meter_device("dead", &controller, 2, 100, 300));
    let config = parse(&devices);
    let metrics = Arc::new(Metrics::default());
    let by_meter = run_for(config, Duration::from_secs(4), &metrics).await;

    // Without back-off every 100 ms tick of the dead unit would block the
    // bus for 300 ms, leaving `alive` about 13 polls in 4 s. With it the
    // dead unit is tried at 0, 0.3, 0.6, 1.0, 1.8, 3.4 s: 1.8 s of
    // time-outs, leaving `alive` over 20.
    let alive = &by_meter["alive"];
    assert!(
        alive.len() >= 18,
        "alive polled {} times in 4 s",
        alive.len()
    );
    assert_regular(alive, 100);
    let timeouts = metrics.modbus_errors("dead", ModbusErrorKind::Timeout);
    assert!((4..=7).contains(&timeouts), "{timeouts} time-outs");
    // Never two requests on the bus at once: no garbled frames.
    assert_eq!(
        metrics.modbus_errors("alive", ModbusErrorKind::Transport),
        0
    );
    assert_eq!(metrics.modbus_errors("alive", ModbusErrorKind::Timeout), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_counts_overflow_and_never_blocks() {
    let sim = TcpSim::start(SiteConfig::default()).await;
    let config = parse(&meter_device("main", &sim.controller(), 1, 100, 300));
    let metrics = Arc::new(Metrics::default());
    let (tx, mut rx) = mpsc::channel(2);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(acquisition::run(
        Arc::new(config),
        tx,
        Arc::clone(&metrics),
        shutdown,
    ));
    // Nobody reads for 1.5 s: two polls fit, the other dozen overflow.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true).expect("acquisition listens");
    task.await.expect("no panic");
    let overflowed = metrics.readings_overflowed.load(Ordering::Relaxed);
    assert!(
        overflowed >= 2 * 10,
        "{overflowed} readings overflowed: polling went on at full rate"
    );
    assert_eq!(
        metrics.readings_acquired.load(Ordering::Relaxed),
        overflowed + 4,
        "two polls of two readings were queued"
    );
    assert_eq!(rx.recv().await.map(|r| r.len()), Some(2));
    assert_eq!(rx.recv().await.map(|r| r.len()), Some(2));
    assert_eq!(rx.recv().await, None, "acquisition dropped its sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_values_and_exact_errors() {
    let sim = TcpSim::start(SiteConfig::default()).await;
    let (hanging, _held) = silent_listener().await;
    let refused = refused_controller();
    let mut devices = meter_device("main", &sim.controller(), 1, 1000, 300);
    devices += "  [[devices.points]]\n  register = \"input\"\n  address = 1000\n  type = \"f32\"\n  quantity = \"current\"\n";
    devices += &meter_device("hanging", &hanging, 1, 1000, 300);
    devices += &meter_device("unplugged", &refused, 1, 1000, 300);
    devices += &meter_device("no-adapter", "file:///nonexistent/ttyUSB9", 1, 1000, 300);
    let config = parse(&devices);
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(5), check(&config))
        .await
        .expect("check is bounded");
    // The controllers are read in parallel: one time-out, not more.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    assert!(!report.all_ok());
    assert_eq!(report.rows.len(), 9);
    assert_eq!(report.failures(), 7);
    let text = report.to_string();
    let line = |device: &str, needle: &str| {
        text.lines()
            .find(|l| l.starts_with(device) && l.contains(needle))
            .unwrap_or_else(|| panic!("no line for {device} with {needle}:\n{text}"))
            .to_string()
    };
    let volts = line("main", "voltage");
    let value: f64 = volts
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{volts}"));
    assert!((220.0..240.0).contains(&value), "{volts}");
    assert!(volts.ends_with(" V"), "{volts}");
    assert!(
        volts.contains("input     0        f32   ABCD   voltage       L1"),
        "{volts}"
    );
    assert!(line("main", "active_power").ends_with(" W"));
    assert!(line("main", "current").ends_with("Modbus exception IllegalDataAddress"));
    assert!(line("hanging", "voltage").ends_with("timed out after 300 ms"));
    let refused_line = line("unplugged", "voltage");
    assert!(
        refused_line.contains(&format!("cannot connect to {refused}: Connection refused")),
        "{refused_line}"
    );
    let missing = line("no-adapter", "voltage");
    assert!(
        missing
            .contains("cannot connect to file:///nonexistent/ttyUSB9: No such file or directory"),
        "{missing}"
    );
    assert!(text.ends_with("9 points: 2 read, 7 failed\n"), "{text}");
}
