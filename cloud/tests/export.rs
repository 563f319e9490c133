//! The daily export against real parts: every test body runs on SQLite and
//! on a fresh PostgreSQL 15; S3 is a local moto server; the last tests run
//! the `gridlink-cloud export` binary.
//!
//! Each export is read back with an independent reader (the `parquet`
//! crate's record reader, or flate2 + the csv crate) and compared row by
//! row with what `Store::series` returns from the database.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers and the generic test bodies: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output as ProcessOutput, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use gridlink_cloud::export::{
    COLUMNS, Destination, ExportConfig, ExportDay, ExportError, ExportFormat, ExportJob,
    ExportMetrics, ExportOutcome, MANIFEST_NAME, Manifest, export_day, schedule,
};
use gridlink_cloud::projects::{ProjectKind, ProjectStatus};
use gridlink_cloud::store::projects::ProjectWrite;
use gridlink_cloud::store::{
    AnyStore, DrStore, ExportLease, ExportStore, IngestBatch, ProjectStore, Resolution,
    SeriesQuery, Store, StoreError, VenRegistration, phase_code, quantity_code,
};
use gridlink_protocol::{Phase, Point, Quantity, Series, VenId};
use gridlink_testkit::moto::MotoServer;
use gridlink_testkit::postgres::PostgresCluster;
use parquet::file::reader::{FileReader as _, SerializedFileReader};
use parquet::record::Field;
use tempfile::TempDir;
use tokio::sync::watch;

/// 2025-11-20T00:00:00Z.
const DAY0: i64 = 1_763_596_800_000;
const DAY: i64 = 86_400_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

// ---------------------------------------------------------------- fixtures

struct Db {
    store: AnyStore,
    url: String,
    _cluster: Option<PostgresCluster>,
    _dir: Option<TempDir>,
}

impl Db {
    async fn postgres(test: &str) -> Self {
        let cluster = PostgresCluster::start().await;
        let url = cluster.create_database(test).await;
        let store = AnyStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Self {
            store,
            url,
            _cluster: Some(cluster),
            _dir: None,
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gridlink.db").display());
        let store = AnyStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Self {
            store,
            url,
            _cluster: None,
            _dir: Some(dir),
        }
    }
}

/// Runs each test body on both backends.
macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = super::Db::postgres(stringify!($test)).await;
                    super::$test(&db).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = super::Db::sqlite().await;
                    super::$test(&db).await;
                }
            )*
        }
    };
}

both_backends!(
    parquet_and_csv_exports_match_the_database,
    a_rerun_replaces_the_day,
    a_large_day_is_paged_into_bounded_row_groups,
    s3_export_to_moto_reads_back_and_replaces,
    the_lease_lets_one_holder_export_a_day,
    a_day_held_by_another_process_is_refused_and_nothing_is_written,
    the_scheduler_exports_yesterday_once_across_two_processes,
    the_scheduler_counts_a_failure_and_gives_the_day_back,
);

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

/// The series the fixture writes, as (VEN, meter, quantity, phase).
const SERIES: [(&str, &str, Quantity, Phase); 4] = [
    ("ven-a", "grid", Quantity::ActivePower, Phase::Total),
    ("ven-a", "grid", Quantity::Voltage, Phase::L1),
    ("ven-b", "m1", Quantity::EnergyImport, Phase::Total),
    ("ven-c", "m1", Quantity::ActivePower, Phase::Total),
];

/// The day's data:
/// - ven-a (registered: a site name with a comma and quotes, a site meter,
///   two groups): `grid` active power every minute from 00:00 to 01:59
///   except 01:00..01:29 (one gap), and `grid` voltage L1 every hour plus
///   23:59:59.999 (no gap: within 3 times the hour), with readings at
///   00:00 of the next day and 1 ms before the day, which stay out;
/// - ven-b (not registered): five energy readings with exponent -3;
/// - ven-c: readings on the next day only (no file).
async fn seed(store: &AnyStore) {
    store
        .register_ven(
            &ven("ven-a"),
            &VenRegistration {
                site: "Depot \"North\", Hall 2".into(),
                site_meter: Some("grid".into()),
                groups: Some(vec!["north".into(), "pilot,2025".into()]),
                loads: None,
            },
            DAY0 - DAY,
        )
        .await
        .unwrap();
    // ven-a belongs to a project (its name and id go into every row).
    store
        .create_project(
            &ProjectWrite {
                name: "Solar park \"North\", phase 1".into(),
                kind: ProjectKind::Renewable,
                status: ProjectStatus::Operational,
                capacity_kw: 1500.0,
                latitude: 52.1,
                longitude: 5.1,
                address: None,
                currency: "EUR".into(),
                ven_ids: vec![ven("ven-a")],
                milestones: Vec::new(),
            },
            DAY0 - DAY,
        )
        .await
        .unwrap();
    let power: Vec<(i64, i64)> = (0..120)
        .filter(|i| !(60..90).contains(i))
        .map(|i| (DAY0 + i * MINUTE, 1000 + i * 7 - (i % 3) * 500))
        .collect();
    let mut voltage: Vec<(i64, i64)> = (0..24).map(|h| (DAY0 + h * HOUR, 2300 + h)).collect();
    voltage.insert(0, (DAY0 - 1, 2299));
    voltage.push((DAY0 + DAY - 1, 2311));
    voltage.push((DAY0 + DAY, 2312));
    let batches = vec![
        IngestBatch {
            ven_id: ven("ven-a"),
            batch_seq: 1,
            received_ms: DAY0 + DAY,
            series: vec![
                series("grid", Quantity::ActivePower, Phase::Total, 0, &power),
                series("grid", Quantity::Voltage, Phase::L1, -1, &voltage),
            ],
        },
        IngestBatch {
            ven_id: ven("ven-b"),
            batch_seq: 1,
            received_ms: DAY0 + DAY,
            series: vec![series(
                "m1",
                Quantity::EnergyImport,
                Phase::Total,
                -3,
                &[
                    (DAY0 + 5 * HOUR, 123_456),
                    (DAY0 + 5 * HOUR + 900_000, 123_789),
                    (DAY0 + 5 * HOUR + 1_800_000, 124_001),
                    (DAY0 + 5 * HOUR + 2_700_000, 124_333),
                    (DAY0 + 6 * HOUR, 124_999),
                ],
            )],
        },
        IngestBatch {
            ven_id: ven("ven-c"),
            batch_seq: 1,
            received_ms: DAY0 + DAY,
            series: vec![series(
                "m1",
                Quantity::ActivePower,
                Phase::Total,
                0,
                &[(DAY0 + DAY, 5), (DAY0 + DAY + MINUTE, 6)],
            )],
        },
    ];
    store.ingest(&batches).await.unwrap();
}

/// One row of an export file, whatever its format.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    ven_id: String,
    meter: String,
    quantity: String,
    phase: String,
    ts_ms: i64,
    ts: String,
    value: f64,
    site: Option<String>,
    site_meter: Option<String>,
    site_address: Option<String>,
    site_latitude: Option<f64>,
    site_longitude: Option<f64>,
    groups: Option<String>,
    project_id: Option<String>,
    project_name: Option<String>,
}

/// What the database holds for `day`, per VEN, in file order (series by
/// meter, quantity and phase code, then time), read through
/// `Store::series` and the registration, not through the export's queries.
async fn expected(store: &AnyStore, day: ExportDay) -> BTreeMap<String, Vec<Row>> {
    let mut ordered = SERIES.to_vec();
    ordered.sort_by_key(|&(v, m, q, p)| (v, m, quantity_code(q), phase_code(p)));
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for (ven_id, meter, quantity, phase) in ordered {
        let points = store
            .series(&SeriesQuery {
                ven_id: ven(ven_id),
                meter: meter.into(),
                quantity,
                phase,
                from_ms: day.start_ms(),
                to_ms: day.end_ms(),
                resolution: Resolution::Raw,
                limit: 1_000_000,
            })
            .await
            .unwrap();
        if points.is_empty() {
            continue;
        }
        let record = store.ven(&ven(ven_id)).await.unwrap().unwrap();
        let groups = store.ven_groups(&ven(ven_id)).await.unwrap();
        let groups = (!groups.is_empty()).then(|| serde_json::to_string(&groups).unwrap());
        let project = store
            .projects()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.ven_ids.contains(&ven(ven_id)));
        out.entry(ven_id.to_owned())
            .or_default()
            .extend(points.iter().map(|p| Row {
                ven_id: ven_id.to_owned(),
                meter: meter.to_owned(),
                quantity: quantity.name().to_owned(),
                phase: phase.name().to_owned(),
                ts_ms: p.ts_ms,
                ts: gridlink_cloud::export::iso_ms(p.ts_ms),
                value: p.last,
                site: record.site.clone(),
                site_meter: record.site_meter.clone(),
                site_address: None,
                site_latitude: None,
                site_longitude: None,
                groups: groups.clone(),
                project_id: project.as_ref().map(|p| p.id.to_string()),
                project_name: project.as_ref().map(|p| p.name.clone()),
            }));
    }
    out
}

fn parquet_rows(data: Bytes) -> Vec<Row> {
    let reader = SerializedFileReader::new(data).unwrap();
    let names: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(names, COLUMNS);
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let fields: BTreeMap<String, Field> = row.unwrap().into_columns().into_iter().collect();
            let text = |name: &str| match &fields[name] {
                Field::Str(s) => Some(s.clone()),
                Field::Null => None,
                other => panic!("{name}: {other:?}"),
            };
            let number = |name: &str| match &fields[name] {
                Field::Double(v) => Some(*v),
                Field::Null => None,
                other => panic!("{name}: {other:?}"),
            };
            Row {
                ven_id: text("ven_id").unwrap(),
                meter: text("meter").unwrap(),
                quantity: text("quantity").unwrap(),
                phase: text("phase").unwrap(),
                ts_ms: match &fields["ts_ms"] {
                    Field::TimestampMillis(ms) => *ms,
                    other => panic!("ts_ms: {other:?}"),
                },
                ts: text("ts").unwrap(),
                value: number("value").unwrap(),
                site: text("site"),
                site_meter: text("site_meter"),
                site_address: text("site_address"),
                site_latitude: number("site_latitude"),
                site_longitude: number("site_longitude"),
                groups: text("groups"),
                project_id: text("project_id"),
                project_name: text("project_name"),
            }
        })
        .collect()
}

fn csv_rows(data: &[u8]) -> Vec<Row> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), COLUMNS.as_slice());
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            let field = |i: usize| record.get(i).unwrap().to_owned();
            let optional = |i: usize| Some(field(i)).filter(|s| !s.is_empty());
            let number = |i: usize| optional(i).map(|s| s.parse::<f64>().unwrap());
            Row {
                ven_id: field(0),
                meter: field(1),
                quantity: field(2),
                phase: field(3),
                ts_ms: field(4).parse().unwrap(),
                ts: field(5),
                value: field(6).parse().unwrap(),
                site: optional(7),
                site_meter: optional(8),
                site_address: optional(9),
                site_latitude: number(10),
                site_longitude: number(11),
                groups: optional(12),
                project_id: optional(13),
                project_name: optional(14),
            }
        })
        .collect()
}

fn rows_of(format: ExportFormat, data: Vec<u8>) -> Vec<Row> {
    match format {
        ExportFormat::Parquet => parquet_rows(Bytes::from(data)),
        ExportFormat::CsvGz => csv_rows(&data),
    }
}

fn job(day: ExportDay, format: ExportFormat, holder: &str) -> ExportJob {
    ExportJob {
        day,
        format,
        gap_factor: 3,
        holder: holder.into(),
        force: true,
    }
}

fn day0() -> ExportDay {
    ExportDay::parse("2025-11-20", 0).unwrap()
}

async fn export(store: &AnyStore, destination: &Destination, job: &ExportJob) -> Manifest {
    match export_day(store, destination, job).await.unwrap() {
        ExportOutcome::Exported(manifest) => *manifest,
        other @ ExportOutcome::AlreadyDone { .. } => panic!("not exported: {other:?}"),
    }
}

/// The day's files in `dir` (name -> bytes), the manifest apart.
fn day_files(dir: &Path) -> (BTreeMap<String, Vec<u8>>, Option<Manifest>) {
    let mut files = BTreeMap::new();
    let mut manifest = None;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let data = std::fs::read(entry.path()).unwrap();
        if name == MANIFEST_NAME {
            manifest = Some(serde_json::from_slice(&data).unwrap());
        } else {
            files.insert(name, data);
        }
    }
    (files, manifest)
}

/// Compares a day's files and manifest with the database.
async fn check_day(
    store: &AnyStore,
    format: ExportFormat,
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &Manifest,
) {
    let expected = expected(store, day0()).await;
    let names: Vec<String> = expected
        .keys()
        .map(|v| format!("{v}{}", format.extension()))
        .collect();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), names);
    for (ven_id, rows) in &expected {
        let data = files[&format!("{ven_id}{}", format.extension())].clone();
        let got = rows_of(format, data);
        assert_eq!(got.len(), rows.len(), "{ven_id}: row count");
        for (i, (got, want)) in got.iter().zip(rows).enumerate() {
            assert_eq!(got, want, "{ven_id} row {i}");
        }
        let entry = manifest.vens.iter().find(|v| &v.ven_id == ven_id).unwrap();
        assert_eq!(entry.rows, rows.len() as u64);
        assert_eq!(entry.bytes, files[&entry.file].len() as u64);
        let first = rows.iter().map(|r| r.ts_ms).min().unwrap();
        let last = rows.iter().map(|r| r.ts_ms).max().unwrap();
        assert_eq!(
            (entry.first_ts_ms, entry.last_ts_ms),
            (Some(first), Some(last))
        );
    }
    assert_eq!(manifest.day, "2025-11-20");
    assert_eq!(manifest.format, format.as_str());
    assert_eq!(manifest.from, "2025-11-20T00:00:00.000Z");
    assert_eq!(manifest.to, "2025-11-21T00:00:00.000Z");
    assert_eq!(manifest.totals.vens, expected.len() as u64);
    assert_eq!(
        manifest.totals.rows,
        expected.values().map(|r| r.len() as u64).sum::<u64>()
    );
    assert!(manifest.generator.starts_with("gridlink-cloud "));
}

// ---------------------------------------------------------------- tests

async fn parquet_and_csv_exports_match_the_database(db: &Db) {
    let store = &db.store;
    seed(store).await;
    for format in [ExportFormat::Parquet, ExportFormat::CsvGz] {
        let out = tempfile::tempdir().unwrap();
        let destination = Destination::Directory(out.path().to_path_buf());
        let manifest = export(store, &destination, &job(day0(), format, "test")).await;
        let (files, on_disk) = day_files(&out.path().join("2025-11-20"));
        assert_eq!(on_disk.as_ref(), Some(&manifest), "the manifest is written");
        check_day(store, format, &files, &manifest).await;

        // What the fixture means, in numbers: ven-c has no file; the
        // reading at 23:59:59.999 is in, those of the next day and of
        // 1 ms before the day are out.
        assert_eq!(
            manifest
                .vens
                .iter()
                .map(|v| v.ven_id.as_str())
                .collect::<Vec<_>>(),
            ["ven-a", "ven-b"]
        );
        let a = &manifest.vens[0];
        assert_eq!(a.rows, 90 + 25);
        assert_eq!(a.series, 2);
        assert_eq!(a.first_ts.as_deref(), Some("2025-11-20T00:00:00.000Z"));
        assert_eq!(a.last_ts.as_deref(), Some("2025-11-20T23:59:59.999Z"));
        assert_eq!(a.gap_count, 1);
        let gap = &a.gaps[0];
        assert_eq!(
            (
                gap.meter.as_str(),
                gap.quantity.as_str(),
                gap.phase.as_str()
            ),
            ("grid", "active_power", "total")
        );
        assert_eq!(
            (gap.after_ms, gap.before_ms, gap.interval_ms),
            (DAY0 + 59 * MINUTE, DAY0 + 90 * MINUTE, MINUTE)
        );
        assert_eq!(gap.after, "2025-11-20T00:59:00.000Z");
        assert_eq!(manifest.vens[1].gap_count, 0);
        assert_eq!(manifest.totals.gaps, 1);

        let rows = rows_of(
            format,
            files[&format!("ven-b{}", format.extension())].clone(),
        );
        assert!(
            (rows[0].value - 123.456).abs() < 1e-9,
            "exponent -3 applied"
        );
        assert_eq!(rows[0].site, None, "not registered");
        let rows = rows_of(
            format,
            files[&format!("ven-a{}", format.extension())].clone(),
        );
        assert_eq!(rows[0].site.as_deref(), Some("Depot \"North\", Hall 2"));
        assert_eq!(
            rows[0].project_name.as_deref(),
            Some("Solar park \"North\", phase 1")
        );
        assert_eq!(
            rows[0].groups.as_deref(),
            Some("[\"north\",\"pilot,2025\"]")
        );
    }
}

async fn a_rerun_replaces_the_day(db: &Db) {
    let store = &db.store;
    seed(store).await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("2025-11-20");
    let destination = Destination::Directory(out.path().to_path_buf());
    export(
        store,
        &destination,
        &job(day0(), ExportFormat::CsvGz, "test"),
    )
    .await;
    // A VEN that is no longer in the day, and a temporary file of an
    // interrupted run; a file the export does not own stays.
    std::fs::write(dir.join("ven-gone.parquet"), b"old").unwrap();
    std::fs::write(dir.join(".ven-a.parquet.tmp"), b"partial").unwrap();
    std::fs::write(dir.join("README.txt"), b"not ours").unwrap();
    // Late data for the day.
    store
        .ingest(&[IngestBatch {
            ven_id: ven("ven-b"),
            batch_seq: 2,
            received_ms: DAY0 + DAY + HOUR,
            series: vec![series(
                "m1",
                Quantity::EnergyImport,
                Phase::Total,
                -3,
                &[(DAY0 + 7 * HOUR, 125_100)],
            )],
        }])
        .await
        .unwrap();

    let manifest = export(
        store,
        &destination,
        &job(day0(), ExportFormat::Parquet, "test"),
    )
    .await;
    let (mut files, on_disk) = day_files(&dir);
    assert_eq!(on_disk.as_ref(), Some(&manifest));
    assert_eq!(
        files.remove("README.txt").as_deref(),
        Some(b"not ours".as_slice())
    );
    check_day(store, ExportFormat::Parquet, &files, &manifest).await;
    assert_eq!(manifest.vens[1].rows, 6, "the late reading is in");

    // The same again (nothing changed) gives the same files.
    let again = export(
        store,
        &destination,
        &job(day0(), ExportFormat::Parquet, "test"),
    )
    .await;
    assert_eq!(again.totals, manifest.totals);
    let (files_again, _) = day_files(&dir);
    assert_eq!(files_again.len(), files.len() + 1);
}

async fn a_large_day_is_paged_into_bounded_row_groups(db: &Db) {
    let store = &db.store;
    // 70 000 readings a second apart: more than one page (65 536).
    let count = 70_000;
    let batches: Vec<IngestBatch> = (0..7)
        .map(|b| IngestBatch {
            ven_id: ven("ven-big"),
            batch_seq: b,
            received_ms: DAY0 + DAY,
            series: vec![series(
                "main",
                Quantity::ActivePower,
                Phase::Total,
                0,
                &(0..count / 7)
                    .map(|i| {
                        let n = b as i64 * (count / 7) + i;
                        (DAY0 + n * 1000, n % 5000 - 2000)
                    })
                    .collect::<Vec<_>>(),
            )],
        })
        .collect();
    store.ingest(&batches).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let destination = Destination::Directory(out.path().to_path_buf());
    let manifest = export(
        store,
        &destination,
        &job(day0(), ExportFormat::Parquet, "test"),
    )
    .await;
    assert_eq!(manifest.totals.rows, count as u64);
    assert_eq!(manifest.totals.gaps, 0);
    let data = std::fs::read(out.path().join("2025-11-20/ven-big.parquet")).unwrap();
    let reader = SerializedFileReader::new(Bytes::from(data.clone())).unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(parquet::file::metadata::RowGroupMetaData::num_rows)
        .collect();
    assert_eq!(groups, [65_536, 70_000 - 65_536]);
    let rows = parquet_rows(Bytes::from(data));
    let points = store
        .series(&SeriesQuery {
            ven_id: ven("ven-big"),
            meter: "main".into(),
            quantity: Quantity::ActivePower,
            phase: Phase::Total,
            from_ms: DAY0,
            to_ms: DAY0 + DAY,
            resolution: Resolution::Raw,
            limit: 1_000_000,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), points.len());
    for (row, point) in rows.iter().zip(&points) {
        assert_eq!((row.ts_ms, row.value), (point.ts_ms, point.last));
    }
}

/// An S3 client for moto with fixed test credentials.
fn s3_client(moto: &MotoServer) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(moto.url())
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .http_client(gridlink_cloud::aws::http_client())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn s3_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> BTreeMap<String, Vec<u8>> {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = client
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        out.insert(key, body.to_vec());
    }
    out
}

async fn s3_export_to_moto_reads_back_and_replaces(db: &Db) {
    let store = &db.store;
    seed(store).await;
    let moto = MotoServer::spawn();
    let client = s3_client(&moto);
    client
        .create_bucket()
        .bucket("grid-export")
        .send()
        .await
        .unwrap();
    // A stale object of the day, and one of another day that stays.
    for key in [
        "daily/2025-11-20/ven-gone.parquet",
        "daily/2025-11-19/ven-a.parquet",
    ] {
        client
            .put_object()
            .bucket("grid-export")
            .key(key)
            .body(b"old".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let destination = Destination::S3 {
        client: client.clone(),
        bucket: "grid-export".into(),
        prefix: "daily/".into(),
    };
    let manifest = export(
        store,
        &destination,
        &job(day0(), ExportFormat::Parquet, "test"),
    )
    .await;
    let mut objects = s3_objects(&client, "grid-export", "daily/2025-11-20/").await;
    let stored: Manifest =
        serde_json::from_slice(&objects.remove("daily/2025-11-20/manifest.json").unwrap()).unwrap();
    assert_eq!(stored, manifest);
    let files: BTreeMap<String, Vec<u8>> = objects
        .into_iter()
        .map(|(key, data)| (key.trim_start_matches("daily/2025-11-20/").to_owned(), data))
        .collect();
    check_day(store, ExportFormat::Parquet, &files, &manifest).await;
    let other = s3_objects(&client, "grid-export", "daily/2025-11-19/").await;
    assert_eq!(other.len(), 1, "another day is left alone");

    // A missing bucket is a clear error naming it.
    let missing = Destination::S3 {
        client,
        bucket: "no-such-bucket".into(),
        prefix: String::new(),
    };
    let error = export_day(store, &missing, &job(day0(), ExportFormat::Parquet, "test"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ExportError::S3 { .. }), "{text}");
    assert!(text.contains("s3://no-such-bucket/"), "{text}");
    assert!(text.contains("NoSuchBucket"), "{text}");
    // The failed run gave its lease back: another process can take the day.
    assert_eq!(
        store
            .export_lease("2025-11-20", "other", now(), 60_000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn the_lease_lets_one_holder_export_a_day(db: &Db) {
    let store = &db.store;
    let day = "2025-11-20";
    let t = 1_000_000;
    assert_eq!(
        store.export_lease(day, "a", t, 1000, false).await.unwrap(),
        ExportLease::Acquired
    );
    assert_eq!(
        store
            .export_lease(day, "b", t + 10, 1000, false)
            .await
            .unwrap(),
        ExportLease::Held {
            holder: "a".into(),
            expires_ms: t + 1000
        }
    );
    assert_eq!(
        store
            .export_lease(day, "b", t + 10, 1000, true)
            .await
            .unwrap(),
        ExportLease::Held {
            holder: "a".into(),
            expires_ms: t + 1000
        },
        "force does not take a live lease"
    );
    // Renewal by the holder.
    assert_eq!(
        store
            .export_lease(day, "a", t + 500, 1000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
    // Expired: another holder takes over, and the old one cannot finish.
    assert_eq!(
        store
            .export_lease(day, "b", t + 1600, 1000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
    let err = store.export_done(day, "a", t + 1700, 5).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    store.export_done(day, "b", t + 1800, 5).await.unwrap();
    assert_eq!(
        store
            .export_lease(day, "a", t + 1900, 1000, false)
            .await
            .unwrap(),
        ExportLease::Done { done_ms: t + 1800 }
    );
    assert_eq!(
        store
            .export_lease(day, "b", t + 1900, 1000, false)
            .await
            .unwrap(),
        ExportLease::Done { done_ms: t + 1800 },
        "done is done, for its own holder too"
    );
    // A re-run by hand takes a done day again.
    assert_eq!(
        store
            .export_lease(day, "a", t + 2000, 1000, true)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
    // Released after a failure: free at once.
    store.export_release(day, "a").await.unwrap();
    assert_eq!(
        store
            .export_lease(day, "c", t + 2001, 1000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
    // Days are independent.
    assert_eq!(
        store
            .export_lease("2025-11-21", "a", t + 2002, 1000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
}

async fn a_day_held_by_another_process_is_refused_and_nothing_is_written(db: &Db) {
    let store = &db.store;
    seed(store).await;
    assert_eq!(
        store
            .export_lease("2025-11-20", "serve-1", now(), 600_000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
    let out = tempfile::tempdir().unwrap();
    let destination = Destination::Directory(out.path().to_path_buf());
    let error = export_day(
        store,
        &destination,
        &job(day0(), ExportFormat::Parquet, "cli"),
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("2025-11-20 is being exported by serve-1 (lease until "),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    // The scheduler's run (no force) of a day done by another process
    // writes nothing either.
    store
        .export_done("2025-11-20", "serve-1", now(), 0)
        .await
        .unwrap();
    let mut scheduled = job(day0(), ExportFormat::Parquet, "serve-2");
    scheduled.force = false;
    let outcome = export_day(store, &destination, &scheduled).await.unwrap();
    assert!(
        matches!(outcome, ExportOutcome::AlreadyDone { .. }),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// `[export]` for a scheduler that finds yesterday due at once.
fn schedule_config(output: &Path) -> ExportConfig {
    ExportConfig {
        enabled: true,
        at_utc: "00:00".into(),
        output: output.display().to_string(),
        format: ExportFormat::CsvGz,
        gap_factor: 3,
        s3_endpoint_url: String::new(),
    }
}

/// Waits (hang guard: 2 minutes) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(2);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn the_scheduler_exports_yesterday_once_across_two_processes(db: &Db) {
    let yesterday = ExportDay::parse("yesterday", now()).unwrap();
    db.store
        .ingest(&[IngestBatch {
            ven_id: ven("ven-s"),
            batch_seq: 1,
            received_ms: now(),
            series: vec![series(
                "main",
                Quantity::ActivePower,
                Phase::Total,
                0,
                &[(yesterday.start_ms(), 1), (yesterday.end_ms() - 1, 2)],
            )],
        }])
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = schedule_config(out.path());
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut metrics = Vec::new();
    for holder in ["serve-1", "serve-2"] {
        // Each "process" has its own connection pool.
        let store = Arc::new(AnyStore::connect(&db.url).await.unwrap());
        let counters = Arc::new(ExportMetrics::default());
        metrics.push(Arc::clone(&counters));
        tasks.push(tokio::spawn(schedule::run(
            store,
            config.clone(),
            counters,
            holder.into(),
            stopped.clone(),
        )));
    }
    let runs = || {
        metrics
            .iter()
            .map(|m| m.runs.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let manifest = out.path().join(yesterday.to_string()).join(MANIFEST_NAME);
    wait_until("a scheduler exported yesterday", || {
        runs() >= 1 && manifest.is_file()
    })
    .await;
    stop.send(true).unwrap();
    for task in tasks {
        let (name, result) = task.await.unwrap();
        assert_eq!(name, "export");
        result.unwrap();
    }
    assert_eq!(runs(), 1, "one process exported the day");
    assert_eq!(
        metrics
            .iter()
            .map(|m| m.failures.load(Ordering::Relaxed))
            .sum::<u64>(),
        0
    );
    let written: Manifest = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!((written.totals.vens, written.totals.rows), (1, 2));
    let exporter = metrics
        .iter()
        .find(|m| m.runs.load(Ordering::Relaxed) == 1)
        .unwrap();
    let text = exporter.render();
    assert!(text.contains("gridlink_export_runs_total 1\n"), "{text}");
    assert!(text.contains("gridlink_export_last_rows 2\n"), "{text}");
    assert!(
        text.contains(&format!(
            "gridlink_export_last_day_timestamp_seconds {}\n",
            yesterday.start_ms() / 1000
        )),
        "{text}"
    );
    assert!(matches!(
        db.store
            .export_lease(&yesterday.to_string(), "serve-3", now(), 1000, false)
            .await
            .unwrap(),
        ExportLease::Done { .. }
    ));
}

async fn the_scheduler_counts_a_failure_and_gives_the_day_back(db: &Db) {
    let yesterday = ExportDay::parse("yesterday", now()).unwrap();
    let out = tempfile::tempdir().unwrap();
    // The output's parent is a regular file: the day's directory cannot be made.
    std::fs::write(out.path().join("file"), b"x").unwrap();
    let config = schedule_config(&out.path().join("file/export"));
    let (stop, stopped) = watch::channel(false);
    let store = Arc::new(AnyStore::connect(&db.url).await.unwrap());
    let counters = Arc::new(ExportMetrics::default());
    let task = tokio::spawn(schedule::run(
        store,
        config,
        Arc::clone(&counters),
        "serve-1".into(),
        stopped,
    ));
    wait_until("the failure is counted", || {
        counters.failures.load(Ordering::Relaxed) >= 1
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap().1.unwrap();
    assert_eq!(counters.runs.load(Ordering::Relaxed), 0);
    assert!(
        counters
            .render()
            .contains("gridlink_export_failures_total 1\n")
    );
    // The lease was released: another process may retry at once.
    assert_eq!(
        db.store
            .export_lease(&yesterday.to_string(), "serve-2", now(), 1000, false)
            .await
            .unwrap(),
        ExportLease::Acquired
    );
}

// ---------------------------------------------------------------- the binary

const BIN: &str = env!("CARGO_BIN_EXE_gridlink-cloud");

/// The binary with no `GRIDLINK_*` or `AWS_*` variable inherited, on the
/// SQLite database `url`, run in `dir`.
fn cloud(dir: &Path, url: &str) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("GRIDLINK_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .env("GRIDLINK_DATABASE_URL", url)
        .stdin(Stdio::null());
    command
}

fn text(output: &ProcessOutput) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_binary_exports_a_day_to_a_directory_and_refuses_bad_input() {
    let db = Db::sqlite().await;
    seed(&db.store).await;
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");

    let output = cloud(work.path(), &db.url)
        .args([
            "export",
            "--day",
            "2025-11-20",
            "--format",
            "csv.gz",
            "--output",
        ])
        .arg(format!("file://{}", out.display()))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("2025-11-20: 2 VENs, 120 rows, 1 gaps"),
        "{stdout}"
    );
    let (files, manifest) = day_files(&out.join("2025-11-20"));
    check_day(&db.store, ExportFormat::CsvGz, &files, &manifest.unwrap()).await;

    // Defaults from [export] in the config file: parquet into `export/`.
    std::fs::write(
        work.path().join("cloud.toml"),
        "[export]\noutput = \"exported\"\n",
    )
    .unwrap();
    let output = cloud(work.path(), &db.url)
        .args(["--config", "cloud.toml", "export", "--day", "2025-11-20"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    assert!(
        work.path()
            .join("exported/2025-11-20/ven-a.parquet")
            .is_file()
    );

    for (args, says) in [
        (
            vec!["--day", "2025-02-30"],
            "invalid day \"2025-02-30\": expected YYYY-MM-DD",
        ),
        (vec!["--day", "20251120"], "expected YYYY-MM-DD"),
        (vec!["--format", "json"], "unknown export format \"json\""),
        (
            vec!["--output", "gs://b/x"],
            "unsupported output scheme \"gs\"",
        ),
    ] {
        let output = cloud(work.path(), &db.url)
            .arg("export")
            .args(&args)
            .output()
            .unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn the_binary_exports_yesterday_to_s3_as_terraform_runs_it() {
    let db = Db::sqlite().await;
    let yesterday = ExportDay::parse("yesterday", now()).unwrap();
    db.store
        .ingest(&[IngestBatch {
            ven_id: ven("ven-y"),
            batch_seq: 1,
            received_ms: now(),
            series: vec![series(
                "main",
                Quantity::ActivePower,
                Phase::Total,
                0,
                &[
                    (yesterday.start_ms() + HOUR, 42),
                    (yesterday.start_ms() + 2 * HOUR, 43),
                ],
            )],
        }])
        .await
        .unwrap();
    let moto = MotoServer::spawn();
    let client = s3_client(&moto);
    client
        .create_bucket()
        .bucket("grid-export")
        .send()
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let aws = |command: &mut Command| {
        command
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("GRIDLINK_EXPORT_S3_ENDPOINT_URL", moto.url());
    };

    let mut command = cloud(work.path(), &db.url);
    aws(&mut command);
    let output = command
        .args([
            "export",
            "--day",
            "yesterday",
            "--output",
            "s3://grid-export/gridlink/daily/",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("1 VENs, 2 rows"), "{stdout}");
    let prefix = format!("gridlink/daily/{yesterday}/");
    let objects = s3_objects(&client, "grid-export", &prefix).await;
    let keys: Vec<&str> = objects.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            format!("{prefix}manifest.json"),
            format!("{prefix}ven-y.parquet")
        ]
    );
    let rows = parquet_rows(Bytes::from(
        objects[&format!("{prefix}ven-y.parquet")].clone(),
    ));
    assert_eq!(
        rows.iter().map(|r| (r.ts_ms, r.value)).collect::<Vec<_>>(),
        [
            (yesterday.start_ms() + HOUR, 42.0),
            (yesterday.start_ms() + 2 * HOUR, 43.0)
        ]
    );

    // A bucket that does not exist, and an endpoint nobody listens on:
    // exit 1 with the bucket named.
    let mut command = cloud(work.path(), &db.url);
    aws(&mut command);
    let output = command
        .args(["export", "--output", "s3://no-such-bucket/x/"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("s3://no-such-bucket/x/"), "{stderr}");
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");

    let mut command = cloud(work.path(), &db.url);
    aws(&mut command);
    let closed = format!("http://127.0.0.1:{}", gridlink_testkit::free_port());
    let output = command
        .env("GRIDLINK_EXPORT_S3_ENDPOINT_URL", &closed)
        .args(["export", "--output", "s3://grid-export/x/"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("S3 DeleteObject s3://grid-export/x/"),
        "{stderr}"
    );
}
