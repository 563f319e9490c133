//! Alerts against real databases: every test body runs on SQLite and on a
//! fresh PostgreSQL cluster. The engine is driven with explicit times
//! (`handle(item, now)`, `scan(now)`), so hold-downs of seconds or minutes
//! take no wall-clock time; the API is exercised through the router.

#![expect(
    clippy::unwrap_used,
    reason = "test bodies: a panic is the failure report"
)]
#![expect(
    clippy::too_many_lines,
    reason = "a scenario reads best as one function, step by step"
)]

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::ApiApp;
use gridlink_cloud::alerts::{
    AlertEngine, AlertFilter, AlertSettings, AlertState, AlertStore, AlertsConfig, Condition,
    HoldDown, Raised, Rule, Severity,
};
use gridlink_cloud::feed::FeedItem;
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::dr::{EventWrite, ProgramWrite};
use gridlink_cloud::store::{AnyStore, DrStore, IngestBatch, Role, Store};
use gridlink_protocol::{
    AckState, CommandAck, ObjectId, Phase, Point, Quantity, Series, Status, Timestamp, VenId,
};
use serde_json::{Value, json};

/// 2026-11-21T00:00:00Z.
const T0: i64 = 1_795_305_600_000;
const S: i64 = 1000;

fn ven(id: &str) -> VenId {
    VenId::new(id).unwrap()
}

fn oid(id: &str) -> ObjectId {
    ObjectId::new(id).unwrap()
}

/// Settings with no hold-down anywhere, a fixed silence limit of 60 s and
/// no delivery channel; tests change what they exercise.
fn settings() -> AlertSettings {
    let mut s = AlertsConfig::default().settings();
    for rule in Rule::ALL {
        s.hold.insert(rule, HoldDown::default());
    }
    s.offline_after_ms = Some(60 * S);
    s
}

fn engine(app: &ApiApp, settings: AlertSettings) -> AlertEngine<AnyStore> {
    AlertEngine::new(Arc::clone(&app.store), Arc::new(settings), Arc::default())
}

fn status(id: &str, online: bool) -> Status {
    Status {
        ven_id: ven(id),
        online,
        at: Timestamp::from_unix_ms(T0).unwrap(),
        agent_version: if online { "1.0".into() } else { String::new() },
        backlog_batches: 0,
        dropped_readings: 0,
    }
}

/// Records a status as ingest does, then shows it to the engine.
async fn status_at(app: &ApiApp, engine: &mut AlertEngine<AnyStore>, s: Status, at: i64) {
    app.store.record_status(&s, at).await.unwrap();
    engine
        .handle(
            &FeedItem::Status {
                status: s,
                received_ms: at,
            },
            at,
        )
        .await
        .unwrap();
}

fn series(meter: &str, quantity: Quantity, points: &[(i64, i64)]) -> Series {
    Series {
        meter: meter.into(),
        quantity,
        phase: Phase::Total,
        exponent: 0,
        points: points
            .iter()
            .map(|&(ts_ms, raw)| Point { ts_ms, raw })
            .collect(),
    }
}

/// Stores a batch as ingest does, then shows it to the engine at `at`.
async fn telemetry(
    app: &ApiApp,
    engine: &mut AlertEngine<AnyStore>,
    seq: u64,
    at: i64,
    series: Vec<Series>,
) {
    let batch = IngestBatch {
        ven_id: ven("ven-1"),
        batch_seq: seq,
        received_ms: at,
        series,
    };
    app.store
        .ingest(std::slice::from_ref(&batch))
        .await
        .unwrap();
    engine
        .handle(&FeedItem::Telemetry(batch), at)
        .await
        .unwrap();
}

async fn alerts(app: &ApiApp, rule: Rule) -> Vec<gridlink_cloud::alerts::Alert> {
    app.store
        .alerts(&AlertFilter {
            rule: Some(rule),
            limit: 100,
            ..AlertFilter::default()
        })
        .await
        .unwrap()
}

// ------------------------------------------------------------------ rules

/// `project_milestone`: a project's generation crossing a milestone opens
/// one info alert naming the project; the next scans keep that one alert;
/// a milestone not reached opens nothing.
async fn project_milestone_reached_opens_one_alert(app: &ApiApp) {
    use gridlink_cloud::projects::{MilestoneQuantity, ProjectKind, ProjectStatus};
    use gridlink_cloud::store::ProjectStore as _;
    use gridlink_cloud::store::projects::{MilestoneWrite, ProjectWrite};

    let mut engine = engine(app, settings());
    // 1,500 kWh exported over two hours (counter in Wh).
    telemetry(
        app,
        &mut engine,
        1,
        T0 + 2 * 3_600 * S,
        vec![series(
            "grid",
            Quantity::EnergyExport,
            &[
                (T0, 0),
                (T0 + 3_600 * S, 600_000),
                (T0 + 2 * 3_600 * S, 1_500_000),
            ],
        )],
    )
    .await;
    let project = app
        .store
        .create_project(
            &ProjectWrite {
                name: "Solar park".into(),
                kind: ProjectKind::Renewable,
                status: ProjectStatus::Operational,
                capacity_kw: 900.0,
                latitude: 52.0,
                longitude: 5.0,
                address: None,
                currency: "EUR".into(),
                ven_ids: vec![ven("ven-1")],
                milestones: vec![
                    MilestoneWrite {
                        name: "First MWh".into(),
                        quantity: MilestoneQuantity::Generated,
                        threshold_kwh: 1_000.0,
                    },
                    MilestoneWrite {
                        name: "Ten MWh".into(),
                        quantity: MilestoneQuantity::Generated,
                        threshold_kwh: 10_000.0,
                    },
                ],
            },
            T0,
        )
        .await
        .unwrap();
    let now = T0 + 2 * 3_600 * S + S;
    engine.scan(now).await.unwrap();
    engine.scan(now + 60 * S).await.unwrap();
    let found = alerts(app, Rule::ProjectMilestone).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let alert = &found[0];
    assert_eq!(alert.state, AlertState::Open);
    assert_eq!(alert.severity, Severity::Info);
    assert_eq!(alert.project_id, Some(project.id));
    assert_eq!(alert.subject, format!("project-{}/First MWh", project.id));
    assert_eq!(alert.details["milestone"], "First MWh");
    assert_eq!(alert.details["quantity"], "generated");
    assert!(alert.message.contains("Solar park"), "{}", alert.message);
}

/// A last will opens `ven_offline` only after its hold-down; a VEN back
/// online resolves it only after the condition stayed clear for
/// `resolve_after`, and going offline again meanwhile keeps the same alert
/// open (no flapping).
async fn offline_by_last_will_with_hold_down(app: &ApiApp) {
    let mut s = settings();
    s.hold.insert(
        Rule::VenOffline,
        HoldDown {
            open_after_ms: 10 * S,
            resolve_after_ms: 5 * S,
        },
    );
    let mut engine = engine(app, s);
    status_at(app, &mut engine, status("ven-1", true), T0).await;
    engine.scan(T0).await.unwrap();
    status_at(app, &mut engine, status("ven-1", false), T0 + S).await;
    engine.scan(T0 + 5 * S).await.unwrap();
    assert!(
        alerts(app, Rule::VenOffline).await.is_empty(),
        "within the hold-down"
    );
    engine.scan(T0 + 11 * S).await.unwrap();
    let open = alerts(app, Rule::VenOffline).await;
    assert_eq!(open.len(), 1);
    let alert = &open[0];
    assert_eq!(alert.state, AlertState::Open);
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.subject, "ven-1");
    assert_eq!(alert.ven_id.as_deref(), Some("ven-1"));
    assert_eq!(alert.opened_ms, T0 + 11 * S);
    assert_eq!(alert.details["reason"], "last_will");

    // Back online at +12 s, offline again at +14 s, online at +15 s.
    status_at(app, &mut engine, status("ven-1", true), T0 + 12 * S).await;
    engine.scan(T0 + 13 * S).await.unwrap();
    status_at(app, &mut engine, status("ven-1", false), T0 + 14 * S).await;
    status_at(app, &mut engine, status("ven-1", true), T0 + 15 * S).await;
    engine.scan(T0 + 18 * S).await.unwrap();
    let still = alerts(app, Rule::VenOffline).await;
    assert_eq!(still.len(), 1, "one alert, not a new one per flap");
    assert_eq!(still[0].state, AlertState::Open, "clear for 3 s of 5");
    engine.scan(T0 + 21 * S).await.unwrap();
    let resolved = alerts(app, Rule::VenOffline).await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].id, alert.id);
    assert_eq!(resolved[0].state, AlertState::Resolved);
    assert_eq!(resolved[0].resolved_ms, Some(T0 + 21 * S));
}

/// A flap shorter than `open_after` never opens an alert.
async fn short_outage_opens_nothing(app: &ApiApp) {
    let mut s = settings();
    s.hold.insert(
        Rule::VenOffline,
        HoldDown {
            open_after_ms: 30 * S,
            resolve_after_ms: 0,
        },
    );
    let mut engine = engine(app, s);
    status_at(app, &mut engine, status("ven-1", false), T0).await;
    engine.scan(T0 + 20 * S).await.unwrap();
    status_at(app, &mut engine, status("ven-1", true), T0 + 25 * S).await;
    engine.scan(T0 + 40 * S).await.unwrap();
    status_at(app, &mut engine, status("ven-1", false), T0 + 45 * S).await;
    engine.scan(T0 + 70 * S).await.unwrap();
    assert!(
        alerts(app, Rule::VenOffline).await.is_empty(),
        "the hold-down restarts after the VEN was back"
    );
    engine.scan(T0 + 76 * S).await.unwrap();
    assert_eq!(alerts(app, Rule::VenOffline).await.len(), 1);
}

/// Silence longer than the limit opens `ven_offline`; a reading resolves it.
async fn offline_by_silence(app: &ApiApp) {
    let mut s = settings();
    s.offline_after_ms = Some(30 * S);
    let mut engine = engine(app, s);
    status_at(app, &mut engine, status("ven-1", true), T0).await;
    engine.scan(T0 + 30 * S).await.unwrap();
    assert!(alerts(app, Rule::VenOffline).await.is_empty());
    engine.scan(T0 + 31 * S).await.unwrap();
    let open = alerts(app, Rule::VenOffline).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].details["reason"], "silence");
    assert_eq!(open[0].details["silent_ms"], 31 * S);
    let power = series("grid", Quantity::ActivePower, &[(T0 + 39 * S, 500)]);
    telemetry(app, &mut engine, 1, T0 + 40 * S, vec![power]).await;
    let resolved = alerts(app, Rule::VenOffline).await;
    assert_eq!(resolved[0].state, AlertState::Resolved);
    assert_eq!(resolved[0].resolved_ms, Some(T0 + 40 * S));
}

/// Without `offline_after`, the silence limit is `offline_intervals` times
/// the interval seen between the VEN's batches (here 3 × 40 s).
async fn offline_after_inferred_intervals(app: &ApiApp) {
    let mut s = settings();
    s.offline_after_ms = None;
    s.offline_intervals = 3;
    let mut engine = engine(app, s);
    for (seq, at) in [(1, T0), (2, T0 + 40 * S), (3, T0 + 80 * S)] {
        let power = series("grid", Quantity::ActivePower, &[(at - S, 500)]);
        telemetry(app, &mut engine, seq, at, vec![power]).await;
    }
    engine.scan(T0 + 80 * S + 120 * S).await.unwrap();
    assert!(alerts(app, Rule::VenOffline).await.is_empty());
    engine.scan(T0 + 80 * S + 121 * S).await.unwrap();
    let open = alerts(app, Rule::VenOffline).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].details["limit_ms"], 120 * S);
}

/// Counter backwards, negative import, spike and gap, each from stored
/// data, each resolved by clean readings; a repeated feed item opens
/// nothing twice.
async fn meter_anomalies(app: &ApiApp) {
    let mut engine = engine(app, engine_settings_anomalies());
    let t = |i: i64| T0 + i * S;
    telemetry(
        app,
        &mut engine,
        1,
        t(3),
        vec![
            series(
                "grid",
                Quantity::ActivePower,
                &[(t(0), 100), (t(1), 200), (t(2), 300)],
            ),
            series(
                "grid",
                Quantity::EnergyImport,
                &[(t(0), 5000), (t(1), 5001), (t(2), 5002)],
            ),
        ],
    )
    .await;
    assert!(
        app.store
            .alerts(&AlertFilter {
                limit: 10,
                ..AlertFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    // A new engine (another process) compares with the stored readings.
    let mut other = engine_like(app, &engine_settings_anomalies());
    let bad = vec![
        series("grid", Quantity::ActivePower, &[(t(3), -50)]),
        series("grid", Quantity::EnergyImport, &[(t(3), 4990)]),
    ];
    telemetry(app, &mut other, 2, t(4), bad.clone()).await;
    let backwards = alerts(app, Rule::EnergyCounterBackwards).await;
    assert_eq!(backwards.len(), 1);
    assert_eq!(backwards[0].subject, "ven-1/grid/energy_import/total");
    assert_eq!(backwards[0].details["previous_value"], 5002.0);
    assert_eq!(backwards[0].details["value"], 4990.0);
    assert_eq!(backwards[0].details["meter"], "grid");
    let negative = alerts(app, Rule::NegativeImport).await;
    assert_eq!(negative.len(), 1);
    assert_eq!(negative[0].subject, "ven-1/grid/active_power/total");
    assert_eq!(negative[0].details["value"], -50.0);
    assert!(
        alerts(app, Rule::PowerSpike).await.is_empty(),
        "350 W < 1000 W"
    );

    // The same item again (a redelivery) changes nothing.
    let repeat = IngestBatch {
        ven_id: ven("ven-1"),
        batch_seq: 2,
        received_ms: t(4),
        series: bad,
    };
    other
        .handle(&FeedItem::Telemetry(repeat), t(5))
        .await
        .unwrap();
    assert_eq!(alerts(app, Rule::EnergyCounterBackwards).await.len(), 1);

    // 10 s later (gap: > 3 intervals of 1 s), a jump to 2000 W (spike).
    telemetry(
        app,
        &mut other,
        3,
        t(14),
        vec![
            series("grid", Quantity::ActivePower, &[(t(13), 2000)]),
            series("grid", Quantity::EnergyImport, &[(t(13), 4991)]),
        ],
    )
    .await;
    let spike = alerts(app, Rule::PowerSpike).await;
    assert_eq!(spike.len(), 1);
    assert_eq!(spike[0].details["delta_w"], 2050.0);
    let gaps = alerts(app, Rule::DataGap).await;
    assert_eq!(gaps.len(), 2, "both series missed 10 s: {gaps:?}");
    assert!(gaps.iter().all(|g| g.details["gap_ms"] == 10 * S));
    // Clean readings resolve what they clear (resolve_after 0).
    assert_eq!(
        alerts(app, Rule::EnergyCounterBackwards).await[0].state,
        AlertState::Resolved
    );
    assert_eq!(
        alerts(app, Rule::NegativeImport).await[0].state,
        AlertState::Resolved
    );
    telemetry(
        app,
        &mut other,
        4,
        t(15),
        vec![series("grid", Quantity::ActivePower, &[(t(14), 2100)])],
    )
    .await;
    assert_eq!(
        alerts(app, Rule::PowerSpike).await[0].state,
        AlertState::Resolved
    );
    let energy_gap = app
        .store
        .alerts(&AlertFilter {
            rule: Some(Rule::DataGap),
            state: Some(AlertState::Open),
            limit: 10,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        energy_gap.len(),
        1,
        "the energy series' gap stays open until its next clean reading"
    );
    assert_eq!(energy_gap[0].subject, "ven-1/grid/energy_import/total");
}

/// Two processes splitting one VEN's batches: each compares with what is
/// stored, so neither sees a false gap or spike across the other's batches,
/// and a counter going backwards across them is found.
async fn split_batches_compare_with_the_store(app: &ApiApp) {
    let mut a = engine(app, engine_settings_anomalies());
    let mut b = engine(app, engine_settings_anomalies());
    let t = |i: i64| T0 + i * S;
    let power = |from: i64| {
        let points: Vec<(i64, i64)> = (from..from + 5).map(|i| (t(i), 1000)).collect();
        series("grid", Quantity::ActivePower, &points)
    };
    let energy = |from: i64, base: i64| {
        let points: Vec<(i64, i64)> = (from..from + 5).map(|i| (t(i), base + i)).collect();
        series("grid", Quantity::EnergyImport, &points)
    };
    telemetry(app, &mut a, 1, t(5), vec![power(0), energy(0, 100)]).await;
    telemetry(app, &mut b, 2, t(10), vec![power(5), energy(5, 100)]).await;
    telemetry(app, &mut a, 3, t(15), vec![power(10), energy(10, 100)]).await;
    let all = app
        .store
        .alerts(&AlertFilter {
            limit: 10,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert!(all.is_empty(), "{all:?}");
    // b's next batch goes backwards against a's last one (114).
    telemetry(app, &mut b, 4, t(20), vec![energy(15, 50)]).await;
    let backwards = alerts(app, Rule::EnergyCounterBackwards).await;
    assert_eq!(backwards.len(), 1);
    assert_eq!(backwards[0].details["previous_value"], 114.0);
}

fn engine_settings_anomalies() -> AlertSettings {
    let mut s = settings();
    s.import_only_meters = vec!["grid".into()];
    s.spike_w = Some(1000.0);
    s.gap_intervals = Some(3);
    s
}

fn engine_like(app: &ApiApp, s: &AlertSettings) -> AlertEngine<AnyStore> {
    engine(app, s.clone())
}

/// `dr_no_ack` for a target VEN without any acknowledgement after the
/// grace; `dr_no_shed` for an ended event whose measured shed is at most
/// the threshold; a VEN that acknowledged and shed has neither.
async fn dr_non_response(app: &ApiApp) {
    let mut s = settings();
    s.dr_ack_grace_ms = 60 * S;
    s.dr_shed_min_w = 100.0;
    s.offline_after_ms = Some(1_000_000 * S);
    let mut engine = engine(app, s);
    let store = &app.store;
    for v in ["ven-a", "ven-b"] {
        store.set_ven_groups(&ven(v), &[]).await.unwrap();
    }
    store
        .create_program(
            &oid("prog"),
            &ProgramWrite {
                name: "P".into(),
                targets: vec![],
                body: json!({ "programName": "P" }),
            },
            T0,
        )
        .await
        .unwrap();
    let start = T0 + 3_600 * S;
    let end = start + 1_800 * S;
    let event: gridlink_protocol::Event = serde_json::from_value(json!({
        "id": "pending", "programID": "prog",
        "intervalPeriod": { "start": "2026-11-21T01:00:00Z", "duration": "PT30M" },
        "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [2] }] }]
    }))
    .unwrap();
    store
        .create_event(
            &oid("e1"),
            &EventWrite {
                program_id: oid("prog"),
                start_ms: Some(start),
                end_ms: Some(end),
                priority: Some(1),
                targets: vec!["ven-a".into(), "ven-b".into()],
                vens: vec![ven("ven-a"), ven("ven-b")],
                body: json!({ "programID": "prog" }),
                event,
            },
            T0,
        )
        .await
        .unwrap();
    let ack = CommandAck {
        ven_id: ven("ven-a"),
        command_id: 1,
        event_id: oid("e1"),
        state: AckState::Received,
        at: Timestamp::from_unix_ms(start - 10 * S).unwrap(),
        reason: None,
    };
    // Site power: ven-a sheds 1000 W, ven-b nothing.
    for (seq, (v, before, during)) in [("ven-a", 2000, 1000), ("ven-b", 2000, 2000)]
        .into_iter()
        .enumerate()
    {
        let points: Vec<(i64, i64)> = (0..10)
            .map(|i| (start - 600 * S + i * 60 * S, before))
            .chain((0..10).map(|i| (start + i * 60 * S, during)))
            .collect();
        let batch = IngestBatch {
            ven_id: ven(v),
            batch_seq: seq as u64 + 1,
            received_ms: start,
            series: vec![series("grid", Quantity::ActivePower, &points)],
        };
        store.ingest(&[batch]).await.unwrap();
    }
    engine.scan(start + 30 * S).await.unwrap();
    assert!(
        alerts(app, Rule::DrNoAck).await.is_empty(),
        "within the grace"
    );
    engine.scan(start + 61 * S).await.unwrap();
    let no_ack = alerts(app, Rule::DrNoAck).await;
    assert_eq!(no_ack.len(), 2, "{no_ack:?}");
    // ven-a acknowledges late: its alert resolves, ven-b's stays.
    let cmd = store.unsent_commands(10).await.unwrap();
    assert!(!cmd.is_empty());
    store.record_ack(&ack, start + 70 * S).await.unwrap();
    engine.scan(start + 80 * S).await.unwrap();
    let no_ack = alerts(app, Rule::DrNoAck).await;
    let by_subject = |subject: &str| {
        no_ack
            .iter()
            .find(|a| a.subject == subject)
            .unwrap()
            .clone()
    };
    assert_eq!(by_subject("e1/ven-a").state, AlertState::Resolved);
    let b = by_subject("e1/ven-b");
    assert_eq!(b.state, AlertState::Open);
    assert_eq!(b.event_id.as_deref(), Some("e1"));
    assert_eq!(b.ven_id.as_deref(), Some("ven-b"));
    assert!(
        alerts(app, Rule::DrNoShed).await.is_empty(),
        "not ended yet"
    );

    engine.scan(end + S).await.unwrap();
    let no_shed = alerts(app, Rule::DrNoShed).await;
    assert_eq!(no_shed.len(), 1, "{no_shed:?}");
    assert_eq!(no_shed[0].subject, "e1/ven-b");
    assert_eq!(no_shed[0].details["shed_w"], 0.0);
    assert_eq!(no_shed[0].details["baseline_w"], 2000.0);

    // Past the lookback, the event's alerts resolve.
    engine.scan(end + 86_400 * S + S).await.unwrap();
    for rule in [Rule::DrNoAck, Rule::DrNoShed] {
        assert!(
            alerts(app, rule)
                .await
                .iter()
                .all(|a| a.state == AlertState::Resolved),
            "{rule:?}"
        );
    }
}

/// Many concurrent raises of one condition open exactly one alert (the
/// partial unique index), whatever the interleaving.
async fn one_open_alert_per_rule_and_subject(app: &ApiApp) {
    let condition = Condition::new(
        Rule::ProjectMilestone,
        "project-3/1MWh",
        Severity::Info,
        "1 MWh",
    );
    let raises = (0..8).map(|_| app.store.raise_alert(&condition, T0, 0, &[]));
    let results = futures_join_all(raises).await;
    let opened = results
        .iter()
        .filter(|r| matches!(r, Ok(Raised::Opened(_))))
        .count();
    assert_eq!(opened, 1, "{results:?}");
    assert_eq!(alerts(app, Rule::ProjectMilestone).await.len(), 1);
    // After it resolves, the same condition opens a new alert.
    let settings = settings();
    gridlink_cloud::alerts::clear(
        &*app.store,
        &settings,
        Rule::ProjectMilestone,
        "project-3/1MWh",
        T0 + S,
    )
    .await
    .unwrap();
    let again = gridlink_cloud::alerts::raise(&*app.store, &settings, &condition, T0 + 2 * S)
        .await
        .unwrap();
    assert!(matches!(again, Raised::Opened(_)), "{again:?}");
    assert_eq!(alerts(app, Rule::ProjectMilestone).await.len(), 2);
    // A subject too long is refused and stores nothing.
    let long = Condition::new(Rule::ProjectMilestone, "x".repeat(513), Severity::Info, "m");
    assert!(matches!(
        app.store.raise_alert(&long, T0, 0, &[]).await,
        Err(gridlink_cloud::store::StoreError::Invalid(_))
    ));
    assert_eq!(alerts(app, Rule::ProjectMilestone).await.len(), 2);
}

/// Runs futures concurrently on this task.
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// An engine that falls behind the feed counts what it skipped and goes on
/// with the next items.
async fn lagged_feed_is_counted_and_followed(app: &ApiApp) {
    let metrics = Arc::new(Metrics::default());
    let engine = AlertEngine::new(
        Arc::clone(&app.store),
        Arc::new(settings()),
        Arc::clone(&metrics.alerts),
    );
    let feed = gridlink_cloud::feed::Feed::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.run(feed.subscribe(), stopped));
    // More than the feed holds, published without yielding to the engine.
    for i in 0..(gridlink_cloud::feed::FEED_CAPACITY as i64 + 500) {
        feed.status(&status("ven-9", true), T0 + i);
    }
    // Only on the feed (not in the store), so only the feed can open it.
    feed.status(&status("ven-1", false), now());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_mins(1);
    while alerts(app, Rule::VenOffline).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine stopped following the feed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        metrics
            .alerts
            .feed_lagged
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert!(metrics.render().contains("gridlink_alerts_opened_total 1"));
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_mins(1), task)
        .await
        .unwrap()
        .unwrap();
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

// -------------------------------------------------------------------- API

async fn seed(app: &ApiApp) -> (i64, i64) {
    let mut offline = Condition::new(
        Rule::VenOffline,
        "ven-1",
        Severity::Critical,
        "ven-1 is offline",
    );
    offline.ven_id = Some(ven("ven-1"));
    let Raised::Opened(first) = app.store.raise_alert(&offline, T0, 0, &[]).await.unwrap() else {
        panic!("not opened");
    };
    let mut gap = Condition::new(
        Rule::DataGap,
        "ven-2/grid/active_power/total",
        Severity::Warning,
        "gap",
    );
    gap.ven_id = Some(ven("ven-2"));
    gap.details = json!({ "gap_ms": 5000 });
    let Raised::Opened(second) = app.store.raise_alert(&gap, T0 + S, 0, &[]).await.unwrap() else {
        panic!("not opened");
    };
    app.store
        .clear_alert(
            Rule::DataGap,
            "ven-2/grid/active_power/total",
            T0 + 2 * S,
            0,
            &[],
        )
        .await
        .unwrap();
    (first.id, second.id)
}

fn ids(body: &Value) -> Vec<i64> {
    body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect()
}

/// Lists with each filter, newest first; one alert; 404 and 400 problems.
async fn api_lists_and_gets(app: &ApiApp) {
    let (offline, gap) = seed(app).await;
    let viewer = app.token(Role::Viewer);
    let (status, body) = app
        .request(Method::GET, "/api/v1/alerts", viewer, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), vec![gap, offline], "newest first");
    let first = &body["alerts"][1];
    assert_eq!(first["rule"], "ven_offline");
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["subject"], "ven-1");
    assert_eq!(first["ven_id"], "ven-1");
    assert_eq!(first["event_id"], Value::Null);
    assert_eq!(first["project_id"], Value::Null);
    assert_eq!(first["state"], "open");
    assert_eq!(first["opened_ms"], T0);
    assert_eq!(first["resolved_ms"], Value::Null);
    assert_eq!(first["acknowledged_ms"], Value::Null);
    assert_eq!(first["acknowledged_by"], Value::Null);
    assert_eq!(first["message"], "ven-1 is offline");
    assert_eq!(first["details"], json!({}));
    for (query, expected) in [
        ("?state=open", vec![offline]),
        ("?state=resolved", vec![gap]),
        ("?state=all", vec![gap, offline]),
        ("?ven_id=ven-2", vec![gap]),
        ("?rule=ven_offline", vec![offline]),
        ("?rule=data_gap&state=open", vec![]),
        ("?limit=1", vec![gap]),
    ] {
        let (status, body) = app
            .request(Method::GET, &format!("/api/v1/alerts{query}"), viewer, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(ids(&body), expected, "{query}");
    }
    let (status, body) = app
        .request(Method::GET, &format!("/api/v1/alerts/{gap}"), viewer, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "resolved");
    assert_eq!(body["resolved_ms"], T0 + 2 * S);
    assert_eq!(body["details"]["gap_ms"], 5000);

    let (status, body) = app
        .request(Method::GET, "/api/v1/alerts/999999", viewer, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["status"], 404);
    assert_eq!(body["detail"], "no alert \"999999\" exists");
    for (uri, field) in [
        ("/api/v1/alerts?state=bogus", "state"),
        ("/api/v1/alerts?limit=0", "limit"),
        ("/api/v1/alerts?limit=1001", "limit"),
        ("/api/v1/alerts?rule=nope", "rule"),
        ("/api/v1/alerts?ven_id=a%20b", "ven_id"),
        ("/api/v1/alerts?colour=red", "colour"),
        ("/api/v1/alerts/abc", "id"),
        ("/api/v1/alerts/-3", "id"),
    ] {
        let (status, body) = app.request(Method::GET, uri, viewer, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["invalid_params"][0]["name"], field, "{uri}: {body}");
    }
    let (status, _) = app
        .request(Method::GET, "/api/v1/alerts", "glk_nope", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Operators and admins acknowledge (with the token's name, and a note);
/// acknowledging does not resolve; viewers and installers get 403; an
/// unknown alert 404; a bad body 400 naming the field, changing nothing.
async fn api_acknowledges(app: &ApiApp) {
    let (offline, _) = seed(app).await;
    let uri = format!("/api/v1/alerts/{offline}/ack");
    for role in [Role::Viewer, Role::Installer] {
        let (status, body) = app.request(Method::POST, &uri, app.token(role), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}: {body}");
    }
    let operator = app.token(Role::Operator);
    for (body, field) in [
        (json!({ "note": 3 }), "note"),
        (json!({ "nope": "x" }), "nope"),
        (json!(["x"]), "body"),
    ] {
        let (status, answer) = app.request(Method::POST, &uri, operator, Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["invalid_params"][0]["name"], field, "{answer}");
    }
    let unchanged = app.store.alert(offline).await.unwrap().unwrap();
    assert_eq!(
        unchanged.acknowledged_ms, None,
        "a refused ack changes nothing"
    );

    let (status, body) = app
        .request(
            Method::POST,
            &uri,
            operator,
            Some(&json!({ "note": "on my way" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged_by"], "operator");
    assert!(body["acknowledged_ms"].as_i64().unwrap() > T0);
    assert_eq!(body["state"], "open", "acknowledging does not resolve");
    let (status, body) = app
        .request(Method::POST, &uri, app.token(Role::Admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged_by"], "admin");
    let (status, body) = app
        .request(Method::POST, "/api/v1/alerts/424242/ack", operator, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// The `OpenAPI` document describes the three routes.
async fn api_is_described(app: &ApiApp) {
    let (status, doc) = app.request(Method::GET, "/openapi.json", "", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc["paths"]["/api/v1/alerts"]["get"]["operationId"],
        "listAlerts"
    );
    assert_eq!(
        doc["paths"]["/api/v1/alerts/{id}"]["get"]["operationId"],
        "getAlert"
    );
    assert_eq!(
        doc["paths"]["/api/v1/alerts/{id}/ack"]["post"]["operationId"],
        "acknowledgeAlert"
    );
    let (_, listed) = app
        .request(Method::GET, "/api/v1/alerts", app.token(Role::Viewer), None)
        .await;
    seed(app).await;
    let (_, listed_after) = app
        .request(Method::GET, "/api/v1/alerts", app.token(Role::Viewer), None)
        .await;
    assert_eq!(listed["alerts"], json!([]));
    let keys = |v: &Value| -> std::collections::BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(
        keys(&listed_after["alerts"][0]),
        keys(&doc["components"]["schemas"]["Alert"]["properties"]),
        "the schema names exactly the fields of an alert"
    );
    let rules = doc["components"]["schemas"]["Alert"]["properties"]["rule"]["enum"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(rules, Rule::ALL.len());
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::ApiApp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::ApiApp::postgres(stringify!($name)).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    project_milestone_reached_opens_one_alert,
    offline_by_last_will_with_hold_down,
    short_outage_opens_nothing,
    offline_by_silence,
    offline_after_inferred_intervals,
    meter_anomalies,
    split_batches_compare_with_the_store,
    dr_non_response,
    one_open_alert_per_rule_and_subject,
    api_lists_and_gets,
    api_acknowledges,
    api_is_described,
    lagged_feed_is_counted_and_followed,
);
