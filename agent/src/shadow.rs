//! The agent's device-shadow client: reports the agent's state in
//! `state.reported` and applies the settings an operator puts in
//! `state.desired`, over the AWS IoT classic shadow topics (answered by AWS
//! IoT Core, or by the cloud's shadow service on Mosquitto: the same code
//! either way).
//!
//! - At every new connection it publishes `shadow/get`, then its whole
//!   reported state ([`AgentReported`]).
//! - A delta (from `get/accepted` or `update/delta`) is merged into the
//!   desired settings in force, parsed as [`AgentDesired`] (an unknown key
//!   refuses it) and checked against the local hard limits and loads
//!   ([`AgentDesired::check`]). Accepted: the settings are applied (DR
//!   opt-outs and shed limit to DR, the poll interval to acquisition),
//!   saved, and reported, echoing the values so the delta clears. Refused:
//!   nothing changes and `reported.rejected` says which value and why.
//! - It reports again when the DR view changes (at most every 5 s) and
//!   every 5 minutes.
//! - Accepted settings are kept in `shadow-desired.json` beside the buffer
//!   directory (written to a temporary file, fsynced, renamed, directory
//!   fsynced) and loaded at start, so a restart without network keeps them.
//!
//! [`ShadowClient`] holds the logic and does no I/O; [`run`] is the loop
//! around it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_protocol::shadow::{
    AgentDesired, AgentReported, BufferHealth, DrReported, HardLimits, LoadReported,
    RejectedDesired, ShadowDelta, ShadowGetAccepted, ShadowRejected, ShadowUpdateRequest, merge,
};
use gridlink_protocol::{ShadowOp, Topic, VenId};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use crate::channels::{Connection, DrSettings, DrView, Outgoing, ShadowInbound};

/// Shortest time between two reports caused by DR view changes.
pub const VIEW_REPORT_INTERVAL_MS: u64 = 5_000;
/// A full report at least this often while connected.
pub const PERIODIC_REPORT_INTERVAL_MS: u64 = 300_000;
/// The file (in the buffer directory's parent) holding the accepted
/// desired settings.
pub const SETTINGS_FILE: &str = "shadow-desired.json";

/// What the shadow client needs from the rest of the agent.
pub struct ShadowContext {
    /// This VEN (the thing name in the shadow topics).
    pub ven_id: VenId,
    /// SHA-256 (hex) of the configuration file, reported.
    pub config_digest: String,
    /// The configured hard limits: no desired setting may exceed them.
    pub limits: HardLimits,
    /// The configured loads, by name.
    pub loads: Vec<String>,
    /// The poll interval reported while no desired one is in force, ms.
    pub default_poll_interval_ms: u64,
    /// The buffer: its health is reported and its directory's parent
    /// holds the settings file.
    pub buffer: Arc<crate::buffer::Buffer>,
    /// The agent's metrics (dropped readings are reported).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Something [`ShadowClient`] asks its loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Publish `shadow/get`.
    Get,
    /// Publish the whole reported state (see [`ShadowClient::report`]).
    Report,
    /// Put these settings in force.
    Apply {
        /// For DR.
        dr: DrSettings,
        /// For acquisition: `None` keeps every device's configured interval.
        poll_interval: Option<Duration>,
    },
    /// Save these accepted settings locally.
    Persist(AgentDesired),
}

/// The shadow client's state machine. Pure: it is told what happened and
/// answers with [`Action`]s; times are milliseconds of a monotonic clock.
#[derive(Debug, Clone)]
pub struct ShadowClient {
    ven_id: VenId,
    config_digest: String,
    limits: HardLimits,
    loads: Vec<String>,
    default_poll_interval_ms: u64,
    accepted: AgentDesired,
    rejected: Option<RejectedDesired>,
    view: DrView,
    connected: bool,
    generation: Option<u64>,
    last_report_ms: Option<u64>,
    view_changed: bool,
}

impl ShadowClient {
    /// A client starting with the settings saved before (if any). Saved
    /// settings the current limits or loads no longer allow are dropped,
    /// and the defaults apply.
    pub fn new(
        ven_id: VenId,
        config_digest: String,
        limits: HardLimits,
        loads: Vec<String>,
        default_poll_interval_ms: u64,
        saved: Option<AgentDesired>,
    ) -> Self {
        let names: Vec<&str> = loads.iter().map(String::as_str).collect();
        let accepted = match saved {
            Some(saved) => match saved.check(&limits, &names) {
                Ok(()) => saved,
                Err(reason) => {
                    tracing::warn!(
                        reason,
                        "saved shadow settings no longer fit the config; using the defaults"
                    );
                    AgentDesired::default()
                }
            },
            None => AgentDesired::default(),
        };
        Self {
            ven_id,
            config_digest,
            limits,
            loads,
            default_poll_interval_ms,
            accepted,
            rejected: None,
            view: DrView::default(),
            connected: false,
            generation: None,
            last_report_ms: None,
            view_changed: false,
        }
    }

    /// The settings to put in force at start.
    pub fn start(&self) -> Vec<Action> {
        vec![self.apply_action()]
    }

    /// The desired settings in force.
    pub fn accepted(&self) -> &AgentDesired {
        &self.accepted
    }

    /// The last refusal, if the last delta was refused.
    pub fn rejected(&self) -> Option<&RejectedDesired> {
        self.rejected.as_ref()
    }

    /// The connection changed: at a new generation, ask for the document
    /// and report everything.
    pub fn on_connection(&mut self, connection: Connection) -> Vec<Action> {
        self.connected = connection.connected;
        if connection.connected && self.generation != Some(connection.generation) {
            self.generation = Some(connection.generation);
            return vec![Action::Get, Action::Report];
        }
        Vec::new()
    }

    /// A message on one of the shadow response topics.
    pub fn on_inbound(&mut self, op: ShadowOp, payload: &[u8]) -> Vec<Action> {
        match op {
            ShadowOp::GetAccepted => match serde_json::from_slice::<ShadowGetAccepted>(payload) {
                Ok(doc) => match doc.state.delta {
                    Some(delta) => self.on_delta(&delta, doc.version),
                    None => Vec::new(),
                },
                Err(error) => {
                    tracing::warn!(%error, "shadow get/accepted does not parse; ignored");
                    Vec::new()
                }
            },
            ShadowOp::UpdateDelta => match serde_json::from_slice::<ShadowDelta>(payload) {
                Ok(delta) => self.on_delta(&delta.state, delta.version),
                Err(error) => {
                    tracing::warn!(%error, "shadow update/delta does not parse; ignored");
                    Vec::new()
                }
            },
            ShadowOp::GetRejected | ShadowOp::UpdateRejected => {
                match serde_json::from_slice::<ShadowRejected>(payload) {
                    // No shadow yet: our report creates it.
                    Ok(r) if op == ShadowOp::GetRejected && r.code == 404 => {}
                    Ok(r) => tracing::warn!(
                        ?op,
                        code = r.code,
                        message = r.message,
                        "shadow request rejected"
                    ),
                    Err(error) => tracing::warn!(?op, %error, "shadow rejection does not parse"),
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Desired differs from reported in `delta` (document `version`).
    fn on_delta(&mut self, delta: &Map<String, Value>, version: u64) -> Vec<Action> {
        let before = (self.accepted.clone(), self.rejected.clone());
        match self.merged(delta) {
            Ok(settings) => {
                self.rejected = None;
                if settings == self.accepted {
                    // Nothing new (e.g. a key the agent cannot echo): do not
                    // report again, or every report would bring the same
                    // delta back.
                    return if before.1.is_some() {
                        vec![Action::Report]
                    } else {
                        Vec::new()
                    };
                }
                self.accepted = settings.clone();
                tracing::info!(version, ?settings, "desired settings accepted");
                vec![
                    self.apply_action(),
                    Action::Persist(settings),
                    Action::Report,
                ]
            }
            Err(reason) => {
                let same = before.1.as_ref().is_some_and(|r| r.reason == reason);
                if same {
                    return Vec::new();
                }
                tracing::warn!(version, reason, "desired settings refused");
                self.rejected = Some(RejectedDesired { version, reason });
                vec![Action::Report]
            }
        }
    }

    /// The settings in force with `delta` merged in, if they are valid.
    fn merged(&self, delta: &Map<String, Value>) -> Result<AgentDesired, String> {
        let mut current = match serde_json::to_value(&self.accepted) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        merge(&mut current, delta);
        let settings: AgentDesired =
            serde_json::from_value(Value::Object(current)).map_err(|e| format!("desired: {e}"))?;
        let names: Vec<&str> = self.loads.iter().map(String::as_str).collect();
        settings.check(&self.limits, &names)?;
        Ok(settings)
    }

    fn apply_action(&self) -> Action {
        Action::Apply {
            dr: self.dr_settings(),
            poll_interval: self.accepted.poll_interval_ms.map(Duration::from_millis),
        }
    }

    /// DR settings in force: loads opted out by the desired settings and
    /// the shed limit (never above the hard limit).
    pub fn dr_settings(&self) -> DrSettings {
        DrSettings {
            opted_out: self
                .accepted
                .loads
                .iter()
                .filter(|(_, l)| l.dr_participation == Some(false))
                .map(|(name, _)| name.clone())
                .collect(),
            max_shed_s: self
                .accepted
                .max_shed_s
                .unwrap_or(self.limits.max_shed_s)
                .min(self.limits.max_shed_s),
        }
    }

    /// The DR view changed: report now, or when [`VIEW_REPORT_INTERVAL_MS`]
    /// has passed since the last report.
    pub fn on_view(&mut self, view: DrView, now_ms: u64) -> Vec<Action> {
        if view == self.view {
            return Vec::new();
        }
        self.view = view;
        self.view_changed = true;
        self.on_tick(now_ms)
    }

    /// Time passed: a report due from a view change or the period.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Action> {
        if !self.connected {
            return Vec::new();
        }
        match self.next_report_ms() {
            Some(at) if at <= now_ms => vec![Action::Report],
            _ => Vec::new(),
        }
    }

    /// When the next report is due while connected (`None`: not connected).
    pub fn next_report_ms(&self) -> Option<u64> {
        if !self.connected {
            return None;
        }
        let last = self.last_report_ms?;
        let periodic = last + PERIODIC_REPORT_INTERVAL_MS;
        Some(if self.view_changed {
            periodic.min(last + VIEW_REPORT_INTERVAL_MS)
        } else {
            periodic
        })
    }

    /// The reported state with `buffer`'s health.
    pub fn reported(&self, buffer: BufferHealth) -> AgentReported {
        let controllable = |name: &str| {
            self.view
                .loads
                .iter()
                .find(|l| l.name == name)
                .map_or(!self.limits.never_switch.iter().any(|n| n == name), |l| {
                    l.controllable
                })
        };
        let opted_out = self.dr_settings().opted_out;
        let loads: BTreeMap<String, LoadReported> = self
            .loads
            .iter()
            .map(|name| {
                let controllable = controllable(name);
                let on = self.view.loads.iter().any(|l| &l.name == name && l.on);
                (
                    name.clone(),
                    LoadReported {
                        dr_participation: controllable && !opted_out.contains(name),
                        on,
                        controllable,
                    },
                )
            })
            .collect();
        AgentReported {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            config_digest: self.config_digest.clone(),
            poll_interval_ms: self
                .accepted
                .poll_interval_ms
                .unwrap_or(self.default_poll_interval_ms),
            max_shed_s: self.dr_settings().max_shed_s,
            loads,
            buffer,
            dr: DrReported {
                active_events: self.view.active_events.clone(),
                scheduled_events: self.view.scheduled_events.clone(),
                shed_loads: self.view.shed_loads.clone(),
            },
            limits: self.limits.clone(),
            rejected: self.rejected.clone(),
        }
    }

    /// The `shadow/update` message reporting everything, and marks the
    /// report as sent at `now_ms`.
    pub fn report(&mut self, buffer: BufferHealth, now_ms: u64) -> Outgoing {
        self.last_report_ms = Some(now_ms);
        self.view_changed = false;
        let reported = serde_json::to_value(self.reported(buffer)).unwrap_or(Value::Null);
        Outgoing {
            topic: Topic::shadow(self.ven_id.clone(), ShadowOp::Update),
            payload: serde_json::to_vec(&ShadowUpdateRequest::report(reported, None))
                .unwrap_or_default(),
        }
    }

    /// The `shadow/get` message.
    pub fn get(&self) -> Outgoing {
        Outgoing {
            topic: Topic::shadow(self.ven_id.clone(), ShadowOp::Get),
            payload: b"{}".to_vec(),
        }
    }
}

/// Where the accepted settings are kept: [`SETTINGS_FILE`] in the
/// parent of the buffer directory (the buffer directory itself belongs to
/// sled).
pub fn settings_path(buffer_dir: &Path) -> PathBuf {
    buffer_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
        .join(SETTINGS_FILE)
}

/// Reads saved settings; `None` (logged) if there are none or they do not
/// parse.
pub fn load_settings(path: &Path) -> Option<AgentDesired> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the saved shadow settings");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(settings) => Some(settings),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "saved shadow settings do not parse; ignored");
            None
        }
    }
}

/// Saves settings durably: a temporary file written and fsynced, renamed
/// over `path`, then the directory fsynced, so a crash leaves the old file
/// or the new one, never a mix.
pub fn save_settings(path: &Path, settings: &AgentDesired) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Runs the shadow client until `shutdown` turns true. See the module
/// documentation; the DR executor, acquisition and the uplink hold the
/// other ends of the channels.
#[expect(
    clippy::too_many_arguments,
    reason = "one channel end per task it talks to, as service.rs wires them"
)]
pub async fn run(
    ctx: ShadowContext,
    mut inbound: mpsc::Receiver<ShadowInbound>,
    outgoing: mpsc::Sender<Outgoing>,
    mut connection: watch::Receiver<Connection>,
    mut dr_view: watch::Receiver<DrView>,
    dr_settings: watch::Sender<DrSettings>,
    poll_interval: watch::Sender<Option<Duration>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = settings_path(ctx.buffer.path());
    let saved = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || load_settings(&path))
            .await
            .ok()
            .flatten()
    };
    let mut client = ShadowClient::new(
        ctx.ven_id.clone(),
        ctx.config_digest.clone(),
        ctx.limits.clone(),
        ctx.loads.clone(),
        ctx.default_poll_interval_ms,
        saved,
    );
    let started = tokio::time::Instant::now();
    let now_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let health = || {
        let stats = ctx.buffer.stats();
        BufferHealth {
            backlog_batches: stats.records,
            bytes: stats.bytes,
            dropped_readings: ctx.metrics.readings_dropped.load(Ordering::Relaxed),
        }
    };
    let mut actions = client.start();
    let initial_view = dr_view.borrow_and_update().clone();
    actions.extend(client.on_view(initial_view, now_ms()));
    let initial = *connection.borrow_and_update();
    actions.extend(client.on_connection(initial));
    let (mut connection_open, mut view_open) = (true, true);
    loop {
        for action in std::mem::take(&mut actions) {
            let message = match action {
                Action::Get => client.get(),
                Action::Report => client.report(health(), now_ms()),
                Action::Apply {
                    dr,
                    poll_interval: interval,
                } => {
                    dr_settings.send_if_modified(|s| replace(s, dr));
                    poll_interval.send_if_modified(|s| replace(s, interval));
                    continue;
                }
                Action::Persist(settings) => {
                    let path = path.clone();
                    let saved =
                        tokio::task::spawn_blocking(move || save_settings(&path, &settings)).await;
                    if let Ok(Err(error)) = saved {
                        tracing::error!(%error, "cannot save the accepted shadow settings");
                    }
                    continue;
                }
            };
            if outgoing.send(message).await.is_err() {
                return; // the uplink has stopped
            }
        }
        let due = client
            .next_report_ms()
            .map(|at| started + Duration::from_millis(at));
        let tick = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|&stop| stop) => return,
            message = inbound.recv() => match message {
                Some(m) => actions = client.on_inbound(m.op, &m.payload),
                None => return,
            },
            changed = connection.changed(), if connection_open => match changed {
                Ok(()) => {
                    let c = *connection.borrow_and_update();
                    actions = client.on_connection(c);
                }
                Err(_) => connection_open = false,
            },
            changed = dr_view.changed(), if view_open => match changed {
                Ok(()) => {
                    let view = dr_view.borrow_and_update().clone();
                    actions = client.on_view(view, now_ms());
                }
                Err(_) => view_open = false,
            },
            () = tick => actions = client.on_tick(now_ms()),
        }
    }
}

/// Replaces `slot` with `value`; true if it changed (for `send_if_modified`).
fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

#[cfg(test)]
mod tests {
    use gridlink_protocol::shadow::ShadowDocument;
    use serde_json::json;

    use super::*;

    fn limits() -> HardLimits {
        HardLimits {
            max_shed_s: 3600,
            min_poll_interval_ms: 1000,
            never_switch: vec!["fridge".into()],
        }
    }

    fn client(saved: Option<AgentDesired>) -> ShadowClient {
        ShadowClient::new(
            VenId::new("ven-1").unwrap(),
            "abc".into(),
            limits(),
            vec!["hvac".into(), "fridge".into(), "pump".into()],
            1000,
            saved,
        )
    }

    fn connected(generation: u64) -> Connection {
        Connection {
            connected: true,
            generation,
        }
    }

    fn delta(state: Value, version: u64) -> Vec<u8> {
        let mut message = json!({"version": version, "timestamp": 1});
        message["state"] = state;
        serde_json::to_vec(&message).unwrap()
    }

    fn reported(client: &mut ShadowClient) -> Value {
        let out = client.report(BufferHealth::default(), 0);
        let request: Value = serde_json::from_slice(&out.payload).unwrap();
        request["state"]["reported"].clone()
    }

    #[test]
    fn every_new_connection_asks_and_reports() {
        let mut c = client(None);
        assert_eq!(
            c.on_connection(Connection {
                connected: false,
                generation: 0
            }),
            vec![]
        );
        assert_eq!(
            c.on_connection(connected(1)),
            vec![Action::Get, Action::Report]
        );
        // The same connection again (e.g. a repeated watch value): nothing.
        assert_eq!(c.on_connection(connected(1)), vec![]);
        assert_eq!(
            c.on_connection(Connection {
                connected: false,
                generation: 1
            }),
            vec![]
        );
        assert_eq!(
            c.on_connection(connected(2)),
            vec![Action::Get, Action::Report]
        );
        assert_eq!(c.get().topic.to_string(), "$aws/things/ven-1/shadow/get");
        assert_eq!(
            c.report(BufferHealth::default(), 0).topic.to_string(),
            "$aws/things/ven-1/shadow/update"
        );
    }

    #[test]
    fn accepted_desired_is_applied_saved_and_echoed_so_the_delta_clears() {
        let mut c = client(None);
        c.on_connection(connected(1));
        let actions = c.on_inbound(
            ShadowOp::UpdateDelta,
            &delta(
                json!({"poll_interval_ms": 5000, "max_shed_s": 600, "loads": {"hvac": {"dr_participation": false}}}),
                7,
            ),
        );
        let expected = AgentDesired {
            poll_interval_ms: Some(5000),
            max_shed_s: Some(600),
            loads: [(
                "hvac".to_string(),
                gridlink_protocol::shadow::LoadDesired {
                    dr_participation: Some(false),
                },
            )]
            .into(),
        };
        assert_eq!(
            actions,
            vec![
                Action::Apply {
                    dr: DrSettings {
                        opted_out: ["hvac".to_string()].into(),
                        max_shed_s: 600
                    },
                    poll_interval: Some(Duration::from_secs(5)),
                },
                Action::Persist(expected.clone()),
                Action::Report,
            ]
        );
        assert_eq!(c.accepted(), &expected);
        // The report echoes every desired value: the cloud's delta is empty.
        let mut doc = ShadowDocument::default();
        doc.apply(
            &ShadowUpdateRequest::desire(
                json!({"poll_interval_ms": 5000, "max_shed_s": 600, "loads": {"hvac": {"dr_participation": false}}}),
                None,
            ),
            1,
        )
        .unwrap();
        let report = c.report(BufferHealth::default(), 0);
        let request: ShadowUpdateRequest = serde_json::from_slice(&report.payload).unwrap();
        doc.apply(&request, 2).unwrap();
        assert_eq!(doc.delta(), None, "{:?}", doc.reported);
        assert!(doc.reported.get("rejected").is_none());
        assert_eq!(doc.reported["loads"]["fridge"]["dr_participation"], false);
        assert_eq!(doc.reported["loads"]["pump"]["dr_participation"], true);
        // The same delta again (nothing new): no report, so no loop.
        let again = c.on_inbound(ShadowOp::UpdateDelta, &delta(json!({"max_shed_s": 600}), 9));
        assert_eq!(again, vec![]);
    }

    #[test]
    fn refused_desired_changes_nothing_and_says_why_once() {
        let mut c = client(None);
        c.on_connection(connected(1));
        c.on_inbound(
            ShadowOp::UpdateDelta,
            &delta(json!({"poll_interval_ms": 2000}), 2),
        );
        let before = c.accepted().clone();
        for (state, needle) in [
            (json!({"poll_interval_ms": 10}), "below the local minimum"),
            (json!({"max_shed_s": 7200}), "above the local hard limit"),
            (
                json!({"loads": {"fridge": {"dr_participation": true}}}),
                "never_switch",
            ),
            (
                json!({"loads": {"boiler": {"dr_participation": false}}}),
                "no such load",
            ),
            (json!({"colour": "red"}), "unknown field `colour`"),
            // One good value with a bad one: all refused.
            (
                json!({"poll_interval_ms": 3000, "max_shed_s": 99999}),
                "max_shed_s",
            ),
        ] {
            let actions = c.on_inbound(ShadowOp::UpdateDelta, &delta(state.clone(), 5));
            assert_eq!(actions, vec![Action::Report], "{state}");
            assert_eq!(c.accepted(), &before, "{state}");
            let rejected = reported(&mut c)["rejected"].clone();
            assert_eq!(rejected["version"], 5);
            assert!(
                rejected["reason"].as_str().unwrap().contains(needle),
                "{state}: {rejected}"
            );
            assert_eq!(reported(&mut c)["poll_interval_ms"], 2000);
            // The same refusal again (the cloud re-sends the delta after the
            // report): said once only.
            assert_eq!(
                c.on_inbound(ShadowOp::UpdateDelta, &delta(state, 6)),
                vec![]
            );
            // Clear it for the next case with a valid change.
            c.on_inbound(
                ShadowOp::UpdateDelta,
                &delta(json!({"poll_interval_ms": 2000}), 7),
            );
            assert!(c.rejected().is_none());
        }
    }

    #[test]
    fn get_accepted_delta_is_applied_and_other_documents_ignored() {
        let mut c = client(None);
        c.on_connection(connected(1));
        let doc = json!({"state": {"desired": {"poll_interval_ms": 4000}, "reported": {"poll_interval_ms": 1000},
            "delta": {"poll_interval_ms": 4000}}, "version": 3, "timestamp": 1});
        let actions = c.on_inbound(ShadowOp::GetAccepted, &serde_json::to_vec(&doc).unwrap());
        assert_eq!(actions.len(), 3);
        assert_eq!(c.accepted().poll_interval_ms, Some(4000));
        let no_delta = json!({"state": {"reported": {"poll_interval_ms": 4000}}, "version": 4, "timestamp": 1});
        assert_eq!(
            c.on_inbound(
                ShadowOp::GetAccepted,
                &serde_json::to_vec(&no_delta).unwrap()
            ),
            vec![]
        );
        assert_eq!(c.on_inbound(ShadowOp::UpdateDelta, b"{garbage"), vec![]);
        assert_eq!(
            c.on_inbound(
                ShadowOp::GetRejected,
                br#"{"code":404,"message":"No shadow","timestamp":1}"#
            ),
            vec![]
        );
        assert_eq!(c.on_inbound(ShadowOp::UpdateAccepted, b"{}"), vec![]);
        // A null in the delta removes a setting: back to the default.
        c.on_inbound(
            ShadowOp::UpdateDelta,
            &delta(json!({"poll_interval_ms": null}), 5),
        );
        assert_eq!(c.accepted().poll_interval_ms, None);
        assert_eq!(reported(&mut c)["poll_interval_ms"], 1000);
    }

    #[test]
    fn reports_follow_view_changes_at_most_every_5_s_and_every_5_min() {
        let mut c = client(None);
        let view = |shed: &str| DrView {
            shed_loads: vec![shed.to_string()],
            ..DrView::default()
        };
        // Not connected: no reports.
        assert_eq!(c.on_view(view("a"), 0), vec![]);
        assert_eq!(c.next_report_ms(), None);
        c.on_connection(connected(1));
        c.report(BufferHealth::default(), 1_000);
        assert_eq!(
            c.next_report_ms(),
            Some(1_000 + PERIODIC_REPORT_INTERVAL_MS)
        );
        assert_eq!(c.on_view(view("b"), 2_000), vec![]);
        assert_eq!(c.next_report_ms(), Some(6_000));
        assert_eq!(c.on_tick(5_999), vec![]);
        assert_eq!(c.on_tick(6_000), vec![Action::Report]);
        let out = c.report(BufferHealth::default(), 6_000);
        let request: Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(
            request["state"]["reported"]["dr"]["shed_loads"],
            json!(["b"])
        );
        // Unchanged view: nothing; a change long after the last report: at once.
        assert_eq!(c.on_view(view("b"), 7_000), vec![]);
        assert_eq!(c.on_view(view("c"), 20_000), vec![Action::Report]);
        c.report(BufferHealth::default(), 20_000);
        assert_eq!(
            c.on_tick(20_000 + PERIODIC_REPORT_INTERVAL_MS),
            vec![Action::Report]
        );
    }

    #[test]
    fn reported_state_carries_version_digest_limits_and_buffer() {
        let mut c = client(None);
        let health = BufferHealth {
            backlog_batches: 3,
            bytes: 4096,
            dropped_readings: 1,
        };
        let out = c.report(health, 0);
        let request: Value = serde_json::from_slice(&out.payload).unwrap();
        let r = &request["state"]["reported"];
        assert_eq!(r["agent_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(r["config_digest"], "abc");
        assert_eq!(r["limits"]["max_shed_s"], 3600);
        assert_eq!(r["max_shed_s"], 3600);
        assert_eq!(r["buffer"]["backlog_batches"], 3);
        assert_eq!(r["loads"]["fridge"]["controllable"], false);
        assert!(r["rejected"].is_null());
    }

    #[test]
    fn settings_survive_a_restart_and_outdated_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let buffer_dir = dir.path().join("buffer");
        let path = settings_path(&buffer_dir);
        assert_eq!(path, dir.path().join(SETTINGS_FILE));
        assert_eq!(load_settings(&path), None);
        let settings = AgentDesired {
            poll_interval_ms: Some(5000),
            max_shed_s: Some(600),
            loads: BTreeMap::new(),
        };
        save_settings(&path, &settings).unwrap();
        assert!(!path.with_extension("json.tmp").exists());
        let loaded = load_settings(&path).unwrap();
        assert_eq!(loaded, settings);
        let c = client(Some(loaded));
        assert_eq!(
            c.start(),
            vec![Action::Apply {
                dr: DrSettings {
                    opted_out: std::collections::BTreeSet::new(),
                    max_shed_s: 600
                },
                poll_interval: Some(Duration::from_secs(5)),
            }]
        );
        // The config's limits tightened since: the saved settings are dropped.
        let mut strict = limits();
        strict.max_shed_s = 300;
        let c = ShadowClient::new(
            VenId::new("ven-1").unwrap(),
            String::new(),
            strict,
            vec![],
            1000,
            Some(settings),
        );
        assert_eq!(c.accepted(), &AgentDesired::default());
        // A corrupt file is ignored, not fatal.
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(load_settings(&path), None);
    }

    /// The loop on real channels, a real buffer and a real settings file:
    /// a connection brings `get` and a report; an accepted delta reaches DR
    /// and acquisition, is saved, and echoed; a restart without network puts
    /// the saved settings in force again.
    #[tokio::test]
    #[expect(clippy::too_many_lines, reason = "two runs of the loop, one scenario")]
    async fn run_applies_saves_and_restores_on_its_channels() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let buffer = Arc::new(
            crate::buffer::Buffer::open(
                crate::buffer::BufferConfig {
                    path: dir.path().join("buffer"),
                    max_bytes: 4 << 20,
                    cache_bytes: 1 << 20,
                    ven_id: VenId::new("ven-1").unwrap(),
                    max_payload_bytes: 64 * 1024,
                },
                Arc::clone(&metrics),
            )
            .unwrap(),
        );
        let context = || ShadowContext {
            ven_id: VenId::new("ven-1").unwrap(),
            config_digest: "abc".into(),
            limits: limits(),
            loads: vec!["hvac".into(), "fridge".into()],
            default_poll_interval_ms: 1000,
            buffer: Arc::clone(&buffer),
            metrics: Arc::clone(&metrics),
        };
        let wait = Duration::from_secs(5);

        let (inbound_tx, inbound_rx) = mpsc::channel(8);
        let (outgoing_tx, mut outgoing_rx) = mpsc::channel(8);
        let (connection_tx, connection_rx) = watch::channel(Connection::default());
        let (_view_tx, view_rx) = watch::channel(DrView::default());
        let (settings_tx, mut settings_rx) = watch::channel(DrSettings::default());
        let (poll_tx, mut poll_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            context(),
            inbound_rx,
            outgoing_tx,
            connection_rx,
            view_rx,
            settings_tx,
            poll_tx,
            stop_rx,
        ));
        connection_tx
            .send(Connection {
                connected: true,
                generation: 1,
            })
            .unwrap();
        let get = tokio::time::timeout(wait, outgoing_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(get.topic.to_string(), "$aws/things/ven-1/shadow/get");
        let report = tokio::time::timeout(wait, outgoing_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.topic.to_string(), "$aws/things/ven-1/shadow/update");

        inbound_tx
            .send(ShadowInbound {
                op: ShadowOp::UpdateDelta,
                payload: delta(
                    json!({"poll_interval_ms": 5000, "loads": {"hvac": {"dr_participation": false}}}),
                    2,
                ),
            })
            .await
            .unwrap();
        let echo = tokio::time::timeout(wait, outgoing_rx.recv())
            .await
            .unwrap()
            .unwrap();
        let echo: Value = serde_json::from_slice(&echo.payload).unwrap();
        assert_eq!(echo["state"]["reported"]["poll_interval_ms"], 5000);
        assert_eq!(
            echo["state"]["reported"]["loads"]["hvac"]["dr_participation"],
            false
        );
        assert_eq!(*poll_rx.borrow_and_update(), Some(Duration::from_secs(5)));
        assert!(settings_rx.borrow_and_update().opted_out.contains("hvac"));
        let saved = load_settings(&dir.path().join(SETTINGS_FILE)).unwrap();
        assert_eq!(saved.poll_interval_ms, Some(5000));
        stop_tx.send(true).unwrap();
        tokio::time::timeout(wait, task).await.unwrap().unwrap();

        // Restart, never connected: the saved settings are in force.
        let (_inbound_tx, inbound_rx) = mpsc::channel(8);
        let (outgoing_tx, mut outgoing_rx) = mpsc::channel(8);
        let (_connection_tx, connection_rx) = watch::channel(Connection::default());
        let (_view_tx, view_rx) = watch::channel(DrView::default());
        let (settings_tx, mut settings_rx) = watch::channel(DrSettings::default());
        let (poll_tx, mut poll_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            context(),
            inbound_rx,
            outgoing_tx,
            connection_rx,
            view_rx,
            settings_tx,
            poll_tx,
            stop_rx,
        ));
        tokio::time::timeout(wait, poll_rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*poll_rx.borrow(), Some(Duration::from_secs(5)));
        tokio::time::timeout(wait, settings_rx.wait_for(|s| s.opted_out.contains("hvac")))
            .await
            .unwrap()
            .unwrap();
        assert!(
            outgoing_rx.try_recv().is_err(),
            "nothing sent while offline"
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(wait, task).await.unwrap().unwrap();
    }
}
