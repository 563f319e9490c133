//! Buffer throughput on this machine's disk, each figure beside a baseline
//! measured in the same run: a raw sled insert + flush of the same bytes
//! (not durable: sled#1351), and `File::write_all` + `sync_data` of the
//! same bytes (the floor for anything durable).
//!
//! `cargo bench -p gridlink-agent --bench buffer` prints a markdown table.
//! Nothing is asserted: the figures depend on the disk.

use std::fs::File;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridlink_agent::buffer::{Buffer, BufferConfig};
use gridlink_agent::metrics::Metrics;
use gridlink_agent::reading::Reading;
use gridlink_protocol::{MAX_PAYLOAD_BYTES, Phase, Quantity, VenId};

/// How long each timed loop runs at most.
const BUDGET: Duration = Duration::from_millis(2500);
const T0: i64 = 1_700_000_000_000;
const BACKLOG: usize = 1_000_000;

/// Twelve series of a three-phase site meter and a PV inverter.
fn series() -> Vec<(Arc<str>, Quantity, Phase, i8, i64)> {
    let main: Arc<str> = Arc::from("main");
    let pv: Arc<str> = Arc::from("pv");
    let mut out = Vec::new();
    for phase in [Phase::L1, Phase::L2, Phase::L3] {
        out.push((Arc::clone(&main), Quantity::ActivePower, phase, 0, 1500));
        out.push((Arc::clone(&main), Quantity::Voltage, phase, -1, 2300));
        out.push((Arc::clone(&main), Quantity::Current, phase, -2, 650));
    }
    out.push((
        Arc::clone(&main),
        Quantity::Frequency,
        Phase::Total,
        -2,
        5000,
    ));
    out.push((
        Arc::clone(&main),
        Quantity::EnergyImport,
        Phase::Total,
        0,
        12_345_678,
    ));
    out.push((pv, Quantity::ActivePower, Phase::Total, 0, -2000));
    out
}

/// `polls` polls of the twelve series at 1 s, starting at poll `from`,
/// with meter-like noise.
fn polls(from: i64, polls: i64) -> Vec<Reading> {
    let series = series();
    let mut out = Vec::with_capacity(series.len() * polls as usize);
    for poll in from..from + polls {
        for (i, (meter, quantity, phase, exponent, base)) in series.iter().enumerate() {
            let amplitude = match quantity {
                Quantity::ActivePower => 300,
                Quantity::Current => 60,
                Quantity::Voltage => 15,
                _ => 3,
            };
            let hash =
                ((poll * 31 + i as i64 * 17).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33).abs();
            let noise = hash % (2 * amplitude + 1) - amplitude;
            let raw = if quantity.is_counter() {
                base + poll / 2
            } else {
                base + noise
            };
            out.push(Reading {
                meter: Arc::clone(meter),
                quantity: *quantity,
                phase: *phase,
                exponent: *exponent,
                ts_ms: T0 + poll * 1000,
                raw,
            });
        }
    }
    out
}

fn open(dir: &std::path::Path, name: &str, max_payload_bytes: usize) -> Buffer {
    Buffer::open(
        BufferConfig {
            path: dir.join(name),
            max_bytes: 4 << 30,
            cache_bytes: 4 << 20,
            ven_id: VenId::new("ven-bench").expect("valid"),
            max_payload_bytes,
        },
        Arc::new(Metrics::default()),
    )
    .expect("open the buffer")
}

/// Runs `op` until `BUDGET` is spent (at least 3 times, at most
/// `max_iters`); returns iterations and elapsed time.
fn timed(max_iters: u64, mut op: impl FnMut(u64)) -> (u64, Duration) {
    let started = Instant::now();
    let mut n = 0;
    while n < 3 || (n < max_iters && started.elapsed() < BUDGET) {
        op(n);
        n += 1;
    }
    (n, started.elapsed())
}

fn per_sec(count: f64, elapsed: Duration) -> String {
    let rate = count / elapsed.as_secs_f64();
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1} k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "| operation | readings per op | buffer (readings/s) | ops/s | bytes per op | sled insert+flush, same bytes (readings/s) | write_all+sync_data, same bytes (readings/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");

    for group_polls in [1i64, 10, 100] {
        let buffer = open(
            dir.path(),
            &format!("append-{group_polls}"),
            MAX_PAYLOAD_BYTES,
        );
        let readings_per_op = group_polls * 12;
        let (ops, elapsed) = timed(20_000, |i| {
            buffer
                .append(&polls(i as i64 * group_polls, group_polls))
                .expect("append");
        });
        let bytes_per_op = buffer.stats().journal_bytes / ops;
        let value = vec![0x5au8; bytes_per_op as usize];

        let db = sled::Config::new()
            .path(dir.path().join(format!("raw-sled-{group_polls}")))
            .cache_capacity(4 << 20)
            .flush_every_ms(None)
            .open()
            .expect("raw sled");
        let (sled_ops, sled_elapsed) = timed(20_000, |i| {
            db.insert(i.to_be_bytes(), value.as_slice())
                .expect("insert");
            db.flush().expect("flush");
        });

        let mut file =
            File::create(dir.path().join(format!("raw-file-{group_polls}"))).expect("file");
        let (file_ops, file_elapsed) = timed(20_000, |_| {
            file.write_all(&value).expect("write");
            file.sync_data().expect("sync");
        });

        println!(
            "| durable append (fsync each) | {readings_per_op} | {} | {} | {bytes_per_op} | {} | {} |",
            per_sec((ops * readings_per_op as u64) as f64, elapsed),
            per_sec(ops as f64, elapsed),
            per_sec((sled_ops * readings_per_op as u64) as f64, sled_elapsed),
            per_sec((file_ops * readings_per_op as u64) as f64, file_elapsed),
        );
    }

    // Seal: a journal of 100k readings (1042-poll appends) into batches.
    let buffer = open(dir.path(), "seal", MAX_PAYLOAD_BYTES);
    let mut sealed = 0u64;
    let mut seal_time = Duration::ZERO;
    let mut next_poll = 0i64;
    for _ in 0..3 {
        for _ in 0..8 {
            buffer.append(&polls(next_poll, 1042)).expect("append");
            next_poll += 1042;
        }
        let journal = buffer.stats().journal_readings;
        let started = Instant::now();
        buffer.seal().expect("seal");
        seal_time += started.elapsed();
        sealed += journal;
    }
    println!(
        "| seal (journal to 128 KiB batches: one transaction + fsync) | {} | {} | {} | {} | | |",
        sealed / 3,
        per_sec(sealed as f64, seal_time),
        per_sec(3.0, seal_time),
        buffer.stats().bytes / 3,
    );
    drop(buffer);

    for max_payload_bytes in [MAX_PAYLOAD_BYTES, 4096] {
        drain(dir.path(), max_payload_bytes);
    }
}

/// A backlog of 1,000,000 readings, drained with pending + ack, oldest
/// first, 100 records a page.
fn drain(dir: &std::path::Path, max_payload_bytes: usize) {
    let buffer = open(
        dir,
        &format!("drain-{max_payload_bytes}"),
        max_payload_bytes,
    );
    let chunk = 10_000 / 12;
    let mut poll = 0i64;
    while (poll * 12) < BACKLOG as i64 {
        buffer.append(&polls(poll, chunk)).expect("append");
        poll += chunk;
        if poll % (chunk * 10) == 0 {
            buffer.seal().expect("seal");
        }
    }
    buffer.seal().expect("seal");
    let backlog = buffer.stats();
    let started = Instant::now();
    let mut after = None;
    let mut drained = 0u64;
    let mut records = 0u64;
    loop {
        let page = buffer.pending(after, 100).expect("pending");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for record in &page {
            drained += u64::from(
                buffer
                    .ack(record.seq)
                    .expect("ack")
                    .map_or(0, |r| r.readings),
            );
            records += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "| drain backlog, {} KiB payloads (pending + ack; {} batches, {:.2} bytes/reading) | {} | {} | {} | {} | | |",
        max_payload_bytes / 1024,
        backlog.records,
        backlog.bytes as f64 / backlog.sealed_readings as f64,
        drained,
        per_sec(drained as f64, elapsed),
        per_sec(records as f64, elapsed),
        backlog.bytes / backlog.records.max(1),
    );
}
