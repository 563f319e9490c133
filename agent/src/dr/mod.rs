//! Demand response: executes OpenADR events on the site's loads.
//!
//! [`timeline::Timeline`] is the pure state machine (commands and time in,
//! load writes and acknowledgements out); [`store::DrStore`] makes its
//! state and the acknowledgement outbox durable; [`run`] is the thin loop
//! that feeds it commands, the clock and the site meter, performs the
//! Modbus writes ([`loads::LoadIo`]) and publishes the load snapshot and
//! the [`DrView`].
//!
//! Order of a command: decoded and checked by the uplink, handed here,
//! applied to the timeline, the state and its `received` (and following)
//! acknowledgements made durable, and only then acknowledged to the broker
//! (PUBACK). Every control
//! interval the timeline advances on the local clock, so events end and
//! loads are restored without any network.

pub mod loads;
pub mod store;
pub mod timeline;

use crate::blocking::off_the_runtime;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_protocol::{
    AckState, Command, CommandAck, Encoding, LoadChangeCause, LoadSnapshot, LoadState, Timestamp,
    encode,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::channels::{DrSettings, DrView};
use crate::config::AgentConfig;
use crate::metrics::{Metrics, now_ms};
use loads::LoadIo;
use store::DrStore;
use timeline::{LoadSpec, Timeline, TimelineConfig, TimelineState};

/// A command from the broker, checked by the uplink, with the PUBACK to
/// send once it is durable.
pub struct InboundCommand {
    /// The decoded command (its VEN is this agent's).
    pub command: Command,
    /// Sends the PUBACK of the PUBLISH that carried it.
    pub puback: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for InboundCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundCommand")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// The channels [`run`] talks on.
#[derive(Debug)]
pub struct DrChannels {
    /// Commands from the uplink.
    pub commands: mpsc::Receiver<InboundCommand>,
    /// The site meter's latest `(timestamp ms, W)` from acquisition.
    pub site_power: watch::Receiver<Option<(i64, f64)>>,
    /// Settings from the shadow.
    pub settings: watch::Receiver<DrSettings>,
    /// What DR shows the shadow.
    pub view: watch::Sender<DrView>,
    /// The latest encoded `LoadSnapshot` for the uplink (latest wins).
    pub snapshot: watch::Sender<Option<Arc<Vec<u8>>>>,
    /// Stop.
    pub shutdown: watch::Receiver<bool>,
}

/// The timeline's config from the agent's.
pub fn timeline_config(config: &AgentConfig) -> TimelineConfig {
    TimelineConfig {
        ven_id: config.ven_id.clone(),
        loads: config
            .loads
            .iter()
            .map(|l| LoadSpec {
                name: l.name.clone(),
                has_coil: l.coil.is_some(),
                setpoint_scale: l.setpoint.map(|s| s.scale),
                rated_power_w: l.rated_power_w,
                priority: l.priority,
                simple_level: l.simple_level,
                never_switch: l.never_switch,
            })
            .collect(),
        max_shed_ms: config.dr.max_shed_s.saturating_mul(1000),
        restore_hysteresis_w: config.dr.restore_hysteresis_w,
        has_site_meter: config.dr.site_meter.is_some(),
    }
}

/// The part of the state worth an `fsync` when it changes (not the
/// measured power).
fn durable_part(state: &TimelineState) -> TimelineState {
    let mut state = state.clone();
    for memory in state.loads.values_mut() {
        memory.power_w = None;
    }
    state
}

struct Executor {
    timeline: Timeline,
    store: Arc<DrStore>,
    io: LoadIo,
    metrics: Arc<Metrics>,
    config: Arc<AgentConfig>,
    saved: TimelineState,
}

impl Executor {
    fn opted_out(settings: &DrSettings) -> BTreeSet<String> {
        settings.opted_out.clone()
    }

    fn max_shed_ms(&self, settings: &DrSettings) -> u64 {
        let hard = self.config.dr.max_shed_s;
        let s = if settings.max_shed_s == 0 {
            hard
        } else {
            settings.max_shed_s.min(hard)
        };
        s.saturating_mul(1000)
    }

    /// Persists the state (if its durable part changed) and `acks`; returns
    /// once both are durable (or the write failed).
    async fn save(&mut self, acks: &[CommandAck]) {
        let durable = durable_part(self.timeline.state());
        if durable == self.saved && acks.is_empty() {
            return;
        }
        for ack in acks {
            tracing::info!(
                event = %ack.event_id,
                command_id = ack.command_id,
                state = ack.state.name(),
                reason = ack.reason.as_deref().unwrap_or(""),
                "DR acknowledgement"
            );
        }
        let store = Arc::clone(&self.store);
        let acks = acks.to_vec();
        let (result, durable) = off_the_runtime(move || {
            let result = store.save(&durable, &acks);
            (result, durable)
        })
        .await;
        match result {
            Ok(()) => self.saved = durable,
            Err(error) => tracing::error!(%error, "persisting the DR state failed"),
        }
    }

    /// One step at `now`: advance the timeline, persist, write the loads.
    async fn step(&mut self, import: Option<(i64, f64)>, settings: &DrSettings) {
        let now = now_ms();
        let opted_out = Self::opted_out(settings);
        let acks = self
            .timeline
            .tick(now, import, self.max_shed_ms(settings), &opted_out);
        // `completed` goes out once the restores have been written (below).
        let (mut completed, acks): (Vec<CommandAck>, Vec<CommandAck>) = acks
            .into_iter()
            .partition(|a| a.state == AckState::Completed);
        let actions = self.timeline.plan(now, &opted_out);
        // Baselines and acknowledgements are durable before any write.
        self.save(&acks).await;
        let mut restore_failures = Vec::new();
        for action in actions {
            match self.io.write(&action, &self.metrics).await {
                Ok(()) => {
                    self.metrics.dr_writes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(load = %action.load, write = ?action.write, cause = ?action.cause, "load written");
                    self.timeline.write_done(&action, now_ms());
                }
                Err(reason) => {
                    self.metrics
                        .dr_write_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(load = %action.load, write = ?action.write, %reason, "load write failed");
                    if let LoadChangeCause::Restore { event_id } = &action.cause {
                        restore_failures.push((
                            event_id.clone(),
                            action.load.clone(),
                            reason.clone(),
                        ));
                    }
                    let acks = self.timeline.write_failed(&action, &reason, now_ms());
                    self.save(&acks).await;
                }
            }
        }
        for ack in &mut completed {
            let failed: Vec<String> = restore_failures
                .iter()
                .filter(|(event, _, _)| *event == ack.event_id)
                .map(|(_, load, reason)| {
                    format!("load {load} not restored yet ({reason}); retrying")
                })
                .collect();
            if !failed.is_empty() {
                ack.reason = Some(truncate(failed.join("; ")));
            }
        }
        self.save(&completed).await;
    }

    fn command(&mut self, command: &Command, settings: &DrSettings) -> Vec<CommandAck> {
        self.metrics.dr_commands.fetch_add(1, Ordering::Relaxed);
        self.timeline.command(
            command,
            now_ms(),
            fastrand::u64(..),
            &Self::opted_out(settings),
        )
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the select loop and its start-up read in one place"
)]
/// Runs DR until `shutdown` turns true. On stop the loads are left as the
/// events want them; the next start resumes from the persisted state.
pub async fn run(
    config: Arc<AgentConfig>,
    store: Arc<DrStore>,
    metrics: Arc<Metrics>,
    channels: DrChannels,
) {
    let DrChannels {
        mut commands,
        site_power,
        mut settings,
        view,
        snapshot,
        mut shutdown,
    } = channels;
    let loading = Arc::clone(&store);
    let state = match off_the_runtime(move || loading.load()).await {
        Ok(state) => state.unwrap_or_default(),
        Err(error) => {
            tracing::error!(%error, "the persisted DR state cannot be read; starting with none");
            TimelineState::default()
        }
    };
    if !state.events.is_empty() {
        tracing::info!(
            events = state.events.len(),
            "resuming DR events from the persisted state"
        );
    }
    let mut executor = Executor {
        timeline: Timeline::new(timeline_config(&config), state),
        store,
        io: LoadIo::new(&config),
        metrics,
        saved: TimelineState::default(),
        config: Arc::clone(&config),
    };
    // Startup: read every load's state.
    let now = now_ms();
    for observed in executor.io.read_states(&executor.metrics).await {
        executor
            .timeline
            .observed(&observed.name, observed.on, observed.setpoint, now);
        executor
            .timeline
            .set_power(&observed.name, observed.power_w);
    }

    let period = Duration::from_millis(config.dr.control_interval_ms);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let snapshot_every = Duration::from_secs(config.dr.snapshot_interval_s);
    let mut last_snapshot: Option<(Instant, Vec<LoadState>)> = None;
    let mut tick_count = 0u64;

    let mut settings_open = true;
    let mut commands_open = true;
    loop {
        let current = settings.borrow().clone();
        let settings_changed = async {
            if settings_open {
                settings.changed().await.is_ok()
            } else {
                std::future::pending().await
            }
        };
        let command = async {
            if commands_open {
                commands.recv().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            biased;
            stop = async { shutdown.wait_for(|&stop| stop).await.is_ok() } => {
                let _ = stop;
                break;
            }
            command = command => {
                let Some(inbound) = command else {
                    commands_open = false;
                    continue;
                };
                let acks = executor.command(&inbound.command, &current);
                executor.save(&acks).await;
                // Durable: now the broker may forget it.
                (inbound.puback)();
                let import = *site_power.borrow();
                executor.step(import, &current).await;
            }
            _ = ticker.tick() => {
                tick_count += 1;
                let import = *site_power.borrow();
                executor.step(import, &current).await;
                // Relays and measured power: every tick while an event
                // runs, else every 5th.
                if executor.timeline.busy() || tick_count.is_multiple_of(5) {
                    let now = now_ms();
                    for (name, on, power) in executor.io.read_live(&executor.metrics).await {
                        if let Some(on) = on {
                            executor.timeline.external(&name, on, now);
                        }
                        executor.timeline.set_power(&name, power);
                    }
                }
            }
            open = settings_changed => settings_open = open,
        }
        publish(
            &executor,
            &view,
            &snapshot,
            &mut last_snapshot,
            snapshot_every,
        );
    }
    tracing::info!("DR stopped; loads stay as the running events want them until the next start");
}

/// Updates the view and, on a change of any load's state or every
/// `every`, the snapshot.
fn publish(
    executor: &Executor,
    view_tx: &watch::Sender<DrView>,
    snapshot_tx: &watch::Sender<Option<Arc<Vec<u8>>>>,
    last: &mut Option<(Instant, Vec<LoadState>)>,
    every: Duration,
) {
    let loads = executor.timeline.load_states();
    let (active, scheduled) = executor.timeline.event_ids();
    let shed = executor.timeline.shed_loads();
    let metrics = &executor.metrics;
    metrics
        .dr_active_events
        .store(active.len() as u64, Ordering::Relaxed);
    metrics
        .dr_shed_loads
        .store(shed.len() as u64, Ordering::Relaxed);
    metrics
        .dr_outbox
        .store(executor.store.outbox_len() as u64, Ordering::Relaxed);
    let view = DrView {
        loads: loads.clone(),
        active_events: active,
        scheduled_events: scheduled,
        shed_loads: shed,
    };
    view_tx.send_if_modified(|old| {
        if *old == view {
            false
        } else {
            *old = view;
            true
        }
    });
    if executor.config.loads.is_empty() {
        return;
    }
    let key = |loads: &[LoadState]| -> Vec<LoadState> {
        loads
            .iter()
            .map(|l| LoadState {
                power_w: None,
                ..l.clone()
            })
            .collect()
    };
    let now = Instant::now();
    let changed = last
        .as_ref()
        .is_none_or(|(at, old)| *old != key(&loads) || now.duration_since(*at) >= every);
    if !changed {
        return;
    }
    let snapshot = LoadSnapshot {
        ven_id: executor.config.ven_id.clone(),
        at: Timestamp::from_unix_ms(now_ms()).unwrap_or(Timestamp::NOW_SENTINEL),
        loads: loads.clone(),
    };
    match encode(&snapshot, Encoding::Postcard) {
        Ok(payload) => {
            snapshot_tx.send_replace(Some(Arc::new(payload)));
        }
        Err(error) => tracing::error!(%error, "load snapshot does not encode"),
    }
    *last = Some((now, key(&loads)));
}

/// Cuts a reason to what an acknowledgement may carry.
fn truncate(mut text: String) -> String {
    let max = gridlink_protocol::command::MAX_REASON_LEN;
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
