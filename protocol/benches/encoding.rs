//! Bytes per reading and codec speed for one hour of realistic 1 s meter
//! data, compact postcard (wire format v1) against plain postcard and JSON.
//!
//! Run with `cargo bench -p gridlink-protocol --bench encoding`. Prints a
//! table; asserts nothing about speed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gridlink_protocol::{Encoding, Phase, Quantity, Series, TelemetryBatch, VenId, decode, encode};

/// Deterministic xorshift64*; the benchmark needs no `rand`.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of uniforms), mean 0, std-dev `sd`.
    fn noise(&mut self, sd: f64) -> f64 {
        (0..4).map(|_| self.unit() - 0.5).sum::<f64>() * sd * 1.732
    }
}

/// One hour of a three-phase site meter sampled every second: per-phase and
/// total active power (appliances stepping on and off over a base load,
/// with noise), per-phase voltage and current, frequency and the import
/// energy counter. `jitter_ms` moves each timestamp by up to that much.
fn one_hour(seed: u64, jitter_ms: i64) -> Vec<Series> {
    let mut rng = Rng(seed);
    let start = 1_795_262_400_000i64; // 2026-11-21T12:00:00Z
    let phases = [Phase::L1, Phase::L2, Phase::L3];
    let mut power: Vec<Series> = phases
        .iter()
        .map(|&p| Series::new("main", Quantity::ActivePower, p, 0))
        .collect();
    let mut total = Series::new("main", Quantity::ActivePower, Phase::Total, 0);
    let mut volts: Vec<Series> = phases
        .iter()
        .map(|&p| Series::new("main", Quantity::Voltage, p, -1))
        .collect();
    let mut amps: Vec<Series> = phases
        .iter()
        .map(|&p| Series::new("main", Quantity::Current, p, -2))
        .collect();
    let mut freq = Series::new("main", Quantity::Frequency, Phase::Total, -2);
    let mut energy = Series::new("main", Quantity::EnergyImport, Phase::Total, 0);

    let mut appliance = [0.0f64; 3];
    let mut v_drift = [230.0f64; 3];
    let mut hz = 50.0f64;
    let mut wh = 12_345_678.0f64;
    for s in 0..3600i64 {
        let ts = start
            + s * 1000
            + if jitter_ms > 0 {
                (rng.next_u64() % (jitter_ms as u64 + 1)) as i64
            } else {
                0
            };
        hz = (hz + rng.noise(0.003)).clamp(49.9, 50.1);
        freq.push(ts, hz);
        let mut sum = 0.0;
        for ph in 0..3 {
            if rng.unit() < 1.0 / 300.0 {
                // An appliance switches: kettle, heat pump compressor, oven.
                appliance[ph] = [0.0, 800.0, 2000.0, 3000.0][(rng.next_u64() % 4) as usize];
            }
            let base = 400.0 + 150.0 * ((s as f64) / 3600.0 * std::f64::consts::TAU).sin();
            let p = base + appliance[ph] + rng.noise(15.0);
            v_drift[ph] = (v_drift[ph] + rng.noise(0.05)).clamp(225.0, 240.0);
            let v = v_drift[ph] + rng.noise(0.2);
            power[ph].push(ts, p);
            volts[ph].push(ts, v);
            amps[ph].push(ts, p / v);
            sum += p;
        }
        total.push(ts, sum);
        wh += sum / 3600.0;
        energy.push(ts, wh);
    }
    let mut all = power;
    all.push(total);
    all.extend(volts);
    all.extend(amps);
    all.push(freq);
    all.push(energy);
    all
}

/// Cuts an hour of series into batches of `secs` seconds.
fn batches(series: &[Series], secs: usize) -> Vec<TelemetryBatch> {
    let ven_id = VenId::new("site-0042:gw-1").expect("valid ven id");
    let n = series[0].points.len();
    (0..n.div_ceil(secs))
        .map(|i| TelemetryBatch {
            ven_id: ven_id.clone(),
            batch_seq: i as u64,
            series: series
                .iter()
                .map(|s| Series {
                    points: s.points[i * secs..((i + 1) * secs).min(n)].to_vec(),
                    ..s.clone()
                })
                .collect(),
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Format {
    Compact,
    PlainPostcard,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::Compact => "postcard-compact (v1)",
            Self::PlainPostcard => "plain postcard",
            Self::Json => "JSON",
        }
    }

    fn encode(self, b: &TelemetryBatch) -> Vec<u8> {
        match self {
            Self::Compact => encode(b, Encoding::Postcard).expect("encodes"),
            Self::PlainPostcard => postcard::to_allocvec(b).expect("encodes"),
            // serde_json directly: a one-hour batch is over the 128 KB limit
            // in JSON, which is the point of the comparison.
            Self::Json => serde_json::to_vec(b).expect("encodes"),
        }
    }

    fn decode(self, bytes: &[u8]) -> TelemetryBatch {
        match self {
            Self::Compact => decode(bytes).expect("decodes"),
            Self::Json => serde_json::from_slice(bytes).expect("decodes"),
            Self::PlainPostcard => postcard::from_bytes(bytes).expect("decodes"),
        }
    }
}

/// Best of several timed rounds, in readings per second.
fn rate(readings: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    let deadline = Instant::now() + Duration::from_millis(600);
    let mut rounds = 0;
    while rounds < 3 || (Instant::now() < deadline && rounds < 200) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        rounds += 1;
    }
    readings as f64 / best.as_secs_f64()
}

fn main() {
    let data = [
        ("1 s, scheduled timestamps", one_hour(42, 0)),
        ("1 s, up to 5 ms jitter", one_hour(42, 5)),
    ];
    println!("gridlink-protocol encoding benchmark: one hour of 1 s data from a three-phase meter");
    println!(
        "(12 series: P total + P/V/I per phase + frequency + import energy = 43,200 readings)"
    );
    println!(
        "compact = the production path: encode/decode with validation; the others are bare serde\n"
    );
    println!(
        "| data | batch | encoding | bytes | bytes/reading | encode readings/s | decode readings/s |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for (label, series) in &data {
        for (batch_label, secs) in [("1 h", 3600), ("60 s", 60), ("10 s", 10)] {
            let bs = batches(series, secs);
            let readings: usize = bs.iter().map(TelemetryBatch::reading_count).sum();
            for format in [Format::Compact, Format::PlainPostcard, Format::Json] {
                let encoded: Vec<Vec<u8>> = bs.iter().map(|b| format.encode(b)).collect();
                for (b, bytes) in bs.iter().zip(&encoded) {
                    assert_eq!(&format.decode(bytes), b, "round trip");
                }
                let bytes: usize = encoded.iter().map(Vec::len).sum();
                let enc = rate(readings, || {
                    for b in &bs {
                        black_box(format.encode(black_box(b)));
                    }
                });
                let dec = rate(readings, || {
                    for e in &encoded {
                        black_box(format.decode(black_box(e)));
                    }
                });
                println!(
                    "| {label} | {batch_label} | {} | {bytes} | {:.2} | {:.1} M | {:.1} M |",
                    format.name(),
                    bytes as f64 / readings as f64,
                    enc / 1e6,
                    dec / 1e6
                );
            }
        }
    }
}
