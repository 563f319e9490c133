//! The simulator over Modbus RTU on a serial pty pair made by socat: the
//! server on one end, a tokio-modbus RTU client on the other.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gridlink_sim::registers::sdm630;
use gridlink_sim::{RtuError, Site, SiteConfig, serve_rtu, test_pattern};
use gridlink_testkit::serial::PtyPair;
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::{SlaveContext, rtu};
use tokio_modbus::{ExceptionCode, Slave};

const BOUND: Duration = Duration::from_secs(5);
const BAUD: u32 = 19_200;

/// A pty pair with the site served on end `a`.
struct RtuSite {
    site: Site,
    pair: PtyPair,
    server: JoinHandle<Result<(), RtuError>>,
}

impl Drop for RtuSite {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn serve(config: SiteConfig) -> RtuSite {
    let site = Site::new(config).expect("valid site");
    let pair = PtyPair::spawn();
    let path = pair.a().to_path_buf();
    let server = tokio::spawn(serve_rtu_owned(site.clone(), path));
    RtuSite { site, pair, server }
}

/// [`serve_rtu`] with an owned path, for `tokio::spawn`.
async fn serve_rtu_owned(site: Site, path: PathBuf) -> Result<(), RtuError> {
    serve_rtu(site, &path, BAUD).await
}

fn client(path: &Path, unit: u8) -> Context {
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path.to_string_lossy(), BAUD))
        .unwrap_or_else(|err| panic!("open {}: {err}", path.display()));
    rtu::attach_slave(port, Slave(unit))
}

async fn input(ctx: &mut Context, addr: u16, count: u16) -> Vec<u16> {
    timeout(BOUND, ctx.read_input_registers(addr, count))
        .await
        .expect("answer in time")
        .expect("no transport error")
        .expect("no exception")
}

fn float_at(words: &[u16], address: u16) -> f32 {
    let i = usize::from(address);
    f32::from_bits((u32::from(words[i]) << 16) | u32::from(words[i + 1]))
}

#[tokio::test]
async fn meters_and_test_pattern_over_rtu() {
    let rtu = serve(SiteConfig {
        meters: 2,
        loads: 2,
        seed: 4,
        ..SiteConfig::default()
    });
    let mut ctx = client(rtu.pair.b(), 1);

    for unit in [1, 2] {
        ctx.set_slave(Slave(unit));
        let block = input(&mut ctx, 0, sdm630::BLOCK_LEN).await;
        let volts = float_at(&block, sdm630::PHASE_2_VOLTAGE);
        assert!((220.0..240.0).contains(&volts), "unit {unit}: {volts} V");
        let hz = float_at(&block, sdm630::FREQUENCY);
        assert!((49.9..50.1).contains(&hz), "unit {unit}: {hz} Hz");
        let phases: f32 = [
            sdm630::PHASE_1_POWER,
            sdm630::PHASE_2_POWER,
            sdm630::PHASE_3_POWER,
        ]
        .into_iter()
        .map(|address| float_at(&block, address))
        .sum();
        let total = float_at(&block, sdm630::TOTAL_POWER);
        assert!(
            (phases - total).abs() < 1.0,
            "unit {unit}: {phases} vs {total}"
        );
    }

    ctx.set_slave(Slave(test_pattern::UNIT));
    for entry in &test_pattern::ENTRIES {
        let words = input(&mut ctx, entry.address, entry.value.register_count() as u16).await;
        assert_eq!(words, entry.registers(), "{entry:?}");
    }
    let coils = timeout(BOUND, ctx.read_coils(0, 16))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(coils, test_pattern::COILS);

    // Writes and exceptions work over RTU too.
    ctx.set_slave(Slave(1));
    timeout(BOUND, ctx.write_single_coil(1, false))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!rtu.site.load(2).unwrap().on);
    let beyond = timeout(BOUND, ctx.read_input_registers(sdm630::BLOCK_LEN, 2))
        .await
        .unwrap();
    assert_eq!(beyond.unwrap(), Err(ExceptionCode::IllegalDataAddress));
}

#[tokio::test]
async fn silent_and_unknown_units_send_no_frame_on_rtu() {
    let rtu = serve(SiteConfig {
        meters: 3,
        loads: 0,
        silent_units: vec![3],
        ..SiteConfig::default()
    });
    let mut ctx = client(rtu.pair.b(), 1);
    // Unit 3 is silent; unit 9 does not exist, and a bus has nobody to answer for it.
    for unit in [3, 9] {
        ctx.set_slave(Slave(unit));
        let outcome = timeout(Duration::from_millis(500), ctx.read_input_registers(0, 2)).await;
        assert!(outcome.is_err(), "unit {unit} must not answer: {outcome:?}");
        ctx.set_slave(Slave(1));
        assert_eq!(
            input(&mut ctx, sdm630::TOTAL_POWER, 2).await.len(),
            2,
            "after unit {unit}"
        );
    }
    assert_eq!(rtu.site.requests_served(), 2);
}

/// Modbus CRC-16 (polynomial 0xA001, initial 0xFFFF), sent low byte first.
fn crc16(bytes: &[u8]) -> [u8; 2] {
    let mut crc: u16 = 0xFFFF;
    for byte in bytes {
        crc ^= u16::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc.to_le_bytes()
}

#[tokio::test]
async fn server_recovers_from_a_frame_tokio_modbus_cannot_decode() {
    let rtu = serve(SiteConfig::default());
    // Write multiple registers (0x10) to unit 1 with a byte count (3) that
    // does not match its quantity (2): the CRC is right, the PDU is not.
    let mut frame = vec![0x01, 0x10, 0x00, 0x00, 0x00, 0x02, 0x03, 0xAA, 0xBB, 0xCC];
    let crc = crc16(&frame);
    frame.extend_from_slice(&crc);
    {
        let mut raw = tokio_serial::SerialStream::open(&tokio_serial::new(
            rtu.pair.b().to_string_lossy(),
            BAUD,
        ))
        .expect("open the client end");
        raw.write_all(&frame).await.expect("write the bad frame");
        raw.flush().await.expect("flush");
    }
    let mut ctx = client(rtu.pair.b(), 1);
    let started = Instant::now();
    let answer = loop {
        let attempt = timeout(
            Duration::from_millis(300),
            ctx.read_input_registers(sdm630::TOTAL_POWER, 2),
        )
        .await;
        if let Ok(Ok(answer)) = attempt {
            break answer;
        }
        assert!(
            started.elapsed() < BOUND,
            "the RTU server never came back: {attempt:?}"
        );
    };
    assert_eq!(answer.expect("no exception").len(), 2);
    assert!(!rtu.server.is_finished(), "serve_rtu keeps running");
    assert_eq!(
        rtu.site.load(1).unwrap().setpoint_percent,
        100,
        "the bad write changed nothing"
    );
}
