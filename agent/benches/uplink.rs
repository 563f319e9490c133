//! Backlog drain through the uplink to a real Mosquitto (mTLS), beside a
//! raw rumqttc publish loop of the same payloads in the same run.
//!
//! `cargo bench -p gridlink-agent --bench uplink` prints a markdown table.
//! The backlog is 1,000,000 readings: ten three-phase meters (12 series
//! each) sealed every 10 s, so 1,200 readings per batch, as a site's
//! gateway builds them while its uplink is down. Nothing is asserted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridlink_agent::buffer::{Buffer, BufferConfig};
use gridlink_agent::metrics::Metrics;
use gridlink_agent::reading::Reading;
use gridlink_agent::uplink::{self, UplinkSettings};
use gridlink_protocol::{MAX_PAYLOAD_BYTES, Phase, Quantity, VenId};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{Notify, watch};

const BACKLOG_READINGS: usize = 1_000_000;
const METERS: usize = 10;
const SEAL_EVERY_POLLS: i64 = 10;
const T0: i64 = 1_795_262_400_000;

/// One poll of every meter: per phase P, V, I, plus frequency, energy and
/// reactive power, with meter-like noise.
fn poll(meters: &[Arc<str>], n: i64) -> Vec<Reading> {
    let mut out = Vec::with_capacity(meters.len() * 12);
    for (m, meter) in meters.iter().enumerate() {
        let noise = |salt: i64, amplitude: i64| {
            let h = ((n * 1_000_003 + salt * 7919 + m as i64 * 104_729)
                .wrapping_mul(0x2545_f491_4f6c_dd1d)
                >> 33)
                .abs();
            h % (2 * amplitude + 1) - amplitude
        };
        let mut push = |quantity, phase, exponent, raw| {
            out.push(Reading {
                meter: Arc::clone(meter),
                quantity,
                phase,
                exponent,
                ts_ms: T0 + n * 1000,
                raw,
            });
        };
        for (i, phase) in [Phase::L1, Phase::L2, Phase::L3].into_iter().enumerate() {
            let salt = i as i64 * 10;
            push(Quantity::ActivePower, phase, 0, 1500 + noise(salt, 40));
            push(Quantity::Voltage, phase, -1, 2300 + noise(salt + 1, 5));
            push(Quantity::Current, phase, -2, 650 + noise(salt + 2, 20));
        }
        push(Quantity::Frequency, Phase::Total, -2, 5000 + noise(40, 2));
        push(
            Quantity::EnergyImport,
            Phase::Total,
            0,
            12_345_678 + n * 5 / 4,
        );
        push(
            Quantity::ReactivePower,
            Phase::Total,
            0,
            200 + noise(50, 30),
        );
    }
    out
}

fn build_backlog(dir: &std::path::Path) -> (Arc<Buffer>, Arc<Metrics>, u64) {
    let metrics = Arc::new(Metrics::default());
    let buffer = Buffer::open(
        BufferConfig {
            path: dir.join("buffer"),
            max_bytes: 1 << 30,
            cache_bytes: 4 << 20,
            ven_id: VenId::new("ven-1").expect("valid"),
            max_payload_bytes: MAX_PAYLOAD_BYTES,
        },
        Arc::clone(&metrics),
    )
    .expect("open buffer");
    let meters: Vec<Arc<str>> = (0..METERS)
        .map(|m| Arc::from(format!("meter-{m}")))
        .collect();
    let per_poll = METERS * 12;
    let polls = (BACKLOG_READINGS / per_poll) as i64;
    let mut pending = Vec::new();
    for n in 0..polls {
        pending.extend(poll(&meters, n));
        if (n + 1) % SEAL_EVERY_POLLS == 0 || n + 1 == polls {
            buffer.append(&pending).expect("append");
            buffer.seal().expect("seal");
            pending.clear();
        }
    }
    let readings = metrics.readings_stored.load(Ordering::Relaxed);
    (Arc::new(buffer), metrics, readings)
}

fn settings(broker: &Mosquitto, pki: &TestPki, limits: bool) -> UplinkSettings {
    let ven = pki.identity("ven-1").expect("ven-1 in the PKI");
    UplinkSettings {
        ven_id: VenId::new("ven-1").expect("valid"),
        host: "127.0.0.1".into(),
        port: broker.port(),
        alpn: false,
        ca: pki.ca_cert().to_path_buf(),
        cert: ven.cert.clone(),
        key: ven.key.clone(),
        keep_alive: Duration::from_secs(30),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        publishes_per_s: if limits { 100 } else { 0 },
        bytes_per_s: if limits { 512 * 1024 } else { 0 },
        max_inflight: 100,
    }
}

/// Drains the buffer through the uplink and times batches `skip..until`
/// (`skip` lets a rate limiter's initial burst pass untimed); returns
/// (seconds, batches, readings, bytes) of the timed stretch.
async fn drain(
    broker: &Mosquitto,
    pki: &TestPki,
    limits: bool,
    skip: u64,
    until: Option<u64>,
) -> (f64, u64, u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (buffer, metrics, _) = build_backlog(dir.path());
    let (stop, stopped) = watch::channel(false);
    let mut start = Instant::now();
    let task = tokio::spawn(uplink::run(
        settings(broker, pki, limits),
        Arc::clone(&buffer),
        Arc::new(Notify::new()),
        Arc::clone(&metrics),
        stopped,
    ));
    let published = |m: &Metrics| {
        (
            m.batches_published.load(Ordering::Relaxed),
            m.readings_published.load(Ordering::Relaxed),
            m.bytes_published.load(Ordering::Relaxed),
        )
    };
    let target = until.unwrap_or(u64::MAX).min(buffer.stats().records);
    let mut base = (0, 0, 0);
    if skip > 0 {
        while metrics.batches_published.load(Ordering::Relaxed) < skip {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        start = Instant::now();
        base = published(&metrics);
    }
    while metrics.batches_published.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let end = published(&metrics);
    let _ = stop.send(true);
    task.await.expect("uplink task").expect("uplink");
    (secs, end.0 - base.0, end.1 - base.1, end.2 - base.2)
}

/// The same payloads published with a bare rumqttc loop: QoS 1, 100 in
/// flight, counting PUBACKs. No buffer reads, no bookkeeping.
async fn raw_publish(broker: &Mosquitto, pki: &TestPki, payloads: Vec<Vec<u8>>) -> f64 {
    let mut options = broker.client_options(pki, "ven-1");
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 128);
    let total = payloads.len();
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for p in payloads {
            client
                .publish("oadr/meter/ven-1", QoS::AtLeastOnce, false, p)
                .await
                .expect("publish");
        }
        client
    });
    let mut acked = 0;
    while acked < total {
        match eventloop.poll().await.expect("raw loop connection") {
            Event::Incoming(Packet::PubAck(_)) => acked += 1,
            Event::Incoming(_) | Event::Outgoing(_) => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(publisher.await);
    secs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path(), &[VenId::new("ven-1").expect("valid")]).expect("pki");
    let broker = Mosquitto::spawn(&pki).await;

    let backlog_dir = tempfile::tempdir().expect("tempdir");
    let (buffer, _, readings) = build_backlog(backlog_dir.path());
    let records = buffer.pending(None, usize::MAX).expect("read backlog");
    let payload_bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let payloads: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload).collect();
    let batches = payloads.len();
    drop(buffer);

    println!(
        "gridlink-agent uplink benchmark: backlog drain to Mosquitto 2 over mTLS on 127.0.0.1"
    );
    println!(
        "backlog: {readings} readings in {batches} batches of {} readings, {payload_bytes} payload bytes ({:.2} bytes/reading)\n",
        METERS * 12 * SEAL_EVERY_POLLS as usize,
        payload_bytes as f64 / readings as f64
    );
    println!("| path | batches | seconds | readings/s | batches/s | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, batches: u64, secs: f64, readings: u64, bytes: u64| {
        println!(
            "| {name} | {batches} | {secs:.2} | {:.0} | {:.0} | {:.2} |",
            readings as f64 / secs,
            batches as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    };

    let raw_secs = raw_publish(&broker, &pki, payloads).await;
    row(
        "baseline: raw rumqttc QoS 1 loop, same payloads",
        batches as u64,
        raw_secs,
        readings,
        payload_bytes as u64,
    );

    let (secs, b, r, bytes) = drain(&broker, &pki, false, 0, None).await;
    row("uplink drain, limits off", b, secs, r, bytes);

    // With AWS IoT's limits on, 100 publishes/s bind: time 300 batches after
    // the first second's burst of 100.
    let (secs, b, r, bytes) = drain(&broker, &pki, true, 100, Some(400)).await;
    row(
        "uplink drain, AWS limits (100 pub/s, 512 KiB/s), steady state",
        b,
        secs,
        r,
        bytes,
    );
}
