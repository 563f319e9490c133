//! Alert engine benchmark: how many committed telemetry batches per second
//! the rules check, when one process sees every batch (the previous
//! readings are its own) and when processes split them (each relevant
//! series reads its previous readings from the store, one query each), set
//! beside `Store::ingest` of the same batches in the same run (groups of
//! 50, ingest's default). The engine
//! runs beside ingest on the feed, so it must keep up with ingest's rate or
//! it lags (and says so). Prints a markdown table; asserts nothing about
//! speed.
//!
//! ```text
//! cargo bench -p gridlink-cloud --bench alerts
//! ```
//!
//! Workload: 100 VENs, one batch per VEN per round, 20 rounds (2,000
//! batches); each batch has 4 series of the grid meter (`active_power`,
//! `energy_import`, `energy_export`, `voltage`; the rules read the first
//! three) with 60 one-second readings. All rules on (spike, gap,
//! import-only). PostgreSQL is a throwaway cluster from gridlink-testkit
//! (fsync off); SQLite a file with the store's defaults.

use std::sync::Arc;
use std::time::Instant;

use gridlink_cloud::alerts::{AlertEngine, AlertsConfig};
use gridlink_cloud::feed::FeedItem;
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{AnyStore, IngestBatch, Store};
use gridlink_protocol::{Phase, Point, Quantity, Series, VenId};
use gridlink_testkit::postgres::PostgresCluster;

/// 2026-11-21T00:00:00Z.
const T0: i64 = 1_795_305_600_000;
const VENS: usize = 100;
const ROUNDS: usize = 20;
const POINTS: i64 = 60;
const GROUP: usize = 50;

fn batches() -> Vec<IngestBatch> {
    let mut out = Vec::new();
    for round in 0..ROUNDS {
        for v in 0..VENS {
            let start = T0 + i64::try_from(round).unwrap_or(0) * POINTS * 1000;
            let series = |quantity, value: &dyn Fn(i64) -> i64| Series {
                meter: "grid".into(),
                quantity,
                phase: Phase::Total,
                exponent: 0,
                points: (0..POINTS)
                    .map(|i| Point {
                        ts_ms: start + i * 1000,
                        raw: value(i64::try_from(round).unwrap_or(0) * POINTS + i),
                    })
                    .collect(),
            };
            out.push(IngestBatch {
                ven_id: VenId::new(format!("ven-{v}")).expect("a VEN id"),
                batch_seq: round as u64 + 1,
                received_ms: start + POINTS * 1000,
                series: vec![
                    series(Quantity::ActivePower, &|i| 1000 + (i % 7) * 10),
                    series(Quantity::EnergyImport, &|i| 10_000 + i),
                    series(Quantity::EnergyExport, &|i| 500 + i / 10),
                    series(Quantity::Voltage, &|_| 2300),
                ],
            });
        }
    }
    out
}

async fn measure(store: Arc<AnyStore>) -> (f64, f64, f64) {
    store.migrate().await.expect("migrate");
    let batches = batches();
    let started = Instant::now();
    for group in batches.chunks(GROUP) {
        store.ingest(group).await.expect("ingest");
    }
    let ingest = batches.len() as f64 / started.elapsed().as_secs_f64();
    let mut settings = AlertsConfig::default().settings();
    settings.spike_w = Some(5000.0);
    settings.import_only_meters = vec!["grid".into()];
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::default());
    let new_engine = || {
        AlertEngine::new(
            Arc::clone(&store),
            Arc::clone(&settings),
            Arc::clone(&metrics.alerts),
        )
    };
    // One process sees every batch: the previous readings are its own.
    let mut engine = new_engine();
    let started = Instant::now();
    for batch in &batches {
        engine
            .handle(&FeedItem::Telemetry(batch.clone()), batch.received_ms)
            .await
            .expect("rules");
    }
    let own = batches.len() as f64 / started.elapsed().as_secs_f64();
    // Processes split the batches: every series reads the store (a fresh
    // engine per batch knows nothing).
    let started = Instant::now();
    for batch in &batches {
        new_engine()
            .handle(&FeedItem::Telemetry(batch.clone()), batch.received_ms)
            .await
            .expect("rules");
    }
    let stored = batches.len() as f64 / started.elapsed().as_secs_f64();
    (ingest, own, stored)
}

async fn run() -> Vec<(String, f64, f64, f64)> {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = Arc::new(AnyStore::connect(&url).await.expect("SQLite"));
    let (ingest, own, stored) = measure(sqlite).await;
    rows.push(("SQLite".to_owned(), own, stored, ingest));
    let cluster = PostgresCluster::start().await;
    let url = cluster.create_database("alerts_bench").await;
    let postgres = Arc::new(AnyStore::connect(&url).await.expect("PostgreSQL"));
    let (ingest, own, stored) = measure(postgres).await;
    rows.push(("PostgreSQL".to_owned(), own, stored, ingest));
    rows
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rows = runtime.block_on(run());
    println!(
        "\n| backend | rules, one process (own readings), batches/s | rules, split (store read per series), batches/s | baseline: Store::ingest, batches/s (same run) |"
    );
    println!("|---|---:|---:|---:|");
    for (backend, own, stored, ingest) in rows {
        println!(
            "| {backend} | {own:.0} ({:.1}x) | {stored:.0} ({:.1}x) | {ingest:.0} |",
            own / ingest,
            stored / ingest
        );
    }
}
