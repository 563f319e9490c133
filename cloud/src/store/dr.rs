//! Demand-response storage: OpenADR programs and events, VEN groups,
//! the per-VEN command counter, the command outbox and the VENs'
//! acknowledgements ([`DrStore`], a supertrait of [`Store`](super::Store)).
//!
//! # Durability of dispatch
//!
//! Creating, changing or deleting an event writes, in the SAME transaction,
//! the event, the VENs its targets resolved to, one command per VEN
//! (its id from `command_seq`, strictly increasing per VEN and never
//! reused) and those commands' encoded payloads in `command_outbox`. Once
//! the API answers, the commands are durable; `dispatch` publishes them and
//! marks each sent on the broker's PUBACK, and republishes whatever is
//! unsent after a restart or reconnect (so a VEN may get a command twice;
//! it recognises the `command_id`).
//!
//! # Targets
//!
//! A target string selects the VEN with that id, and every VEN of the group
//! with that name ([`DrStore::set_ven_groups`]). A target that selects no
//! VEN is refused by the API.

use std::future::Future;

use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Encoding, Event, ObjectId, Timestamp, VenId,
    encode,
};

use super::{AnyStore, StoreError};

/// Longest group name.
pub const MAX_GROUP_LEN: usize = 128;
/// Most groups per VEN.
pub const MAX_GROUPS: usize = 64;

/// A stored OpenADR program.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramRecord {
    /// Server-assigned id.
    pub id: ObjectId,
    /// `programName`, unique.
    pub name: String,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Last modification time, ms.
    pub modified_ms: i64,
    /// Its targets.
    pub targets: Vec<String>,
    /// The `programRequest` JSON as accepted.
    pub body: serde_json::Value,
}

/// What a program is created or replaced with.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramWrite {
    /// `programName`.
    pub name: String,
    /// Its targets.
    pub targets: Vec<String>,
    /// The `programRequest` JSON.
    pub body: serde_json::Value,
}

/// A stored OpenADR event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Server-assigned id.
    pub id: ObjectId,
    /// Its program.
    pub program_id: ObjectId,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Last modification time, ms.
    pub modified_ms: i64,
    /// Earliest interval start, ms (`None` if unknown).
    pub start_ms: Option<i64>,
    /// Latest interval end, ms (`None`: open-ended).
    pub end_ms: Option<i64>,
    /// `priority` (lower is more important).
    pub priority: Option<i64>,
    /// Its target strings.
    pub targets: Vec<String>,
    /// The VENs the targets resolve to (those sent the event), by id.
    pub vens: Vec<VenId>,
    /// The `eventRequest` JSON as accepted.
    pub body: serde_json::Value,
}

/// What an event is created or replaced with.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWrite {
    /// Its program (must exist).
    pub program_id: ObjectId,
    /// Earliest interval start, ms.
    pub start_ms: Option<i64>,
    /// Latest interval end, ms (`None`: open-ended).
    pub end_ms: Option<i64>,
    /// `priority`.
    pub priority: Option<i64>,
    /// Target strings.
    pub targets: Vec<String>,
    /// The VENs they resolve to ([`DrStore::resolve_targets`]).
    pub vens: Vec<VenId>,
    /// The `eventRequest` JSON.
    pub body: serde_json::Value,
    /// The event as sent to VENs (its `id` is replaced by the stored one).
    pub event: Event,
}

/// Filters of a program or event list (`GET /openadr3/3.1.0/events`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrFilter {
    /// Only events of this program.
    pub program_id: Option<ObjectId>,
    /// Only objects with at least one of these targets (empty: all).
    pub targets: Vec<String>,
    /// Only events not ended at this time, ms (`active=true`).
    pub active_at: Option<i64>,
    /// Objects skipped (ordered by creation, then id).
    pub skip: u32,
    /// Most objects returned.
    pub limit: u32,
}

/// A command waiting in (or read from) the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCommand {
    /// The VEN (topic `ven/cmd/{ven_id}`).
    pub ven_id: VenId,
    /// Its per-VEN id.
    pub command_id: u64,
    /// The encoded `Command` (postcard).
    pub payload: Vec<u8>,
}

/// One stored acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRecord {
    /// The VEN.
    pub ven_id: VenId,
    /// The command it acknowledged.
    pub command_id: u64,
    /// The step reached.
    pub state: AckState,
    /// When the VEN reached it, ms.
    pub at_ms: i64,
    /// Why (failed, opted out) or a note.
    pub reason: Option<String>,
    /// When the cloud received it, ms.
    pub received_ms: i64,
}

/// What [`DrStore::record_ack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Stored now.
    Stored,
    /// Already stored (a redelivery).
    Duplicate,
    /// The event does not exist or was never sent to this VEN: not stored.
    UnknownEvent,
}

/// Mean total active power of one VEN over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerMean {
    /// Mean of every `active_power` / `total` reading in the window, W.
    pub mean_w: f64,
    /// Readings averaged.
    pub readings: u64,
}

/// The demand-response storage operations (both backends).
pub trait DrStore {
    /// Stores a new program with server-assigned `id`.
    fn create_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> impl Future<Output = Result<ProgramRecord, StoreError>> + Send;
    /// Replaces a program; `None` if there is none with this id.
    fn update_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<ProgramRecord>, StoreError>> + Send;
    /// Deletes a program with no events (else [`StoreError::Conflict`]);
    /// `None` if there is none.
    fn delete_program(
        &self,
        id: &ObjectId,
    ) -> impl Future<Output = Result<Option<ProgramRecord>, StoreError>> + Send;
    /// One program.
    fn program(
        &self,
        id: &ObjectId,
    ) -> impl Future<Output = Result<Option<ProgramRecord>, StoreError>> + Send;
    /// Programs by creation time (uses `targets`, `skip`, `limit`).
    fn programs(
        &self,
        filter: &DrFilter,
    ) -> impl Future<Output = Result<Vec<ProgramRecord>, StoreError>> + Send;
    /// Replaces a VEN's groups, registering the VEN if it is unknown.
    fn set_ven_groups(
        &self,
        ven_id: &VenId,
        groups: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A VEN's groups, by name.
    fn ven_groups(
        &self,
        ven_id: &VenId,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// The VENs each target selects (a VEN id, or a group's members), in
    /// the order of `targets`, each list by id; empty for a target that
    /// selects nothing.
    fn resolve_targets(
        &self,
        targets: &[String],
    ) -> impl Future<Output = Result<Vec<Vec<VenId>>, StoreError>> + Send;
    /// Stores a new event and, in the same transaction, an `Event` command
    /// for each of its VENs in the outbox; returns both.
    fn create_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> impl Future<Output = Result<(EventRecord, Vec<OutboxCommand>), StoreError>> + Send;
    /// Replaces an event: its VENs get the new version, VENs no longer
    /// targeted get a `Cancel`, in the same transaction. `None` if there is
    /// no (undeleted) event with this id.
    fn update_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError>> + Send;
    /// Deletes an event: marks it deleted and queues a `Cancel` for each of
    /// its VENs, in one transaction. `None` if there is none.
    fn delete_event(
        &self,
        id: &ObjectId,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError>> + Send;
    /// One (undeleted) event.
    fn event(
        &self,
        id: &ObjectId,
    ) -> impl Future<Output = Result<Option<EventRecord>, StoreError>> + Send;
    /// Undeleted events by creation time, filtered.
    fn events(
        &self,
        filter: &DrFilter,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;
    /// Up to `limit` unsent commands, oldest first.
    fn unsent_commands(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OutboxCommand>, StoreError>> + Send;
    /// Marks commands sent (the broker acknowledged them).
    fn mark_sent(
        &self,
        sent: &[(VenId, u64)],
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores an acknowledgement if its event was sent to its VEN.
    fn record_ack(
        &self,
        ack: &CommandAck,
        received_ms: i64,
    ) -> impl Future<Output = Result<AckOutcome, StoreError>> + Send;
    /// Every acknowledgement of an event, by VEN then time.
    fn event_acks(
        &self,
        event_id: &ObjectId,
    ) -> impl Future<Output = Result<Vec<AckRecord>, StoreError>> + Send;
    /// Per VEN, the mean of its site meter's `active_power` / `total` raw
    /// readings with `from_ms <= ts < to_ms`. The site meter is the one
    /// registered ([`VenRegistration::site_meter`](super::VenRegistration));
    /// without one, the VEN's only `active_power` / `total` series. VENs
    /// without readings of it, and unregistered VENs with several such
    /// series (sub-meters: which one is the grid's is unknown), are left
    /// out: no measurement rather than a wrong one.
    fn site_power(
        &self,
        vens: &[VenId],
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<(VenId, PowerMean)>, StoreError>> + Send;
}

/// Checks group names: 1 to [`MAX_GROUP_LEN`] characters without control
/// characters, at most [`MAX_GROUPS`].
pub fn check_groups(groups: &[String]) -> Result<(), StoreError> {
    if groups.len() > MAX_GROUPS {
        return Err(StoreError::Invalid(format!(
            "{} groups; at most {MAX_GROUPS}",
            groups.len()
        )));
    }
    for g in groups {
        if g.is_empty() || g.chars().count() > MAX_GROUP_LEN || g.chars().any(char::is_control) {
            return Err(StoreError::Invalid(format!(
                "group {} must be 1 to {MAX_GROUP_LEN} characters without control characters",
                serde_json::to_string(g).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// Encodes the command with id `command_id` for `ven_id` (postcard).
pub(crate) fn encode_command(
    ven_id: &VenId,
    command_id: u64,
    now_ms: i64,
    action: CommandAction,
) -> Result<Vec<u8>, StoreError> {
    let issued_at = Timestamp::from_unix_ms(now_ms)
        .map_err(|e| StoreError::Invalid(format!("issue time: {e}")))?;
    let command = Command {
        ven_id: ven_id.clone(),
        command_id,
        issued_at,
        action,
    };
    encode(&command, Encoding::Postcard).map_err(|e| StoreError::Invalid(format!("command: {e}")))
}

/// The action for each VEN of a write: the event for `send`, a cancel for
/// `cancel`.
pub(crate) fn actions(
    id: &ObjectId,
    event: Option<&Event>,
    send: &[VenId],
    cancel: &[VenId],
) -> Vec<(VenId, CommandAction)> {
    let mut out = Vec::with_capacity(send.len() + cancel.len());
    if let Some(event) = event {
        let mut event = event.clone();
        event.id = id.clone();
        for ven in send {
            out.push((ven.clone(), CommandAction::Event(event.clone())));
        }
    }
    for ven in cancel {
        out.push((
            ven.clone(),
            CommandAction::Cancel {
                event_id: id.clone(),
            },
        ));
    }
    out
}

/// Parses a stored JSON text column.
pub(crate) fn json_column(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(format!("stored {what}: {e}")))
}

/// Parses a stored list of target strings.
pub(crate) fn targets_column(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(format!("stored targets: {e}")))
}

/// Parses a stored object id.
pub(crate) fn object_id(text: String) -> Result<ObjectId, StoreError> {
    ObjectId::new(text).map_err(|e| StoreError::Invalid(format!("stored object id: {e}")))
}

/// Parses a stored VEN id.
pub(crate) fn ven_id(text: &str) -> Result<VenId, StoreError> {
    VenId::new(text).map_err(|e| StoreError::Invalid(format!("stored VEN id: {e}")))
}

/// Parses a stored acknowledgement state.
pub(crate) fn ack_state(name: &str) -> Result<AckState, StoreError> {
    const ALL: [AckState; 7] = [
        AckState::Received,
        AckState::Scheduled,
        AckState::Active,
        AckState::Completed,
        AckState::Cancelled,
        AckState::OptedOut,
        AckState::Failed,
    ];
    ALL.into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| StoreError::Invalid(format!("stored ack state {name:?}")))
}

/// Splits the previous and new VEN sets of an event: (to send the event to,
/// to cancel at).
pub(crate) fn diff_vens(previous: &[VenId], next: &[VenId]) -> Vec<VenId> {
    previous
        .iter()
        .filter(|v| !next.contains(v))
        .cloned()
        .collect()
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Postgres($s) => $call.await,
            AnyStore::Sqlite($s) => $call.await,
        }
    };
}

impl DrStore for AnyStore {
    async fn create_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> Result<ProgramRecord, StoreError> {
        delegate!(self, s => s.create_program(id, program, now_ms))
    }
    async fn update_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> Result<Option<ProgramRecord>, StoreError> {
        delegate!(self, s => s.update_program(id, program, now_ms))
    }
    async fn delete_program(&self, id: &ObjectId) -> Result<Option<ProgramRecord>, StoreError> {
        delegate!(self, s => s.delete_program(id))
    }
    async fn program(&self, id: &ObjectId) -> Result<Option<ProgramRecord>, StoreError> {
        delegate!(self, s => s.program(id))
    }
    async fn programs(&self, filter: &DrFilter) -> Result<Vec<ProgramRecord>, StoreError> {
        delegate!(self, s => s.programs(filter))
    }
    async fn set_ven_groups(&self, ven_id: &VenId, groups: &[String]) -> Result<(), StoreError> {
        delegate!(self, s => s.set_ven_groups(ven_id, groups))
    }
    async fn ven_groups(&self, ven_id: &VenId) -> Result<Vec<String>, StoreError> {
        delegate!(self, s => s.ven_groups(ven_id))
    }
    async fn resolve_targets(&self, targets: &[String]) -> Result<Vec<Vec<VenId>>, StoreError> {
        delegate!(self, s => s.resolve_targets(targets))
    }
    async fn create_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> Result<(EventRecord, Vec<OutboxCommand>), StoreError> {
        delegate!(self, s => s.create_event(id, event, now_ms))
    }
    async fn update_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError> {
        delegate!(self, s => s.update_event(id, event, now_ms))
    }
    async fn delete_event(
        &self,
        id: &ObjectId,
        now_ms: i64,
    ) -> Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError> {
        delegate!(self, s => s.delete_event(id, now_ms))
    }
    async fn event(&self, id: &ObjectId) -> Result<Option<EventRecord>, StoreError> {
        delegate!(self, s => s.event(id))
    }
    async fn events(&self, filter: &DrFilter) -> Result<Vec<EventRecord>, StoreError> {
        delegate!(self, s => s.events(filter))
    }
    async fn unsent_commands(&self, limit: u32) -> Result<Vec<OutboxCommand>, StoreError> {
        delegate!(self, s => s.unsent_commands(limit))
    }
    async fn mark_sent(&self, sent: &[(VenId, u64)], now_ms: i64) -> Result<(), StoreError> {
        delegate!(self, s => s.mark_sent(sent, now_ms))
    }
    async fn record_ack(
        &self,
        ack: &CommandAck,
        received_ms: i64,
    ) -> Result<AckOutcome, StoreError> {
        delegate!(self, s => s.record_ack(ack, received_ms))
    }
    async fn event_acks(&self, event_id: &ObjectId) -> Result<Vec<AckRecord>, StoreError> {
        delegate!(self, s => s.event_acks(event_id))
    }
    async fn site_power(
        &self,
        vens: &[VenId],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(VenId, PowerMean)>, StoreError> {
        delegate!(self, s => s.site_power(vens, from_ms, to_ms))
    }
}

/// `.db()`: a sqlx result as a [`StoreError`] one, sorted by
/// [`classify`](super::classify).
pub(crate) trait SqlResult<T> {
    /// Converts the error.
    fn db(self) -> Result<T, StoreError>;
}

impl<T> SqlResult<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(super::classify)
    }
}

/// A list of strings as JSON text (for `json_each` / stored lists).
pub(crate) fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::Array(
        items
            .into_iter()
            .map(|s| serde_json::Value::String(s.to_owned()))
            .collect(),
    )
    .to_string()
}

/// Parses a stored JSON list of VEN ids.
pub(crate) fn vens_column(text: &str) -> Result<Vec<VenId>, StoreError> {
    let ids: Vec<String> = serde_json::from_str(text)
        .map_err(|e| StoreError::Invalid(format!("stored VEN list: {e}")))?;
    ids.iter().map(|s| ven_id(s)).collect()
}
