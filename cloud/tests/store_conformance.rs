//! The store conformance suite: one set of test functions, generic over
//! [`Store`], run against a fresh PostgreSQL 15 (its own cluster and
//! database per test) and against SQLite in a temporary directory.
//!
//! A few tests at the end exercise what only one backend has (partitions,
//! how each becomes unavailable, in-memory SQLite, URL dispatch).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers and the generic test bodies: a panic is the failure report"
)]
#![expect(
    clippy::float_cmp,
    reason = "values are stored and returned bit for bit; only sums are compared with a tolerance"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use gridlink_cloud::model::projects::{
    FinanceKind, HourRow, MilestoneQuantity, ProjectKind, ProjectStatus,
};
use gridlink_cloud::store::alerts::{
    Alert, AlertFilter, AlertState, Channel, Cleared, Condition, DeliveryOutcome, Raised, Rule,
    Severity, notification_payload,
};
use gridlink_cloud::store::dr::{
    AckOutcome, DrFilter, EventRecord, EventWrite, OutboxCommand, PowerMean, ProgramRecord,
    ProgramWrite,
};
use gridlink_cloud::store::projects::{
    FinanceWrite, MilestoneWrite, ProjectEvent, ProjectRecord, ProjectWrite,
};
use gridlink_cloud::store::{
    AnyStore, AuditActor, AuditEntry, AuditQuery, ConnectOptions, Dialect, IngestBatch,
    IngestOutcome, RegisteredLoad, Resolution, Role, SeriesPoint, SeriesQuery, ShadowWrite, Store,
    StoreError, VenRegistration,
};
use gridlink_protocol::shadow::{ShadowDocument, ShadowUpdateRequest, ShadowUpdateState};
use gridlink_protocol::telemetry::MAX_TS_MS;
use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, LoadChangeCause, LoadSnapshot, LoadState,
    ObjectId, Phase, Point, Quantity, Series, Status, Timestamp, VenId,
};
use gridlink_testkit::postgres::PostgresCluster;
use tempfile::TempDir;

/// 2025-11-20T00:00:00Z: a day boundary, so hours and days line up.
const DAY0: i64 = 1_763_596_800_000;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

// ---------------------------------------------------------------- fixtures

/// A migrated store on a fresh database, and what it needs to stay alive.
struct Db {
    store: AnyStore,
    url: String,
    cluster: Option<PostgresCluster>,
    _dir: Option<TempDir>,
}

/// Fast failure when the database is gone (the default waits 5 s).
fn quick_options() -> ConnectOptions {
    ConnectOptions {
        acquire_timeout: Duration::from_secs(1),
        busy_timeout: Duration::from_millis(200),
        ..ConnectOptions::default()
    }
}

impl Db {
    async fn postgres(test: &str) -> Self {
        let cluster = PostgresCluster::start().await;
        let url = cluster.create_database(test).await;
        let store = AnyStore::connect_with(&url, &quick_options())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Self {
            store,
            url,
            cluster: Some(cluster),
            _dir: None,
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gridlink.db").display());
        let store = AnyStore::connect_with(&url, &quick_options())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Self {
            store,
            url,
            cluster: None,
            _dir: Some(dir),
        }
    }

    /// A second, independent store on the same database (another process).
    async fn another_handle(&self) -> AnyStore {
        AnyStore::connect_with(&self.url, &quick_options())
            .await
            .unwrap()
    }
}

/// Runs each listed test body against both backends.
macro_rules! conformance {
    (single: [$($single:ident),* $(,)?], pair: [$($pair:ident),* $(,)?] $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $single() {
                    let db = super::Db::postgres(stringify!($single)).await;
                    super::$single(&db.store).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $pair() {
                    let db = super::Db::postgres(stringify!($pair)).await;
                    let other = db.another_handle().await;
                    super::$pair(&db.store, &other).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $single() {
                    let db = super::Db::sqlite().await;
                    super::$single(&db.store).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $pair() {
                    let db = super::Db::sqlite().await;
                    let other = db.another_handle().await;
                    super::$pair(&db.store, &other).await;
                }
            )*
        }
    };
}

conformance!(
    single: [
        migrate_twice,
        values_round_trip,
        exponent_change_keeps_one_series,
        duplicate_batches_are_stored_once,
        repeated_readings_keep_the_first,
        large_groups_keep_the_first_too,
        rollups_agree_with_raw_including_late_data,
        limit_and_range,
        network_sums_import_and_export_across_vens,
        status_and_vens,
        load_snapshots,
        registration,
        tokens,
        retention_deletes_raw_and_keeps_rollups,
        far_past_and_future,
        invalid_input_stores_nothing,
        programs_crud_and_filters,
        events_queue_commands_with_increasing_ids,
        acks_are_stored_once_for_targeted_vens,
        same_millisecond_acks_keep_their_lifecycle_order,
        site_power_means_per_ven,
        site_power_reads_only_the_site_meter,
        audit_trail_appends_and_filters,
        token_expiry_and_revocation,
        api_keys_keep_their_vens_and_revocation,
        export_reads_what_was_ingested_and_leases_days,
        overview_shows_each_site_meters_latest_power,
        dr_constraint_errors_are_classified_and_store_nothing,
        outbox_keeps_commands_until_sent,
        shadows_are_saved_only_at_the_expected_version,
        projects_keep_their_vens_and_milestones,
        project_finances_are_kept_per_project,
        project_energy_reads_the_hourly_rollups,
        alerts_open_once_and_resolve_after_their_hold_down,
        alert_deliveries_are_claimed_leased_and_retried,
        alert_rules_read_recent_readings,
    ],
    pair: [
        command_ids_survive_another_process,
        late_data_for_a_day_another_process_dropped,
        two_processes_ingest_overlapping_groups,
        shadow_writers_never_lose_each_others_updates,
        alert_claims_never_overlap_across_processes,
    ],
);

// ---------------------------------------------------------------- helpers

fn ven(id: &str) -> VenId {
    VenId::new(id).unwrap()
}

fn series(
    meter: &str,
    quantity: Quantity,
    phase: Phase,
    exponent: i8,
    points: &[(i64, i64)],
) -> Series {
    Series {
        meter: meter.into(),
        quantity,
        phase,
        exponent,
        points: points
            .iter()
            .map(|&(ts_ms, raw)| Point { ts_ms, raw })
            .collect(),
    }
}

fn power(points: &[(i64, i64)]) -> Series {
    series("main", Quantity::ActivePower, Phase::Total, 0, points)
}

fn batch(ven_id: &str, batch_seq: u64, received_ms: i64, series: Vec<Series>) -> IngestBatch {
    IngestBatch {
        ven_id: ven(ven_id),
        batch_seq,
        received_ms,
        series,
    }
}

fn query(
    ven_id: &str,
    meter: &str,
    quantity: Quantity,
    phase: Phase,
    resolution: Resolution,
) -> SeriesQuery {
    SeriesQuery {
        ven_id: ven(ven_id),
        meter: meter.into(),
        quantity,
        phase,
        from_ms: 0,
        to_ms: MAX_TS_MS + 1,
        resolution,
        limit: 100_000,
    }
}

fn power_query(ven_id: &str, resolution: Resolution) -> SeriesQuery {
    query(
        ven_id,
        "main",
        Quantity::ActivePower,
        Phase::Total,
        resolution,
    )
}

/// Raw (ts, value) of a series.
async fn raw<S: Store>(s: &S, q: SeriesQuery) -> Vec<(i64, f64)> {
    let q = SeriesQuery {
        resolution: Resolution::Raw,
        ..q
    };
    s.series(&q)
        .await
        .unwrap()
        .iter()
        .map(|p| (p.ts_ms, p.last))
        .collect()
}

fn outcome(inserted_batches: u64, inserted_readings: u64, duplicate_batches: u64) -> IngestOutcome {
    IngestOutcome {
        inserted_batches,
        inserted_readings,
        duplicate_batches,
    }
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self, range: std::ops::Range<i64>) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        range.start + (r % (range.end - range.start) as u64) as i64
    }
}

/// What a rollup point must be, computed from raw readings.
fn reference(readings: &[(i64, f64)], resolution: Resolution) -> Vec<SeriesPoint> {
    let mut buckets: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
    let width = resolution.bucket_ms();
    for &(ts, value) in readings {
        let bucket = if width == 0 { ts } else { ts - ts % width };
        buckets.entry(bucket).or_default().push((ts, value));
    }
    buckets
        .into_iter()
        .map(|(ts_ms, points)| {
            let sum: f64 = points.iter().map(|p| p.1).sum();
            SeriesPoint {
                ts_ms,
                avg: sum / points.len() as f64,
                min: points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
                max: points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
                last: points.iter().max_by_key(|p| p.0).unwrap().1,
                count: points.len() as u64,
            }
        })
        .collect()
}

/// Rollup points equal the reference: exactly, except the mean (sums are
/// added in another order), which must agree to 1e-9 relative.
fn assert_points_match(got: &[SeriesPoint], want: &[SeriesPoint], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of points");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (g.ts_ms, g.count, g.min, g.max, g.last),
            (w.ts_ms, w.count, w.min, w.max, w.last),
            "{what}"
        );
        assert!(
            (g.avg - w.avg).abs() <= 1e-9 * w.avg.abs().max(1.0),
            "{what}: avg at {} is {}, expected {}",
            g.ts_ms,
            g.avg,
            w.avg
        );
    }
}

/// `network()` agrees with the statistics recomputed from the rollups of
/// `vens` (each with one total active power series, meter "main").
async fn assert_network_matches_rollups<S: Store>(s: &S, vens: &[&str]) {
    for resolution in [
        Resolution::Minute,
        Resolution::QuarterHour,
        Resolution::Hour,
    ] {
        let mut want: BTreeMap<i64, (f64, f64, u64)> = BTreeMap::new();
        for ven_id in vens {
            for point in s.series(&power_query(ven_id, resolution)).await.unwrap() {
                let bucket = want.entry(point.ts_ms).or_default();
                bucket.0 += point.avg.max(0.0);
                bucket.1 += (-point.avg).max(0.0);
                bucket.2 += 1;
            }
        }
        let got = s.network(0, MAX_TS_MS, resolution).await.unwrap();
        assert_eq!(got.len(), want.len(), "{resolution:?}");
        for (point, (&ts_ms, &(import_w, export_w, vens_reporting))) in got.iter().zip(&want) {
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
            assert_eq!(
                (point.ts_ms, point.vens_reporting),
                (ts_ms, vens_reporting),
                "{resolution:?}"
            );
            assert!(
                close(point.import_w, import_w) && close(point.export_w, export_w),
                "{resolution:?} at {ts_ms}: {point:?}, expected import {import_w} export {export_w}"
            );
        }
    }
}

// ---------------------------------------------------------------- the suite

async fn migrate_twice<S: Store>(s: &S) {
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
    s.prepare_partitions(DAY0).await.unwrap();
    s.prepare_partitions(DAY0).await.unwrap();
    assert_eq!(s.ingest(&[]).await.unwrap(), IngestOutcome::default());
}

async fn values_round_trip<S: Store>(s: &S) {
    let t = DAY0 + 1000;
    let columns = vec![
        series(
            "main",
            Quantity::ActivePower,
            Phase::Total,
            0,
            &[(t, -2500), (t + 1000, 0), (t + 2000, i64::MAX)],
        ),
        series(
            "main",
            Quantity::Voltage,
            Phase::L1,
            -1,
            &[(t, 2301), (t + 1000, -7)],
        ),
        series("main", Quantity::Frequency, Phase::Total, -2, &[(t, 4999)]),
        series(
            "main",
            Quantity::PowerFactor,
            Phase::L3,
            -9,
            &[(t, 987_654_321), (t + 1, i64::MIN)],
        ),
        series(
            "main",
            Quantity::EnergyImport,
            Phase::Total,
            3,
            &[(t, 123_456_789)],
        ),
        series("pv", Quantity::ActivePower, Phase::Total, 9, &[(t, -3)]),
        series("pv", Quantity::Current, Phase::N, -3, &[(t, 12_345)]),
    ];
    let readings: usize = columns.iter().map(|c| c.points.len()).sum();
    let got = s
        .ingest(&[batch("ven-1", 1, t + 5000, columns.clone())])
        .await
        .unwrap();
    assert_eq!(got, outcome(1, readings as u64, 0));
    for column in &columns {
        let want: Vec<(i64, f64)> = column
            .points
            .iter()
            .map(|&p| (p.ts_ms, column.value(p)))
            .collect();
        let stored = raw(
            s,
            query(
                "ven-1",
                &column.meter,
                column.quantity,
                column.phase,
                Resolution::Raw,
            ),
        )
        .await;
        // Bit for bit: the store keeps raw * 10^exponent as computed by the protocol.
        assert_eq!(
            stored, want,
            "{} {:?} {:?}",
            column.meter, column.quantity, column.phase
        );
    }
    // Raw points are their own aggregate.
    let volts = &columns[1];
    let v0 = volts.value(volts.points[0]);
    let point = s
        .series(&query(
            "ven-1",
            "main",
            Quantity::Voltage,
            Phase::L1,
            Resolution::Raw,
        ))
        .await
        .unwrap()[0];
    assert_eq!(
        (point.avg, point.min, point.max, point.last, point.count),
        (v0, v0, v0, v0, 1)
    );

    // Same names, other VEN: another series.
    assert!(
        raw(s, power_query("ven-2", Resolution::Raw))
            .await
            .is_empty()
    );
}

async fn exponent_change_keeps_one_series<S: Store>(s: &S) {
    let t = DAY0 + 1000;
    let volts = series(
        "main",
        Quantity::Voltage,
        Phase::L1,
        -1,
        &[(t, 2301), (t + 1000, -7)],
    );
    s.ingest(&[batch("ven-1", 1, t + 5000, vec![volts.clone()])])
        .await
        .unwrap();
    let v0 = volts.value(volts.points[0]);
    // A meter reconfigured to another resolution: the same series, both
    // values right.
    let finer = series(
        "main",
        Quantity::Voltage,
        Phase::L1,
        -2,
        &[(t + 2000, 23_012)],
    );
    s.ingest(&[batch("ven-1", 2, t + 6000, vec![finer.clone()])])
        .await
        .unwrap();
    let stored = raw(
        s,
        query(
            "ven-1",
            "main",
            Quantity::Voltage,
            Phase::L1,
            Resolution::Raw,
        ),
    )
    .await;
    let want = [
        (t, v0),
        (t + 1000, volts.value(volts.points[1])),
        (t + 2000, finer.value(finer.points[0])),
    ];
    assert_eq!(stored, want);
    assert_eq!(want[2].1, 230.12);
    // One series, one rollup over both resolutions.
    let minute = s
        .series(&query(
            "ven-1",
            "main",
            Quantity::Voltage,
            Phase::L1,
            Resolution::Minute,
        ))
        .await
        .unwrap();
    assert_eq!(
        (minute.len(), minute[0].count, minute[0].max, minute[0].last),
        (1, 3, 230.12, 230.12)
    );
}

async fn duplicate_batches_are_stored_once<S: Store>(s: &S) {
    let b = |ven_id: &str, seq: u64, start: i64| {
        batch(
            ven_id,
            seq,
            start + 60_000,
            vec![power(&[(start, 10), (start + 1000, 20)])],
        )
    };
    let (b1, b2, b3, b4, b5) = (
        b("ven-1", 1, DAY0),
        b("ven-1", 2, DAY0 + 10_000),
        b("ven-1", 3, DAY0 + 20_000),
        b("ven-1", 4, DAY0 + 30_000),
        b("ven-1", u64::MAX, DAY0 + 40_000),
    );
    assert_eq!(
        s.ingest(&[b1.clone(), b2.clone()]).await.unwrap(),
        outcome(2, 4, 0)
    );
    // Redelivered.
    assert_eq!(
        s.ingest(std::slice::from_ref(&b1)).await.unwrap(),
        outcome(0, 0, 1)
    );
    // Twice within one call.
    assert_eq!(
        s.ingest(&[b3.clone(), b3.clone()]).await.unwrap(),
        outcome(1, 2, 1)
    );
    // Partial overlap: some of the group stored before, some new.
    assert_eq!(s.ingest(&[b2, b4, b1, b5]).await.unwrap(), outcome(2, 4, 2));
    // The same sequence number from another VEN is another batch.
    assert_eq!(
        s.ingest(&[b("ven-2", 1, DAY0)]).await.unwrap(),
        outcome(1, 2, 0)
    );

    let stored = raw(s, power_query("ven-1", Resolution::Raw)).await;
    assert_eq!(stored.len(), 10);
    let minute = s
        .series(&power_query("ven-1", Resolution::Minute))
        .await
        .unwrap();
    assert_eq!(minute.iter().map(|p| p.count).sum::<u64>(), 10);
    assert_eq!(minute[0].avg, 15.0);
    let hour = s
        .series(&power_query("ven-1", Resolution::Hour))
        .await
        .unwrap();
    assert_eq!((hour.len(), hour[0].count), (1, 10));
}

async fn repeated_readings_keep_the_first<S: Store>(s: &S) {
    let first = batch(
        "ven-1",
        1,
        DAY0 + 10_000,
        vec![power(&[
            (DAY0 + 1000, 1),
            (DAY0 + 2000, 2),
            (DAY0 + 3000, 3),
        ])],
    );
    let overlapping = batch(
        "ven-1",
        2,
        DAY0 + 10_000,
        vec![power(&[
            (DAY0 + 2000, 200),
            (DAY0 + 3000, 300),
            (DAY0 + 4000, 400),
        ])],
    );
    // The same series twice in one batch, and a timestamp repeated within a
    // series: not what the protocol sends, but it must not fail the group.
    let malformed = batch(
        "ven-1",
        3,
        DAY0 + 10_000,
        vec![
            power(&[(DAY0 + 5000, 5), (DAY0 + 5000, 55)]),
            power(&[(DAY0 + 5000, 555), (DAY0 + 6000, 6)]),
        ],
    );
    assert_eq!(
        s.ingest(&[first, overlapping, malformed]).await.unwrap(),
        outcome(3, 6, 0)
    );
    // Later group: one reading already stored, one new.
    let again = batch(
        "ven-1",
        4,
        DAY0 + 20_000,
        vec![power(&[(DAY0 + 4000, -4), (DAY0 + 7000, 7)])],
    );
    assert_eq!(s.ingest(&[again]).await.unwrap(), outcome(1, 1, 0));

    let want = [
        (1000, 1.0),
        (2000, 2.0),
        (3000, 3.0),
        (4000, 400.0),
        (5000, 5.0),
        (6000, 6.0),
        (7000, 7.0),
    ]
    .map(|(dt, v)| (DAY0 + dt, v));
    assert_eq!(raw(s, power_query("ven-1", Resolution::Raw)).await, want);
    // The rollups saw each stored reading once, and nothing else.
    for resolution in [
        Resolution::Minute,
        Resolution::QuarterHour,
        Resolution::Hour,
    ] {
        let got = s.series(&power_query("ven-1", resolution)).await.unwrap();
        assert_points_match(
            &got,
            &reference(&want, resolution),
            &format!("{resolution:?}"),
        );
    }
}

/// Groups large enough for PostgreSQL's `COPY` path (small ones are one
/// `INSERT`): an overlap with stored readings keeps the stored ones and
/// adds the rest, as the small path does.
async fn large_groups_keep_the_first_too<S: Store>(s: &S) {
    const N: i64 = 5_000;
    let first: Vec<(i64, i64)> = (0..N).map(|i| (DAY0 + i * 1000, i)).collect();
    assert_eq!(
        s.ingest(&[batch("ven-1", 1, DAY0, vec![power(&first)])])
            .await
            .unwrap(),
        outcome(1, 5_000, 0)
    );
    // Half overlaps (other values: the stored ones win), half is new.
    let second: Vec<(i64, i64)> = (N / 2..N + N / 2).map(|i| (DAY0 + i * 1000, -i)).collect();
    assert_eq!(
        s.ingest(&[batch("ven-1", 2, DAY0, vec![power(&second)])])
            .await
            .unwrap(),
        outcome(1, 2_500, 0)
    );
    let want: Vec<(i64, f64)> = (0..N + N / 2)
        .map(|i| (DAY0 + i * 1000, if i < N { i as f64 } else { -i as f64 }))
        .collect();
    assert_eq!(raw(s, power_query("ven-1", Resolution::Raw)).await, want);
    let hour = s
        .series(&power_query("ven-1", Resolution::Hour))
        .await
        .unwrap();
    assert_points_match(&hour, &reference(&want, Resolution::Hour), "hour");
}

async fn rollups_agree_with_raw_including_late_data<S: Store>(s: &S) {
    // Three hours of 7 s readings (not aligned to any bucket) of two series,
    // in batches of 40 readings (280 s: bucket edges fall inside batches).
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let start = DAY0 + 3 * HOUR + 1234;
    let points: Vec<(i64, i64, i64)> = (0..1543)
        .map(|i| {
            (
                start + i * 7000,
                noise.next(-5000..20_000),
                noise.next(2200..2500),
            )
        })
        .collect();
    let batches: Vec<IngestBatch> = points
        .chunks(40)
        .zip(1..)
        .map(|(chunk, seq)| {
            let last_ts = chunk[chunk.len() - 1].0;
            let p: Vec<(i64, i64)> = chunk.iter().map(|&(ts, w, _)| (ts, w)).collect();
            let v: Vec<(i64, i64)> = chunk.iter().map(|&(ts, _, v)| (ts, v)).collect();
            batch(
                "ven-1",
                seq,
                last_ts + 1500,
                vec![
                    power(&p),
                    series("main", Quantity::Voltage, Phase::L2, -1, &v),
                ],
            )
        })
        .collect();
    assert_eq!(batches.len(), 39);

    // Batch 10 arrives last: after newer data, into buckets that already
    // hold readings before and after it.
    let late = batches[9].clone();
    let on_time: Vec<IngestBatch> = batches
        .iter()
        .filter(|b| b.batch_seq != late.batch_seq)
        .cloned()
        .collect();
    for group in on_time.chunks(5) {
        s.ingest(group).await.unwrap();
    }
    let lag_before = s.ven(&ven("ven-1")).await.unwrap().unwrap();
    assert_eq!(
        s.ingest(std::slice::from_ref(&late)).await.unwrap(),
        outcome(1, 80, 0)
    );

    let ven_record = s.ven(&ven("ven-1")).await.unwrap().unwrap();
    let newest = points[points.len() - 1].0;
    assert_eq!(ven_record.last_reading_ms, Some(newest));
    assert_eq!(ven_record.ingest_lag_ms, Some(1500));
    assert_eq!(
        ven_record, lag_before,
        "late data changes neither last reading nor lag"
    );

    let power_readings: Vec<(i64, f64)> = points.iter().map(|&(ts, w, _)| (ts, w as f64)).collect();
    let voltage_column = series("main", Quantity::Voltage, Phase::L2, -1, &[]);
    let voltage_readings: Vec<(i64, f64)> = points
        .iter()
        .map(|&(ts, _, v)| (ts, voltage_column.value(Point { ts_ms: ts, raw: v })))
        .collect();
    for (q, readings) in [
        (power_query("ven-1", Resolution::Raw), &power_readings),
        (
            query(
                "ven-1",
                "main",
                Quantity::Voltage,
                Phase::L2,
                Resolution::Raw,
            ),
            &voltage_readings,
        ),
    ] {
        for resolution in [
            Resolution::Raw,
            Resolution::Minute,
            Resolution::QuarterHour,
            Resolution::Hour,
        ] {
            let got = s
                .series(&SeriesQuery {
                    resolution,
                    ..q.clone()
                })
                .await
                .unwrap();
            assert_points_match(
                &got,
                &reference(readings, resolution),
                &format!("{:?} {resolution:?}", q.quantity),
            );
        }
    }
    assert_network_matches_rollups(s, &["ven-1"]).await;
}

async fn limit_and_range<S: Store>(s: &S) {
    let points: Vec<(i64, i64)> = (0..300).map(|i| (DAY0 + i * 30_000, i)).collect();
    s.ingest(&[batch("ven-1", 1, DAY0 + DAY, vec![power(&points)])])
        .await
        .unwrap();

    let limited = |resolution, limit| SeriesQuery {
        limit,
        ..power_query("ven-1", resolution)
    };
    let raw5 = s.series(&limited(Resolution::Raw, 5)).await.unwrap();
    assert_eq!(
        raw5.iter().map(|p| p.ts_ms).collect::<Vec<_>>(),
        (0..5).map(|i| DAY0 + i * 30_000).collect::<Vec<_>>()
    );
    let minutes = s.series(&limited(Resolution::Minute, 3)).await.unwrap();
    assert_eq!(
        minutes.iter().map(|p| p.ts_ms).collect::<Vec<_>>(),
        [DAY0, DAY0 + 60_000, DAY0 + 120_000]
    );
    assert!(
        s.series(&limited(Resolution::Hour, 0))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.series(&limited(Resolution::QuarterHour, 100))
            .await
            .unwrap()
            .len(),
        10
    );

    // from inclusive, to exclusive, on the point's time (bucket start).
    let window = |resolution, from_ms, to_ms| SeriesQuery {
        from_ms,
        to_ms,
        ..power_query("ven-1", resolution)
    };
    let got = s
        .series(&window(Resolution::Raw, DAY0 + 30_000, DAY0 + 90_000))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|p| p.ts_ms).collect::<Vec<_>>(),
        [DAY0 + 30_000, DAY0 + 60_000]
    );
    let got = s
        .series(&window(Resolution::QuarterHour, DAY0 + 1, DAY0 + 1_800_001))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|p| p.ts_ms).collect::<Vec<_>>(),
        [DAY0 + 900_000, DAY0 + 1_800_000]
    );
    assert!(
        s.series(&window(Resolution::Hour, DAY0 + 1, DAY0 + HOUR))
            .await
            .unwrap()
            .is_empty()
    );
    // Unknown series.
    assert!(
        s.series(&power_query("nobody", Resolution::Minute))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn network_sums_import_and_export_across_vens<S: Store>(s: &S) {
    // 20 minutes at 10 s from DAY0 + 1 h.
    let start = DAY0 + HOUR;
    let constant =
        |w: i64| -> Vec<(i64, i64)> { (0..120).map(|i| (start + i * 10_000, w)).collect() };
    let received = start + 1_200_000;
    s.ingest(&[
        batch("ven-a", 1, received, vec![power(&constant(1000))]),
        // Export, and a per-phase series that must not count.
        batch(
            "ven-b",
            1,
            received,
            vec![
                power(&constant(-400)),
                series("main", Quantity::ActivePower, Phase::L1, 0, &constant(5000)),
            ],
        ),
        // Two meters with total active power: their means add up.
        batch(
            "ven-d",
            1,
            received,
            vec![
                power(&constant(150)),
                series("sub", Quantity::ActivePower, Phase::Total, 0, &constant(50)),
            ],
        ),
    ])
    .await
    .unwrap();
    // No active power at all: not reporting.
    s.ingest(&[batch(
        "ven-c",
        1,
        received,
        vec![series(
            "main",
            Quantity::Voltage,
            Phase::L1,
            -1,
            &constant(2300),
        )],
    )])
    .await
    .unwrap();
    // A VEN whose mean over the minute is export though some readings import.
    let mixed: Vec<(i64, i64)> = (0..6)
        .map(|i| (start + i * 10_000, if i == 0 { 500 } else { -700 }))
        .collect();
    s.ingest(&[batch("ven-e", 1, received, vec![power(&mixed)])])
        .await
        .unwrap();

    for resolution in [
        Resolution::Raw,
        Resolution::Minute,
        Resolution::QuarterHour,
        Resolution::Hour,
    ] {
        let width = if resolution == Resolution::Raw {
            60_000
        } else {
            resolution.bucket_ms()
        };
        let got = s
            .network(start - HOUR, start + HOUR, resolution)
            .await
            .unwrap();
        let buckets = (1_200_000 + width - 1) / width;
        assert_eq!(got.len() as i64, buckets, "{resolution:?}");
        for (i, point) in got.iter().enumerate() {
            assert_eq!(point.ts_ms, start + i as i64 * width, "{resolution:?}");
            assert_eq!(point.import_w, 1200.0, "{resolution:?}");
            // ven-e's 6 readings are all in the first bucket: mean -500 W.
            let mixed_export = if i == 0 { 500.0 } else { 0.0 };
            assert!(
                (point.export_w - 400.0 - mixed_export).abs() < 1e-9,
                "{resolution:?} {i}: {}",
                point.export_w
            );
            assert_eq!(
                point.vens_reporting,
                if i == 0 { 4 } else { 3 },
                "{resolution:?} {i}"
            );
        }
    }
    assert!(
        s.network(start + DAY, start + 2 * DAY, Resolution::Hour)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn status_and_vens<S: Store>(s: &S) {
    assert!(s.vens().await.unwrap().is_empty());
    assert_eq!(s.ven(&ven("a-ven")).await.unwrap(), None);

    let status = |id: &str, online: bool, version: &str| Status {
        ven_id: ven(id),
        online,
        at: Timestamp::from_unix_ms(DAY0).unwrap(),
        agent_version: version.into(),
        backlog_batches: 3,
        dropped_readings: 0,
    };
    s.record_status(&status("a-ven", true, "1.2.3"), DAY0 + 1000)
        .await
        .unwrap();
    let record = s.ven(&ven("a-ven")).await.unwrap().unwrap();
    assert_eq!(record.online, Some(true));
    assert_eq!(record.last_seen_ms, Some(DAY0 + 1000));
    assert_eq!(record.agent_version.as_deref(), Some("1.2.3"));
    assert_eq!((record.last_reading_ms, record.ingest_lag_ms), (None, None));

    // The last will: offline, keeps the version.
    s.record_status(
        &Status::offline(ven("a-ven"), Timestamp::from_unix_ms(DAY0 - 5000).unwrap()),
        DAY0 + 2000,
    )
    .await
    .unwrap();
    let record = s.ven(&ven("a-ven")).await.unwrap().unwrap();
    assert_eq!(record.online, Some(false));
    assert_eq!(record.agent_version.as_deref(), Some("1.2.3"));
    assert_eq!(record.last_seen_ms, Some(DAY0 + 2000));
    // Arrival order decides the state; last seen never goes back.
    s.record_status(&status("a-ven", true, "1.3.0"), DAY0 + 1500)
        .await
        .unwrap();
    let record = s.ven(&ven("a-ven")).await.unwrap().unwrap();
    assert_eq!(
        (record.online, record.last_seen_ms),
        (Some(true), Some(DAY0 + 2000))
    );
    assert_eq!(record.agent_version.as_deref(), Some("1.3.0"));

    // Telemetry makes a VEN known, with its freshness.
    s.ingest(&[batch(
        "B-ven",
        1,
        DAY0 + 9000,
        vec![power(&[(DAY0 + 1000, 1), (DAY0 + 4000, 2)])],
    )])
    .await
    .unwrap();
    s.ingest(&[batch("_x", 1, DAY0 + 100, vec![power(&[(DAY0, 1)])])])
        .await
        .unwrap();
    let record = s.ven(&ven("B-ven")).await.unwrap().unwrap();
    assert_eq!(record.online, None);
    assert_eq!(record.last_seen_ms, Some(DAY0 + 9000));
    assert_eq!(record.last_reading_ms, Some(DAY0 + 4000));
    assert_eq!(record.ingest_lag_ms, Some(5000));
    assert_eq!(record.agent_version, None);
    // A redelivered batch is a message (last seen) but not new data.
    s.ingest(&[batch(
        "B-ven",
        1,
        DAY0 + 20_000,
        vec![power(&[(DAY0 + 1000, 1)])],
    )])
    .await
    .unwrap();
    let record = s.ven(&ven("B-ven")).await.unwrap().unwrap();
    assert_eq!(
        (record.last_seen_ms, record.ingest_lag_ms),
        (Some(DAY0 + 20_000), Some(5000))
    );

    // Sorted by id, byte order.
    let ids: Vec<String> = s
        .vens()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.ven_id.to_string())
        .collect();
    assert_eq!(ids, ["B-ven", "_x", "a-ven"]);
}

async fn load_snapshots<S: Store>(s: &S) {
    let at = |ms| Timestamp::from_unix_ms(ms).unwrap();
    let load = |name: &str, on: bool| LoadState {
        name: name.into(),
        on,
        power_w: on.then_some(1500.0),
        setpoint: (!on).then_some(21.5),
        controllable: on,
        last_change: on.then(|| at(DAY0 - 60_000)),
        cause: if on {
            LoadChangeCause::Startup
        } else {
            LoadChangeCause::Event {
                event_id: ObjectId::new("evt-1").unwrap(),
            }
        },
    };
    let snapshot = |ms, loads| LoadSnapshot {
        ven_id: ven("ven-1"),
        at: at(ms),
        loads,
    };
    assert!(s.loads(&ven("ven-1")).await.unwrap().is_empty());

    s.record_loads(
        &snapshot(DAY0, vec![load("pump", true), load("hvac", false)]),
        DAY0 + 500,
    )
    .await
    .unwrap();
    let loads = s.loads(&ven("ven-1")).await.unwrap();
    assert_eq!(
        loads.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["hvac", "pump"]
    );
    let (hvac, pump) = (&loads[0], &loads[1]);
    assert_eq!(
        (hvac.on, hvac.power_w, hvac.setpoint, hvac.controllable),
        (false, None, Some(21.5), false)
    );
    assert_eq!(
        hvac.cause,
        serde_json::json!({"event": {"event_id": "evt-1"}})
    );
    assert_eq!(hvac.last_change_ms, None);
    assert_eq!(
        (pump.on, pump.power_w, pump.setpoint, pump.controllable),
        (true, Some(1500.0), None, true)
    );
    assert_eq!(pump.cause, serde_json::json!("startup"));
    assert_eq!(pump.last_change_ms, Some(DAY0 - 60_000));
    assert_eq!(pump.snapshot_ms, DAY0);
    assert_eq!(
        s.ven(&ven("ven-1")).await.unwrap().unwrap().last_seen_ms,
        Some(DAY0 + 500)
    );

    // An older snapshot arriving late is ignored (but is a message).
    s.record_loads(&snapshot(DAY0 - 1000, vec![load("old", true)]), DAY0 + 900)
        .await
        .unwrap();
    assert_eq!(s.loads(&ven("ven-1")).await.unwrap(), loads);
    assert_eq!(
        s.ven(&ven("ven-1")).await.unwrap().unwrap().last_seen_ms,
        Some(DAY0 + 900)
    );
    // The same snapshot again changes nothing.
    s.record_loads(
        &snapshot(DAY0, vec![load("pump", true), load("hvac", false)]),
        DAY0 + 950,
    )
    .await
    .unwrap();
    assert_eq!(s.loads(&ven("ven-1")).await.unwrap(), loads);

    // A newer one replaces all loads; an empty one removes them.
    s.record_loads(
        &snapshot(DAY0 + 1000, vec![load("pump", false)]),
        DAY0 + 1000,
    )
    .await
    .unwrap();
    let loads = s.loads(&ven("ven-1")).await.unwrap();
    assert_eq!(
        (loads.len(), loads[0].on, loads[0].snapshot_ms),
        (1, false, DAY0 + 1000)
    );
    s.record_loads(&snapshot(DAY0 + 2000, vec![]), DAY0 + 2000)
        .await
        .unwrap();
    assert!(s.loads(&ven("ven-1")).await.unwrap().is_empty());
    s.record_loads(
        &snapshot(DAY0 + 1500, vec![load("pump", true)]),
        DAY0 + 2100,
    )
    .await
    .unwrap();
    assert!(s.loads(&ven("ven-1")).await.unwrap().is_empty());
}

#[expect(
    clippy::too_many_lines,
    reason = "one registration's life: before, at and after the first snapshot"
)]
async fn registration<S: Store>(s: &S) {
    let registered = |name: &str, rated: Option<f64>, controllable| RegisteredLoad {
        name: name.into(),
        rated_power_w: rated,
        controllable,
    };
    let depot = VenRegistration {
        site: "Depot North".into(),
        site_meter: Some("grid.main".into()),
        groups: Some(vec!["north".into(), "depots".into()]),
        loads: Some(vec![
            registered("hvac", Some(3000.0), true),
            registered("freezer", None, false),
        ]),
    };
    s.register_ven(&ven("depot-1"), &depot, DAY0).await.unwrap();
    // Known before its first message, with its site, groups and loads.
    let record = s.ven(&ven("depot-1")).await.unwrap().unwrap();
    assert_eq!(record.site.as_deref(), Some("Depot North"));
    assert_eq!(record.site_meter.as_deref(), Some("grid.main"));
    assert_eq!(
        (record.online, record.last_seen_ms, record.last_reading_ms),
        (None, None, None)
    );
    assert_eq!(s.vens().await.unwrap(), vec![record.clone()]);
    assert_eq!(
        s.ven_groups(&ven("depot-1")).await.unwrap(),
        ["depots", "north"]
    );
    let loads = s.loads(&ven("depot-1")).await.unwrap();
    assert_eq!(
        loads
            .iter()
            .map(|l| (l.name.as_str(), l.on, l.power_w, l.controllable))
            .collect::<Vec<_>>(),
        [
            ("freezer", true, None, false),
            ("hvac", true, Some(3000.0), true)
        ]
    );
    for load in &loads {
        assert_eq!(load.cause, serde_json::json!("startup"));
        assert_eq!((load.setpoint, load.last_change_ms), (None, None));
        assert_eq!(load.snapshot_ms, DAY0);
    }
    // Idempotent: a repeat later changes nothing, not even the loads' time.
    s.register_ven(&ven("depot-1"), &depot, DAY0 + 5)
        .await
        .unwrap();
    assert_eq!(s.loads(&ven("depot-1")).await.unwrap(), loads);
    assert_eq!(s.ven(&ven("depot-1")).await.unwrap().unwrap(), record);
    // Without site meter, groups and loads: all kept, the site changes.
    let renamed = VenRegistration {
        site: "Depot N".into(),
        site_meter: None,
        groups: None,
        loads: None,
    };
    s.register_ven(&ven("depot-1"), &renamed, DAY0 + 1)
        .await
        .unwrap();
    let record = s.ven(&ven("depot-1")).await.unwrap().unwrap();
    assert_eq!(
        (record.site.as_deref(), record.site_meter.as_deref()),
        (Some("Depot N"), Some("grid.main"))
    );
    assert_eq!(s.loads(&ven("depot-1")).await.unwrap(), loads);
    assert_eq!(s.ven_groups(&ven("depot-1")).await.unwrap().len(), 2);
    // Before the first snapshot, new loads replace the registered ones.
    let pump_only = VenRegistration {
        loads: Some(vec![registered("pump", Some(750.0), true)]),
        groups: Some(vec![]),
        ..depot.clone()
    };
    s.register_ven(&ven("depot-1"), &pump_only, DAY0 + 2)
        .await
        .unwrap();
    let loads = s.loads(&ven("depot-1")).await.unwrap();
    assert_eq!(
        loads.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["pump"]
    );
    assert!(s.ven_groups(&ven("depot-1")).await.unwrap().is_empty());

    // The agent's first snapshot replaces them all, even one older than the
    // registration; it and the VEN's messages keep the site.
    let snapshot = LoadSnapshot {
        ven_id: ven("depot-1"),
        at: Timestamp::from_unix_ms(DAY0 - HOUR).unwrap(),
        loads: vec![LoadState {
            name: "hvac".into(),
            on: false,
            power_w: Some(0.0),
            setpoint: None,
            controllable: true,
            last_change: None,
            cause: LoadChangeCause::External,
        }],
    };
    s.record_loads(&snapshot, DAY0 + 10).await.unwrap();
    let agent_loads = s.loads(&ven("depot-1")).await.unwrap();
    assert_eq!(
        agent_loads
            .iter()
            .map(|l| (l.name.as_str(), l.on, l.snapshot_ms))
            .collect::<Vec<_>>(),
        [("hvac", false, DAY0 - HOUR)]
    );
    s.record_status(
        &Status {
            ven_id: ven("depot-1"),
            online: true,
            at: Timestamp::from_unix_ms(DAY0).unwrap(),
            agent_version: "1.0.0".into(),
            backlog_batches: 0,
            dropped_readings: 0,
        },
        DAY0 + 20,
    )
    .await
    .unwrap();
    s.ingest(&[batch("depot-1", 1, DAY0 + 30, vec![power(&[(DAY0, 5)])])])
        .await
        .unwrap();
    let record = s.ven(&ven("depot-1")).await.unwrap().unwrap();
    assert_eq!(record.site.as_deref(), Some("Depot North"));
    assert_eq!(record.online, Some(true));
    // After a snapshot, registration leaves the loads alone.
    s.register_ven(&ven("depot-1"), &depot, DAY0 + 40)
        .await
        .unwrap();
    assert_eq!(s.loads(&ven("depot-1")).await.unwrap(), agent_loads);
    assert_eq!(
        s.ven_groups(&ven("depot-1")).await.unwrap(),
        ["depots", "north"]
    );
    // A VEN known from telemetry alone has no site until registered.
    s.ingest(&[batch("other", 1, DAY0, vec![power(&[(DAY0, 1)])])])
        .await
        .unwrap();
    assert_eq!(s.ven(&ven("other")).await.unwrap().unwrap().site, None);

    // Invalid registrations store nothing.
    let bad = [
        VenRegistration {
            site: String::new(),
            ..depot.clone()
        },
        VenRegistration {
            loads: Some(vec![registered("a b", None, true)]),
            ..depot.clone()
        },
        VenRegistration {
            loads: Some(vec![registered("x", Some(f64::NAN), true)]),
            ..depot.clone()
        },
        VenRegistration {
            groups: Some(vec![String::new()]),
            ..depot.clone()
        },
        VenRegistration {
            site_meter: Some("grid main".into()),
            ..depot.clone()
        },
        VenRegistration {
            site_meter: Some(String::new()),
            ..depot.clone()
        },
    ];
    for registration in &bad {
        assert!(matches!(
            s.register_ven(&ven("new-ven"), registration, DAY0).await,
            Err(StoreError::Invalid(_))
        ));
    }
    assert_eq!(s.ven(&ven("new-ven")).await.unwrap(), None);
}

async fn tokens<S: Store>(s: &S) {
    let hash = |b: u8| [b; 32];
    assert_eq!(s.token(&hash(1)).await.unwrap(), None);
    let mut created = Vec::new();
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let record = s
            .create_token(&format!("token {i}"), role, &hash(i as u8 + 1))
            .await
            .unwrap();
        assert_eq!(
            (record.name.as_str(), record.role),
            (format!("token {i}").as_str(), role)
        );
        created.push(record);
    }
    for (i, record) in created.iter().enumerate() {
        assert_eq!(
            s.token(&hash(i as u8 + 1)).await.unwrap().as_ref(),
            Some(record)
        );
    }
    assert_ne!(created[0].id, created[1].id);
    assert_eq!(s.token(&hash(99)).await.unwrap(), None);
    // The hash is unique: a conflict the API reports as 409.
    match s.create_token("again", Role::Admin, &hash(1)).await {
        Err(StoreError::UniqueViolation(_)) => {}
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert!(matches!(
        s.create_token("", Role::Viewer, &hash(50)).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn retention_deletes_raw_and_keeps_rollups<S: Store>(s: &S) {
    // Day 0: 2 readings, day 1: 3, day 2: 4 (at 01:00, 01:01, 13:00, 13:01).
    let day_points = |day: i64, n: i64| -> Vec<(i64, i64)> {
        (0..n)
            .map(|i| {
                (
                    DAY0 + day * DAY + HOUR + (i / 2) * 12 * HOUR + (i % 2) * 60_000,
                    day * 10 + i,
                )
            })
            .collect()
    };
    let all: Vec<(i64, i64)> = [day_points(0, 2), day_points(1, 3), day_points(2, 4)].concat();
    s.ingest(&[batch("ven-1", 1, DAY0 + 3 * DAY, vec![power(&all)])])
        .await
        .unwrap();
    let hours_before = s
        .series(&power_query("ven-1", Resolution::Hour))
        .await
        .unwrap();
    let minutes_before = s
        .series(&power_query("ven-1", Resolution::Minute))
        .await
        .unwrap();

    // Nothing is older than day 0.
    assert_eq!(s.enforce_retention(DAY0).await.unwrap(), 0);
    assert_eq!(s.enforce_retention(DAY0 + 2 * DAY).await.unwrap(), 5);
    let left = raw(s, power_query("ven-1", Resolution::Raw)).await;
    assert_eq!(
        left.iter().map(|p| p.0).collect::<Vec<_>>(),
        day_points(2, 4).iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert_eq!(
        s.series(&power_query("ven-1", Resolution::Hour))
            .await
            .unwrap(),
        hours_before
    );
    assert_eq!(
        s.series(&power_query("ven-1", Resolution::Minute))
            .await
            .unwrap(),
        minutes_before
    );

    // A cut-off inside day 2 (after its 01:00 readings): PostgreSQL keeps the
    // day's partition whole, SQLite deletes rows; either way the count is
    // what disappeared and nothing at or after the cut-off goes.
    let cut = DAY0 + 2 * DAY + 6 * HOUR;
    let deleted = s.enforce_retention(cut).await.unwrap();
    let left = raw(s, power_query("ven-1", Resolution::Raw)).await;
    assert!(deleted == 0 || deleted == 2, "{deleted}");
    assert_eq!(left.len() as u64, 4 - deleted);
    assert!(left.iter().filter(|p| p.0 >= cut).count() == 2);

    // Late data for a retained day is stored again (a new partition on
    // PostgreSQL), and merges into the kept rollups.
    let late = batch(
        "ven-1",
        2,
        DAY0 + 3 * DAY,
        vec![power(&[(DAY0 + HOUR + 30_000, 7)])],
    );
    assert_eq!(s.ingest(&[late]).await.unwrap(), outcome(1, 1, 0));
    let hour = s
        .series(&power_query("ven-1", Resolution::Hour))
        .await
        .unwrap();
    assert_eq!(
        (hour[0].ts_ms, hour[0].count, hour[0].max, hour[0].last),
        (DAY0 + HOUR, 3, 7.0, 1.0)
    );
    assert_eq!(s.enforce_retention(DAY0 + 2 * DAY).await.unwrap(), 1);
}

async fn far_past_and_future<S: Store>(s: &S) {
    let points = [
        (0, 1),
        (1, 2),
        (946_684_800_000, 3),
        (DAY0, 4),
        (MAX_TS_MS - 1, 5),
        (MAX_TS_MS, 6),
    ];
    assert_eq!(
        s.ingest(&[batch("ven-1", 1, DAY0, vec![power(&points)])])
            .await
            .unwrap(),
        outcome(1, 6, 0)
    );
    let stored = raw(s, power_query("ven-1", Resolution::Raw)).await;
    assert_eq!(stored, points.map(|(ts, raw)| (ts, raw as f64)));
    let hours = s
        .series(&power_query("ven-1", Resolution::Hour))
        .await
        .unwrap();
    let starts: Vec<i64> = hours.iter().map(|p| p.ts_ms).collect();
    assert_eq!(
        starts,
        [0, 946_684_800_000, DAY0, MAX_TS_MS - MAX_TS_MS % HOUR]
    );
    assert_eq!((hours[3].count, hours[3].last), (2, 6.0));
}

async fn invalid_input_stores_nothing<S: Store>(s: &S) {
    let good = power(&[(DAY0, 1)]);
    let bad = batch("ven-1", 2, DAY0, vec![power(&[(-1, 1)])]);
    let err = s
        .ingest(&[batch("ven-1", 1, DAY0, vec![good.clone()]), bad])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let mut exponent = good.clone();
    exponent.exponent = 12;
    let err = s
        .ingest(&[batch("ven-1", 3, DAY0, vec![exponent])])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    // Nothing of the failed group was claimed or stored.
    assert_eq!(
        s.ingest(&[batch("ven-1", 1, DAY0, vec![good])])
            .await
            .unwrap(),
        outcome(1, 1, 0)
    );
    assert_eq!(s.vens().await.unwrap().len(), 1);
}

/// Retention in one process drops a day this process has already written
/// to; late data for that day must still be stored.
async fn late_data_for_a_day_another_process_dropped<S: Store>(s: &S, other: &S) {
    let old_day = DAY0 - 10 * DAY;
    s.ingest(&[batch(
        "ven-1",
        1,
        DAY0,
        vec![power(&[(old_day, 1), (DAY0, 2)])],
    )])
    .await
    .unwrap();
    assert_eq!(other.enforce_retention(DAY0).await.unwrap(), 1);
    assert_eq!(
        s.ingest(&[batch("ven-1", 2, DAY0, vec![power(&[(old_day + 1000, 3)])])])
            .await
            .unwrap(),
        outcome(1, 1, 0)
    );
    assert_eq!(
        raw(other, power_query("ven-1", Resolution::Raw)).await,
        [(old_day + 1000, 3.0), (DAY0, 2.0)]
    );
    let day = s
        .series(&power_query("ven-1", Resolution::Hour))
        .await
        .unwrap();
    assert_eq!((day[0].ts_ms, day[0].count), (old_day, 2));
}

/// Ingest as the ingest task does it: retry while the store is unavailable.
async fn ingest_retrying<S: Store>(s: &S, group: &[IngestBatch]) -> IngestOutcome {
    loop {
        match s.ingest(group).await {
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
            outcome => return outcome.unwrap(),
        }
    }
}

/// Two processes sharing the subscription get overlapping groups (a
/// redelivery to the other consumer) and readings repeated under new
/// sequence numbers, at the same time: every batch and every reading is
/// stored once, and the rollups count each reading once.
async fn two_processes_ingest_overlapping_groups<S: Store>(s: &S, other: &S) {
    let batches: Vec<IngestBatch> = (0..40_u64)
        .map(|seq| {
            let ven_id = ["ven-a", "ven-b", "ven-c"][seq as usize % 3];
            // Each VEN's batches cover consecutive 20 s windows, and every
            // fifth one repeats the previous window's last 10 s.
            let window = (seq / 3) as i64;
            let start = DAY0 + window * 20_000 - if seq % 5 == 4 { 10_000 } else { 0 };
            let points: Vec<(i64, i64)> = (0..20)
                .map(|i| (start + i * 1000, seq as i64 * 100 + i))
                .collect();
            batch(
                ven_id,
                seq,
                start + 30_000,
                vec![
                    power(&points),
                    series("main", Quantity::Voltage, Phase::L1, -1, &points),
                ],
            )
        })
        .collect();
    let a = async {
        let mut total = IngestOutcome::default();
        for group in batches[..30].chunks(5) {
            let o = ingest_retrying(s, group).await;
            total.inserted_batches += o.inserted_batches;
            total.inserted_readings += o.inserted_readings;
            total.duplicate_batches += o.duplicate_batches;
        }
        total
    };
    let b = async {
        let mut total = IngestOutcome::default();
        for group in batches[10..].chunks(5).rev() {
            let o = ingest_retrying(other, group).await;
            total.inserted_batches += o.inserted_batches;
            total.inserted_readings += o.inserted_readings;
            total.duplicate_batches += o.duplicate_batches;
        }
        total
    };
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.inserted_batches + b.inserted_batches, 40);
    assert_eq!(a.duplicate_batches + b.duplicate_batches, 20);

    let mut distinct: BTreeMap<&str, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for b in &batches {
        distinct
            .entry(b.ven_id.as_str())
            .or_default()
            .extend(b.series[0].points.iter().map(|p| p.ts_ms));
    }
    let expected: usize = distinct.values().map(std::collections::BTreeSet::len).sum();
    assert_eq!(
        (a.inserted_readings + b.inserted_readings) as usize,
        2 * expected
    );
    for (ven_id, timestamps) in &distinct {
        let stored = raw(s, power_query(ven_id, Resolution::Raw)).await;
        assert_eq!(
            stored.iter().map(|p| p.0).collect::<Vec<_>>(),
            timestamps.iter().copied().collect::<Vec<_>>()
        );
        for resolution in [Resolution::Minute, Resolution::Hour] {
            let rollup = s.series(&power_query(ven_id, resolution)).await.unwrap();
            assert_points_match(
                &rollup,
                &reference(&stored, resolution),
                &format!("{ven_id} {resolution:?}"),
            );
        }
    }
    assert_network_matches_rollups(s, &["ven-a", "ven-b", "ven-c"]).await;
}

// ---------------------------------------------------------------- one backend

/// A store that cannot reach its database says `Unavailable` (so ingest
/// keeps the messages and retries), for every kind of operation.
async fn assert_unavailable<S: Store>(s: &S) {
    let b = batch("ven-1", 9, DAY0, vec![power(&[(DAY0 + 5000, 1)])]);
    let errors = [
        s.ingest(std::slice::from_ref(&b)).await.err(),
        s.record_status(
            &Status::offline(ven("ven-1"), Timestamp::from_unix_ms(DAY0).unwrap()),
            DAY0,
        )
        .await
        .err(),
        s.create_token("t", Role::Viewer, &[7; 32]).await.err(),
    ];
    for error in errors {
        assert!(
            matches!(error, Some(StoreError::Unavailable(_))),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn postgres_stopped_is_unavailable() {
    let mut db = Db::postgres("stopped").await;
    db.store
        .ingest(&[batch("ven-1", 1, DAY0, vec![power(&[(DAY0, 1)])])])
        .await
        .unwrap();
    drop(db.cluster.take());
    assert_unavailable(&db.store).await;
    assert!(matches!(
        db.store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        db.store.vens().await,
        Err(StoreError::Unavailable(_))
    ));
    // Connecting to a server that is not there.
    let err = AnyStore::connect_with(&db.url, &quick_options())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn sqlite_locked_is_unavailable() {
    use sqlx::Connection as _;

    let db = Db::sqlite().await;
    db.store
        .ingest(&[batch("ven-1", 1, DAY0, vec![power(&[(DAY0, 1)])])])
        .await
        .unwrap();
    // Another process holds the write lock past the busy timeout.
    let mut holder = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_unavailable(&db.store).await;
    // Readers are not blocked (WAL).
    assert_eq!(db.store.vens().await.unwrap().len(), 1);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    db.store
        .ingest(&[batch("ven-1", 9, DAY0, vec![power(&[(DAY0 + 5000, 1)])])])
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_partitions() {
    let db = Db::postgres("partitions").await;
    let pg = &db.store;
    assert_eq!(
        pg.dialect(),
        Dialect::Postgres,
        "a PostgreSQL URL gives a PostgreSQL store"
    );
    assert!(pg.metric_partitions().await.unwrap().is_empty());
    // Yesterday to a week ahead.
    pg.prepare_partitions(DAY0 + 5 * HOUR).await.unwrap();
    let names = |parts: Vec<gridlink_cloud::store::MetricsPartition>| {
        parts.into_iter().map(|p| p.name).collect::<Vec<_>>()
    };
    let ahead = names(pg.metric_partitions().await.unwrap());
    assert_eq!(ahead.len(), 9);
    assert_eq!(
        (ahead[0].as_str(), ahead[8].as_str()),
        ("metrics_p20251119", "metrics_p20251127")
    );
    let first = &pg.metric_partitions().await.unwrap()[0];
    assert_eq!((first.from_ms, first.to_ms), (DAY0 - DAY, DAY0));

    // Far past and future data gets partitions of its own, created on demand.
    let points = [(0, 1), (MAX_TS_MS, 2), (DAY0 + 30 * DAY, 3)];
    pg.ingest(&[batch("ven-1", 1, DAY0, vec![power(&points)])])
        .await
        .unwrap();
    let all = names(pg.metric_partitions().await.unwrap());
    assert_eq!(all.len(), 12);
    for name in [
        "metrics_p19700101",
        "metrics_p99991231",
        "metrics_p20251220",
    ] {
        assert!(all.iter().any(|n| n == name), "{name} in {all:?}");
    }

    // Retention drops whole partitions only, and says how many rows went.
    assert_eq!(pg.enforce_retention(DAY0 + 12 * HOUR).await.unwrap(), 1);
    let left = names(pg.metric_partitions().await.unwrap());
    assert_eq!(left.len(), 10, "{left:?}");
    assert_eq!(left[0], "metrics_p20251120");
    // A day nobody has ingested into since this store dropped it: recreated.
    pg.ingest(&[batch("ven-1", 2, DAY0, vec![power(&[(5, 4)])])])
        .await
        .unwrap();
    assert_eq!(
        names(pg.metric_partitions().await.unwrap())[0],
        "metrics_p19700101"
    );
}

#[tokio::test]
async fn sqlite_in_memory() {
    let store = AnyStore::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.dialect(), Dialect::Sqlite);
    store.migrate().await.unwrap();
    store
        .ingest(&[batch(
            "ven-1",
            1,
            DAY0,
            vec![power(&[(DAY0, 5), (DAY0 + 1000, 7)])],
        )])
        .await
        .unwrap();
    let minute = store
        .series(&power_query("ven-1", Resolution::Minute))
        .await
        .unwrap();
    assert_eq!((minute[0].count, minute[0].avg), (2, 6.0));
    assert_eq!(store.vens().await.unwrap().len(), 1);
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_secrets() {
    let err = AnyStore::connect("mysql://gridlink:hunter2@db:3306/gridlink")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = AnyStore::connect("sqlite://x.db?frobnicate=1")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

// ---------------------------------------------------------------- demand response

fn oid(id: &str) -> ObjectId {
    ObjectId::new(id).unwrap()
}

fn program_write(name: &str, targets: &[&str]) -> ProgramWrite {
    ProgramWrite {
        name: name.into(),
        targets: targets.iter().map(|t| (*t).to_string()).collect(),
        body: serde_json::json!({ "programName": name, "targets": targets }),
    }
}

fn protocol_event(program: &str) -> gridlink_protocol::Event {
    serde_json::from_value(serde_json::json!({
        "id": "pending", "programID": program,
        "intervalPeriod": { "start": "2026-01-01T00:00:00Z", "duration": "PT1H" },
        "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [2] }] }]
    }))
    .unwrap()
}

fn event_write(program: &str, targets: &[&str], vens: &[&str], end_ms: Option<i64>) -> EventWrite {
    EventWrite {
        program_id: oid(program),
        start_ms: Some(DAY0),
        end_ms,
        priority: Some(1),
        targets: targets.iter().map(|t| (*t).to_string()).collect(),
        vens: vens.iter().map(|v| ven(v)).collect(),
        body: serde_json::json!({ "programID": program, "targets": targets }),
        event: protocol_event(program),
    }
}

fn decoded(command: &OutboxCommand) -> Command {
    let decoded: Command = gridlink_protocol::decode(&command.payload).unwrap();
    assert_eq!(decoded.ven_id, command.ven_id);
    assert_eq!(decoded.command_id, command.command_id);
    decoded
}

fn commands_of(commands: &[OutboxCommand]) -> Vec<(String, u64, &'static str)> {
    let mut out: Vec<_> = commands
        .iter()
        .map(|c| {
            let kind = match decoded(c).action {
                CommandAction::Event(_) => "event",
                CommandAction::Cancel { .. } => "cancel",
            };
            (c.ven_id.to_string(), c.command_id, kind)
        })
        .collect();
    out.sort();
    out
}

fn dr_filter(limit: u32) -> DrFilter {
    DrFilter {
        limit,
        ..DrFilter::default()
    }
}

async fn programs_crud_and_filters<S: Store>(s: &S) {
    let a = s
        .create_program(&oid("p-a"), &program_write("A", &["north"]), 1000)
        .await
        .unwrap();
    assert_eq!(a.created_ms, 1000);
    s.create_program(&oid("p-b"), &program_write("B", &["south", "x"]), 2000)
        .await
        .unwrap();
    s.create_program(&oid("p-c"), &program_write("C", &[]), 3000)
        .await
        .unwrap();
    let duplicate = s
        .create_program(&oid("p-d"), &program_write("A", &[]), 4000)
        .await;
    assert!(duplicate.is_err(), "programName is unique");

    let names = |list: Vec<ProgramRecord>| list.into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.programs(&dr_filter(50)).await.unwrap()),
        ["A", "B", "C"]
    );
    let by_target = DrFilter {
        targets: vec!["x".into(), "north".into()],
        ..dr_filter(50)
    };
    assert_eq!(names(s.programs(&by_target).await.unwrap()), ["A", "B"]);
    let page = DrFilter {
        skip: 1,
        ..dr_filter(1)
    };
    assert_eq!(names(s.programs(&page).await.unwrap()), ["B"]);

    let updated = s
        .update_program(&oid("p-a"), &program_write("A2", &["west"]), 5000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((updated.created_ms, updated.modified_ms), (1000, 5000));
    assert_eq!(updated.targets, ["west"]);
    assert_eq!(s.program(&oid("p-a")).await.unwrap().unwrap(), updated);
    assert!(
        s.update_program(&oid("nope"), &program_write("Z", &[]), 1)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.delete_program(&oid("p-c"), 1)
            .await
            .unwrap()
            .unwrap()
            .0
            .name,
        "C"
    );
    assert!(s.delete_program(&oid("p-c"), 1).await.unwrap().is_none());
    assert!(s.program(&oid("p-c")).await.unwrap().is_none());
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn events_queue_commands_with_increasing_ids<S: Store>(s: &S) {
    for v in ["ven-a", "ven-b", "ven-c"] {
        s.set_ven_groups(&ven(v), &["all".to_string()])
            .await
            .unwrap();
    }
    s.set_ven_groups(&ven("ven-a"), &["north".into(), "all".into()])
        .await
        .unwrap();
    assert_eq!(s.ven_groups(&ven("ven-a")).await.unwrap(), ["all", "north"]);
    let resolved = s
        .resolve_targets(&["north".into(), "ven-c".into(), "all".into(), "ghost".into()])
        .await
        .unwrap();
    assert_eq!(
        resolved,
        vec![
            vec![ven("ven-a")],
            vec![ven("ven-c")],
            vec![ven("ven-a"), ven("ven-b"), ven("ven-c")],
            vec![],
        ]
    );
    s.create_program(&oid("prog"), &program_write("P", &[]), 1)
        .await
        .unwrap();
    s.create_program(&oid("other"), &program_write("O", &[]), 1)
        .await
        .unwrap();

    let (record, commands) = s
        .create_event(
            &oid("e1"),
            &event_write(
                "prog",
                &["north", "ven-b"],
                &["ven-a", "ven-b"],
                Some(DAY0 + HOUR),
            ),
            100,
        )
        .await
        .unwrap();
    assert_eq!(record.vens, [ven("ven-a"), ven("ven-b")]);
    assert_eq!((record.created_ms, record.start_ms), (100, Some(DAY0)));
    assert_eq!(
        commands_of(&commands),
        [("ven-a".into(), 1, "event"), ("ven-b".into(), 1, "event")]
    );
    match decoded(&commands[0]).action {
        CommandAction::Event(e) => {
            assert_eq!(
                e.id.as_str(),
                "e1",
                "the stored id replaces the placeholder"
            );
        }
        CommandAction::Cancel { .. } => panic!("expected the event"),
    }

    // Retarget: b keeps it (new version), c gains it, a is cancelled.
    let (record, commands) = s
        .update_event(
            &oid("e1"),
            &event_write("prog", &["ven-b", "ven-c"], &["ven-b", "ven-c"], None),
            200,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.vens, [ven("ven-b"), ven("ven-c")]);
    assert_eq!(
        (record.created_ms, record.modified_ms, record.end_ms),
        (100, 200, None)
    );
    assert_eq!(
        commands_of(&commands),
        [
            ("ven-a".into(), 2, "cancel"),
            ("ven-b".into(), 2, "event"),
            ("ven-c".into(), 1, "event")
        ]
    );
    s.create_event(
        &oid("e2"),
        &event_write("other", &["all"], &["ven-a"], Some(DAY0 - 1)),
        300,
    )
    .await
    .unwrap();

    let ids = |list: Vec<EventRecord>| {
        list.into_iter()
            .map(|e| e.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(s.events(&dr_filter(50)).await.unwrap()), ["e1", "e2"]);
    let of_program = DrFilter {
        program_id: Some(oid("other")),
        ..dr_filter(50)
    };
    assert_eq!(ids(s.events(&of_program).await.unwrap()), ["e2"]);
    let targeted = DrFilter {
        targets: vec!["ven-c".into()],
        ..dr_filter(50)
    };
    assert_eq!(ids(s.events(&targeted).await.unwrap()), ["e1"]);
    let active = DrFilter {
        active_at: Some(DAY0),
        ..dr_filter(50)
    };
    assert_eq!(ids(s.events(&active).await.unwrap()), ["e1"], "e2 ended");
    let page = DrFilter {
        skip: 1,
        ..dr_filter(5)
    };
    assert_eq!(ids(s.events(&page).await.unwrap()), ["e2"]);

    let (_, commands) = s.delete_event(&oid("e1"), 400).await.unwrap().unwrap();
    assert_eq!(
        commands_of(&commands),
        [("ven-b".into(), 3, "cancel"), ("ven-c".into(), 2, "cancel")]
    );
    assert!(s.event(&oid("e1")).await.unwrap().is_none());
    assert!(s.delete_event(&oid("e1"), 500).await.unwrap().is_none());
    assert!(
        s.update_event(&oid("e1"), &event_write("prog", &[], &[], None), 500)
            .await
            .unwrap()
            .is_none()
    );
    // Deleting a program deletes its events; e2 has ended, so no VEN is
    // sent a cancel for it.
    let (deleted, cancels) = s
        .delete_program(&oid("other"), DAY0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.id, oid("other"));
    assert!(cancels.is_empty(), "{cancels:?}");
    assert!(s.event(&oid("e2")).await.unwrap().is_none());
    assert!(
        s.delete_program(&oid("prog"), DAY0)
            .await
            .unwrap()
            .is_some()
    );

    // The outbox: 8 commands, oldest first, until marked sent.
    let unsent = s.unsent_commands(100).await.unwrap();
    assert_eq!(unsent.len(), 8);
    assert_eq!(
        unsent
            .iter()
            .take(2)
            .map(|c| c.command_id)
            .collect::<Vec<_>>(),
        [1, 1]
    );
    let first_two: Vec<(VenId, u64)> = unsent[..2]
        .iter()
        .map(|c| (c.ven_id.clone(), c.command_id))
        .collect();
    s.mark_sent(&first_two, 600).await.unwrap();
    s.mark_sent(&first_two, 700).await.unwrap();
    let rest = s.unsent_commands(100).await.unwrap();
    assert_eq!(rest, unsent[2..]);
    assert_eq!(s.unsent_commands(3).await.unwrap(), unsent[2..5]);
}

async fn acks_are_stored_once_for_targeted_vens<S: Store>(s: &S) {
    s.set_ven_groups(&ven("ven-a"), &[]).await.unwrap();
    s.set_ven_groups(&ven("ven-b"), &[]).await.unwrap();
    s.create_program(&oid("prog"), &program_write("P", &[]), 1)
        .await
        .unwrap();
    s.create_event(
        &oid("e1"),
        &event_write("prog", &["ven-a"], &["ven-a"], None),
        1,
    )
    .await
    .unwrap();
    let ack = |v: &str, event: &str, state: AckState, at: i64, reason: Option<&str>| CommandAck {
        ven_id: ven(v),
        command_id: 1,
        event_id: oid(event),
        state,
        at: Timestamp::from_unix_ms(at).unwrap(),
        reason: reason.map(str::to_string),
    };
    let received = ack("ven-a", "e1", AckState::Received, DAY0, None);
    assert_eq!(
        s.record_ack(&received, DAY0 + 5).await.unwrap(),
        AckOutcome::Stored
    );
    assert_eq!(
        s.record_ack(&received, DAY0 + 9).await.unwrap(),
        AckOutcome::Duplicate
    );
    let failed = ack(
        "ven-a",
        "e1",
        AckState::Failed,
        DAY0 + 1000,
        Some("coil write timed out"),
    );
    assert_eq!(
        s.record_ack(&failed, DAY0 + 1005).await.unwrap(),
        AckOutcome::Stored
    );
    assert_eq!(
        s.record_ack(&ack("ven-b", "e1", AckState::Received, DAY0, None), 0)
            .await
            .unwrap(),
        AckOutcome::UnknownEvent,
        "e1 was not sent to ven-b"
    );
    assert_eq!(
        s.record_ack(&ack("ven-a", "nope", AckState::Received, DAY0, None), 0)
            .await
            .unwrap(),
        AckOutcome::UnknownEvent
    );
    // Cancelled acknowledgements still land after the event is deleted.
    s.delete_event(&oid("e1"), 2).await.unwrap().unwrap();
    let cancelled = ack("ven-a", "e1", AckState::Cancelled, DAY0 + 2000, None);
    assert_eq!(
        s.record_ack(&cancelled, DAY0 + 2001).await.unwrap(),
        AckOutcome::Stored
    );

    let acks = s.event_acks(&oid("e1")).await.unwrap();
    let seen: Vec<_> = acks
        .iter()
        .map(|a| (a.state, a.at_ms, a.reason.as_deref(), a.received_ms))
        .collect();
    assert_eq!(
        seen,
        [
            (AckState::Received, DAY0, None, DAY0 + 5),
            (
                AckState::Failed,
                DAY0 + 1000,
                Some("coil write timed out"),
                DAY0 + 1005
            ),
            (AckState::Cancelled, DAY0 + 2000, None, DAY0 + 2001),
        ]
    );
}

/// An agent often reaches two states in one millisecond (received and
/// scheduled, received and opted out); stored in either order, they come
/// back in lifecycle order, so the last is the VEN's latest state.
async fn same_millisecond_acks_keep_their_lifecycle_order<S: Store>(s: &S) {
    s.set_ven_groups(&ven("ven-a"), &[]).await.unwrap();
    s.create_program(&oid("prog"), &program_write("P", &[]), 1)
        .await
        .unwrap();
    s.create_event(
        &oid("e1"),
        &event_write("prog", &["ven-a"], &["ven-a"], None),
        1,
    )
    .await
    .unwrap();
    for (state, reason) in [
        (
            AckState::OptedOut,
            Some("no participating load is affected"),
        ),
        (AckState::Received, None),
    ] {
        let ack = CommandAck {
            ven_id: ven("ven-a"),
            command_id: 1,
            event_id: oid("e1"),
            state,
            at: Timestamp::from_unix_ms(DAY0).unwrap(),
            reason: reason.map(str::to_string),
        };
        assert_eq!(
            s.record_ack(&ack, DAY0 + 3).await.unwrap(),
            AckOutcome::Stored
        );
    }
    let states: Vec<AckState> = s
        .event_acks(&oid("e1"))
        .await
        .unwrap()
        .iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, [AckState::Received, AckState::OptedOut]);
}

async fn command_ids_survive_another_process<S: Store>(s: &S, other: &S) {
    s.set_ven_groups(&ven("ven-a"), &[]).await.unwrap();
    s.create_program(&oid("prog"), &program_write("P", &[]), 1)
        .await
        .unwrap();
    let mut last = 0;
    for (i, store) in [s, other, s, other].into_iter().enumerate() {
        let id = oid(&format!("e{i}"));
        let (_, commands) = store
            .create_event(&id, &event_write("prog", &["ven-a"], &["ven-a"], None), 1)
            .await
            .unwrap();
        assert_eq!(commands.len(), 1);
        assert!(commands[0].command_id > last, "strictly increasing");
        last = commands[0].command_id;
    }
    assert_eq!(last, 4);
}

/// Unregistered VENs with a single `active_power` / `total` series (other
/// quantities and phases aside) are measured from it.
async fn site_power_means_per_ven<S: Store>(s: &S) {
    let reactive = series(
        "main",
        Quantity::ReactivePower,
        Phase::Total,
        0,
        &[(DAY0, 999)],
    );
    let l1 = series("main", Quantity::ActivePower, Phase::L1, 0, &[(DAY0, 999)]);
    s.ingest(&[
        batch(
            "ven-a",
            1,
            DAY0,
            vec![
                power(&[(DAY0, 100), (DAY0 + 1000, 300), (DAY0 + 2000, 50)]),
                reactive,
                l1,
            ],
        ),
        batch("ven-b", 1, DAY0, vec![power(&[(DAY0 + 500, 40)])]),
    ])
    .await
    .unwrap();
    let means = s
        .site_power(
            &[ven("ven-a"), ven("ven-b"), ven("ven-z")],
            DAY0,
            DAY0 + 2000,
        )
        .await
        .unwrap();
    assert_eq!(
        means,
        [
            (
                ven("ven-a"),
                PowerMean {
                    mean_w: 200.0,
                    readings: 2
                }
            ),
            (
                ven("ven-b"),
                PowerMean {
                    mean_w: 40.0,
                    readings: 1
                }
            ),
        ]
    );
    assert!(
        s.site_power(&[ven("ven-a")], 0, DAY0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Sites with sub-meters: only the registered site meter counts; without
/// one, a VEN with several `active_power` / `total` meters is left out.
async fn site_power_reads_only_the_site_meter<S: Store>(s: &S) {
    let metered = |meter: &str, raw: i64| {
        series(
            meter,
            Quantity::ActivePower,
            Phase::Total,
            0,
            &[(DAY0, raw), (DAY0 + 1000, raw + 10)],
        )
    };
    let sub_metered = || {
        vec![
            metered("main", 1000),
            metered("pv", -3000),
            metered("heat-pump", 500),
        ]
    };
    s.ingest(&[
        batch("registered", 1, DAY0, sub_metered()),
        batch("unregistered", 1, DAY0, sub_metered()),
        batch("single", 1, DAY0, vec![metered("grid", 200)]),
        batch("wrong-meter", 1, DAY0, sub_metered()),
    ])
    .await
    .unwrap();
    let register = |meter: Option<&str>| VenRegistration {
        site: "Site".into(),
        site_meter: meter.map(Into::into),
        groups: None,
        loads: None,
    };
    for (id, meter) in [
        ("registered", Some("main")),
        ("single", None),
        ("wrong-meter", Some("gone")),
    ] {
        s.register_ven(&ven(id), &register(meter), DAY0)
            .await
            .unwrap();
    }
    let all = [
        ven("registered"),
        ven("single"),
        ven("unregistered"),
        ven("wrong-meter"),
    ];
    let expected = [
        (
            ven("registered"),
            PowerMean {
                mean_w: 1005.0,
                readings: 2,
            },
        ),
        (
            ven("single"),
            PowerMean {
                mean_w: 205.0,
                readings: 2,
            },
        ),
    ];
    assert_eq!(
        s.site_power(&all, DAY0, DAY0 + 2000).await.unwrap(),
        expected
    );
    // Registering the site meter later makes the VEN measurable; a
    // registration without one keeps it.
    s.register_ven(&ven("unregistered"), &register(Some("pv")), DAY0 + 1)
        .await
        .unwrap();
    s.register_ven(&ven("unregistered"), &register(None), DAY0 + 2)
        .await
        .unwrap();
    let means = s.site_power(&all, DAY0, DAY0 + 2000).await.unwrap();
    assert_eq!(
        means.get(2),
        Some(&(
            ven("unregistered"),
            PowerMean {
                mean_w: -2995.0,
                readings: 2,
            }
        ))
    );
    assert_eq!(means.len(), 3);
}

// ---------------------------------------------------------------- audit and tokens

fn audit_entry(at_ms: i64, token_id: i64, action: &str, object_id: &str) -> AuditEntry {
    AuditEntry {
        at_ms,
        token_id,
        token_name: format!("token {token_id}"),
        role: Role::Operator,
        action: action.into(),
        object_type: action.split('.').next().unwrap().into(),
        object_id: Some(object_id.into()),
        request_id: format!("req-{at_ms}"),
        method: "POST".into(),
        path: "/x".into(),
        status: 201,
        summary: serde_json::json!({ "name": "n", "nested": [1, 2] }),
    }
}

async fn audit_trail_appends_and_filters<S: Store>(s: &S) {
    assert!(
        s.audit_entries(&AuditQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let entries = [
        audit_entry(DAY0, 1, "event.create", "e1"),
        audit_entry(DAY0 + 1, 2, "event.delete", "e1"),
        audit_entry(DAY0 + 2, 1, "program.create", "p1"),
        AuditEntry {
            object_id: None,
            status: 403,
            ..audit_entry(DAY0 + 3, 2, "token.create", "")
        },
    ];
    let mut ids = Vec::new();
    for entry in &entries {
        ids.push(s.record_audit(entry).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all = s.audit_entries(&AuditQuery::default()).await.unwrap();
    // Newest first, every field as stored.
    let got: Vec<&AuditEntry> = all.iter().map(|r| &r.entry).collect();
    let want: Vec<&AuditEntry> = entries.iter().rev().collect();
    assert_eq!(got, want);
    let query = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    };
    let actions = |records: Vec<gridlink_cloud::store::AuditRecord>| {
        records
            .into_iter()
            .map(|r| r.entry.action)
            .collect::<Vec<_>>()
    };
    let cases: [(AuditQuery, &[&str]); 8] = [
        (
            query(|q| q.actor = Some(AuditActor::TokenId(1))),
            &["program.create", "event.create"],
        ),
        (
            query(|q| q.actor = Some(AuditActor::TokenName("token 2".into()))),
            &["token.create", "event.delete"],
        ),
        (
            query(|q| q.action = Some("event.delete".into())),
            &["event.delete"],
        ),
        (
            query(|q| q.object_type = Some("event".into())),
            &["event.delete", "event.create"],
        ),
        (
            query(|q| q.object_id = Some("e1".into())),
            &["event.delete", "event.create"],
        ),
        (
            query(|q| {
                q.from_ms = Some(DAY0 + 1);
                q.to_ms = Some(DAY0 + 3);
            }),
            &["program.create", "event.delete"],
        ),
        (
            query(|q| {
                q.skip = 1;
                q.limit = 2;
            }),
            &["program.create", "event.delete"],
        ),
        (query(|q| q.action = Some("nothing".into())), &[]),
    ];
    for (q, want) in cases {
        assert_eq!(actions(s.audit_entries(&q).await.unwrap()), want, "{q:?}");
    }
}

async fn token_expiry_and_revocation<S: Store>(s: &S) {
    let hash = |b: u8| [b; 32];
    // A token without expiry (as stored before expiry existed) stays active.
    let old = s.create_token("old", Role::Viewer, &hash(1)).await.unwrap();
    assert_eq!((old.expires_ms, old.revoked_ms), (None, None));
    let short = s
        .create_expiring_token("short", Role::Viewer, &hash(2), DAY0, Some(DAY0 + 1000))
        .await
        .unwrap();
    let stored = s.token(&hash(2)).await.unwrap().unwrap();
    assert_eq!(stored, short);
    assert!(stored.is_active(DAY0 + 999));
    assert!(!stored.is_active(DAY0 + 1000));
    let admin = s
        .create_expiring_token("admin", Role::Admin, &hash(3), DAY0, None)
        .await
        .unwrap();
    let listed = s.tokens().await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [old.id, short.id, admin.id]
    );
    // Revoking: at once, and the first time is kept.
    let revoked = s.revoke_token(short.id, DAY0 + 5).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(DAY0 + 5));
    let again = s.revoke_token(short.id, DAY0 + 9).await.unwrap().unwrap();
    assert_eq!(again.revoked_ms, Some(DAY0 + 5));
    assert_eq!(
        s.token(&hash(2)).await.unwrap().unwrap().revoked_ms,
        Some(DAY0 + 5)
    );
    assert_eq!(s.revoke_token(999, DAY0).await.unwrap(), None);
    // The last active admin token cannot be revoked ...
    assert!(matches!(
        s.revoke_token(admin.id, DAY0 + 10).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        s.token(&hash(3))
            .await
            .unwrap()
            .unwrap()
            .is_active(DAY0 + 10)
    );
    // ... an expired admin does not count as another one ...
    s.create_expiring_token("gone", Role::Admin, &hash(4), DAY0, Some(DAY0 + 20))
        .await
        .unwrap();
    assert!(matches!(
        s.revoke_token(admin.id, DAY0 + 30).await,
        Err(StoreError::Conflict(_))
    ));
    // ... an active one does.
    let second = s
        .create_expiring_token("second", Role::Admin, &hash(5), DAY0, None)
        .await
        .unwrap();
    assert!(s.revoke_token(admin.id, DAY0 + 40).await.unwrap().is_some());
    assert!(matches!(
        s.revoke_token(second.id, DAY0 + 50).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_expiring_token("", Role::Viewer, &hash(6), DAY0, None)
            .await,
        Err(StoreError::Invalid(_))
    ));
}

/// The audit trail refuses UPDATE and DELETE in the database itself.
async fn assert_append_only(db: &Db) {
    use gridlink_cloud::store::AuditStore as _;
    db.store
        .record_audit(&audit_entry(DAY0, 1, "event.create", "e1"))
        .await
        .unwrap();
    let statements = [
        "UPDATE audit_log SET action = 'nothing'",
        "DELETE FROM audit_log",
    ];
    for statement in statements {
        let result = if db.url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.map(|_| ())
        } else {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.map(|_| ())
        };
        let error = result.expect_err(statement).to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
    if db.url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let error = sqlx::query("TRUNCATE audit_log")
            .execute(&pool)
            .await
            .expect_err("TRUNCATE");
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    let left = db
        .store
        .audit_entries(&AuditQuery::default())
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].entry.action, "event.create");
}

#[tokio::test]
async fn postgres_audit_log_is_append_only() {
    assert_append_only(&Db::postgres("audit_append_only").await).await;
}

#[tokio::test]
async fn sqlite_audit_log_is_append_only() {
    assert_append_only(&Db::sqlite().await).await;
}

// ---------------------------------------------------------------- API keys, export, overview

async fn api_keys_keep_their_vens_and_revocation<S: Store>(s: &S) {
    use gridlink_cloud::store::NewApiKey;
    let key = NewApiKey {
        name: "meter co".into(),
        customer: "acme".into(),
        ven_ids: vec![ven("ven-b"), ven("ven-a"), ven("ven-b")],
        hash: [3; 32],
    };
    let created = s.create_api_key(&key, DAY0).await.unwrap();
    // Sorted and once each; the VENs become known.
    assert_eq!(created.ven_ids, [ven("ven-a"), ven("ven-b")]);
    assert!(s.ven(&ven("ven-a")).await.unwrap().is_some());
    let stored = s.api_key(created.id).await.unwrap().unwrap();
    assert_eq!(stored.record, created);
    assert_eq!(s.api_keys().await.unwrap(), std::slice::from_ref(&created));
    assert_eq!(s.api_key(created.id + 100).await.unwrap(), None);
    // The hash is unique: a unique violation, classified by the store.
    assert!(matches!(
        s.create_api_key(&key, DAY0).await,
        Err(StoreError::UniqueViolation(_))
    ));
    // Revocation keeps its first time.
    let revoked = s
        .revoke_api_key(created.id, DAY0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_ms, Some(DAY0 + 1));
    let again = s
        .revoke_api_key(created.id, DAY0 + 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_ms, Some(DAY0 + 1));
    assert_eq!(
        s.revoke_api_key(created.id + 100, DAY0).await.unwrap(),
        None
    );
    // HTTP batch numbers count up per VEN.
    let first = s.next_http_batch_seq(&ven("ven-a")).await.unwrap();
    assert_eq!(
        s.next_http_batch_seq(&ven("ven-a")).await.unwrap(),
        first + 1
    );
    assert_eq!(s.next_http_batch_seq(&ven("ven-b")).await.unwrap(), first);
}

async fn export_reads_what_was_ingested_and_leases_days<S: Store>(s: &S) {
    use gridlink_cloud::store::ExportLease;
    s.ingest(&[batch(
        "ven-2",
        1,
        DAY0,
        vec![power(&[(DAY0 + 1000, 5), (DAY0 + 2000, 7)])],
    )])
    .await
    .unwrap();
    s.ingest(&[batch("ven-1", 1, DAY0, vec![power(&[(DAY0 + DAY, 1)])])])
        .await
        .unwrap();
    assert_eq!(
        s.export_vens(DAY0, DAY0 + DAY).await.unwrap(),
        [ven("ven-2")]
    );
    assert_eq!(
        s.export_vens(DAY0, DAY0 + 2 * DAY).await.unwrap(),
        [ven("ven-1"), ven("ven-2")]
    );
    let series = s.export_series(&ven("ven-2")).await.unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(
        (series[0].quantity, series[0].phase),
        (Quantity::ActivePower, Phase::Total)
    );
    let readings = s
        .export_readings(series[0].id, DAY0, DAY0 + DAY, 10)
        .await
        .unwrap();
    assert_eq!(readings, [(DAY0 + 1000, 5.0), (DAY0 + 2000, 7.0)]);
    assert_eq!(
        s.export_readings(series[0].id, DAY0, DAY0 + DAY, 1)
            .await
            .unwrap(),
        [(DAY0 + 1000, 5.0)]
    );
    let info = s.export_ven_info(&ven("ven-2")).await.unwrap().unwrap();
    assert_eq!((info.site, info.groups.len()), (None, 0));
    assert!(s.export_ven_info(&ven("nobody")).await.unwrap().is_none());
    // One holder at a time, until done.
    let day = "2025-11-20";
    assert_eq!(
        s.export_lease(day, "a", DAY0, 1000, false).await.unwrap(),
        ExportLease::Acquired
    );
    assert_eq!(
        s.export_lease(day, "b", DAY0 + 1, 1000, false)
            .await
            .unwrap(),
        ExportLease::Held {
            holder: "a".into(),
            expires_ms: DAY0 + 1000
        }
    );
    assert!(matches!(
        s.export_done(day, "b", DAY0 + 2, 2).await,
        Err(StoreError::Conflict(_))
    ));
    s.export_done(day, "a", DAY0 + 3, 2).await.unwrap();
    assert_eq!(
        s.export_lease(day, "b", DAY0 + 4, 1000, false)
            .await
            .unwrap(),
        ExportLease::Done { done_ms: DAY0 + 3 }
    );
    assert_eq!(
        s.export_lease(day, "b", DAY0 + 5, 1000, true)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
    s.export_release(day, "b").await.unwrap();
    assert_eq!(
        s.export_lease(day, "c", DAY0 + 6, 1000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
}

async fn overview_shows_each_site_meters_latest_power<S: Store>(s: &S) {
    s.ingest(&[
        batch(
            "ven-b",
            1,
            DAY0,
            vec![power(&[(DAY0, 10), (DAY0 + 3 * 60_000, 30)])],
        ),
        batch("ven-a", 1, DAY0, vec![power(&[(DAY0 + 1000, -4)])]),
    ])
    .await
    .unwrap();
    let latest = s.latest_site_power().await.unwrap();
    let got: Vec<_> = latest
        .iter()
        .map(|p| (p.ven_id.as_str().to_owned(), p.ts_ms, p.value_w))
        .collect();
    assert_eq!(
        got,
        [
            ("ven-a".to_owned(), DAY0 + 1000, -4.0),
            ("ven-b".to_owned(), DAY0 + 3 * 60_000, 30.0)
        ]
    );
}

// ---------------------------------------------------------------- demand response: errors and the outbox

/// Constraint errors of DR writes are classified, and a refused write
/// leaves nothing behind: no event, no queued command, no command id used.
async fn dr_constraint_errors_are_classified_and_store_nothing<S: Store>(s: &S) {
    s.set_ven_groups(&ven("ven-a"), &[]).await.unwrap();
    s.create_program(&oid("prog"), &program_write("P", &[]), 1)
        .await
        .unwrap();
    assert!(matches!(
        s.create_program(&oid("p-2"), &program_write("P", &[]), 2)
            .await,
        Err(StoreError::UniqueViolation(_))
    ));
    assert!(matches!(
        s.create_program(&oid("prog"), &program_write("Q", &[]), 2)
            .await,
        Err(StoreError::UniqueViolation(_))
    ));
    assert!(s.program(&oid("p-2")).await.unwrap().is_none());
    assert_eq!(s.program(&oid("prog")).await.unwrap().unwrap().name, "P");
    assert!(matches!(
        s.create_event(
            &oid("e0"),
            &event_write("ghost", &["ven-a"], &["ven-a"], None),
            3
        )
        .await,
        Err(StoreError::ForeignKeyViolation(_))
    ));
    assert!(s.event(&oid("e0")).await.unwrap().is_none());
    assert!(s.unsent_commands(10).await.unwrap().is_empty());
    let (_, commands) = s
        .create_event(
            &oid("e1"),
            &event_write("prog", &["ven-a"], &["ven-a"], None),
            4,
        )
        .await
        .unwrap();
    assert_eq!(
        commands_of(&commands),
        [("ven-a".into(), 1, "event")],
        "the refused event used no command id"
    );
    assert!(matches!(
        s.create_event(
            &oid("e1"),
            &event_write("prog", &["ven-a"], &["ven-a"], None),
            5
        )
        .await,
        Err(StoreError::UniqueViolation(_))
    ));
    assert_eq!(s.unsent_commands(10).await.unwrap(), commands);
    // Empty lists are no-ops, not errors.
    assert!(s.resolve_targets(&[]).await.unwrap().is_empty());
    assert!(s.site_power(&[], 0, DAY0).await.unwrap().is_empty());
    s.mark_sent(&[], 6).await.unwrap();
    assert!(s.ven_groups(&ven("never-seen")).await.unwrap().is_empty());
}

/// The outbox holds each command until it is marked sent, in creation
/// order, with the event's payload; marking is idempotent and per
/// (VEN, command id).
async fn outbox_keeps_commands_until_sent<S: Store>(s: &S) {
    for v in ["ven-a", "ven-b"] {
        s.set_ven_groups(&ven(v), &["site".to_string()])
            .await
            .unwrap();
    }
    s.create_program(&oid("prog"), &program_write("P", &[]), 1)
        .await
        .unwrap();
    let (_, first) = s
        .create_event(
            &oid("e1"),
            &event_write("prog", &["site"], &["ven-a", "ven-b"], Some(DAY0 + HOUR)),
            10,
        )
        .await
        .unwrap();
    let (_, second) = s
        .create_event(
            &oid("e2"),
            &event_write("prog", &["ven-a"], &["ven-a"], None),
            20,
        )
        .await
        .unwrap();
    let unsent = s.unsent_commands(10).await.unwrap();
    assert_eq!(unsent.len(), 3);
    assert_eq!(
        commands_of(&unsent[..2]),
        commands_of(&first),
        "oldest first"
    );
    assert_eq!(unsent[2..], second[..]);
    assert_eq!(commands_of(&second), [("ven-a".into(), 2, "event")]);
    for command in &unsent {
        match decoded(command).action {
            CommandAction::Event(e) => {
                let want = if command.command_id == 2 { "e2" } else { "e1" };
                assert_eq!(e.id.as_str(), want);
            }
            CommandAction::Cancel { .. } => panic!("expected events"),
        }
    }
    // Marking ven-b's command 1 leaves ven-a's command 1 unsent.
    s.mark_sent(&[(ven("ven-b"), 1), (ven("ghost"), 1)], 30)
        .await
        .unwrap();
    let left: Vec<(VenId, u64)> = s
        .unsent_commands(10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.ven_id, c.command_id))
        .collect();
    assert_eq!(left, [(ven("ven-a"), 1), (ven("ven-a"), 2)]);
    s.mark_sent(&left, 40).await.unwrap();
    s.mark_sent(&left, 50).await.unwrap();
    assert!(s.unsent_commands(10).await.unwrap().is_empty());
    // A later command is queued again, with the next id.
    let (_, cancel) = s.delete_event(&oid("e2"), 60).await.unwrap().unwrap();
    assert_eq!(commands_of(&cancel), [("ven-a".into(), 3, "cancel")]);
    assert_eq!(s.unsent_commands(10).await.unwrap(), cancel);
}

// ---------------------------------------------------------------- shadows

fn shadow_update(
    desired: Option<serde_json::Value>,
    reported: Option<serde_json::Value>,
    version: Option<u64>,
) -> ShadowUpdateRequest {
    ShadowUpdateRequest {
        state: Some(ShadowUpdateState { desired, reported }),
        client_token: None,
        version,
    }
}

fn section(map: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    serde_json::Value::Object(map.clone())
}

/// A shadow is written only at the version the writer read: creating one
/// twice, or updating from a stale version, conflicts and keeps what is
/// stored; what is saved (merges, deleted keys, nested values, numbers,
/// text) reads back as saved.
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn shadows_are_saved_only_at_the_expected_version<S: Store>(s: &S) {
    let a = ven("ven-a");
    assert!(s.shadow(&a).await.unwrap().is_none());

    let mut first = ShadowDocument::default();
    first
        .apply(
            &shadow_update(
                Some(serde_json::json!({
                    "mode": "eco",
                    "limits": { "import_w": 5000, "export_w": 3000 },
                    "label": "Zürich ☀ \"north\""
                })),
                None,
                None,
            ),
            1_000,
        )
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(
        s.save_shadow(&a, &first, 0, 1_000_000).await.unwrap(),
        ShadowWrite::Saved
    );
    assert_eq!(s.shadow(&a).await.unwrap().unwrap(), first);
    assert_eq!(
        s.save_shadow(&a, &first, 0, 1_000_001).await.unwrap(),
        ShadowWrite::Conflict,
        "a shadow exists: expected 0 conflicts"
    );

    // Version 2: desired keys merged and deleted, reported added.
    let mut second = s.shadow(&a).await.unwrap().unwrap();
    second
        .apply(
            &shadow_update(
                Some(serde_json::json!({
                    "mode": null,
                    "limits": { "export_w": null },
                    "setpoint": 21.5
                })),
                Some(serde_json::json!({
                    "mode": "eco",
                    "firmware": "1.2.3",
                    "counters": { "boots": 18_446_744_073_709_551_615_u64, "temp": -3.25 }
                })),
                Some(1),
            ),
            2_000,
        )
        .unwrap();
    assert_eq!(
        s.save_shadow(&a, &second, 1, 2_000_000).await.unwrap(),
        ShadowWrite::Saved
    );
    let stored = s.shadow(&a).await.unwrap().unwrap();
    assert_eq!(stored, second);
    assert_eq!((stored.version, stored.timestamp), (2, 2_000));
    assert_eq!(
        section(&stored.desired),
        serde_json::json!({
            "limits": { "import_w": 5000 },
            "label": "Zürich ☀ \"north\"",
            "setpoint": 21.5
        })
    );
    assert_eq!(
        section(&stored.reported),
        serde_json::json!({
            "mode": "eco",
            "firmware": "1.2.3",
            "counters": { "boots": 18_446_744_073_709_551_615_u64, "temp": -3.25 }
        })
    );

    // A writer that read version 1 loses: nothing changes.
    let mut stale = first.clone();
    stale.desired.insert("mode".into(), "boost".into());
    stale.version = 2;
    assert_eq!(
        s.save_shadow(&a, &stale, 1, 3_000_000).await.unwrap(),
        ShadowWrite::Conflict
    );
    assert_eq!(
        s.save_shadow(&a, &stale, 5, 3_000_000).await.unwrap(),
        ShadowWrite::Conflict,
        "a version ahead of the stored one conflicts too"
    );
    assert_eq!(s.shadow(&a).await.unwrap().unwrap(), second);

    // Version 3: `desired: null` clears every desired key; reported stays.
    let mut third = second.clone();
    third
        .apply(
            &shadow_update(Some(serde_json::Value::Null), None, None),
            3_000,
        )
        .unwrap();
    assert_eq!(
        s.save_shadow(&a, &third, 2, 3_000_000).await.unwrap(),
        ShadowWrite::Saved
    );
    let stored = s.shadow(&a).await.unwrap().unwrap();
    assert!(stored.desired.is_empty());
    assert_eq!(stored.reported, second.reported);
    assert_eq!(stored.version, 3);
    assert_eq!(stored.delta(), None);

    // Shadows are per VEN: updating one that has none conflicts and
    // creates nothing.
    let b = ven("ven-b");
    assert_eq!(
        s.save_shadow(&b, &third, 2, 0).await.unwrap(),
        ShadowWrite::Conflict
    );
    assert!(s.shadow(&b).await.unwrap().is_none());
    assert_eq!(
        s.save_shadow(&b, &first, 0, 0).await.unwrap(),
        ShadowWrite::Saved
    );
    assert_eq!(s.shadow(&b).await.unwrap().unwrap(), first);
    assert_eq!(s.shadow(&a).await.unwrap().unwrap(), third);
}

/// Two processes that read the same version and write at once: exactly one
/// wins; the loser reads the winner's document and its retry applies on top.
async fn shadow_writers_never_lose_each_others_updates<S: Store>(s: &S, other: &S) {
    let a = ven("ven-a");
    let mut base = ShadowDocument::default();
    base.apply(
        &shadow_update(None, Some(serde_json::json!({ "n": 0 })), None),
        1,
    )
    .unwrap();
    assert_eq!(
        s.save_shadow(&a, &base, 0, 1).await.unwrap(),
        ShadowWrite::Saved
    );
    let mut mine = base.clone();
    mine.apply(
        &shadow_update(Some(serde_json::json!({ "from": "s" })), None, Some(1)),
        2,
    )
    .unwrap();
    let mut theirs = base.clone();
    theirs
        .apply(
            &shadow_update(Some(serde_json::json!({ "other": "o" })), None, Some(1)),
            2,
        )
        .unwrap();
    let (one, two) = tokio::join!(
        s.save_shadow(&a, &mine, 1, 2),
        other.save_shadow(&a, &theirs, 1, 2)
    );
    let outcomes = [one.unwrap(), two.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|w| **w == ShadowWrite::Saved)
            .count(),
        1,
        "{outcomes:?}"
    );
    let (winner, loser, loser_store) = if outcomes[0] == ShadowWrite::Saved {
        (&mine, &theirs, other)
    } else {
        (&theirs, &mine, s)
    };
    let mut retry = loser_store.shadow(&a).await.unwrap().unwrap();
    assert_eq!(&retry, winner);
    retry
        .apply(
            &shadow_update(Some(section(&loser.desired)), None, Some(2)),
            3,
        )
        .unwrap();
    assert_eq!(
        loser_store.save_shadow(&a, &retry, 2, 3).await.unwrap(),
        ShadowWrite::Saved
    );
    let stored = s.shadow(&a).await.unwrap().unwrap();
    assert_eq!(stored.version, 3);
    assert_eq!(
        section(&stored.desired),
        serde_json::json!({ "from": "s", "other": "o" }),
        "both updates survive"
    );
}

// ---------------------------------------------------------------- projects

fn milestone(name: &str, quantity: MilestoneQuantity, threshold_kwh: f64) -> MilestoneWrite {
    MilestoneWrite {
        name: name.into(),
        quantity,
        threshold_kwh,
    }
}

fn solar_park(vens: &[&str], milestones: Vec<MilestoneWrite>) -> ProjectWrite {
    ProjectWrite {
        name: "Solar park".into(),
        kind: ProjectKind::Renewable,
        status: ProjectStatus::Operational,
        capacity_kw: 1250.5,
        latitude: 47.376_9,
        longitude: -8.541_7,
        address: Some("Bahnhofstrasse 1, Zürich".into()),
        currency: "CHF".into(),
        ven_ids: vens.iter().map(|v| ven(v)).collect(),
        milestones,
    }
}

fn milestones_of(record: &ProjectRecord) -> Vec<(String, MilestoneQuantity, f64, Option<i64>)> {
    record
        .milestones
        .iter()
        .map(|m| (m.name.clone(), m.quantity, m.threshold_kwh, m.reached_ms))
        .collect()
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn projects_keep_their_vens_and_milestones<S: Store>(s: &S) {
    for v in ["ven-a", "ven-b", "ven-c"] {
        s.set_ven_groups(&ven(v), &[]).await.unwrap();
    }
    assert!(s.projects().await.unwrap().is_empty());
    let write = solar_park(
        &["ven-b", "ven-a"],
        vec![
            milestone("first MWh", MilestoneQuantity::Generated, 1000.0),
            milestone("consumed", MilestoneQuantity::Consumed, 50.25),
        ],
    );
    let park = s.create_project(&write, 1_000).await.unwrap();
    assert_eq!(
        (
            park.name.as_str(),
            park.kind,
            park.status,
            park.capacity_kw,
            park.latitude,
            park.longitude,
            park.address.as_deref(),
            park.currency.as_str(),
        ),
        (
            "Solar park",
            ProjectKind::Renewable,
            ProjectStatus::Operational,
            1250.5,
            47.376_9,
            -8.541_7,
            Some("Bahnhofstrasse 1, Zürich"),
            "CHF",
        )
    );
    assert_eq!(park.ven_ids, [ven("ven-a"), ven("ven-b")], "by id");
    assert_eq!(
        milestones_of(&park),
        [
            (
                "first MWh".into(),
                MilestoneQuantity::Generated,
                1000.0,
                None
            ),
            ("consumed".into(), MilestoneQuantity::Consumed, 50.25, None),
        ],
        "in the order given"
    );
    assert_eq!((park.created_ms, park.updated_ms), (1_000, 1_000));
    assert_eq!(s.project(park.id).await.unwrap().unwrap(), park);

    let flex = s
        .create_project(
            &ProjectWrite {
                name: "Flex pool".into(),
                kind: ProjectKind::Flexibility,
                status: ProjectStatus::Planned,
                capacity_kw: 0.0,
                latitude: -90.0,
                longitude: 180.0,
                address: None,
                currency: "EUR".into(),
                ven_ids: vec![ven("ven-a")],
                milestones: vec![],
            },
            2_000,
        )
        .await
        .unwrap();
    assert!(flex.id > park.id);
    assert_eq!(flex.address, None);
    assert!(flex.milestones.is_empty());
    assert_eq!(s.projects().await.unwrap(), [park.clone(), flex.clone()]);
    assert!(s.project(flex.id + 100).await.unwrap().is_none());

    // Refused writes are classified and store nothing.
    assert!(matches!(
        s.create_project(&solar_park(&[], vec![]), 3_000).await,
        Err(StoreError::UniqueViolation(_))
    ));
    let ghost = ProjectWrite {
        name: "Ghost".into(),
        ..solar_park(&["ven-a", "never-registered"], vec![])
    };
    assert!(matches!(
        s.create_project(&ghost, 3_000).await,
        Err(StoreError::ForeignKeyViolation(_))
    ));
    let repeated = ProjectWrite {
        name: "Twice".into(),
        ..solar_park(
            &[],
            vec![
                milestone("m", MilestoneQuantity::Generated, 1.0),
                milestone("m", MilestoneQuantity::Consumed, 2.0),
            ],
        )
    };
    assert!(matches!(
        s.create_project(&repeated, 3_000).await,
        Err(StoreError::UniqueViolation(_))
    ));
    let off_the_map = ProjectWrite {
        name: "Off the map".into(),
        latitude: 91.0,
        ..solar_park(&[], vec![])
    };
    assert!(matches!(
        s.create_project(&off_the_map, 3_000).await,
        Err(StoreError::CheckViolation(_))
    ));
    assert_eq!(s.projects().await.unwrap(), [park.clone(), flex.clone()]);

    // Milestones are recorded once.
    assert!(
        s.set_milestone_reached(park.id, "first MWh", 5_000)
            .await
            .unwrap()
    );
    assert!(
        !s.set_milestone_reached(park.id, "first MWh", 6_000)
            .await
            .unwrap()
    );
    assert!(
        s.set_milestone_reached(park.id, "consumed", 5_500)
            .await
            .unwrap()
    );
    assert!(
        !s.set_milestone_reached(park.id, "nope", 6_000)
            .await
            .unwrap()
    );
    assert!(
        !s.set_milestone_reached(flex.id, "first MWh", 6_000)
            .await
            .unwrap()
    );
    assert_eq!(
        milestones_of(&s.project(park.id).await.unwrap().unwrap()),
        [
            (
                "first MWh".into(),
                MilestoneQuantity::Generated,
                1000.0,
                Some(5_000)
            ),
            (
                "consumed".into(),
                MilestoneQuantity::Consumed,
                50.25,
                Some(5_500)
            ),
        ]
    );

    // Replacing: VENs and milestones are replaced; an unchanged milestone
    // keeps when it was reached, a changed one starts again.
    let replaced = ProjectWrite {
        name: "Solar park II".into(),
        status: ProjectStatus::Decommissioned,
        address: None,
        ..solar_park(
            &["ven-c", "ven-a"],
            vec![
                milestone("consumed", MilestoneQuantity::Consumed, 75.0),
                milestone("10 MWh", MilestoneQuantity::Generated, 10_000.0),
                milestone("first MWh", MilestoneQuantity::Generated, 1000.0),
            ],
        )
    };
    let updated = s
        .update_project(park.id, &replaced, 7_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.id, updated.created_ms, updated.updated_ms),
        (park.id, 1_000, 7_000)
    );
    assert_eq!(
        (
            updated.name.as_str(),
            updated.status,
            updated.address.as_deref()
        ),
        ("Solar park II", ProjectStatus::Decommissioned, None)
    );
    assert_eq!(updated.ven_ids, [ven("ven-a"), ven("ven-c")]);
    assert_eq!(
        milestones_of(&updated),
        [
            ("consumed".into(), MilestoneQuantity::Consumed, 75.0, None),
            (
                "10 MWh".into(),
                MilestoneQuantity::Generated,
                10_000.0,
                None
            ),
            (
                "first MWh".into(),
                MilestoneQuantity::Generated,
                1000.0,
                Some(5_000)
            ),
        ]
    );
    assert_eq!(s.project(park.id).await.unwrap().unwrap(), updated);
    assert!(
        s.update_project(flex.id + 100, &replaced, 8_000)
            .await
            .unwrap()
            .is_none()
    );
    // A refused replacement changes nothing.
    let taken = ProjectWrite {
        name: "Flex pool".into(),
        ..replaced.clone()
    };
    assert!(matches!(
        s.update_project(park.id, &taken, 8_000).await,
        Err(StoreError::UniqueViolation(_))
    ));
    let unknown_ven = ProjectWrite {
        ven_ids: vec![ven("ven-a"), ven("never-registered")],
        ..replaced.clone()
    };
    assert!(matches!(
        s.update_project(park.id, &unknown_ven, 8_000).await,
        Err(StoreError::ForeignKeyViolation(_))
    ));
    assert_eq!(s.projects().await.unwrap(), [updated, flex]);
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn project_finances_are_kept_per_project<S: Store>(s: &S) {
    let park = s
        .create_project(&solar_park(&[], vec![]), 1_000)
        .await
        .unwrap();
    let other = s
        .create_project(
            &ProjectWrite {
                name: "Other".into(),
                ..solar_park(&[], vec![])
            },
            1_000,
        )
        .await
        .unwrap();
    let expense = FinanceWrite {
        kind: FinanceKind::Expense,
        amount_minor: 125_000,
        currency: "CHF".into(),
        at_ms: DAY0 + HOUR,
        category: Some("maintenance".into()),
        description: Some("inverter «B» replaced".into()),
    };
    let revenue = FinanceWrite {
        kind: FinanceKind::Revenue,
        amount_minor: 99,
        currency: "CHF".into(),
        at_ms: DAY0,
        category: None,
        description: None,
    };
    let e1 = s
        .add_finance_entry(park.id, &expense, 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e1.project_id, &e1.entry, e1.created_ms),
        (park.id, &expense, 2_000)
    );
    let e2 = s
        .add_finance_entry(park.id, &revenue, 3_000)
        .await
        .unwrap()
        .unwrap();
    let late = FinanceWrite {
        at_ms: DAY0 + DAY,
        ..revenue.clone()
    };
    let e3 = s
        .add_finance_entry(park.id, &late, 4_000)
        .await
        .unwrap()
        .unwrap();
    assert!(e1.id < e2.id && e2.id < e3.id);
    let o1 = s
        .add_finance_entry(other.id, &revenue, 5_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.add_finance_entry(other.id + 100, &revenue, 5_000)
            .await
            .unwrap()
            .is_none()
    );
    let negative = FinanceWrite {
        amount_minor: -1,
        ..revenue.clone()
    };
    assert!(matches!(
        s.add_finance_entry(park.id, &negative, 5_000).await,
        Err(StoreError::CheckViolation(_))
    ));

    assert_eq!(
        s.finance_entries(park.id, DAY0, DAY0 + DAY).await.unwrap(),
        [e2.clone(), e1.clone()],
        "by time, the end excluded"
    );
    assert_eq!(
        s.finance_entries(park.id, 0, i64::MAX).await.unwrap(),
        [e2.clone(), e1.clone(), e3.clone()]
    );
    assert_eq!(
        s.finance_entries(other.id, 0, i64::MAX).await.unwrap(),
        std::slice::from_ref(&o1)
    );
    assert!(
        !s.delete_finance_entry(other.id, e1.id).await.unwrap(),
        "another project's"
    );
    assert!(s.delete_finance_entry(park.id, e1.id).await.unwrap());
    assert!(!s.delete_finance_entry(park.id, e1.id).await.unwrap());
    assert_eq!(
        s.finance_entries(park.id, 0, i64::MAX).await.unwrap(),
        [e2, e3]
    );
    assert_eq!(
        s.finance_entries(other.id, 0, i64::MAX).await.unwrap(),
        [o1]
    );
}

/// A VEN, its site meter, and its energy series as (meter, quantity code).
type EnergyShape = (VenId, Option<String>, Vec<(String, i16)>);

fn counter(meter: &str, quantity: Quantity, points: &[(i64, i64)]) -> Series {
    series(meter, quantity, Phase::Total, 0, points)
}

fn hour(series_id: i64, bucket: i64, count: i64, sum: f64, min: f64, last: (i64, f64)) -> HourRow {
    HourRow {
        series_id,
        bucket,
        count,
        sum,
        min,
        last_ts: last.0,
        last_value: last.1,
    }
}

/// The reads behind a project's energy: its VENs' energy series, their
/// 1-hour rollup rows as ingest stored them, days summed from those hours
/// with the documented counter rules, and the events of its VENs.
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn project_energy_reads_the_hourly_rollups<S: Store>(s: &S) {
    const MIN: i64 = 60_000;
    s.ingest(&[
        batch(
            "ven-a",
            1,
            DAY0,
            vec![
                counter(
                    "main",
                    Quantity::EnergyImport,
                    &[
                        (DAY0, 1000),
                        (DAY0 + 30 * MIN, 1100),
                        (DAY0 + HOUR + 10 * MIN, 1300),
                        (DAY0 + 2 * HOUR + 5 * MIN, 1600),
                        (DAY0 + DAY + HOUR, 2000),
                        (DAY0 + DAY + 2 * HOUR, 150),
                    ],
                ),
                counter(
                    "main",
                    Quantity::ActivePower,
                    &[(DAY0, -500), (DAY0 + MIN, -1500), (DAY0 + HOUR, 400)],
                ),
                // Not energy: another quantity, another phase.
                counter("main", Quantity::ReactivePower, &[(DAY0, 7)]),
                series("main", Quantity::EnergyImport, Phase::L1, 0, &[(DAY0, 7)]),
            ],
        ),
        batch(
            "ven-b",
            1,
            DAY0,
            vec![counter("pv", Quantity::EnergyExport, &[(DAY0, 10)])],
        ),
    ])
    .await
    .unwrap();
    s.register_ven(
        &ven("ven-a"),
        &VenRegistration {
            site: "Site A".into(),
            site_meter: Some("main".into()),
            groups: None,
            loads: None,
        },
        DAY0,
    )
    .await
    .unwrap();

    let found = s
        .energy_series(&[ven("ven-b"), ven("ven-a"), ven("ven-z")])
        .await
        .unwrap();
    let shape: Vec<EnergyShape> = found
        .iter()
        .map(|(v, meter, list)| {
            let mut list: Vec<_> = list.iter().map(|e| (e.meter.clone(), e.quantity)).collect();
            list.sort_by_key(|e| e.1);
            (v.clone(), meter.clone(), list)
        })
        .collect();
    assert_eq!(
        shape,
        [
            (
                ven("ven-a"),
                Some("main".into()),
                vec![("main".into(), 0), ("main".into(), 7)]
            ),
            (ven("ven-b"), None, vec![("pv".into(), 8)]),
        ],
        "known VENs by id, their active_power and energy series on phase total"
    );
    let id_of = |v: usize, quantity: i16| {
        found[v]
            .2
            .iter()
            .find(|e| e.quantity == quantity)
            .unwrap()
            .series_id
    };
    let (import, power, export) = (id_of(0, 7), id_of(0, 0), id_of(1, 8));

    let day0 = [
        hour(import, DAY0, 2, 2100.0, 1000.0, (DAY0 + 30 * MIN, 1100.0)),
        hour(
            import,
            DAY0 + HOUR,
            1,
            1300.0,
            1300.0,
            (DAY0 + HOUR + 10 * MIN, 1300.0),
        ),
        hour(
            import,
            DAY0 + 2 * HOUR,
            1,
            1600.0,
            1600.0,
            (DAY0 + 2 * HOUR + 5 * MIN, 1600.0),
        ),
    ];
    assert_eq!(
        s.hour_rows(&[import], DAY0, DAY0 + DAY).await.unwrap(),
        day0
    );
    assert_eq!(
        s.hour_rows(&[import], DAY0 + HOUR, DAY0 + 2 * HOUR)
            .await
            .unwrap(),
        day0[1..2],
        "the end excluded"
    );
    let power_rows = [
        hour(power, DAY0, 2, -2000.0, -1500.0, (DAY0 + MIN, -1500.0)),
        hour(power, DAY0 + HOUR, 1, 400.0, 400.0, (DAY0 + HOUR, 400.0)),
    ];
    let both = s
        .hour_rows(&[power, import], DAY0, DAY0 + DAY)
        .await
        .unwrap();
    let mut want: Vec<HourRow> = day0.iter().chain(&power_rows).copied().collect();
    want.sort_by_key(|r| (r.series_id, r.bucket));
    assert_eq!(both, want, "by series then bucket");
    assert!(s.hour_rows(&[], 0, i64::MAX).await.unwrap().is_empty());

    let mut before = s
        .hour_rows_before(&[import, power, export], DAY0 + DAY)
        .await
        .unwrap();
    before.sort_by_key(|r| r.series_id);
    let mut want = vec![
        day0[2],
        power_rows[1],
        hour(export, DAY0, 1, 10.0, 10.0, (DAY0, 10.0)),
    ];
    want.sort_by_key(|r| r.series_id);
    assert_eq!(before, want);
    assert!(
        s.hour_rows_before(&[import], DAY0)
            .await
            .unwrap()
            .is_empty()
    );

    // Days: each hour rises from the previous hour's last value (that hour
    // may be before `from_ms`), the first from its own smallest; a counter
    // that went down rises from its smallest value.
    let both_days = s
        .day_rows(&[import, power], DAY0, DAY0 + 2 * DAY)
        .await
        .unwrap();
    assert_eq!(
        both_days
            .iter()
            .map(|d| (
                d.series_id,
                d.day,
                d.rise,
                d.positive_wh,
                d.negative_wh,
                d.last_ts
            ))
            .collect::<Vec<_>>(),
        {
            let mut want = vec![
                (
                    import,
                    DAY0,
                    600.0,
                    1050.0 + 1300.0 + 1600.0,
                    0.0,
                    DAY0 + 2 * HOUR + 5 * MIN,
                ),
                (
                    import,
                    DAY0 + DAY,
                    400.0,
                    2000.0 + 150.0,
                    0.0,
                    DAY0 + DAY + 2 * HOUR,
                ),
                (power, DAY0, 1900.0, 400.0, 1000.0, DAY0 + HOUR),
            ];
            want.sort_by_key(|d| (d.0, d.1));
            want
        }
    );
    let second_day = s
        .day_rows(&[import], DAY0 + DAY, DAY0 + 2 * DAY)
        .await
        .unwrap();
    assert_eq!(second_day.len(), 1);
    assert_eq!(
        (second_day[0].day, second_day[0].rise),
        (DAY0 + DAY, 400.0),
        "the first hour rises from the last hour of the day before"
    );
    assert!(
        s.day_rows(&[import], DAY0 + 2 * DAY, DAY0 + 3 * DAY)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.day_rows(&[], 0, DAY0).await.unwrap().is_empty());

    // Events of the project's VENs: by end then id, only the VENs they
    // still go to, not deleted, ending in the range.
    s.set_ven_groups(&ven("ven-c"), &[]).await.unwrap();
    s.create_program(&oid("prog"), &program_write("P", &[]), 1)
        .await
        .unwrap();
    let event = |id: &str, vens: &[&str], end_ms: Option<i64>| {
        (oid(id), event_write("prog", vens, vens, end_ms))
    };
    for (id, write) in [
        event("e1", &["ven-a", "ven-b"], Some(DAY0 + HOUR)),
        event("e0", &["ven-b"], Some(DAY0 + HOUR)),
        event("e2", &["ven-c"], Some(DAY0 + 2 * HOUR)),
        event("e3", &["ven-a"], None),
        event("e4", &["ven-b"], Some(DAY0 + DAY)),
        event("e5", &["ven-a"], Some(DAY0 + HOUR)),
        event("e6", &["ven-a", "ven-c"], Some(DAY0 + 30 * MIN)),
    ] {
        s.create_event(&id, &write, 1).await.unwrap();
    }
    s.delete_event(&oid("e5"), 2).await.unwrap().unwrap();
    let (_, retargeted) = event("e6", &["ven-c"], Some(DAY0 + 30 * MIN));
    s.update_event(&oid("e6"), &retargeted, 3)
        .await
        .unwrap()
        .unwrap();
    let events = |list: Vec<ProjectEvent>| {
        list.into_iter()
            .map(|e| {
                (
                    e.event_id.to_string(),
                    e.vens.iter().map(ToString::to_string).collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    let pair = |id: &str, vens: &[&str]| {
        (
            id.to_string(),
            vens.iter().map(|v| (*v).to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        events(
            s.project_events(&[ven("ven-b"), ven("ven-a")], DAY0, DAY0 + DAY)
                .await
                .unwrap()
        ),
        [pair("e0", &["ven-b"]), pair("e1", &["ven-a", "ven-b"])]
    );
    assert_eq!(
        events(
            s.project_events(
                &[ven("ven-a"), ven("ven-b"), ven("ven-c")],
                DAY0,
                DAY0 + DAY + 1
            )
            .await
            .unwrap()
        ),
        [
            pair("e6", &["ven-c"]),
            pair("e0", &["ven-b"]),
            pair("e1", &["ven-a", "ven-b"]),
            pair("e2", &["ven-c"]),
            pair("e4", &["ven-b"]),
        ]
    );
    assert!(s.project_events(&[], 0, i64::MAX).await.unwrap().is_empty());
}

// ---------------------------------------------------------------- alerts

fn offline(ven_id: &str) -> Condition {
    Condition {
        ven_id: Some(ven(ven_id)),
        details: serde_json::json!({ "last_seen_ms": 123, "site": "Zürich" }),
        ..Condition::new(
            Rule::VenOffline,
            ven_id,
            Severity::Critical,
            format!("{ven_id} is offline"),
        )
    }
}

fn alert_filter(limit: u32) -> AlertFilter {
    AlertFilter {
        limit,
        ..AlertFilter::default()
    }
}

/// An alert opens once per rule and subject after its hold-down; raising
/// it again does not open another; it resolves after the condition was
/// clear long enough (a raise meanwhile restarts that), is acknowledged
/// without resolving, and a later raise opens a new one.
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn alerts_open_once_and_resolve_after_their_hold_down<S: Store>(s: &S) {
    let channels = [Channel::Webhook, Channel::Email];
    let cond = offline("ven-a");
    assert_eq!(
        s.raise_alert(&cond, 1_000, 60_000, &channels)
            .await
            .unwrap(),
        Raised::Pending { since_ms: 1_000 }
    );
    assert_eq!(
        s.raise_alert(&cond, 30_000, 60_000, &channels)
            .await
            .unwrap(),
        Raised::Pending { since_ms: 1_000 },
        "pending since it was first seen"
    );
    assert_eq!(
        s.active_alert_keys().await.unwrap(),
        [(Rule::VenOffline, "ven-a".to_string())]
    );
    assert!(s.alerts(&alert_filter(50)).await.unwrap().is_empty());

    let Raised::Opened(alert) = s
        .raise_alert(&cond, 61_000, 60_000, &channels)
        .await
        .unwrap()
    else {
        panic!("the hold-down is over: the alert opens");
    };
    assert_eq!(
        *alert,
        Alert {
            id: alert.id,
            rule: Rule::VenOffline,
            severity: Severity::Critical,
            subject: "ven-a".into(),
            ven_id: Some("ven-a".into()),
            event_id: None,
            project_id: None,
            state: AlertState::Open,
            opened_ms: 61_000,
            resolved_ms: None,
            acknowledged_ms: None,
            acknowledged_by: None,
            message: "ven-a is offline".into(),
            details: serde_json::json!({ "last_seen_ms": 123, "site": "Zürich" }),
        }
    );
    let again = Condition {
        message: "still offline".into(),
        ..cond.clone()
    };
    assert_eq!(
        s.raise_alert(&again, 62_000, 0, &channels).await.unwrap(),
        Raised::AlreadyOpen(alert.id)
    );
    assert_eq!(s.alerts(&alert_filter(50)).await.unwrap(), [*alert.clone()]);
    assert_eq!(
        s.alert_deliveries(alert.id).await.unwrap(),
        [
            ("opened".into(), Channel::Webhook, false, 0),
            ("opened".into(), Channel::Email, false, 0),
        ],
        "one notification per channel, once"
    );

    let acked = s
        .acknowledge_alert(alert.id, "ops dashboard", Some("on it"), 63_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            acked.state,
            acked.acknowledged_ms,
            acked.acknowledged_by.as_deref()
        ),
        (AlertState::Open, Some(63_000), Some("ops dashboard"))
    );
    assert_eq!(s.alert(alert.id).await.unwrap().unwrap(), acked);
    assert!(
        s.acknowledge_alert(alert.id + 100, "x", None, 63_000)
            .await
            .unwrap()
            .is_none()
    );

    let clear = |now_ms| s.clear_alert(Rule::VenOffline, "ven-a", now_ms, 60_000, &channels);
    assert_eq!(
        clear(70_000).await.unwrap(),
        Cleared::Clearing {
            id: alert.id,
            since_ms: 70_000
        }
    );
    assert_eq!(
        clear(100_000).await.unwrap(),
        Cleared::Clearing {
            id: alert.id,
            since_ms: 70_000
        }
    );
    assert_eq!(
        s.raise_alert(&cond, 110_000, 60_000, &channels)
            .await
            .unwrap(),
        Raised::AlreadyOpen(alert.id),
        "raised again: the resolve hold-down restarts"
    );
    assert_eq!(
        clear(120_000).await.unwrap(),
        Cleared::Clearing {
            id: alert.id,
            since_ms: 120_000
        }
    );
    let Cleared::Resolved(resolved) = clear(180_000).await.unwrap() else {
        panic!("clear for 60 s: resolved");
    };
    assert_eq!(
        *resolved,
        Alert {
            state: AlertState::Resolved,
            resolved_ms: Some(180_000),
            ..acked.clone()
        }
    );
    assert_eq!(clear(190_000).await.unwrap(), Cleared::NotOpen);
    assert_eq!(
        s.alert_deliveries(alert.id).await.unwrap(),
        [
            ("opened".into(), Channel::Webhook, false, 0),
            ("opened".into(), Channel::Email, false, 0),
            ("resolved".into(), Channel::Webhook, false, 0),
            ("resolved".into(), Channel::Email, false, 0),
        ]
    );
    assert!(s.active_alert_keys().await.unwrap().is_empty());

    // A new occurrence is a new alert; filters and order.
    let Raised::Opened(second) = s.raise_alert(&cond, 200_000, 0, &[]).await.unwrap() else {
        panic!("resolved before: a new alert opens");
    };
    assert_ne!(second.id, alert.id);
    assert!(s.alert_deliveries(second.id).await.unwrap().is_empty());
    let gap = Condition {
        ven_id: Some(ven("ven-b")),
        project_id: Some(7),
        event_id: Some("e1".into()),
        ..Condition::new(
            Rule::DataGap,
            "ven-b/main/active_power/total",
            Severity::Warning,
            "no data",
        )
    };
    let Raised::Opened(gap_alert) = s.raise_alert(&gap, 210_000, 0, &[]).await.unwrap() else {
        panic!("opens at once");
    };
    assert_eq!(
        (
            gap_alert.project_id,
            gap_alert.event_id.as_deref(),
            gap_alert.severity
        ),
        (Some(7), Some("e1"), Severity::Warning)
    );
    let ids = |list: Vec<Alert>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.alerts(&alert_filter(50)).await.unwrap()),
        [gap_alert.id, second.id, alert.id],
        "newest first"
    );
    let open = AlertFilter {
        state: Some(AlertState::Open),
        ..alert_filter(50)
    };
    assert_eq!(
        ids(s.alerts(&open).await.unwrap()),
        [gap_alert.id, second.id]
    );
    let closed = AlertFilter {
        state: Some(AlertState::Resolved),
        ..alert_filter(50)
    };
    assert_eq!(s.alerts(&closed).await.unwrap(), [*resolved]);
    let of_ven = AlertFilter {
        ven_id: Some(ven("ven-a")),
        ..alert_filter(50)
    };
    assert_eq!(ids(s.alerts(&of_ven).await.unwrap()), [second.id, alert.id]);
    let of_rule = AlertFilter {
        rule: Some(Rule::DataGap),
        ..alert_filter(50)
    };
    assert_eq!(ids(s.alerts(&of_rule).await.unwrap()), [gap_alert.id]);
    assert_eq!(
        ids(s.alerts(&alert_filter(1)).await.unwrap()),
        [gap_alert.id]
    );
    assert!(s.alert(gap_alert.id + 100).await.unwrap().is_none());

    // A pending condition that clears is forgotten.
    let spike = Condition::new(Rule::PowerSpike, "ven-c/main", Severity::Info, "spike");
    assert_eq!(
        s.raise_alert(&spike, 300_000, 60_000, &[]).await.unwrap(),
        Raised::Pending { since_ms: 300_000 }
    );
    let mut keys = s.active_alert_keys().await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            (Rule::VenOffline, "ven-a".to_string()),
            (Rule::PowerSpike, "ven-c/main".to_string()),
            (Rule::DataGap, "ven-b/main/active_power/total".to_string()),
        ]
    );
    assert_eq!(
        s.clear_alert(Rule::PowerSpike, "ven-c/main", 310_000, 0, &[])
            .await
            .unwrap(),
        Cleared::NotOpen
    );
    assert_eq!(
        s.raise_alert(&spike, 320_000, 60_000, &[]).await.unwrap(),
        Raised::Pending { since_ms: 320_000 },
        "the hold-down starts again"
    );

    let nameless = Condition::new(Rule::PowerSpike, "", Severity::Info, "x");
    assert!(matches!(
        s.raise_alert(&nameless, 1, 0, &[]).await,
        Err(StoreError::Invalid(_))
    ));
}

/// The delivery outbox: claims lease rows (counting an attempt) so they are
/// not claimed again until finished or the lease expires; a retry waits for
/// its time; delivered and given-up rows are never claimed again.
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn alert_deliveries_are_claimed_leased_and_retried<S: Store>(s: &S) {
    let channels = [Channel::Webhook, Channel::Email, Channel::Sns];
    let Raised::Opened(alert) = s
        .raise_alert(&offline("ven-a"), 1_000, 0, &channels)
        .await
        .unwrap()
    else {
        panic!("opens at once");
    };
    let first = s.claim_deliveries(1_000, 30_000, 2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|d| (d.alert_id, d.kind.as_str(), d.channel, d.attempts))
            .collect::<Vec<_>>(),
        [
            (alert.id, "opened", Channel::Webhook, 1),
            (alert.id, "opened", Channel::Email, 1),
        ],
        "oldest first, up to the limit"
    );
    let payload: serde_json::Value = serde_json::from_str(&first[0].payload).unwrap();
    assert_eq!(payload["event"], "opened");
    assert_eq!(payload["alert"]["id"], alert.id);
    assert_eq!(payload["alert"]["message"], "ven-a is offline");
    assert_eq!(
        first[0].payload,
        notification_payload("opened", &alert).unwrap()
    );
    let second = s.claim_deliveries(1_001, 30_000, 10).await.unwrap();
    assert_eq!(
        second.iter().map(|d| d.channel).collect::<Vec<_>>(),
        [Channel::Sns],
        "leased rows are not claimed again"
    );
    assert!(
        s.claim_deliveries(1_002, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    s.finish_delivery(first[0].id, &DeliveryOutcome::Delivered, 2_000)
        .await
        .unwrap();
    s.finish_delivery(
        first[1].id,
        &DeliveryOutcome::Retry {
            next_attempt_ms: 50_000,
            error: "smtp timeout".into(),
        },
        2_000,
    )
    .await
    .unwrap();
    s.finish_delivery(
        second[0].id,
        &DeliveryOutcome::GiveUp {
            error: "403".into(),
        },
        2_000,
    )
    .await
    .unwrap();
    assert!(
        s.claim_deliveries(49_999, 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "the retry is not due yet"
    );
    let retry = s.claim_deliveries(50_000, 30_000, 10).await.unwrap();
    assert_eq!(
        retry.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(),
        [(first[1].id, 2)]
    );
    // Its process dies: the lease expires and another claim takes it.
    assert!(
        s.claim_deliveries(79_999, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let after_lease = s.claim_deliveries(80_000, 30_000, 10).await.unwrap();
    assert_eq!(
        after_lease
            .iter()
            .map(|d| (d.id, d.attempts))
            .collect::<Vec<_>>(),
        [(first[1].id, 3)]
    );
    s.finish_delivery(first[1].id, &DeliveryOutcome::Delivered, 80_001)
        .await
        .unwrap();
    assert!(
        s.claim_deliveries(i64::MAX / 2, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.alert_deliveries(alert.id).await.unwrap(),
        [
            ("opened".into(), Channel::Webhook, true, 1),
            ("opened".into(), Channel::Email, true, 3),
            ("opened".into(), Channel::Sns, false, 1),
        ]
    );
}

/// Two processes claiming at once never get the same delivery.
async fn alert_claims_never_overlap_across_processes<S: Store>(s: &S, other: &S) {
    let Raised::Opened(alert) = s
        .raise_alert(&offline("ven-a"), 1_000, 0, &Channel::ALL)
        .await
        .unwrap()
    else {
        panic!("opens at once");
    };
    let Raised::Opened(other_alert) = other
        .raise_alert(&offline("ven-b"), 1_000, 0, &Channel::ALL)
        .await
        .unwrap()
    else {
        panic!("opens at once");
    };
    let (mine, theirs) = tokio::join!(
        s.claim_deliveries(2_000, 30_000, 4),
        other.claim_deliveries(2_000, 30_000, 4)
    );
    let mut claimed: Vec<i64> = mine
        .unwrap()
        .iter()
        .chain(&theirs.unwrap())
        .map(|d| d.id)
        .collect();
    let total = claimed.len();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "no delivery claimed twice");
    let rest = s.claim_deliveries(2_001, 30_000, 10).await.unwrap();
    assert_eq!(total + rest.len(), 6, "all six claimed once");
    for id in [alert.id, other_alert.id] {
        assert!(
            s.alert_deliveries(id)
                .await
                .unwrap()
                .iter()
                .all(|(_, _, delivered, attempts)| !delivered && *attempts == 1)
        );
    }
}

/// The raw readings a rule looks back on: newest first, before the time,
/// of exactly the series asked for.
async fn alert_rules_read_recent_readings<S: Store>(s: &S) {
    s.ingest(&[batch(
        "ven-a",
        1,
        DAY0,
        vec![
            power(&[(DAY0, 10), (DAY0 + 1_000, -20), (DAY0 + 2_000, 30)]),
            series(
                "main",
                Quantity::ActivePower,
                Phase::L1,
                0,
                &[(DAY0 + 500, 99)],
            ),
            series(
                "pv",
                Quantity::ActivePower,
                Phase::Total,
                3,
                &[(DAY0 + 500, 7)],
            ),
        ],
    )])
    .await
    .unwrap();
    let a = ven("ven-a");
    let read = |meter: &'static str, phase, before_ms, limit| {
        s.readings_before(&a, meter, Quantity::ActivePower, phase, before_ms, limit)
    };
    assert_eq!(
        read("main", Phase::Total, DAY0 + 2_000, 10).await.unwrap(),
        [(DAY0 + 1_000, -20.0), (DAY0, 10.0)]
    );
    assert_eq!(
        read("main", Phase::Total, DAY0 + 5_000, 2).await.unwrap(),
        [(DAY0 + 2_000, 30.0), (DAY0 + 1_000, -20.0)]
    );
    assert_eq!(
        read("main", Phase::L1, DAY0 + 5_000, 10).await.unwrap(),
        [(DAY0 + 500, 99.0)]
    );
    assert_eq!(
        read("pv", Phase::Total, DAY0 + 5_000, 10).await.unwrap(),
        [(DAY0 + 500, 7_000.0)]
    );
    assert!(
        read("main", Phase::Total, DAY0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.readings_before(
            &ven("ven-z"),
            "main",
            Quantity::ActivePower,
            Phase::Total,
            i64::MAX,
            10
        )
        .await
        .unwrap()
        .is_empty()
    );
}
