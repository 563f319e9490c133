//! Demand response end to end on the real parts (issue 5, "Tests"), once on
//! SQLite and once on PostgreSQL: Mosquitto with mTLS and the production
//! ACL, the cloud's `serve()` in-process, three simulated sites on Modbus
//! TCP (a main meter whose total includes four loads) and their three
//! agents in-process.
//!
//! A `SIMPLE` level-2 event for the three VENs, starting a few seconds
//! ahead and lasting [`EVENT_SECS`] s, must be:
//!
//! 1. acknowledged by every VEN `received` → (`scheduled`) → `active` →
//!    `completed`, in that order, `active` and `completed` on time;
//! 2. executed: the three loads whose `simple_level` is at most 2 are shed
//!    (the fourth, the smallest, is kept) from the start to the end, and
//!    each site's main meter drops by at least 90 % of the shed loads'
//!    power just before the start, all as the simulator's model reports;
//! 3. undone: every load is back on after the end, in the simulator and in
//!    the cloud's `/api/v1/vens/{id}/loads` (which showed the shed loads
//!    off during the event);
//! 4. measured: the status's response shows a positive shed per VEN and in
//!    total, from the readings the cloud stored.
//!
//! The load kept on follows its own duty cycle (5-15 minute slots of 30-40
//! or 85-95 % of its rated power). A step of it during the event is not
//! part of the response, so its change, as the simulator reports it, is
//! taken out of the meter's drop before it is compared with the shed.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridlink_cloud::config::CloudConfig;
use gridlink_cloud::store::{AnyStore, Role, Store as _};
use gridlink_demo::http;
use gridlink_protocol::VenId;
use gridlink_provision::pki::TestPki;
use gridlink_sim::registers::{LOAD_POWER_BASE, RELAY_BASE, sdm630};
use gridlink_sim::{Site, SiteConfig, serve_tcp};
use gridlink_testkit::free_port;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::postgres::PostgresCluster;
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// The VENs, one simulated site and agent each.
const VENS: [&str; 3] = ["ven-1", "ven-2", "ven-3"];
/// Seed of the first site; site `i` uses `SEED + i`.
const SEED: u64 = 41;
/// Loads per site.
const LOADS: u16 = 4;
/// The event's `SIMPLE` level.
const LEVEL: u8 = 2;
/// The event starts at least this long after it is created.
const LEAD_MS: i64 = 5000;
/// The event's duration.
const EVENT_SECS: i64 = 10;
/// The agents' poll interval of the main meter.
const POLL_MS: u64 = 500;
/// The agents' batch seal interval (how often readings leave the site).
const SEAL_MS: u64 = 1000;
/// The agents' DR control interval (checks of starts and ends).
const CONTROL_MS: u64 = 250;
/// Longest a switch may lag the event's start or end (a loaded machine
/// included: the agent checks every [`CONTROL_MS`]).
const SWITCH_WITHIN_MS: i64 = 3000;
/// How often the simulator's model is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Generous limit of every wait for something to happen.
const WAIT: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simple_event_to_three_vens_on_sqlite() {
    shed_and_restore(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simple_event_to_three_vens_on_postgres() {
    shed_and_restore(Backend::Postgres).await;
}

/// The scenario, on either database.
async fn shed_and_restore(backend: Backend) {
    let began = tokio::time::Instant::now();
    let rig = Rig::start(backend).await;
    let recorder = Recorder::start(&rig.sites);
    rig.wait_for_readings().await;
    let event = rig.create_event().await;
    eprintln!(
        "{backend:?}: event {} from {} to {} ms, created {} ms before its start",
        event.id,
        event.start_ms,
        event.end_ms,
        event.start_ms - now_ms()
    );
    let status = rig.wait_for_completion(&event).await;
    check_acks(&status, &event);
    rig.wait_for_restored_loads(&event).await;
    let samples = recorder.stop().await;
    let mut shed_loads_w = Vec::new();
    for (site, samples) in rig.sites.iter().zip(&samples) {
        shed_loads_w.push(check_site_power(site, samples, &event));
    }
    rig.check_measured_response(&event, &samples, &shed_loads_w)
        .await;
    rig.stop().await;
    eprintln!("{backend:?}: the scenario took {:?}", began.elapsed());
}

fn now_ms() -> i64 {
    ms(SystemTime::now())
}

fn ms(at: SystemTime) -> i64 {
    i64::try_from(at.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Polls `check` every 250 ms until it returns `Ok`, or panics after
/// `limit` with `what` and the last answer.
async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} not seen within {limit:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The mean of `f` over `samples` (0 without any).
fn mean<'a>(samples: impl IntoIterator<Item = &'a Sample>, f: impl Fn(&Sample) -> f64) -> f64 {
    let (mut sum, mut count) = (0.0, 0_u32);
    for sample in samples {
        sum += f(sample);
        count += 1;
    }
    if count == 0 {
        0.0
    } else {
        sum / f64::from(count)
    }
}

/// One simulated site and its VEN.
struct SimSite {
    ven: &'static str,
    site: Site,
    /// The load kept on at level [`LEVEL`] (the one with the smallest
    /// rated power); the others are shed.
    kept: u16,
}

impl SimSite {
    /// The `simple_level` of load `k`: 3 for the kept load, 1 or 2 for the
    /// others (both are shed at level 2).
    fn simple_level(&self, k: u16) -> u8 {
        match k {
            k if k == self.kept => LEVEL + 1,
            k if k % 2 == 1 => 1,
            _ => LEVEL,
        }
    }

    /// Indices (k - 1) of the loads shed at level [`LEVEL`].
    fn shed(&self) -> Vec<usize> {
        (1..=LOADS)
            .filter(|&k| self.simple_level(k) <= LEVEL)
            .map(|k| usize::from(k - 1))
            .collect()
    }

    fn kept_index(&self) -> usize {
        usize::from(self.kept - 1)
    }
}

/// The event as created.
struct EventTimes {
    id: String,
    start_ms: i64,
    end_ms: i64,
}

/// The agents' tasks: each returns its VEN id and how it ended.
type AgentTasks = JoinSet<(String, anyhow::Result<gridlink_agent::service::Summary>)>;

/// Everything running for one scenario.
struct Rig {
    api: SocketAddr,
    token: String,
    sites: Vec<SimSite>,
    stop_agents: watch::Sender<bool>,
    agents: AgentTasks,
    stop_cloud: Option<oneshot::Sender<()>>,
    cloud: JoinHandle<anyhow::Result<()>>,
    simulators: JoinSet<std::io::Result<()>>,
    broker: Mosquitto,
    _postgres: Option<PostgresCluster>,
    _dir: TempDir,
}

impl Rig {
    /// The PKI and broker, the database with an operator token, the
    /// cloud, the simulated sites and their agents.
    async fn start(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<VenId> = VENS.iter().map(|v| VenId::new(*v).unwrap()).collect();
        let pki_dir = dir.path().join("pki");
        std::fs::create_dir(&pki_dir).unwrap();
        let pki = TestPki::generate(&pki_dir, &ids).unwrap();
        let broker = Mosquitto::spawn(&pki).await;
        let (postgres, database_url) = match backend {
            Backend::Sqlite => (
                None,
                format!("sqlite://{}", dir.path().join("cloud.db").display()),
            ),
            Backend::Postgres => {
                let cluster = PostgresCluster::start().await;
                let url = cluster.create_database("dr_e2e").await;
                (Some(cluster), url)
            }
        };
        let token = operator_token(&database_url).await;
        let (api, stop_cloud, cloud) = start_cloud(&database_url, &pki, &broker).await;
        let mut simulators = JoinSet::new();
        let mut sites = Vec::new();
        for (i, ven) in (0_u64..).zip(VENS) {
            let (site, modbus) = start_site(SEED + i, &mut simulators).await;
            let kept = (1..=LOADS)
                .min_by(|&a, &b| rated_w(&site, a).total_cmp(&rated_w(&site, b)))
                .unwrap();
            let sim = SimSite { ven, site, kept };
            let ratings: Vec<f64> = (1..=LOADS).map(|k| rated_w(&sim.site, k)).collect();
            eprintln!("{ven}: Modbus {modbus}, loads rated {ratings:?} W, keeps load-{kept}");
            sites.push((sim, modbus));
        }
        let (stop_agents, agents) = start_agents(dir.path(), &pki, &broker, &sites);
        Self {
            api,
            token,
            sites: sites.into_iter().map(|(sim, _)| sim).collect(),
            stop_agents,
            agents,
            stop_cloud: Some(stop_cloud),
            cloud,
            simulators,
            broker,
            _postgres: postgres,
            _dir: dir,
        }
    }

    /// A GET with the operator token: the status and JSON body, or why
    /// there is none.
    async fn get(&self, path: &str) -> Result<Value, String> {
        let answer = http::request(self.api, "GET", path, Some(&self.token), None)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if answer.status == 200 {
            Ok(answer.json())
        } else {
            Err(format!("GET {path}: {} {}", answer.status, answer.body))
        }
    }

    /// A POST that must create something (201); its JSON body.
    async fn post(&self, path: &str, body: &Value) -> Value {
        let answer = http::request(
            self.api,
            "POST",
            path,
            Some(&self.token),
            Some(&body.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(answer.status, 201, "POST {path}: {}", answer.body);
        answer.json()
    }

    /// Waits until every VEN is listed with a reading (the agents are
    /// connected and their telemetry is stored).
    async fn wait_for_readings(&self) {
        eventually("every VEN's readings", WAIT, async || {
            self.assert_running();
            let listed = self.get("/api/v1/vens").await?;
            let reporting = |ven: &str| {
                listed["vens"].as_array().is_some_and(|all| {
                    all.iter()
                        .any(|v| v["ven_id"] == ven && v["last_reading_ms"].is_i64())
                })
            };
            if VENS.iter().all(|v| reporting(v)) {
                Ok(())
            } else {
                Err(listed.to_string())
            }
        })
        .await;
    }

    /// Creates a program and the `SIMPLE` level-[`LEVEL`] event for the
    /// three VENs, starting on a whole second at least [`LEAD_MS`] ahead.
    async fn create_event(&self) -> EventTimes {
        let program = self
            .post(
                "/openadr3/3.1.0/programs",
                &json!({ "programName": "dr-e2e" }),
            )
            .await;
        let start_s = (now_ms() + LEAD_MS) / 1000 + 1;
        let start = OffsetDateTime::from_unix_timestamp(start_s)
            .unwrap()
            .format(&Rfc3339)
            .unwrap();
        let event = self
            .post(
                "/openadr3/3.1.0/events",
                &json!({
                    "programID": program["id"],
                    "eventName": "dr-e2e shed",
                    "priority": 0,
                    "targets": VENS,
                    "intervalPeriod": { "start": start, "duration": format!("PT{EVENT_SECS}S") },
                    "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [LEVEL] }] }]
                }),
            )
            .await;
        EventTimes {
            id: event["id"].as_str().unwrap().to_owned(),
            start_ms: start_s * 1000,
            end_ms: (start_s + EVENT_SECS) * 1000,
        }
    }

    /// Waits until every VEN's latest state is `completed`; meanwhile,
    /// checks that the cloud's load snapshots showed each VEN's shed loads
    /// off (and the kept one on) at some point. Returns the last status.
    async fn wait_for_completion(&self, event: &EventTimes) -> Value {
        let path = format!("/api/v1/events/{}/status", event.id);
        let mut seen_shed = [false; VENS.len()];
        let limit =
            Duration::from_millis(u64::try_from(event.end_ms - now_ms()).unwrap_or(0)) + WAIT;
        let status = eventually("every VEN completed", limit, async || {
            self.assert_running();
            for (site, seen) in self.sites.iter().zip(&mut seen_shed) {
                if !*seen
                    && let Ok(loads) = self.get(&format!("/api/v1/vens/{}/loads", site.ven)).await
                {
                    *seen = loads_on(&loads) == expected_on(site, true);
                }
            }
            let status = self.get(&path).await?;
            // A VEN that gave up will not complete: say so at once.
            let gave_up = status["vens"].as_array().is_some_and(|vens| {
                vens.iter().any(|v| {
                    v["history"].as_array().is_some_and(|history| {
                        history
                            .iter()
                            .any(|a| !LIFECYCLE.iter().any(|s| a["state"] == *s))
                    })
                })
            });
            assert!(!gave_up, "a VEN did not execute the event: {status}");
            if status["states"] == json!({ "completed": VENS.len() }) {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        })
        .await;
        for (site, seen) in self.sites.iter().zip(seen_shed) {
            assert!(
                seen,
                "{}: the cloud never showed its shed loads off",
                site.ven
            );
        }
        assert_eq!(status["start_ms"], event.start_ms, "{status}");
        assert_eq!(status["end_ms"], event.end_ms, "{status}");
        status
    }

    /// Waits until every load is on again, in the simulator and in the
    /// cloud's load snapshots (one taken after the end).
    async fn wait_for_restored_loads(&self, event: &EventTimes) {
        for site in &self.sites {
            eventually(&format!("{}'s loads back on", site.ven), WAIT, async || {
                let on: Vec<bool> = (1..=LOADS).map(|k| site.site.load(k).unwrap().on).collect();
                if on.iter().all(|&on| on) {
                    Ok(())
                } else {
                    Err(format!("simulator: {on:?}"))
                }
            })
            .await;
            let path = format!("/api/v1/vens/{}/loads", site.ven);
            eventually(
                &format!("{}'s loads on in the cloud", site.ven),
                WAIT,
                async || {
                    let loads = self.get(&path).await?;
                    let fresh = loads["loads"].as_array().is_some_and(|all| {
                        all.iter()
                            .all(|l| l["snapshot_ms"].as_i64().is_some_and(|t| t >= event.end_ms))
                    });
                    if fresh && loads_on(&loads) == expected_on(site, false) {
                        Ok(())
                    } else {
                        Err(loads.to_string())
                    }
                },
            )
            .await;
        }
    }

    /// (4) The measured response, once the cloud has every VEN's readings
    /// up to the event's end: a positive shed per VEN and in total, and
    /// (the kept load's change taken out) at least half the shed loads'
    /// power.
    async fn check_measured_response(
        &self,
        event: &EventTimes,
        samples: &[Vec<Sample>],
        shed_loads_w: &[f64],
    ) {
        for ven in VENS {
            eventually(
                &format!("{ven}'s readings past the end"),
                WAIT,
                async || {
                    let info = self.get(&format!("/api/v1/vens/{ven}")).await?;
                    match info["last_reading_ms"].as_i64() {
                        Some(t) if t >= event.end_ms => Ok(()),
                        _ => Err(info.to_string()),
                    }
                },
            )
            .await;
        }
        let status = self
            .get(&format!("/api/v1/events/{}/status", event.id))
            .await
            .unwrap();
        eprintln!("status: {status}");
        let min_readings = EVENT_SECS * 1000 / i64::try_from(POLL_MS).unwrap() / 2;
        let mut sum_shed = 0.0;
        for (i, site) in self.sites.iter().enumerate() {
            let entry = status["vens"]
                .as_array()
                .and_then(|all| all.iter().find(|v| v["ven_id"] == site.ven))
                .unwrap_or_else(|| panic!("{} missing: {status}", site.ven));
            let response = &entry["response"];
            let shed_w = response["shed_w"].as_f64().unwrap_or(f64::NAN);
            assert!(shed_w > 0.0, "{}: no shed measured: {response}", site.ven);
            assert!(
                response["shed_pct"].as_f64().is_some_and(|p| p > 0.0),
                "{response}"
            );
            assert!(
                response["baseline_readings"]
                    .as_i64()
                    .is_some_and(|n| n >= 1),
                "{response}"
            );
            assert!(
                response["during_readings"]
                    .as_i64()
                    .is_some_and(|n| n >= min_readings),
                "{}: fewer than {min_readings} readings during the event: {response}",
                site.ven
            );
            let kept = site.kept_index();
            let kept_before = mean(
                samples[i].iter().filter(|s| s.at_ms < event.start_ms),
                |s| s.power_w[kept],
            );
            let kept_during = mean(
                samples[i]
                    .iter()
                    .filter(|s| (event.start_ms..event.end_ms).contains(&s.at_ms)),
                |s| s.power_w[kept],
            );
            let corrected = shed_w + (kept_during - kept_before);
            assert!(
                corrected >= 0.5 * shed_loads_w[i],
                "{}: measured shed {shed_w:.0} W (+ {:.0} W of the kept load's change) is less than half the shed loads' {:.0} W: {response}",
                site.ven,
                kept_during - kept_before,
                shed_loads_w[i]
            );
            sum_shed += shed_w;
        }
        let total = &status["total"];
        let total_shed = total["shed_w"].as_f64().unwrap_or(f64::NAN);
        assert!(total_shed > 0.0, "{total}");
        assert!(
            (total_shed - sum_shed).abs() < 1e-6 * sum_shed.abs().max(1.0),
            "total {total} vs {sum_shed}"
        );
        assert!(
            total["shed_pct"].as_f64().is_some_and(|p| p > 0.0),
            "{total}"
        );
    }

    /// Panics if the cloud or an agent has stopped on its own.
    fn assert_running(&self) {
        assert!(!self.cloud.is_finished(), "the cloud stopped");
        assert_eq!(self.agents.len(), VENS.len());
        assert!(self.broker.pid().is_some(), "the broker is not running");
    }

    /// Stops the agents (they drain to the broker), then the cloud and the
    /// simulators; each must end cleanly.
    async fn stop(mut self) {
        let _ = self.stop_agents.send(true);
        let drained = tokio::time::timeout(WAIT, async {
            while let Some(joined) = self.agents.join_next().await {
                let (ven, result) = joined.expect("an agent panicked");
                let summary = result.unwrap_or_else(|e| panic!("the agent of {ven} failed: {e:#}"));
                eprintln!("{ven}: {summary:?}");
            }
        })
        .await;
        assert!(drained.is_ok(), "the agents did not stop within {WAIT:?}");
        let _ = self.stop_cloud.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.cloud)
            .await
            .expect("the cloud stops")
            .expect("the cloud does not panic")
            .expect("the cloud stops cleanly");
        self.simulators.abort_all();
        while self.simulators.join_next().await.is_some() {}
    }
}

/// Which loads are on, by name, in a `/api/v1/vens/{id}/loads` answer.
fn loads_on(loads: &Value) -> Vec<(String, bool)> {
    let mut on: Vec<(String, bool)> = loads["loads"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|l| {
                    (
                        l["name"].as_str().unwrap_or_default().to_owned(),
                        l["on"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    on.sort();
    on
}

/// What [`loads_on`] should say for `site`: during the event (`shedding`)
/// only the kept load on, else all.
fn expected_on(site: &SimSite, shedding: bool) -> Vec<(String, bool)> {
    (1..=LOADS)
        .map(|k| (format!("load-{k}"), !shedding || k == site.kept))
        .collect()
}

/// The acknowledgements of an event a VEN executes, in order.
const LIFECYCLE: [&str; 4] = ["received", "scheduled", "active", "completed"];

/// (1) Every VEN's history: received, scheduled (unless the event reached
/// it late), active, completed, each first acknowledged no earlier than
/// the one before by the VEN's clock (`at_ms`); active and completed
/// acknowledged at the event's start and end.
///
/// The order is checked by `at_ms`, not by position in `history`: the
/// agent acknowledges `received` and `scheduled` in the same millisecond,
/// and the cloud orders acknowledgements by (`at_ms`, `received_ms`,
/// `command_id`), which are then all equal, so their order in `history`
/// is up to the database (PostgreSQL returned `scheduled` first).
fn check_acks(status: &Value, event: &EventTimes) {
    let vens = status["vens"].as_array().unwrap();
    assert_eq!(vens.len(), VENS.len(), "{status}");
    for ven in vens {
        let history = ven["history"].as_array().unwrap();
        let at_ms: Vec<i64> = history
            .iter()
            .map(|a| a["at_ms"].as_i64().unwrap())
            .collect();
        assert!(at_ms.is_sorted(), "history out of time order: {ven}");
        assert!(
            history
                .iter()
                .all(|a| LIFECYCLE.iter().any(|s| a["state"] == *s)),
            "an unexpected state: {ven}"
        );
        let at = |state: &str| {
            history
                .iter()
                .find(|a| a["state"] == state)
                .and_then(|a| a["at_ms"].as_i64())
        };
        let seen: Vec<(&str, i64)> = LIFECYCLE
            .iter()
            .filter_map(|&state| Some((state, at(state)?)))
            .collect();
        let order: Vec<&str> = seen.iter().map(|&(state, _)| state).collect();
        assert!(
            order == LIFECYCLE || order == ["received", "active", "completed"],
            "{}: acks {order:?}: {ven}",
            ven["ven_id"]
        );
        assert!(
            seen.windows(2).all(|w| w[0].1 <= w[1].1),
            "{}: acknowledged out of order {seen:?}",
            ven["ven_id"]
        );
        let at = |state: &str| at(state).unwrap();
        let (active, completed) = (at("active"), at("completed"));
        assert!(
            (event.start_ms..=event.start_ms + SWITCH_WITHIN_MS).contains(&active),
            "{}: active at {active}, the event starts at {}",
            ven["ven_id"],
            event.start_ms
        );
        assert!(
            (event.end_ms..=event.end_ms + SWITCH_WITHIN_MS).contains(&completed),
            "{}: completed at {completed}, the event ends at {}",
            ven["ven_id"],
            event.end_ms
        );
    }
}

/// (2) From the simulator's samples of one site: nothing is switched
/// before the start; the shed loads go off (and the kept one stays on)
/// within [`SWITCH_WITHIN_MS`] of the start and stay so until the end; all
/// are on again within [`SWITCH_WITHIN_MS`] of the end; and the main
/// meter's drop from just before the start to just after the shed, the
/// kept load's change taken out, is at least 90 % of the shed loads' power
/// just before the start. Returns that power.
fn check_site_power(site: &SimSite, samples: &[Sample], event: &EventTimes) -> f64 {
    let shed = site.shed();
    let kept = site.kept_index();
    let all_on = |s: &Sample| s.on.iter().all(|&on| on);
    let shedding = |s: &Sample| s.on[kept] && shed.iter().all(|&i| !s.on[i]);
    let ven = site.ven;
    // The sampler runs at the same wall clock as the agents; 100 ms covers
    // a sample taken while a write lands.
    let margin = 100;
    if let Some(s) = samples
        .iter()
        .find(|s| s.at_ms < event.start_ms - margin && !all_on(s))
    {
        panic!("{ven}: a load was off before the start: {s:?}");
    }
    let shed_at = samples
        .iter()
        .find(|s| s.at_ms >= event.start_ms - margin && shedding(s))
        .unwrap_or_else(|| panic!("{ven}: the loads were never shed"))
        .at_ms;
    assert!(
        shed_at - event.start_ms <= SWITCH_WITHIN_MS,
        "{ven}: shed {} ms after the start",
        shed_at - event.start_ms
    );
    if let Some(s) = samples
        .iter()
        .find(|s| (shed_at..event.end_ms - margin).contains(&s.at_ms) && !shedding(s))
    {
        panic!("{ven}: the shed was not held until the end: {s:?}");
    }
    let restored_at = samples
        .iter()
        .find(|s| s.at_ms >= event.end_ms - margin && all_on(s))
        .unwrap_or_else(|| panic!("{ven}: the loads were not seen back on"))
        .at_ms;
    assert!(
        restored_at - event.end_ms <= SWITCH_WITHIN_MS,
        "{ven}: restored {} ms after the end",
        restored_at - event.end_ms
    );
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| (event.start_ms - 2000..event.start_ms - margin).contains(&s.at_ms))
        .collect();
    let during_end = (shed_at + 2300).min(event.end_ms - margin);
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| (shed_at + 300..during_end).contains(&s.at_ms))
        .collect();
    assert!(
        before.len() >= 2 && during.len() >= 2,
        "{ven}: too few samples: {} before, {} during",
        before.len(),
        during.len()
    );
    let shed_loads_w = mean(before.iter().copied(), |s| {
        shed.iter().map(|&i| s.power_w[i]).sum()
    });
    let drop_w =
        mean(before.iter().copied(), |s| s.meter_w) - mean(during.iter().copied(), |s| s.meter_w);
    let kept_rise_w = mean(during.iter().copied(), |s| s.power_w[kept])
        - mean(before.iter().copied(), |s| s.power_w[kept]);
    eprintln!(
        "{ven}: shed {} ms after the start, restored {} ms after the end; meter drop {drop_w:.0} W \
         (kept load {kept_rise_w:+.0} W), shed loads drew {shed_loads_w:.0} W",
        shed_at - event.start_ms,
        restored_at - event.end_ms
    );
    assert!(shed_loads_w > 0.0, "{ven}: the shed loads drew nothing");
    assert!(
        drop_w + kept_rise_w >= 0.9 * shed_loads_w,
        "{ven}: the meter dropped {drop_w:.0} W (+ {kept_rise_w:.0} W of the kept load), \
         less than 90 % of the shed loads' {shed_loads_w:.0} W"
    );
    shed_loads_w
}

/// One look at a site through the simulator's model, at one instant.
#[derive(Debug, Clone)]
struct Sample {
    at_ms: i64,
    /// The main meter's total active power, W.
    meter_w: f64,
    /// Each load's relay.
    on: Vec<bool>,
    /// Each load's power, W (0 when off).
    power_w: Vec<f64>,
}

impl Sample {
    fn of(site: &Site) -> Self {
        let at = SystemTime::now();
        let meter = site.meter_at(1, at).unwrap();
        let loads: Vec<_> = (1..=LOADS).map(|k| site.load_at(k, at).unwrap()).collect();
        Self {
            at_ms: ms(at),
            meter_w: f64::from(meter.total_power_w),
            on: loads.iter().map(|l| l.on).collect(),
            power_w: loads.iter().map(|l| f64::from(l.power_w)).collect(),
        }
    }
}

/// Samples every site's model every [`SAMPLE_EVERY`], and once more when
/// stopped.
struct Recorder {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Vec<Sample>>>,
}

impl Recorder {
    fn start(sites: &[SimSite]) -> Self {
        let sites: Vec<Site> = sites.iter().map(|s| s.site.clone()).collect();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut samples = vec![Vec::new(); sites.len()];
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => {
                        // A last look: the state the caller has just seen
                        // may be newer than the latest tick's.
                        for (site, out) in sites.iter().zip(&mut samples) {
                            out.push(Sample::of(site));
                        }
                        return samples;
                    }
                    _ = tick.tick() => {
                        for (site, out) in sites.iter().zip(&mut samples) {
                            out.push(Sample::of(site));
                        }
                    }
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<Vec<Sample>> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

fn rated_w(site: &Site, k: u16) -> f64 {
    f64::from(site.load(k).unwrap().rated_power_w)
}

/// Migrates the database and stores an operator token; returns it.
async fn operator_token(database_url: &str) -> String {
    let store = AnyStore::connect(database_url).await.unwrap();
    store.migrate().await.unwrap();
    let issued = gridlink_cloud::api::auth::issue_token().unwrap();
    store
        .create_token("dr-e2e operator", Role::Operator, &issued.hash)
        .await
        .unwrap();
    issued.secret
}

/// Starts `serve()` on `database_url` and the broker (the `backend`
/// certificate); returns once its API answers.
async fn start_cloud(
    database_url: &str,
    pki: &TestPki,
    broker: &Mosquitto,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<anyhow::Result<()>>,
) {
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let text = format!(
        "database_url = {database_url:?}\n[http]\nlisten = \"{api}\"\n[mqtt]\nhost = \"{host}\"\n\
         port = {port}\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\
         client_id = \"dr-e2e-cloud\"\nkeep_alive_s = 5\n[ingest]\nmax_delay_ms = 100\n",
        host = broker.host(),
        port = broker.port(),
        ca = pki.ca_cert().display().to_string(),
        cert = pki.backend().cert.display().to_string(),
        key = pki.backend().key.display().to_string(),
    );
    let config = CloudConfig::parse(&text, "dr_e2e cloud.toml").unwrap();
    let settings = config.ingest_settings().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gridlink_cloud::server::serve(
        config,
        settings,
        async move {
            let _ = stopped.await;
        },
    ));
    eventually("the cloud's API", WAIT, async || {
        assert!(!task.is_finished(), "the cloud stopped while starting");
        match http::request(api, "GET", "/health", None, None).await {
            Ok(answer) if answer.status == 200 => Ok(()),
            Ok(answer) => Err(format!("{} {}", answer.status, answer.body)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    (api, stop, task)
}

/// A simulated site with one main meter and [`LOADS`] loads on a free
/// loopback port.
async fn start_site(
    seed: u64,
    simulators: &mut JoinSet<std::io::Result<()>>,
) -> (Site, SocketAddr) {
    let site = Site::new(SiteConfig {
        meters: 1,
        loads: LOADS,
        seed,
        ..SiteConfig::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let modbus = listener.local_addr().unwrap();
    simulators.spawn(serve_tcp(site.clone(), listener));
    (site, modbus)
}

/// Writes each site's `agent.toml`, parses it with the agent's own parser
/// and runs the agent in-process.
fn start_agents(
    dir: &Path,
    pki: &TestPki,
    broker: &Mosquitto,
    sites: &[(SimSite, SocketAddr)],
) -> (watch::Sender<bool>, AgentTasks) {
    let (stop, stopped) = watch::channel(false);
    let mut agents = JoinSet::new();
    for (site, modbus) in sites {
        let agent_dir = dir.join(site.ven);
        std::fs::create_dir(&agent_dir).unwrap();
        let text = agent_toml(site, *modbus, pki, broker, &agent_dir);
        let path = agent_dir.join("agent.toml");
        std::fs::write(&path, &text).unwrap();
        let config = gridlink_agent::config::parse(&text, &path.display().to_string())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let ven = site.ven.to_owned();
        let stopped = stopped.clone();
        agents.spawn(async move { (ven, gridlink_agent::service::run(config, stopped).await) });
    }
    (stop, agents)
}

/// The agent's configuration for `site`: the main meter's total power
/// polled every [`POLL_MS`], and one `[[loads]]` per simulated load (relay
/// coil, power register, its `simple_level`).
fn agent_toml(
    site: &SimSite,
    modbus: SocketAddr,
    pki: &TestPki,
    broker: &Mosquitto,
    dir: &Path,
) -> String {
    let identity = pki.identity(site.ven).unwrap();
    let mut text = format!(
        r#"ven_id = "{ven}"

[mqtt]
host = "{host}"
port = {port}
ca = {ca:?}
cert = {cert:?}
key = {key:?}
reconnect_backoff_min_ms = 100
reconnect_backoff_max_ms = 1000

[buffer]
path = {buffer:?}
max_bytes = 16777216
seal_interval_ms = {SEAL_MS}

[health]
listen = "127.0.0.1:{health}"

[dr]
site_meter = "main"
control_interval_ms = {CONTROL_MS}
write_timeout_ms = 1000
write_retries = 3

[[devices]]
name = "main"
controller = "tcp://{modbus}"
unit_id = 1
poll_interval_ms = {POLL_MS}
timeout_ms = 1000

  [[devices.points]]
  register = "input"
  address = {total_power}
  type = "f32"
  quantity = "active_power"
"#,
        ven = site.ven,
        host = broker.host(),
        port = broker.port(),
        ca = pki.ca_cert().display().to_string(),
        cert = identity.cert.display().to_string(),
        key = identity.key.display().to_string(),
        buffer = dir.join("buffer").display().to_string(),
        health = free_port(),
        total_power = sdm630::TOTAL_POWER,
    );
    for k in 1..=LOADS {
        write!(
            text,
            r#"
[[loads]]
name = "load-{k}"
controller = "tcp://{modbus}"
unit_id = 1
coil = {coil}
power = {{ register = "input", address = {power}, type = "f32" }}
rated_power_w = {rated:?}
priority = {k}
simple_level = {level}
"#,
            coil = RELAY_BASE + k - 1,
            power = LOAD_POWER_BASE + 2 * (k - 1),
            rated = rated_w(&site.site, k),
            level = site.simple_level(k),
        )
        .unwrap();
    }
    text
}
