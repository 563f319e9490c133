//! The DR timeline: a pure state machine, no I/O and no clock of its own.
//!
//! Commands and time go in ([`Timeline::command`], [`Timeline::tick`]);
//! acknowledgements and load writes come out ([`Timeline::plan`]); the
//! outcome of each write comes back ([`Timeline::write_done`],
//! [`Timeline::write_failed`]). Everything it must remember across a
//! restart is in [`Timeline::state`], which the I/O loop persists.
//!
//! Rules (see the crate README's "Demand response" section):
//!
//! * Per load and per channel (the relay coil, the setpoint register) the
//!   active event with the highest priority (lowest number, none = lowest)
//!   whose current interval has a payload for that channel governs it.
//! * SIMPLE level `L` sheds every governed coil load with `simple_level <=
//!   L`; `IMPORT_CAPACITY_LIMIT` sheds governed loads in priority order
//!   while the import is above the limit and restores them in reverse
//!   with hysteresis; `DISPATCH_SETPOINT` writes the setpoint.
//! * A load DR changed keeps its state from before (its baseline), which
//!   is written back when no event governs it any more.
//! * No load stays shed longer than the shed limit: it is then restored and
//!   stays released until no event asks to shed it.

use std::collections::{BTreeMap, BTreeSet};

use gridlink_protocol::openadr::{Interval, ObjectId, PayloadType, PayloadValue};
use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Event, IsoDuration, LoadChangeCause, LoadState,
    Timestamp, VenId,
};
use serde::{Deserialize, Serialize};

/// Most finished event ids remembered (to ignore late or repeated commands).
const MAX_FINISHED: usize = 1024;

/// Most events on the timeline at once; a further new event is refused
/// (`failed`), so the persisted state stays bounded.
pub const MAX_EVENTS: usize = 256;

/// What the timeline knows about one configured load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// The load's name.
    pub name: String,
    /// It has a relay coil.
    pub has_coil: bool,
    /// Scale of its setpoint register, if it has one (register = value / scale).
    pub setpoint_scale: Option<f64>,
    /// Rated power, W.
    pub rated_power_w: f64,
    /// Shedding order: lower first.
    pub priority: u32,
    /// SIMPLE level at and above which it is shed.
    pub simple_level: u8,
    /// DR never touches it.
    pub never_switch: bool,
}

/// The timeline's fixed settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineConfig {
    /// The VEN, for acknowledgements.
    pub ven_id: VenId,
    /// The loads, in config order.
    pub loads: Vec<LoadSpec>,
    /// Hard limit on a shed, in ms.
    pub max_shed_ms: u64,
    /// Restore hysteresis of the capacity loop, W.
    pub restore_hysteresis_w: f64,
    /// A site meter is configured (capacity limits can be held).
    pub has_site_meter: bool,
}

/// Where an event is on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventPhase {
    /// Waiting for its start.
    Scheduled,
    /// Running.
    Active,
}

/// An event on the timeline, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEntry {
    /// The command that brought this version of the event.
    pub command_id: u64,
    /// The event.
    pub event: Event,
    /// When the command arrived (resolves a start of "now"), ms.
    pub received_ms: i64,
    /// The randomizeStart offset drawn for this event, ms.
    pub offset_ms: u64,
    /// Scheduled or active.
    pub phase: EventPhase,
    /// Loads shed by the capacity loop, in shedding order.
    pub capacity_shed: Vec<String>,
    /// Time of the capacity loop's last change, ms (readings not newer are
    /// not used: they do not show the change yet).
    pub capacity_changed_ms: i64,
}

/// What the timeline remembers of one load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadMemory {
    /// Relay state before DR changed it (`None`: DR has not changed it).
    pub baseline_on: Option<bool>,
    /// Setpoint register before DR changed it.
    pub baseline_setpoint: Option<u16>,
    /// The event that changed the relay, for the restore's cause.
    pub coil_event: Option<String>,
    /// The event that changed the setpoint.
    pub setpoint_event: Option<String>,
    /// Since when the load is shed, ms.
    pub shed_since_ms: Option<i64>,
    /// Restored by the shed limit; not shed again until no event asks.
    pub released: bool,
    /// Relay state as last read or written (not persisted meaning: read again at start).
    pub on: Option<bool>,
    /// Setpoint register as last read or written.
    pub setpoint: Option<u16>,
    /// Measured power, W.
    pub power_w: Option<f64>,
    /// When the state last changed, ms.
    pub last_change_ms: Option<i64>,
    /// Why it last changed.
    pub cause: Option<LoadChangeCause>,
}

/// Everything the timeline persists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineState {
    /// Events not finished, by id.
    pub events: BTreeMap<String, EventEntry>,
    /// Finished events: id -> highest command id seen.
    pub finished: BTreeMap<String, u64>,
    /// Per load, by name.
    pub loads: BTreeMap<String, LoadMemory>,
}

/// A Modbus write the timeline wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Write the relay coil (true = on).
    Coil(bool),
    /// Write the setpoint register.
    Setpoint(u16),
}

/// One write to one load, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The load's name.
    pub load: String,
    /// What to write.
    pub write: Write,
    /// Why, for the snapshot.
    pub cause: LoadChangeCause,
}

/// The demand of one event on one channel of a load.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Demand {
    Shed(bool),
    Setpoint(u16),
}

/// The DR timeline. See the module documentation.
#[derive(Debug, Clone)]
pub struct Timeline {
    config: TimelineConfig,
    state: TimelineState,
}

impl Timeline {
    /// A timeline from its config and persisted state (default: empty).
    pub fn new(config: TimelineConfig, mut state: TimelineState) -> Self {
        for load in &config.loads {
            let memory = state.loads.entry(load.name.clone()).or_default();
            // Device state is read again at start; remember only intent.
            memory.on = None;
            memory.setpoint = None;
            memory.power_w = None;
        }
        state
            .loads
            .retain(|name, _| config.loads.iter().any(|l| &l.name == name));
        Self { config, state }
    }

    /// The state to persist.
    pub fn state(&self) -> &TimelineState {
        &self.state
    }

    fn ack(
        &self,
        command_id: u64,
        event_id: &str,
        state: AckState,
        reason: Option<String>,
        now: i64,
    ) -> CommandAck {
        CommandAck {
            ven_id: self.config.ven_id.clone(),
            command_id,
            event_id: object_id(event_id),
            state,
            at: Timestamp::from_unix_ms(now).unwrap_or(Timestamp::NOW_SENTINEL),
            reason: reason.map(|r| truncate(r, gridlink_protocol::command::MAX_REASON_LEN)),
        }
    }

    /// Handles a command at `now` (ms). `random` draws the randomizeStart
    /// offset; `opted_out` are loads the settings keep out of DR. Returns
    /// the acknowledgements, `received` first.
    pub fn command(
        &mut self,
        command: &Command,
        now: i64,
        random: u64,
        opted_out: &BTreeSet<String>,
    ) -> Vec<CommandAck> {
        let id = command.action.event_id().as_str().to_string();
        let cid = command.command_id;
        let known = self
            .state
            .events
            .get(&id)
            .map(|e| e.command_id)
            .into_iter()
            .chain(self.state.finished.get(&id).copied())
            .max();
        if let Some(known) = known
            && known >= cid
        {
            return vec![self.ack(
                cid,
                &id,
                AckState::Received,
                Some(format!(
                    "ignored: command {cid} is not newer than command {known} for this event"
                )),
                now,
            )];
        }
        let mut acks = vec![self.ack(cid, &id, AckState::Received, None, now)];
        match &command.action {
            CommandAction::Cancel { .. } => {
                let reason = if self.state.events.remove(&id).is_some() {
                    None
                } else {
                    Some("event not known to this VEN".to_string())
                };
                self.finish(&id, cid);
                acks.push(self.ack(cid, &id, AckState::Cancelled, reason, now));
            }
            CommandAction::Event(event) => {
                self.schedule(event, &id, cid, now, random, opted_out, &mut acks);
            }
        }
        acks
    }

    /// The `Event` part of [`command`](Self::command): expiry, opt-out,
    /// bounds, then the event on the timeline.
    #[expect(
        clippy::too_many_arguments,
        reason = "the command's parts, the clock, the draw and the settings"
    )]
    fn schedule(
        &mut self,
        event: &Event,
        id: &str,
        cid: u64,
        now: i64,
        random: u64,
        opted_out: &BTreeSet<String>,
        acks: &mut Vec<CommandAck>,
    ) {
        let windows = windows(event, now, 0);
        let nominal_end = windows.iter().map(|w| w.1).max().flatten();
        let any_infinite = windows.iter().any(|w| w.1.is_none());
        if !any_infinite && nominal_end.is_some_and(|end| end <= now) {
            self.state.events.remove(id);
            self.finish(id, cid);
            let end = Timestamp::from_unix_ms(nominal_end.unwrap_or(now))
                .unwrap_or(Timestamp::NOW_SENTINEL);
            let at = Timestamp::from_unix_ms(now).unwrap_or(Timestamp::NOW_SENTINEL);
            acks.push(self.ack(
                cid,
                id,
                AckState::Failed,
                Some(format!(
                    "expired: the event ended at {end}, before it arrived at {at}"
                )),
                now,
            ));
            return;
        }
        if let Err(reason) = self.affects_any(event, opted_out) {
            self.state.events.remove(id);
            self.finish(id, cid);
            acks.push(self.ack(cid, id, AckState::OptedOut, Some(reason), now));
            return;
        }
        let range = event
            .interval_period
            .and_then(|p| p.randomize_start)
            .and_then(IsoDuration::millis)
            .unwrap_or(0);
        if !self.state.events.contains_key(id) && self.state.events.len() >= MAX_EVENTS {
            self.finish(id, cid);
            acks.push(self.ack(
                cid,
                id,
                AckState::Failed,
                Some(format!(
                    "too many events: {MAX_EVENTS} are scheduled or active already"
                )),
                now,
            ));
            return;
        }
        let previous = self.state.events.remove(id);
        // A start of "now" stays when it was first received.
        let received_ms = previous.as_ref().map_or(now, |p| p.received_ms);
        let offset_ms = match &previous {
            Some(p) if p.offset_ms <= range => p.offset_ms,
            _ => random % range.saturating_add(1).max(1),
        };
        let (capacity_shed, capacity_changed_ms) = previous
            .map(|p| (p.capacity_shed, p.capacity_changed_ms))
            .unwrap_or_default();
        let entry = EventEntry {
            command_id: cid,
            event: event.clone(),
            received_ms,
            offset_ms,
            phase: EventPhase::Scheduled,
            capacity_shed,
            capacity_changed_ms,
        };
        self.state.events.insert(id.to_string(), entry);
        acks.push(self.ack(cid, id, AckState::Scheduled, None, now));
    }

    fn finish(&mut self, id: &str, command_id: u64) {
        let slot = self.state.finished.entry(id.to_string()).or_default();
        *slot = (*slot).max(command_id);
        while self.state.finished.len() > MAX_FINISHED {
            let oldest = self
                .state
                .finished
                .iter()
                .min_by_key(|(_, c)| **c)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.state.finished.remove(&k),
                None => break,
            };
        }
    }

    /// Ok if the event would act on at least one participating load, or why not.
    fn affects_any(&self, event: &Event, opted_out: &BTreeSet<String>) -> Result<(), String> {
        let participating: Vec<&LoadSpec> = self
            .config
            .loads
            .iter()
            .filter(|l| !l.never_switch && !opted_out.contains(&l.name))
            .collect();
        let mut unknown: BTreeSet<String> = BTreeSet::new();
        let mut actionable = false;
        let mut affected = false;
        for map in event.intervals.iter().flat_map(|i| &i.payloads) {
            match (&map.payload_type, map.values.first()) {
                (PayloadType::Simple, Some(PayloadValue::Integer(level))) => {
                    actionable = true;
                    // Level 0 sheds nothing but governs the coil loads
                    // (it overrides lower-priority events).
                    affected |= participating.iter().any(|l| {
                        l.has_coil && (*level == 0 || i64::from(l.simple_level) <= *level)
                    });
                }
                (PayloadType::ImportCapacityLimit, Some(_)) if self.config.has_site_meter => {
                    actionable = true;
                    affected |= participating.iter().any(|l| l.has_coil);
                }
                (PayloadType::DispatchSetpoint, Some(_)) => {
                    actionable = true;
                    affected |= participating.iter().any(|l| l.setpoint_scale.is_some());
                }
                (PayloadType::ImportCapacityLimit, _) => {
                    unknown.insert("IMPORT_CAPACITY_LIMIT (no dr.site_meter configured)".into());
                }
                (other, _) => {
                    unknown.insert(other.as_str().to_string());
                }
            }
        }
        if !actionable {
            return Err(if unknown.is_empty() {
                "the event has no payload".to_string()
            } else {
                format!(
                    "payload types not acted on by this agent: {}",
                    unknown.into_iter().collect::<Vec<_>>().join(", ")
                )
            });
        }
        if !affected {
            return Err("no participating load is affected".to_string());
        }
        Ok(())
    }

    /// Advances time to `now` (ms): starts and ends events, runs the
    /// capacity loop with the latest site import `(timestamp ms, W)`, and
    /// applies the shed limit (`max_shed_ms` from the settings, at most the
    /// configured hard limit). Returns the acknowledgements.
    pub fn tick(
        &mut self,
        now: i64,
        import: Option<(i64, f64)>,
        max_shed_ms: u64,
        opted_out: &BTreeSet<String>,
    ) -> Vec<CommandAck> {
        let mut acks = Vec::new();
        let ids: Vec<String> = self.state.events.keys().cloned().collect();
        for id in ids {
            let Some(entry) = self.state.events.get(&id) else {
                continue;
            };
            let (start, end) = span(entry);
            let cid = entry.command_id;
            if end.is_some_and(|end| now >= end) {
                self.state.events.remove(&id);
                self.finish(&id, cid);
                acks.push(self.ack(cid, &id, AckState::Completed, None, now));
            } else if entry.phase == EventPhase::Scheduled && now >= start {
                if let Some(e) = self.state.events.get_mut(&id) {
                    e.phase = EventPhase::Active;
                }
                acks.push(self.ack(cid, &id, AckState::Active, None, now));
            }
        }
        self.capacity_loop(now, import, opted_out);
        let limit = max_shed_ms.min(self.config.max_shed_ms);
        for memory in self.state.loads.values_mut() {
            if let Some(since) = memory.shed_since_ms
                && now.saturating_sub(since) >= i64::try_from(limit).unwrap_or(i64::MAX)
            {
                memory.released = true;
            }
        }
        acks
    }

    fn capacity_loop(
        &mut self,
        now: i64,
        import: Option<(i64, f64)>,
        opted_out: &BTreeSet<String>,
    ) {
        let Some((ts, import_w)) = import else { return };
        let ids: Vec<String> = self.state.events.keys().cloned().collect();
        for id in ids {
            let Some(entry) = self.state.events.get(&id) else {
                continue;
            };
            if entry.phase != EventPhase::Active || ts <= entry.capacity_changed_ms {
                continue;
            }
            let Some(limit_kw) = current_payload(entry, now, &PayloadType::ImportCapacityLimit)
                .and_then(PayloadValue::as_f64)
            else {
                continue;
            };
            let cap_w = limit_kw * 1000.0;
            // The loads this event governs on the coil channel, shedding order.
            let mut governed: Vec<&LoadSpec> = self
                .config
                .loads
                .iter()
                .filter(|l| {
                    self.governing(l, now, opted_out, true)
                        .is_some_and(|(gid, _)| gid == id)
                })
                .collect();
            governed.sort_by_key(|l| l.priority);
            let shed = entry.capacity_shed.clone();
            let mut new_shed = shed.clone();
            if import_w > cap_w {
                let mut expected = import_w;
                for load in governed.iter().filter(|l| !shed.contains(&l.name)) {
                    let memory = self.state.loads.get(&load.name);
                    if memory.is_some_and(|m| m.released || m.on == Some(false)) {
                        continue;
                    }
                    expected -= self.power_of(load);
                    new_shed.push(load.name.clone());
                    if expected <= cap_w {
                        break;
                    }
                }
            } else if let Some(last) = shed.last()
                && let Some(load) = self.config.loads.iter().find(|l| &l.name == last)
                && import_w + self.power_of(load) <= cap_w - self.config.restore_hysteresis_w
            {
                new_shed.pop();
            }
            if new_shed != shed
                && let Some(e) = self.state.events.get_mut(&id)
            {
                e.capacity_shed = new_shed;
                e.capacity_changed_ms = now;
            }
        }
    }

    fn power_of(&self, load: &LoadSpec) -> f64 {
        self.state
            .loads
            .get(&load.name)
            .and_then(|m| m.power_w)
            .filter(|p| *p > 0.0)
            .unwrap_or(load.rated_power_w)
    }

    /// The event governing `load` on the coil (`coil = true`) or setpoint
    /// channel at `now`, and its demand.
    fn governing(
        &self,
        load: &LoadSpec,
        now: i64,
        opted_out: &BTreeSet<String>,
        coil: bool,
    ) -> Option<(String, Demand)> {
        if load.never_switch || opted_out.contains(&load.name) {
            return None;
        }
        if coil && !load.has_coil || !coil && load.setpoint_scale.is_none() {
            return None;
        }
        let mut active: Vec<(&String, &EventEntry)> = self
            .state
            .events
            .iter()
            .filter(|(_, e)| e.phase == EventPhase::Active)
            .collect();
        active.sort_by_key(|(id, e)| {
            (
                e.event.priority.unwrap_or(u32::MAX),
                span(e).0,
                (*id).clone(),
            )
        });
        for (id, entry) in active {
            let Some(interval) = current_interval(entry, now) else {
                continue;
            };
            for map in &interval.payloads {
                let value = map.values.first();
                let demand = match (&map.payload_type, value, coil) {
                    (PayloadType::Simple, Some(PayloadValue::Integer(level)), true) => Some(
                        Demand::Shed(*level > 0 && i64::from(load.simple_level) <= *level),
                    ),
                    (PayloadType::ImportCapacityLimit, Some(_), true)
                        if self.config.has_site_meter =>
                    {
                        Some(Demand::Shed(entry.capacity_shed.contains(&load.name)))
                    }
                    (PayloadType::DispatchSetpoint, Some(v), false) => v.as_f64().map(|v| {
                        let scale = load.setpoint_scale.unwrap_or(1.0);
                        Demand::Setpoint((v / scale).round().clamp(0.0, f64::from(u16::MAX)) as u16)
                    }),
                    _ => None,
                };
                if let Some(demand) = demand {
                    return Some((id.clone(), demand));
                }
            }
        }
        None
    }

    /// The writes needed now to bring every load where the events want it.
    /// Records baselines before the first change of a load, so persist the
    /// state after this and before the writes.
    pub fn plan(&mut self, now: i64, opted_out: &BTreeSet<String>) -> Vec<Action> {
        let mut actions = Vec::new();
        let loads = self.config.loads.clone();
        for load in &loads {
            let coil = self.governing(load, now, opted_out, true);
            let setpoint = self.governing(load, now, opted_out, false);
            let Some(memory) = self.state.loads.get_mut(&load.name) else {
                continue;
            };
            // Coil channel.
            let wants_shed = matches!(coil, Some((_, Demand::Shed(true))));
            if !wants_shed {
                memory.released = false;
            }
            match coil {
                Some((event, Demand::Shed(true))) if !memory.released => {
                    if memory.baseline_on.is_none() {
                        memory.baseline_on = Some(memory.on.unwrap_or(true));
                    }
                    memory.coil_event = Some(event.clone());
                    if memory.on != Some(false) {
                        actions.push(Action {
                            load: load.name.clone(),
                            write: Write::Coil(false),
                            cause: LoadChangeCause::Event {
                                event_id: object_id(&event),
                            },
                        });
                    }
                }
                _ => {
                    if let Some(baseline) = memory.baseline_on {
                        if memory.on == Some(baseline) {
                            memory.baseline_on = None;
                            memory.shed_since_ms = None;
                        } else {
                            actions.push(Action {
                                load: load.name.clone(),
                                write: Write::Coil(baseline),
                                cause: LoadChangeCause::Restore {
                                    event_id: object_id(
                                        memory.coil_event.as_deref().unwrap_or("unknown"),
                                    ),
                                },
                            });
                        }
                    }
                }
            }
            // Setpoint channel.
            match setpoint {
                Some((event, Demand::Setpoint(value))) => {
                    if memory.baseline_setpoint.is_none()
                        && let Some(current) = memory.setpoint
                    {
                        memory.baseline_setpoint = Some(current);
                    }
                    memory.setpoint_event = Some(event.clone());
                    if memory.setpoint != Some(value) {
                        actions.push(Action {
                            load: load.name.clone(),
                            write: Write::Setpoint(value),
                            cause: LoadChangeCause::Event {
                                event_id: object_id(&event),
                            },
                        });
                    }
                }
                _ => {
                    if let Some(baseline) = memory.baseline_setpoint {
                        if memory.setpoint == Some(baseline) {
                            memory.baseline_setpoint = None;
                        } else {
                            actions.push(Action {
                                load: load.name.clone(),
                                write: Write::Setpoint(baseline),
                                cause: LoadChangeCause::Restore {
                                    event_id: object_id(
                                        memory.setpoint_event.as_deref().unwrap_or("unknown"),
                                    ),
                                },
                            });
                        }
                    }
                }
            }
        }
        actions
    }

    /// A write of [`plan`](Self::plan) succeeded at `now`.
    pub fn write_done(&mut self, action: &Action, now: i64) {
        let Some(memory) = self.state.loads.get_mut(&action.load) else {
            return;
        };
        match action.write {
            Write::Coil(on) => {
                memory.on = Some(on);
                if on {
                    memory.shed_since_ms = None;
                    if memory.baseline_on == Some(true) {
                        memory.baseline_on = None;
                    }
                } else if memory.shed_since_ms.is_none() {
                    memory.shed_since_ms = Some(now);
                }
                if matches!(action.cause, LoadChangeCause::Restore { .. }) {
                    memory.baseline_on = None;
                    memory.shed_since_ms = None;
                }
            }
            Write::Setpoint(value) => {
                memory.setpoint = Some(value);
                if matches!(action.cause, LoadChangeCause::Restore { .. }) {
                    memory.baseline_setpoint = None;
                }
            }
        }
        memory.last_change_ms = Some(now);
        memory.cause = Some(action.cause.clone());
    }

    /// A write of [`plan`](Self::plan) failed after its retries. A failed
    /// change for an event ends that event with `failed` (its other loads
    /// are restored); a failed restore is retried at the next plan.
    pub fn write_failed(&mut self, action: &Action, reason: &str, now: i64) -> Vec<CommandAck> {
        let LoadChangeCause::Event { event_id } = &action.cause else {
            return Vec::new();
        };
        if let Some(memory) = self.state.loads.get_mut(&action.load) {
            // Nothing changed on this load: nothing to restore.
            match action.write {
                Write::Coil(_) if memory.on.is_none() || memory.on == memory.baseline_on => {
                    memory.baseline_on = None;
                }
                Write::Setpoint(_)
                    if memory.setpoint.is_none() || memory.setpoint == memory.baseline_setpoint =>
                {
                    memory.baseline_setpoint = None;
                }
                _ => {}
            }
        }
        let id = event_id.as_str().to_string();
        let Some(entry) = self.state.events.remove(&id) else {
            return Vec::new();
        };
        self.finish(&id, entry.command_id);
        vec![self.ack(
            entry.command_id,
            &id,
            AckState::Failed,
            Some(format!("load {}: {reason}", action.load)),
            now,
        )]
    }

    /// The state of a load read from its device at start (`None`: unknown).
    pub fn observed(&mut self, load: &str, on: Option<bool>, setpoint: Option<u16>, now: i64) {
        if let Some(memory) = self.state.loads.get_mut(load) {
            if on.is_some() {
                memory.on = on;
            }
            if setpoint.is_some() {
                memory.setpoint = setpoint;
            }
            if memory.cause.is_none() {
                memory.cause = Some(LoadChangeCause::Startup);
                memory.last_change_ms = Some(now);
            }
        }
    }

    /// The relay state read from a load while running: a change DR did
    /// not make is recorded with cause `external` (and undone at the next
    /// plan if an event governs the load).
    pub fn external(&mut self, load: &str, on: bool, now: i64) {
        if let Some(memory) = self.state.loads.get_mut(load)
            && memory.on.is_some_and(|known| known != on)
        {
            memory.on = Some(on);
            memory.last_change_ms = Some(now);
            memory.cause = Some(LoadChangeCause::External);
        }
    }

    /// The measured power of a load, W.
    pub fn set_power(&mut self, load: &str, power_w: Option<f64>) {
        if let Some(memory) = self.state.loads.get_mut(load) {
            memory.power_w = power_w.filter(|p| p.is_finite());
        }
    }

    /// Every load as a snapshot entry.
    pub fn load_states(&self) -> Vec<LoadState> {
        self.config
            .loads
            .iter()
            .map(|spec| {
                let memory = self
                    .state
                    .loads
                    .get(&spec.name)
                    .cloned()
                    .unwrap_or_default();
                let on = memory.on.unwrap_or(true);
                LoadState {
                    name: spec.name.clone(),
                    on,
                    power_w: memory
                        .power_w
                        .or(Some(if on { spec.rated_power_w } else { 0.0 })),
                    setpoint: memory
                        .setpoint
                        .zip(spec.setpoint_scale)
                        .map(|(raw, scale)| f64::from(raw) * scale),
                    controllable: !spec.never_switch,
                    last_change: memory
                        .last_change_ms
                        .and_then(|ms| Timestamp::from_unix_ms(ms).ok()),
                    cause: memory.cause.unwrap_or(LoadChangeCause::Startup),
                }
            })
            .collect()
    }

    /// Ids of active and of scheduled events.
    pub fn event_ids(&self) -> (Vec<String>, Vec<String>) {
        let mut active = Vec::new();
        let mut scheduled = Vec::new();
        for (id, e) in &self.state.events {
            match e.phase {
                EventPhase::Active => active.push(id.clone()),
                EventPhase::Scheduled => scheduled.push(id.clone()),
            }
        }
        (active, scheduled)
    }

    /// Names of the loads DR holds shed now.
    pub fn shed_loads(&self) -> Vec<String> {
        self.state
            .loads
            .iter()
            .filter(|(_, m)| m.shed_since_ms.is_some() && m.on == Some(false))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// True if any event is active or scheduled.
    pub fn busy(&self) -> bool {
        !self.state.events.is_empty()
    }
}

/// Event ids here all came from an `ObjectId`, so they pass its check;
/// the fallback only keeps this total.
fn object_id(id: &str) -> ObjectId {
    ObjectId::new(id)
        .or_else(|_| ObjectId::new("unknown"))
        .unwrap_or_else(|_| unreachable!("\"unknown\" is a valid object id"))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Each interval's window `(start, end)` in ms (`None` end: no end), with
/// `offset` added; a start of "now" is `received`. An interval without its
/// own start follows the previous one.
fn windows(event: &Event, received: i64, offset: u64) -> Vec<(i64, Option<i64>)> {
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let mut out = Vec::with_capacity(event.intervals.len());
    let mut previous_end: Option<Option<i64>> = None;
    for interval in &event.intervals {
        let own = interval.interval_period;
        let base = event.interval_period;
        let resolve = |t: Timestamp| if t.is_now() { received } else { t.unix_ms() };
        let start = match (own.and_then(|p| p.start), previous_end) {
            (Some(s), _) => resolve(s),
            (None, Some(Some(end))) => end,
            (None, _) => base.and_then(|p| p.start).map_or(received, resolve),
        };
        let duration = own
            .and_then(|p| p.duration)
            .or_else(|| base.and_then(|p| p.duration));
        let end = duration
            .and_then(IsoDuration::millis)
            .map(|ms| start.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
        previous_end = Some(end);
        out.push((
            start.saturating_add(offset),
            end.map(|e| e.saturating_add(offset)),
        ));
    }
    out
}

/// The event's start and end (`None`: no end), offset included.
fn span(entry: &EventEntry) -> (i64, Option<i64>) {
    let w = windows(&entry.event, entry.received_ms, entry.offset_ms);
    let start = w.iter().map(|w| w.0).min().unwrap_or(entry.received_ms);
    let end = if w.iter().any(|w| w.1.is_none()) {
        None
    } else {
        w.iter().filter_map(|w| w.1).max()
    };
    (start, end)
}

fn current_interval(entry: &EventEntry, now: i64) -> Option<&Interval> {
    let w = windows(&entry.event, entry.received_ms, entry.offset_ms);
    entry
        .event
        .intervals
        .iter()
        .zip(w)
        .find(|(_, (start, end))| now >= *start && end.is_none_or(|e| now < e))
        .map(|(i, _)| i)
}

fn current_payload<'a>(
    entry: &'a EventEntry,
    now: i64,
    ty: &PayloadType,
) -> Option<&'a PayloadValue> {
    current_interval(entry, now)?
        .payloads
        .iter()
        .find(|m| &m.payload_type == ty)
        .and_then(|m| m.values.first())
}

#[cfg(test)]
mod tests {
    use gridlink_protocol::openadr::{IntervalPeriod, ValuesMap};
    use gridlink_protocol::{IsoDuration, VenId};

    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn spec(name: &str, priority: u32, level: u8) -> LoadSpec {
        LoadSpec {
            name: name.into(),
            has_coil: true,
            setpoint_scale: None,
            rated_power_w: 1000.0,
            priority,
            simple_level: level,
            never_switch: false,
        }
    }

    fn timeline(loads: Vec<LoadSpec>) -> Timeline {
        let mut t = Timeline::new(
            TimelineConfig {
                ven_id: VenId::new("ven-1").unwrap(),
                loads,
                max_shed_ms: 3_600_000,
                restore_hysteresis_w: 500.0,
                has_site_meter: true,
            },
            TimelineState::default(),
        );
        let names: Vec<String> = t.config.loads.iter().map(|l| l.name.clone()).collect();
        for name in names {
            t.observed(&name, Some(true), Some(100), T0 - 10_000);
        }
        t
    }

    fn event(id: &str, start: i64, secs: u64, payload: (PayloadType, PayloadValue)) -> Event {
        Event {
            id: ObjectId::new(id).unwrap(),
            program_id: ObjectId::new("p").unwrap(),
            event_name: None,
            priority: None,
            targets: Vec::new(),
            payload_descriptors: Vec::new(),
            interval_period: Some(IntervalPeriod {
                start: Some(Timestamp::from_unix_ms(start).unwrap()),
                duration: Some(IsoDuration::from_secs(secs)),
                randomize_start: None,
            }),
            intervals: vec![Interval {
                id: 0,
                interval_period: None,
                payloads: vec![ValuesMap {
                    payload_type: payload.0,
                    values: vec![payload.1],
                }],
            }],
        }
    }

    fn simple(id: &str, start: i64, secs: u64, level: i64) -> Event {
        event(
            id,
            start,
            secs,
            (PayloadType::Simple, PayloadValue::Integer(level)),
        )
    }

    fn cmd(command_id: u64, event: Event) -> Command {
        Command {
            ven_id: VenId::new("ven-1").unwrap(),
            command_id,
            issued_at: Timestamp::from_unix_ms(T0).unwrap(),
            action: CommandAction::Event(event),
        }
    }

    fn cancel(command_id: u64, id: &str) -> Command {
        Command {
            ven_id: VenId::new("ven-1").unwrap(),
            command_id,
            issued_at: Timestamp::from_unix_ms(T0).unwrap(),
            action: CommandAction::Cancel {
                event_id: ObjectId::new(id).unwrap(),
            },
        }
    }

    fn states(acks: &[CommandAck]) -> Vec<AckState> {
        acks.iter().map(|a| a.state).collect()
    }

    /// Runs tick + plan and applies every write as successful; returns the
    /// acks and the writes.
    fn step(t: &mut Timeline, now: i64, import: Option<f64>) -> (Vec<CommandAck>, Vec<Action>) {
        let none = BTreeSet::new();
        let acks = t.tick(now, import.map(|w| (now, w)), u64::MAX, &none);
        let actions = t.plan(now, &none);
        for a in &actions {
            t.write_done(a, now);
        }
        (acks, actions)
    }

    fn coil(load: &str, on: bool) -> (String, Write) {
        (load.to_string(), Write::Coil(on))
    }

    fn writes(actions: &[Action]) -> Vec<(String, Write)> {
        actions.iter().map(|a| (a.load.clone(), a.write)).collect()
    }

    #[test]
    fn simple_event_runs_through_its_states() {
        let mut t = timeline(vec![spec("a", 1, 1), spec("b", 2, 2), spec("c", 3, 3)]);
        let none = BTreeSet::new();
        let acks = t.command(&cmd(1, simple("e", T0 + 1000, 10, 2)), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Scheduled]);
        let (acks, w) = step(&mut t, T0 + 500, None);
        assert!(acks.is_empty() && w.is_empty());
        let (acks, w) = step(&mut t, T0 + 1000, None);
        assert_eq!(states(&acks), [AckState::Active]);
        assert_eq!(writes(&w), [coil("a", false), coil("b", false)]);
        assert_eq!(t.shed_loads(), ["a", "b"]);
        let (acks, w) = step(&mut t, T0 + 5000, None);
        assert!(acks.is_empty() && w.is_empty());
        let (acks, w) = step(&mut t, T0 + 11_000, None);
        assert_eq!(states(&acks), [AckState::Completed]);
        assert_eq!(writes(&w), [coil("a", true), coil("b", true)]);
        assert!(matches!(w[0].cause, LoadChangeCause::Restore { .. }));
        let (_, w) = step(&mut t, T0 + 12_000, None);
        assert!(w.is_empty());
        assert!(!t.busy());
    }

    #[test]
    fn overlapping_events_resolve_by_priority() {
        let mut t = timeline(vec![spec("a", 1, 1), spec("b", 2, 2)]);
        let none = BTreeSet::new();
        let mut low = simple("low", T0, 20, 2);
        low.priority = Some(5);
        let mut high = simple("high", T0 + 5000, 5, 0);
        high.priority = Some(1);
        t.command(&cmd(1, low), T0, 0, &none);
        t.command(&cmd(2, high), T0, 0, &none);
        let (_, w) = step(&mut t, T0, None);
        assert_eq!(writes(&w), [coil("a", false), coil("b", false)]);
        // The high-priority event (SIMPLE 0) governs both loads: restored.
        let (acks, w) = step(&mut t, T0 + 5000, None);
        assert_eq!(states(&acks), [AckState::Active]);
        assert_eq!(writes(&w), [coil("a", true), coil("b", true)]);
        // It ends; the low-priority one applies again.
        let (acks, w) = step(&mut t, T0 + 10_000, None);
        assert_eq!(states(&acks), [AckState::Completed]);
        assert_eq!(acks[0].event_id.as_str(), "high");
        assert_eq!(writes(&w), [coil("a", false), coil("b", false)]);
        let (acks, w) = step(&mut t, T0 + 20_000, None);
        assert_eq!(states(&acks), [AckState::Completed]);
        assert_eq!(writes(&w), [coil("a", true), coil("b", true)]);
    }

    #[test]
    fn an_update_replaces_and_an_older_command_is_ignored() {
        let mut t = timeline(vec![spec("a", 1, 1), spec("b", 2, 3)]);
        let none = BTreeSet::new();
        t.command(&cmd(5, simple("e", T0, 60, 1)), T0, 0, &none);
        let (_, w) = step(&mut t, T0, None);
        assert_eq!(writes(&w), [coil("a", false)]);
        let acks = t.command(&cmd(7, simple("e", T0, 60, 3)), T0 + 1000, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Scheduled]);
        let (acks, w) = step(&mut t, T0 + 1000, None);
        assert_eq!(states(&acks), [AckState::Active]);
        assert_eq!(acks[0].command_id, 7);
        assert_eq!(writes(&w), [coil("b", false)]);
        // Older and equal command ids: acknowledged as received, ignored.
        for old in [6, 7] {
            let acks = t.command(&cmd(old, simple("e", T0, 60, 0)), T0 + 2000, 0, &none);
            assert_eq!(states(&acks), [AckState::Received]);
            assert!(acks[0].reason.as_deref().unwrap().starts_with("ignored:"));
        }
        let (_, w) = step(&mut t, T0 + 2000, None);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_restores_and_unknown_cancel_is_acknowledged() {
        let mut t = timeline(vec![spec("a", 1, 1)]);
        let none = BTreeSet::new();
        t.command(&cmd(1, simple("e", T0, 60, 1)), T0, 0, &none);
        step(&mut t, T0, None);
        let acks = t.command(&cancel(2, "e"), T0 + 1000, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Cancelled]);
        assert!(acks[1].reason.is_none());
        let (_, w) = step(&mut t, T0 + 1000, None);
        assert_eq!(writes(&w), [coil("a", true)]);
        // The event arriving late after its cancel is ignored.
        let acks = t.command(&cmd(1, simple("e", T0, 60, 1)), T0 + 2000, 0, &none);
        assert_eq!(states(&acks), [AckState::Received]);
        let acks = t.command(&cancel(3, "nope"), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Cancelled]);
        assert!(acks[1].reason.is_some());
    }

    #[test]
    fn randomize_start_offset_is_bounded_and_kept() {
        for random in [0, 1, 299_999, 300_000, 300_001, u64::MAX] {
            let mut t = timeline(vec![spec("a", 1, 1)]);
            let none = BTreeSet::new();
            let mut e = simple("e", T0 + 1000, 600, 1);
            e.interval_period.as_mut().unwrap().randomize_start = Some(IsoDuration::from_secs(300));
            t.command(&cmd(1, e.clone()), T0, random, &none);
            let offset = t.state().events["e"].offset_ms;
            assert!(offset <= 300_000, "{random}: {offset}");
            assert_eq!(offset, random % 300_001);
            // An update keeps the offset drawn first.
            t.command(&cmd(2, e), T0, random.wrapping_add(12_345), &none);
            assert_eq!(t.state().events["e"].offset_ms, offset);
            // Nothing before the start plus the offset.
            let start = T0 + 1000 + i64::try_from(offset).unwrap();
            let (acks, _) = step(&mut t, start - 1, None);
            assert!(acks.is_empty());
            let (acks, _) = step(&mut t, start, None);
            assert_eq!(states(&acks), [AckState::Active]);
        }
    }

    #[test]
    fn an_expired_event_fails_and_touches_nothing() {
        let mut t = timeline(vec![spec("a", 1, 1)]);
        let none = BTreeSet::new();
        let acks = t.command(&cmd(1, simple("e", T0 - 20_000, 10, 3)), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Failed]);
        assert!(acks[1].reason.as_deref().unwrap().starts_with("expired:"));
        let (acks, w) = step(&mut t, T0, None);
        assert!(acks.is_empty() && w.is_empty());
    }

    #[test]
    fn payloads_not_acted_on_and_unaffected_loads_opt_out() {
        let mut t = timeline(vec![spec("a", 1, 2)]);
        let none = BTreeSet::new();
        let price = event("p", T0, 60, (PayloadType::Price, PayloadValue::Number(0.3)));
        let acks = t.command(&cmd(1, price), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::OptedOut]);
        assert!(acks[1].reason.as_deref().unwrap().contains("PRICE"));
        let acks = t.command(&cmd(2, simple("s", T0, 60, 1)), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::OptedOut]);
        assert_eq!(
            acks[1].reason.as_deref(),
            Some("no participating load is affected")
        );
        let opted: BTreeSet<String> = ["a".to_string()].into();
        let acks = t.command(&cmd(3, simple("s2", T0, 60, 3)), T0, 0, &opted);
        assert_eq!(states(&acks), [AckState::Received, AckState::OptedOut]);
    }

    #[test]
    fn never_switch_loads_are_untouched() {
        let mut never = spec("n", 0, 1);
        never.never_switch = true;
        let mut t = timeline(vec![never, spec("a", 1, 1)]);
        let none = BTreeSet::new();
        t.command(&cmd(1, simple("e", T0, 10, 3)), T0, 0, &none);
        let (_, w) = step(&mut t, T0, None);
        assert_eq!(writes(&w), [coil("a", false)]);
    }

    #[test]
    fn max_shed_restores_and_the_event_continues() {
        let mut t = timeline(vec![spec("a", 1, 1), spec("b", 2, 1)]);
        let none = BTreeSet::new();
        t.command(&cmd(1, simple("e", T0, 100, 1)), T0, 0, &none);
        let acks = t.tick(T0, None, 30_000, &none);
        assert_eq!(states(&acks), [AckState::Active]);
        for a in t.plan(T0, &none) {
            t.write_done(&a, T0);
        }
        // The settings' shed limit (30 s) is below the hard limit (1 h).
        assert!(t.tick(T0 + 30_000, None, 30_000, &none).is_empty());
        let w = t.plan(T0 + 30_000, &none);
        assert_eq!(writes(&w), [coil("a", true), coil("b", true)]);
        assert!(matches!(w[0].cause, LoadChangeCause::Restore { .. }));
        for a in &w {
            t.write_done(a, T0 + 30_000);
        }
        // Still active, but not shed again.
        assert!(t.tick(T0 + 40_000, None, 30_000, &none).is_empty());
        assert!(t.plan(T0 + 40_000, &none).is_empty());
        assert_eq!(t.event_ids().0, ["e"]);
        let acks = t.tick(T0 + 100_000, None, 30_000, &none);
        assert_eq!(states(&acks), [AckState::Completed]);
    }

    #[test]
    fn capacity_limit_sheds_in_priority_order_and_restores_with_hysteresis() {
        let mut t = timeline(vec![spec("c", 3, 1), spec("a", 1, 1), spec("b", 2, 1)]);
        let none = BTreeSet::new();
        let limit = event(
            "cap",
            T0,
            100,
            (PayloadType::ImportCapacityLimit, PayloadValue::Number(5.0)),
        );
        t.command(&cmd(1, limit), T0, 0, &none);
        // 6.5 kW: two loads of 1 kW bring it under 5 kW.
        let (_, w) = step(&mut t, T0, Some(6500.0));
        assert_eq!(writes(&w), [coil("a", false), coil("b", false)]);
        // A reading not newer than the change is not used.
        let acks = t.tick(T0 + 500, Some((T0, 9000.0)), u64::MAX, &none);
        assert!(acks.is_empty());
        assert!(t.plan(T0 + 500, &none).is_empty());
        // 4.2 kW: restoring b (1 kW) would give 5.2 > 4.5: keep.
        let (_, w) = step(&mut t, T0 + 1000, Some(4200.0));
        assert!(w.is_empty());
        // 3.4 kW: 4.4 <= 4.5: restore the last shed (b) first.
        let (_, w) = step(&mut t, T0 + 2000, Some(3400.0));
        assert_eq!(writes(&w), [coil("b", true)]);
        let (_, w) = step(&mut t, T0 + 3000, Some(3400.0));
        assert_eq!(writes(&w), [coil("a", true)]);
        let (acks, _) = step(&mut t, T0 + 100_000, Some(3400.0));
        assert_eq!(states(&acks), [AckState::Completed]);
    }

    #[test]
    fn a_failed_write_fails_the_event_and_restores_the_rest() {
        let mut t = timeline(vec![spec("a", 1, 1), spec("b", 2, 1)]);
        let none = BTreeSet::new();
        t.command(&cmd(1, simple("e", T0, 100, 1)), T0, 0, &none);
        t.tick(T0, None, u64::MAX, &none);
        let w = t.plan(T0, &none);
        t.write_done(&w[0], T0);
        let acks = t.write_failed(&w[1], "coil 1 write failed", T0);
        assert_eq!(states(&acks), [AckState::Failed]);
        assert_eq!(
            acks[0].reason.as_deref(),
            Some("load b: coil 1 write failed")
        );
        let (_, w) = step(&mut t, T0 + 1000, None);
        assert_eq!(writes(&w), [coil("a", true)]);
    }

    #[test]
    fn restart_resumes_running_events_and_completes_ended_ones() {
        let mut t = timeline(vec![spec("a", 1, 1), spec("b", 2, 2)]);
        let none = BTreeSet::new();
        t.command(&cmd(1, simple("short", T0, 10, 1)), T0, 0, &none);
        t.command(&cmd(2, simple("long", T0, 100, 2)), T0, 0, &none);
        step(&mut t, T0, None);
        assert_eq!(t.shed_loads(), ["a", "b"]);
        // Persisted, then the process dies; 20 s later it starts again and
        // finds the loads as they were left.
        let persisted = durable(&t);
        let mut t = Timeline::new(t.config.clone(), persisted);
        t.observed("a", Some(false), None, T0 + 20_000);
        t.observed("b", Some(false), None, T0 + 20_000);
        let (acks, w) = step(&mut t, T0 + 20_000, None);
        assert_eq!(states(&acks), [AckState::Completed]);
        assert_eq!(acks[0].event_id.as_str(), "short");
        // "long" still sheds both (SIMPLE 2): nothing to write.
        assert!(w.is_empty(), "{w:?}");
        // It ends while the agent is down again: restored at start.
        let persisted = durable(&t);
        let mut t = Timeline::new(t.config.clone(), persisted);
        t.observed("a", Some(false), None, T0 + 200_000);
        t.observed("b", Some(false), None, T0 + 200_000);
        let (acks, w) = step(&mut t, T0 + 200_000, None);
        assert_eq!(states(&acks), [AckState::Completed]);
        assert_eq!(writes(&w), [coil("a", true), coil("b", true)]);
    }

    #[test]
    fn dispatch_setpoint_writes_and_restores_the_previous_setpoint() {
        let mut dial = spec("dial", 1, 1);
        dial.has_coil = false;
        dial.setpoint_scale = Some(0.5);
        let mut t = timeline(vec![dial, spec("relay", 2, 1)]);
        let none = BTreeSet::new();
        let e = event(
            "sp",
            T0,
            10,
            (PayloadType::DispatchSetpoint, PayloadValue::Number(20.0)),
        );
        let acks = t.command(&cmd(1, e), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Scheduled]);
        let (_, w) = step(&mut t, T0, None);
        // 20 / 0.5 = 40 in the register; the relay-only load is not governed.
        assert_eq!(writes(&w), [("dial".to_string(), Write::Setpoint(40))]);
        assert_eq!(t.load_states()[0].setpoint, Some(20.0));
        let (acks, w) = step(&mut t, T0 + 10_000, None);
        assert_eq!(states(&acks), [AckState::Completed]);
        assert_eq!(writes(&w), [("dial".to_string(), Write::Setpoint(100))]);
        let (_, w) = step(&mut t, T0 + 11_000, None);
        assert!(w.is_empty());
    }

    #[test]
    fn an_external_change_is_reported_and_undone_during_an_event() {
        let mut t = timeline(vec![spec("a", 1, 1)]);
        let none = BTreeSet::new();
        t.command(&cmd(1, simple("e", T0, 60, 1)), T0, 0, &none);
        step(&mut t, T0, None);
        t.external("a", false, T0 + 500);
        assert!(matches!(
            t.load_states()[0].cause,
            LoadChangeCause::Event { .. }
        ));
        t.external("a", true, T0 + 1000);
        assert_eq!(t.load_states()[0].cause, LoadChangeCause::External);
        let (_, w) = step(&mut t, T0 + 1500, None);
        assert_eq!(writes(&w), [coil("a", false)]);
    }

    #[test]
    fn the_timeline_is_bounded() {
        let mut t = timeline(vec![spec("a", 1, 1)]);
        let none = BTreeSet::new();
        for i in 0..MAX_EVENTS {
            let id = format!("e{i}");
            let acks = t.command(
                &cmd(i as u64 + 1, simple(&id, T0 + 60_000, 10, 1)),
                T0,
                0,
                &none,
            );
            assert_eq!(states(&acks), [AckState::Received, AckState::Scheduled]);
        }
        let acks = t.command(&cmd(9999, simple("more", T0 + 60_000, 10, 1)), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Failed]);
        assert!(
            acks[1]
                .reason
                .as_deref()
                .unwrap()
                .starts_with("too many events")
        );
        // An update of a known event is still taken.
        let acks = t.command(&cmd(10_000, simple("e0", T0 + 60_000, 20, 1)), T0, 0, &none);
        assert_eq!(states(&acks), [AckState::Received, AckState::Scheduled]);
    }

    fn durable(t: &Timeline) -> TimelineState {
        let bytes = postcard::to_allocvec(t.state()).unwrap();
        postcard::from_bytes(&bytes).unwrap()
    }
}
