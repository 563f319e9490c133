//! Store benchmark: ingest throughput set beside raw baselines measured in
//! the same run, and query latency over 10 million stored readings. Prints
//! a markdown table; asserts nothing about speed.
//!
//! ```text
//! cargo bench -p gridlink-cloud --bench store
//! GRIDLINK_BENCH_QUICK=1 cargo bench -p gridlink-cloud --bench store   # a smoke run, 1/10 of the data
//! ```
//!
//! PostgreSQL is a throwaway cluster from gridlink-testkit (fsync, full-page
//! writes and synchronous commit off, as in DESIGN.md's COPY figures);
//! SQLite is a file in a temporary directory with the store's defaults (WAL,
//! `synchronous = FULL`).
//!
//! * Ingest: groups of 20 batches (20 VENs x 20 series x 60 one-second
//!   readings = 24,000 readings per call) through `Store::ingest`, against
//!   the same rows written raw in the same grouping: PostgreSQL `COPY ...
//!   FROM STDIN` (text) into a bare table with the metrics columns, and into
//!   one that also has the metrics primary key; SQLite multi-row `INSERT`s
//!   of one prepared statement in one transaction per group, into the same
//!   two shapes.
//! * Query: one VEN with 4 series at 1 s for 30 days (10,368,000 readings),
//!   loaded through `Store::ingest` itself (so the rollups are the ones
//!   ingest maintains), then `Store::series` for a 24 h window at 1 min and
//!   the 30 days at 1 h, each window slid by a minute per run.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use gridlink_cloud::store::{AnyStore, IngestBatch, Resolution, SeriesQuery, Store};
use gridlink_protocol::{Phase, Point, Quantity, Series, VenId};
use gridlink_testkit::postgres::PostgresCluster;
use sqlx::{AssertSqlSafe, Connection as _};

/// 2025-11-20T00:00:00Z.
const DAY0: i64 = 1_763_596_800_000;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// Ingest workload: VENs per group (one batch each), series per batch,
/// one-second readings per series and batch.
const VENS: usize = 20;
const SERIES_PER_BATCH: usize = 20;
const POINTS_PER_SERIES: usize = 60;

/// Query workload: series of the one VEN, days at 1 s.
const QUERY_SERIES: usize = 4;
const QUERY_DAYS: i64 = 30;

/// Query runs per measurement.
const QUERY_RUNS: usize = 300;

/// A deterministic pseudo-random sequence (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self, spread: i64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (2 * spread as u64 + 1)) as i64 - spread
    }
}

/// One meter column: power, voltages, currents, ... with realistic values.
fn column(index: usize, start_ms: i64, points: usize, noise: &mut Noise) -> Series {
    let quantities = [
        (Quantity::ActivePower, Phase::Total, 0, 4_000),
        (Quantity::Voltage, Phase::L1, -1, 2_300),
        (Quantity::Voltage, Phase::L2, -1, 2_300),
        (Quantity::Voltage, Phase::L3, -1, 2_300),
        (Quantity::Current, Phase::L1, -3, 6_000),
    ];
    let (quantity, phase, exponent, base) = quantities[index % quantities.len()];
    let meter = format!("meter-{}", index / quantities.len());
    let mut series = Series::new(meter, quantity, phase, exponent);
    let mut value = base;
    series.points = (0..points as i64)
        .map(|i| {
            value += noise.next(base / 100 + 1);
            Point {
                ts_ms: start_ms + i * 1000,
                raw: value,
            }
        })
        .collect();
    series
}

/// Group `n` of the ingest workload: one batch per VEN, each the next
/// minute of its 20 series.
fn ingest_group(n: usize, noise: &mut Noise) -> Vec<IngestBatch> {
    let start = DAY0 + n as i64 * 60_000;
    (0..VENS)
        .map(|ven| IngestBatch {
            ven_id: VenId::new(format!("bench-ven-{ven:03}")).expect("valid ven id"),
            batch_seq: n as u64,
            received_ms: start + 61_000,
            series: (0..SERIES_PER_BATCH)
                .map(|i| column(i, start, POINTS_PER_SERIES, noise))
                .collect(),
        })
        .collect()
}

/// The rows a group stores, as (series id, ts, value), with ids assigned
/// the way a fresh store would (the baselines need no series table).
fn rows(group: &[IngestBatch]) -> Vec<(i64, i64, f64)> {
    let mut rows = Vec::with_capacity(VENS * SERIES_PER_BATCH * POINTS_PER_SERIES);
    for (v, batch) in group.iter().enumerate() {
        for (s, series) in batch.series.iter().enumerate() {
            let id = (v * SERIES_PER_BATCH + s + 1) as i64;
            rows.extend(
                series
                    .points
                    .iter()
                    .map(|&p| (id, p.ts_ms, series.value(p))),
            );
        }
    }
    rows
}

fn readings(groups: &[Vec<IngestBatch>]) -> usize {
    groups
        .iter()
        .flatten()
        .flat_map(|b| &b.series)
        .map(|s| s.points.len())
        .sum()
}

/// Readings per second through `Store::ingest`.
async fn ingest_rate<S: Store>(store: &S, groups: &[Vec<IngestBatch>]) -> f64 {
    let started = Instant::now();
    for group in groups {
        let outcome = store.ingest(group).await.expect("ingest");
        assert_eq!(
            outcome.inserted_batches,
            group.len() as u64,
            "every batch is new"
        );
    }
    readings(groups) as f64 / started.elapsed().as_secs_f64()
}

/// Readings per second of a raw `COPY` per group into `table`: the
/// better of text and binary format (each into a fresh copy of the table).
async fn postgres_copy_rate(
    conn: &mut sqlx::PgConnection,
    table: &str,
    groups: &[Vec<IngestBatch>],
) -> f64 {
    let mut best: f64 = 0.0;
    for binary in [false, true] {
        let target = format!("{table}_{}", if binary { "binary" } else { "text" });
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE {target} (LIKE {table} INCLUDING ALL)"
        )))
        .execute(&mut *conn)
        .await
        .expect("baseline table");
        let started = Instant::now();
        for group in groups {
            let data = if binary {
                copy_binary(&rows(group))
            } else {
                copy_text(&rows(group))
            };
            let format = if binary { "(FORMAT binary)" } else { "" };
            let mut copy = conn
                .copy_in_raw(&format!(
                    "COPY {target} (series_id, ts, value) FROM STDIN {format}"
                ))
                .await
                .expect("start COPY");
            copy.send(data).await.expect("send COPY data");
            copy.finish().await.expect("finish COPY");
        }
        best = best.max(readings(groups) as f64 / started.elapsed().as_secs_f64());
    }
    best
}

fn copy_text(rows: &[(i64, i64, f64)]) -> Vec<u8> {
    let mut text = String::with_capacity(rows.len() * 32);
    for (id, ts, value) in rows {
        let _ = writeln!(text, "{id}\t{ts}\t{value}");
    }
    text.into_bytes()
}

/// PostgreSQL's binary `COPY` format (as the store writes it).
fn copy_binary(rows: &[(i64, i64, f64)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(21 + rows.len() * 38);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&[0; 8]);
    for &(id, ts, value) in rows {
        buf.extend_from_slice(&3_i16.to_be_bytes());
        for field in [
            id.to_be_bytes(),
            ts.to_be_bytes(),
            value.to_bits().to_be_bytes(),
        ] {
            buf.extend_from_slice(&8_i32.to_be_bytes());
            buf.extend_from_slice(&field);
        }
    }
    buf.extend_from_slice(&(-1_i16).to_be_bytes());
    buf
}

/// Readings per second of multi-row inserts (256 rows per prepared
/// statement, the store's chunk) in one transaction per group.
async fn sqlite_insert_rate(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    groups: &[Vec<IngestBatch>],
) -> f64 {
    const CHUNK: usize = 256;
    let chunk_sql = format!(
        "INSERT INTO {table} (series_id, ts, value) VALUES {}",
        vec!["(?, ?, ?)"; CHUNK].join(", ")
    );
    let one_sql = format!("INSERT INTO {table} (series_id, ts, value) VALUES (?, ?, ?)");
    let started = Instant::now();
    for group in groups {
        let rows = rows(group);
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.expect("begin");
        let mut chunks = rows.chunks_exact(CHUNK);
        for chunk in &mut chunks {
            let mut query = sqlx::query(AssertSqlSafe(chunk_sql.as_str()));
            for &(id, ts, value) in chunk {
                query = query.bind(id).bind(ts).bind(value);
            }
            query.execute(&mut *tx).await.expect("insert chunk");
        }
        for &(id, ts, value) in chunks.remainder() {
            sqlx::query(AssertSqlSafe(one_sql.as_str()))
                .bind(id)
                .bind(ts)
                .bind(value)
                .execute(&mut *tx)
                .await
                .expect("insert row");
        }
        tx.commit().await.expect("commit");
    }
    readings(groups) as f64 / started.elapsed().as_secs_f64()
}

/// Loads the query dataset through `Store::ingest`: 5-minute batches of
/// the VEN's series, 20 per call. Returns readings per second.
async fn load_query_dataset<S: Store>(store: &S, days: i64) -> (usize, f64) {
    let mut noise = Noise(0x0123_4567_89ab_cdef);
    let ven = VenId::new("query-ven").expect("valid ven id");
    let batch_ms = 300_000;
    let batches = days * DAY / batch_ms;
    let started = Instant::now();
    let mut total = 0;
    let mut seq = 0;
    while seq < batches {
        let group: Vec<IngestBatch> = (seq..(seq + 20).min(batches))
            .map(|s| {
                let start = DAY0 + s * batch_ms;
                IngestBatch {
                    ven_id: ven.clone(),
                    batch_seq: s as u64,
                    received_ms: start + batch_ms + 1000,
                    series: (0..QUERY_SERIES)
                        .map(|i| column(i, start, (batch_ms / 1000) as usize, &mut noise))
                        .collect(),
                }
            })
            .collect();
        total += store
            .ingest(&group)
            .await
            .expect("load query dataset")
            .inserted_readings as usize;
        seq += 20;
    }
    (total, total as f64 / started.elapsed().as_secs_f64())
}

/// p50 and p99 of `Store::series` for windows of `span_ms` ending at the
/// dataset's end, each run slid back by a minute.
async fn query_latency<S: Store>(
    store: &S,
    days: i64,
    span_ms: i64,
    resolution: Resolution,
) -> (Duration, Duration, usize) {
    let end = DAY0 + days * DAY;
    let mut latencies = Vec::with_capacity(QUERY_RUNS);
    let mut points = 0;
    for run in 0..QUERY_RUNS as i64 {
        let to_ms = end - (run % 60) * 60_000;
        let query = SeriesQuery {
            ven_id: VenId::new("query-ven").expect("valid ven id"),
            meter: "meter-0".into(),
            quantity: Quantity::ActivePower,
            phase: Phase::Total,
            from_ms: to_ms - span_ms,
            to_ms,
            resolution,
            limit: 10_000,
        };
        let started = Instant::now();
        let got = store.series(&query).await.expect("series query");
        latencies.push(started.elapsed());
        points = points.max(got.len());
    }
    let (p50, p99) = percentiles(latencies);
    (p50, p99, points)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rate(r: f64) -> String {
    if r >= 1_000_000.0 {
        format!("{:.2} M/s", r / 1_000_000.0)
    } else {
        format!("{:.0} k/s", r / 1000.0)
    }
}

/// Table rows: (measurement, value, baseline, ratio or note).
type Rows = Vec<(String, String, String, String)>;

async fn query_rows<S: Store>(backend: &str, store: &S, days: i64, table: &mut Rows) {
    let (loaded, load_rate) = load_query_dataset(store, days).await;
    table.push((
        format!("{backend}: load {loaded} readings (1 VEN, {QUERY_SERIES} series, {days} d at 1 s) via ingest"),
        rate(load_rate),
        String::new(),
        String::new(),
    ));
    for (what, span, resolution) in [
        ("24 h at 1 min", DAY, Resolution::Minute),
        (&*format!("{days} d at 1 h"), days * DAY, Resolution::Hour),
        ("1 h raw", HOUR, Resolution::Raw),
    ] {
        let (p50, p99, points) = query_latency(store, days, span, resolution).await;
        table.push((
            format!("{backend}: series {what} ({points} points), p50 / p99"),
            format!("{} / {}", ms(p50), ms(p99)),
            "goal p99 <= 50 ms".into(),
            String::new(),
        ));
    }
    let end = DAY0 + days * DAY;
    let mut latencies = Vec::with_capacity(QUERY_RUNS);
    let mut points = 0;
    for run in 0..QUERY_RUNS as i64 {
        let to_ms = end - (run % 60) * 60_000;
        let started = Instant::now();
        let got = store
            .network(to_ms - days * DAY, to_ms, Resolution::Hour)
            .await
            .expect("network query");
        latencies.push(started.elapsed());
        points = points.max(got.len());
    }
    let (p50, p99) = percentiles(latencies);
    table.push((
        format!("{backend}: network {days} d at 1 h ({points} points), p50 / p99"),
        format!("{} / {}", ms(p50), ms(p99)),
        String::new(),
        String::new(),
    ));
}

/// p50 and p99.
fn percentiles(mut latencies: Vec<Duration>) -> (Duration, Duration) {
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    (at(0.50), at(0.99))
}

/// Ingest against `COPY`, then queries over the 30-day dataset.
async fn postgres(groups: &[Vec<IngestBatch>], query_days: i64, table: &mut Rows) {
    let cluster = PostgresCluster::start().await;
    let url = cluster.create_database("bench_ingest").await;
    let store = AnyStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store.prepare_partitions(DAY0).await.expect("partitions");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(
        "CREATE TABLE copy_bare (series_id BIGINT NOT NULL, ts BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL);
         CREATE TABLE copy_pk (series_id BIGINT NOT NULL, ts BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL,
                               PRIMARY KEY (series_id, ts));",
    )
    .execute(&mut conn)
    .await
    .expect("baseline tables");
    let copy_bare = postgres_copy_rate(&mut conn, "copy_bare", groups).await;
    let copy_pk = postgres_copy_rate(&mut conn, "copy_pk", groups).await;
    let _ = conn.close().await;
    let ingest = ingest_rate(&store, groups).await;
    let n = readings(groups);
    table.push((
        format!("PostgreSQL: Store::ingest, {n} readings (24,000 per call)"),
        rate(ingest),
        format!("COPY, bare table: {}", rate(copy_bare)),
        format!("{:.2} of raw", ingest / copy_bare),
    ));
    table.push((
        "PostgreSQL: same, against COPY into a table with the metrics primary key".into(),
        rate(ingest),
        format!("COPY, with PK: {}", rate(copy_pk)),
        format!("{:.2} of raw", ingest / copy_pk),
    ));

    let url = cluster.create_database("bench_query").await;
    let store = AnyStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    query_rows("PostgreSQL", &store, query_days, table).await;
}

/// Ingest against batched inserts, then queries over the 30-day dataset.
async fn sqlite(groups: &[Vec<IngestBatch>], query_days: i64, table: &mut Rows) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = AnyStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("store.db").display()
    ))
    .await
    .expect("open SQLite");
    store.migrate().await.expect("migrate");
    let baseline_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("baseline.db").display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&baseline_url)
        .await
        .expect("open baseline");
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE bare (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL) STRICT;
         CREATE TABLE pk (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
                          PRIMARY KEY (series_id, ts)) STRICT, WITHOUT ROWID;",
    )
    .execute(&mut conn)
    .await
    .expect("baseline tables");
    let insert_bare = sqlite_insert_rate(&mut conn, "bare", groups).await;
    let insert_pk = sqlite_insert_rate(&mut conn, "pk", groups).await;
    let _ = conn.close().await;
    let ingest = ingest_rate(&store, groups).await;
    let n = readings(groups);
    table.push((
        format!("SQLite (WAL, synchronous=FULL): Store::ingest, {n} readings"),
        rate(ingest),
        format!("batched INSERT, bare table: {}", rate(insert_bare)),
        format!("{:.2} of raw", ingest / insert_bare),
    ));
    table.push((
        "SQLite: same, against batched INSERT into the metrics layout (PK, WITHOUT ROWID)".into(),
        rate(ingest),
        format!("batched INSERT, with PK: {}", rate(insert_pk)),
        format!("{:.2} of raw", ingest / insert_pk),
    ));
    drop(store);

    let store = AnyStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("query.db").display()
    ))
    .await
    .expect("open SQLite");
    store.migrate().await.expect("migrate");
    query_rows("SQLite", &store, query_days, table).await;
}

async fn run() -> Rows {
    let quick = std::env::var_os("GRIDLINK_BENCH_QUICK").is_some();
    let ingest_groups = if quick { 5 } else { 40 };
    let query_days = if quick { 3 } else { QUERY_DAYS };
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let groups: Vec<Vec<IngestBatch>> = (0..ingest_groups)
        .map(|n| ingest_group(n, &mut noise))
        .collect();
    let mut table = Rows::new();
    postgres(&groups, query_days, &mut table).await;
    sqlite(&groups[..groups.len() / 2], query_days, &mut table).await;
    table
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let table = runtime.block_on(run());
    println!("\n| measurement | result | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    for (what, value, baseline, ratio) in table {
        println!("| {what} | {value} | {baseline} | {ratio} |");
    }
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
}
