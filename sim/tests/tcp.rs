//! The simulator over Modbus TCP on 127.0.0.1, driven by a tokio-modbus client.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use gridlink_sim::registers::{LOAD_POWER_BASE, RATED_POWER_BASE, sdm630};
use gridlink_sim::{Site, SiteConfig, serve_tcp, test_pattern};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::{Client, SlaveContext, tcp};
use tokio_modbus::{ExceptionCode, Request, Slave};

/// Every client call is bounded: a hang fails the test instead of stalling it.
const BOUND: Duration = Duration::from_secs(5);

/// A server task that is aborted when the test ends.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(config: SiteConfig) -> (Site, Server) {
    let site = Site::new(config).expect("valid site");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("listener address");
    let task = tokio::spawn(serve_tcp(site.clone(), listener));
    (site, Server { addr, task })
}

async fn connect(server: &Server, unit: u8) -> Context {
    timeout(BOUND, tcp::connect_slave(server.addr, Slave(unit)))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads input registers, expecting data.
async fn input(ctx: &mut Context, addr: u16, count: u16) -> Vec<u16> {
    timeout(BOUND, ctx.read_input_registers(addr, count))
        .await
        .expect("answer in time")
        .expect("no transport error")
        .expect("no exception")
}

/// Reads holding registers, expecting data.
async fn holding(ctx: &mut Context, addr: u16, count: u16) -> Vec<u16> {
    timeout(BOUND, ctx.read_holding_registers(addr, count))
        .await
        .expect("answer in time")
        .expect("no transport error")
        .expect("no exception")
}

/// The float32 (`ABCD`) at `address` in registers read from `base`.
fn float_at(words: &[u16], base: u16, address: u16) -> f32 {
    let i = usize::from(address - base);
    f32::from_bits((u32::from(words[i]) << 16) | u32::from(words[i + 1]))
}

fn config(meters: u8, loads: u16, seed: u64) -> SiteConfig {
    SiteConfig {
        meters,
        loads,
        seed,
        ..SiteConfig::default()
    }
}

#[tokio::test]
async fn meter_map_is_plausible() {
    let (site, server) = serve(config(5, 4, 7)).await;
    for unit in 1..=5 {
        let mut ctx = connect(&server, unit).await;
        let block = input(&mut ctx, 0, sdm630::BLOCK_LEN).await;
        let at = |address| float_at(&block, 0, address);
        let phases = [
            sdm630::PHASE_1_POWER,
            sdm630::PHASE_2_POWER,
            sdm630::PHASE_3_POWER,
        ]
        .map(at);
        for (i, power) in phases.iter().enumerate() {
            let offset = 2 * i as u16;
            let volts = at(sdm630::PHASE_1_VOLTAGE + offset);
            let amps = at(sdm630::PHASE_1_CURRENT + offset);
            assert!(
                (220.0..240.0).contains(&volts),
                "unit {unit} phase {i}: {volts} V"
            );
            assert!(amps >= 0.0, "unit {unit} phase {i}: {amps} A");
            assert!(
                (volts * amps - power.abs()).abs() < 0.5,
                "unit {unit}: {volts} V * {amps} A vs {power} W"
            );
        }
        let total = at(sdm630::TOTAL_POWER);
        assert!(
            (phases.iter().sum::<f32>() - total).abs() < 1.0,
            "unit {unit}: {phases:?} vs {total}"
        );
        let hz = at(sdm630::FREQUENCY);
        assert!((49.9..50.1).contains(&hz), "unit {unit}: {hz} Hz");
        assert!(
            at(sdm630::IMPORT_ENERGY) >= 10.0,
            "unit {unit}: seeded import counter"
        );
        // The model agrees with what went over the wire, within the noise
        // of the few milliseconds between the two reads.
        let model = site.meter(unit).unwrap();
        assert!(
            (model.total_power_w - total).abs() < 0.05 * total.abs() + 50.0,
            "unit {unit}: model {} W, wire {total} W",
            model.total_power_w
        );
    }
}

#[tokio::test]
async fn energy_counter_advances_between_reads_a_second_apart() {
    let (_site, server) = serve(config(1, 3, 11)).await;
    let mut ctx = connect(&server, 1).await;
    let read = |words: &[u16]| float_at(words, sdm630::FREQUENCY, sdm630::IMPORT_ENERGY);
    let first = input(&mut ctx, sdm630::FREQUENCY, 6).await;
    let power = float_at(
        &input(&mut ctx, sdm630::TOTAL_POWER, 2).await,
        sdm630::TOTAL_POWER,
        sdm630::TOTAL_POWER,
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let second = input(&mut ctx, sdm630::FREQUENCY, 6).await;
    let gained_wh = f64::from(read(&second) - read(&first)) * 1_000.0;
    // Only loads and a base load, no PV: always importing.
    assert!(power > 100.0, "{power} W");
    let one_second_wh = f64::from(power) / 3_600.0;
    assert!(
        gained_wh > 0.5 * one_second_wh && gained_wh < 2.5 * one_second_wh,
        "gained {gained_wh} Wh at {power} W in ~1.2 s"
    );
    let export = |words: &[u16]| float_at(words, sdm630::FREQUENCY, sdm630::EXPORT_ENERGY);
    assert_eq!(
        export(&first).to_bits(),
        export(&second).to_bits(),
        "nothing exported"
    );
}

#[tokio::test]
async fn switching_a_load_off_drops_the_main_meter_by_its_power() {
    let (site, server) = serve(config(1, 4, 21)).await;
    let mut ctx = connect(&server, 1).await;

    let powers = input(&mut ctx, LOAD_POWER_BASE, 8).await;
    let (k, load_w) = (1..=4_u16)
        .map(|k| {
            (
                k,
                float_at(&powers, LOAD_POWER_BASE, LOAD_POWER_BASE + 2 * (k - 1)),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(load_w > 150.0, "load {k} draws {load_w} W");

    let total = |words: Vec<u16>| float_at(&words, sdm630::TOTAL_POWER, sdm630::TOTAL_POWER);
    let before = total(input(&mut ctx, sdm630::TOTAL_POWER, 2).await);
    timeout(BOUND, ctx.write_single_coil(k - 1, false))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let after = total(input(&mut ctx, sdm630::TOTAL_POWER, 2).await);
    let drop = before - after;
    assert!(
        (drop - load_w).abs() < 0.05 * load_w + 60.0,
        "switching load {k} ({load_w} W) off: {before} W -> {after} W"
    );

    let coils = timeout(BOUND, ctx.read_coils(0, 4))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut expect = vec![true; 4];
    expect[usize::from(k - 1)] = false;
    assert_eq!(coils, expect);
    let now_w = float_at(
        &input(&mut ctx, LOAD_POWER_BASE, 8).await,
        LOAD_POWER_BASE,
        LOAD_POWER_BASE + 2 * (k - 1),
    );
    assert_eq!(
        now_w.to_bits(),
        0.0_f32.to_bits(),
        "an off load draws nothing"
    );
    assert!(!site.load(k).unwrap().on, "the site saw the coil write");

    timeout(BOUND, ctx.write_multiple_coils(0, &[true; 4]))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let back = total(input(&mut ctx, sdm630::TOTAL_POWER, 2).await);
    assert!(
        (back - before).abs() < 0.05 * load_w + 60.0,
        "{before} W, back on {back} W"
    );
}

#[tokio::test]
async fn setpoints_write_and_read_back() {
    let (site, server) = serve(config(1, 3, 5)).await;
    let mut ctx = connect(&server, 1).await;
    assert_eq!(
        holding(&mut ctx, 0, 3).await,
        [100, 100, 100],
        "default 100 %"
    );

    timeout(BOUND, ctx.write_single_register(1, 40))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    timeout(BOUND, ctx.write_multiple_registers(2, &[0]))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(holding(&mut ctx, 0, 3).await, [100, 40, 0]);
    assert_eq!(site.load(2).unwrap().setpoint_percent, 40);
    assert_eq!(
        site.load(3).unwrap().power_w.to_bits(),
        0.0_f32.to_bits(),
        "0 % draws nothing"
    );

    let refused = timeout(BOUND, ctx.write_single_register(0, 101))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refused, Err(ExceptionCode::IllegalDataValue));
    assert_eq!(
        holding(&mut ctx, 0, 1).await,
        [100],
        "a refused write changes nothing"
    );

    let rated = holding(&mut ctx, RATED_POWER_BASE, 6).await;
    for k in 1..=3_u16 {
        let w = float_at(&rated, RATED_POWER_BASE, RATED_POWER_BASE + 2 * (k - 1));
        assert!((500.0..=5_000.0).contains(&w), "load {k}: {w} W");
        assert_eq!(w.to_bits(), site.load(k).unwrap().rated_power_w.to_bits());
    }
}

#[tokio::test]
async fn bad_requests_get_modbus_exceptions() {
    let (_site, server) = serve(config(2, 2, 3)).await;
    let mut ctx = connect(&server, 1).await;
    let exception =
        |result: tokio_modbus::Result<Vec<u16>>| result.expect("no transport error").unwrap_err();

    let past_the_map = timeout(BOUND, ctx.read_input_registers(sdm630::BLOCK_LEN - 2, 4))
        .await
        .unwrap();
    assert_eq!(exception(past_the_map), ExceptionCode::IllegalDataAddress);
    let no_such_load = timeout(BOUND, ctx.read_holding_registers(2, 1))
        .await
        .unwrap();
    assert_eq!(exception(no_such_load), ExceptionCode::IllegalDataAddress);
    let coil = timeout(BOUND, ctx.write_single_coil(2, false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(coil, Err(ExceptionCode::IllegalDataAddress));

    let custom = timeout(
        BOUND,
        ctx.call(Request::Custom(0x41, Cow::Borrowed(&[0, 1]))),
    )
    .await
    .unwrap();
    assert_eq!(
        custom.expect("no transport error").unwrap_err(),
        ExceptionCode::IllegalFunction
    );

    ctx.set_slave(Slave(2));
    let sub_meter_holding = timeout(BOUND, ctx.read_holding_registers(0, 2))
        .await
        .unwrap();
    assert_eq!(
        exception(sub_meter_holding),
        ExceptionCode::IllegalDataAddress
    );

    ctx.set_slave(Slave(42));
    let unknown_unit = timeout(BOUND, ctx.read_input_registers(0, 2))
        .await
        .unwrap();
    assert_eq!(exception(unknown_unit), ExceptionCode::GatewayTargetDevice);

    // The connection survives every exception.
    ctx.set_slave(Slave(1));
    assert_eq!(input(&mut ctx, 0, 2).await.len(), 2);
}

#[tokio::test]
async fn test_pattern_reads_back_exact_words_in_every_type_and_order() {
    let (_site, server) = serve(config(1, 0, 1)).await;
    let mut ctx = connect(&server, test_pattern::UNIT).await;
    for entry in &test_pattern::ENTRIES {
        let count = entry.value.register_count() as u16;
        let expect = entry.registers();
        assert_eq!(
            input(&mut ctx, entry.address, count).await,
            expect,
            "input {entry:?}"
        );
        assert_eq!(
            holding(&mut ctx, entry.address, count).await,
            expect,
            "holding {entry:?}"
        );
    }
    let whole = input(&mut ctx, 0, test_pattern::REGISTER_COUNT).await;
    assert_eq!(whole, test_pattern::registers());

    let coils = timeout(BOUND, ctx.read_coils(0, 16))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(coils, test_pattern::COILS);
    let inputs = timeout(BOUND, ctx.read_discrete_inputs(0, 16))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(inputs, test_pattern::DISCRETE_INPUTS);
    let write = timeout(BOUND, ctx.write_single_register(0, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        write,
        Err(ExceptionCode::IllegalDataAddress),
        "the pattern is read-only"
    );
}

#[tokio::test]
async fn silent_unit_never_answers_while_others_do() {
    let (site, server) = serve(SiteConfig {
        silent_units: vec![2],
        ..config(3, 1, 9)
    })
    .await;
    let mut silent = connect(&server, 2).await;
    let mut other = connect(&server, 3).await;

    let pending = tokio::spawn(async move {
        let started = Instant::now();
        let outcome = timeout(
            Duration::from_millis(800),
            silent.read_input_registers(0, 2),
        )
        .await;
        (outcome.is_err(), started.elapsed(), silent)
    });
    // While the silent request hangs, another connection is served.
    for _ in 0..5 {
        assert_eq!(input(&mut other, sdm630::FREQUENCY, 2).await.len(), 2);
    }
    let (timed_out, waited, mut silent) = pending.await.unwrap();
    assert!(timed_out, "unit 2 must not answer");
    assert!(waited >= Duration::from_millis(800));

    // The silent unit's connection still serves other units.
    silent.set_slave(Slave(1));
    assert_eq!(input(&mut silent, sdm630::TOTAL_POWER, 2).await.len(), 2);
    assert_eq!(
        site.requests_served(),
        6,
        "the silent request is not counted"
    );
}

#[tokio::test]
async fn delay_holds_every_answer_back() {
    let delay = Duration::from_millis(300);
    let (_site, server) = serve(SiteConfig {
        delay,
        ..config(1, 1, 2)
    })
    .await;
    let mut ctx = connect(&server, 1).await;
    for _ in 0..2 {
        let started = Instant::now();
        input(&mut ctx, 0, 2).await;
        let took = started.elapsed();
        assert!(
            took >= delay && took < delay + Duration::from_secs(2),
            "answered after {took:?}"
        );
    }
}

#[tokio::test]
async fn same_seed_same_values_at_the_same_time() {
    // 2025-01-15T08:00:00Z
    let start = SystemTime::UNIX_EPOCH + Duration::from_hours(482_480);
    let site = |seed| {
        Site::new(SiteConfig {
            start: Some(start),
            ..config(6, 5, seed)
        })
        .unwrap()
    };
    let (a, b, c) = (site(99), site(99), site(100));
    let at = start + Duration::from_millis(90 * 60_000 + 250);
    // `a` is read along the way, `b` only at the end: same values.
    for minute in [1, 17, 44, 89] {
        a.meter_at(1, start + Duration::from_secs(minute * 60))
            .unwrap();
    }
    for unit in 1..=6 {
        assert_eq!(a.meter_at(unit, at), b.meter_at(unit, at), "unit {unit}");
    }
    for k in 1..=5 {
        assert_eq!(a.load_at(k, at), b.load_at(k, at), "load {k}");
    }
    assert_ne!(
        a.meter_at(1, at),
        c.meter_at(1, at),
        "another seed, another site"
    );
}
