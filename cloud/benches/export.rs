//! Export benchmark: one day of N VENs exported (Parquet and CSV.gz, to a
//! directory), set beside a raw baseline measured in the same run: reading
//! the same rows with the same paged queries and doing nothing with them.
//! Prints a markdown table; asserts nothing about speed.
//!
//! ```text
//! cargo bench -p gridlink-cloud --bench export
//! GRIDLINK_BENCH_VENS=10 cargo bench -p gridlink-cloud --bench export        # one size only
//! GRIDLINK_BENCH_DB=postgres cargo bench -p gridlink-cloud --bench export    # PostgreSQL
//! ```
//!
//! Each VEN has 4 series (power, three voltages) read every 10 s: 34,560
//! rows per VEN-day. SQLite is a file in a temporary directory with the
//! store's defaults; PostgreSQL a throwaway cluster from gridlink-testkit.
//! Peak RSS is the process's high-water mark (`VmHWM`), reset before each
//! measurement through `/proc/self/clear_refs`.

use std::time::Instant;

use gridlink_cloud::export::{
    Destination, ExportDay, ExportFormat, ExportJob, ExportOutcome, PAGE_ROWS, export_day,
};
use gridlink_cloud::store::{AnyStore, ExportStore, IngestBatch, Store};
use gridlink_protocol::{Phase, Point, Quantity, Series, VenId};
use gridlink_testkit::postgres::PostgresCluster;

/// 2025-11-20T00:00:00Z.
const DAY0: i64 = 1_763_596_800_000;
const DAY: i64 = 86_400_000;
const INTERVAL_MS: i64 = 10_000;
const SERIES: [(Quantity, Phase, i8, i64); 4] = [
    (Quantity::ActivePower, Phase::Total, 0, 4_000),
    (Quantity::Voltage, Phase::L1, -1, 2_300),
    (Quantity::Voltage, Phase::L2, -1, 2_300),
    (Quantity::Voltage, Phase::L3, -1, 2_300),
];

/// Loads one day of `vens` VENs through `Store::ingest`, an hour per call.
async fn load(store: &AnyStore, vens: usize) {
    let per_hour = (3_600_000 / INTERVAL_MS) as usize;
    for hour in 0..24_i64 {
        let batches: Vec<IngestBatch> = (0..vens)
            .map(|v| IngestBatch {
                ven_id: VenId::new(format!("ven-{v:05}")).expect("ven id"),
                batch_seq: hour as u64,
                received_ms: DAY0 + DAY,
                series: SERIES
                    .iter()
                    .enumerate()
                    .map(|(s, &(quantity, phase, exponent, base))| {
                        let mut series = Series::new("grid", quantity, phase, exponent);
                        series.points = (0..per_hour as i64)
                            .map(|i| Point {
                                ts_ms: DAY0 + hour * 3_600_000 + i * INTERVAL_MS,
                                raw: base + (i * 7 + s as i64 * 13 + v as i64) % 97,
                            })
                            .collect();
                        series
                    })
                    .collect(),
            })
            .collect();
        store.ingest(&batches).await.expect("ingest");
    }
}

/// Reads every row of the day with the export's own paged queries.
async fn read_all(store: &AnyStore, day: ExportDay) -> u64 {
    let mut rows = 0;
    for ven in store
        .export_vens(day.start_ms(), day.end_ms())
        .await
        .expect("vens")
    {
        for series in store.export_series(&ven).await.expect("series") {
            let mut from = day.start_ms();
            loop {
                let page = store
                    .export_readings(series.id, from, day.end_ms(), PAGE_ROWS)
                    .await
                    .expect("readings");
                rows += page.len() as u64;
                match page.last() {
                    Some(&(ts, _)) if page.len() == PAGE_ROWS as usize => from = ts + 1,
                    _ => break,
                }
            }
        }
    }
    std::hint::black_box(rows)
}

/// Resets the peak RSS; returns nothing if the kernel does not allow it.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS in MiB since the last reset.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn measure(backend: &str, store: &AnyStore, vens: usize) {
    let day = ExportDay::parse("2025-11-20", 0).expect("day");
    let started = Instant::now();
    load(store, vens).await;
    eprintln!(
        "{backend}: {vens} VENs loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    reset_peak();
    let started = Instant::now();
    let rows = read_all(store, day).await;
    let read_s = started.elapsed().as_secs_f64();
    let read_peak = peak_mib();
    println!(
        "| {backend} | {vens} | {rows} | raw read (baseline) | {read_s:.2} s | {:.0} k | - | {read_peak:.0} MiB |",
        rows as f64 / read_s / 1e3
    );
    for format in [ExportFormat::Parquet, ExportFormat::CsvGz] {
        let out = tempfile::tempdir().expect("temporary directory");
        let destination = Destination::Directory(out.path().to_path_buf());
        let job = ExportJob {
            day,
            format,
            gap_factor: 3,
            holder: "bench".into(),
            force: true,
        };
        reset_peak();
        let started = Instant::now();
        let outcome = export_day(store, &destination, &job).await.expect("export");
        let seconds = started.elapsed().as_secs_f64();
        let peak = peak_mib();
        let ExportOutcome::Exported(manifest) = outcome else {
            panic!("not exported")
        };
        assert_eq!(manifest.totals.rows, rows, "every row exported");
        println!(
            "| {backend} | {vens} | {rows} | export {format} | {seconds:.2} s ({:.1}x) | {:.0} k | {:.1} MB | {peak:.0} MiB |",
            seconds / read_s,
            rows as f64 / seconds / 1e3,
            manifest.totals.bytes as f64 / 1e6,
        );
    }
}

async fn run() {
    let sizes: Vec<usize> = match std::env::var("GRIDLINK_BENCH_VENS") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("GRIDLINK_BENCH_VENS: numbers"))
            .collect(),
        Err(_) => vec![10, 50],
    };
    let postgres = std::env::var("GRIDLINK_BENCH_DB").as_deref() == Ok("postgres");
    println!("\n| backend | VENs | rows | what | time (vs baseline) | rows/s | size | peak RSS |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    for vens in sizes {
        if postgres {
            let cluster = PostgresCluster::start().await;
            let url = cluster.create_database(&format!("export{vens}")).await;
            let store = AnyStore::connect(&url).await.expect("connect");
            store.migrate().await.expect("migrate");
            measure("PostgreSQL", &store, vens).await;
        } else {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = AnyStore::connect(&url).await.expect("connect");
            store.migrate().await.expect("migrate");
            measure("SQLite", &store, vens).await;
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}
