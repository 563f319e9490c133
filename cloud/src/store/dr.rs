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

use super::{AnyStore, Db, StoreError, Tx};

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
    /// Only objects without targets or with one of these (a VEN client's
    /// granted targets); `None`: no such restriction.
    pub visible: Option<Vec<String>>,
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
    /// Deletes a program and its events; every VEN still targeted by one of
    /// them that has not ended at `now_ms` is sent a cancel (returned, committed in the same transaction).
    /// `None` if there is no such program.
    fn delete_program(
        &self,
        id: &ObjectId,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<(ProgramRecord, Vec<OutboxCommand>)>, StoreError>> + Send;
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
/// The `visible` restriction as a query parameter: `''` for none, else
/// the JSON list of targets.
fn visible_param(filter: &DrFilter) -> String {
    filter
        .visible
        .as_ref()
        .map_or_else(String::new, |v| json_list(v.iter().map(String::as_str)))
}

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

// ------------------------------------------------------------ the one implementation
//
// Every write is one transaction; lists of ids go in as JSON text and are
// expanded in SQL (`[json_each n]` in `sql!`), so a write is a few
// statements whatever the number of VENs. The outbox insert is the one
// statement per dialect: `UNNEST` arrays on PostgreSQL, one prepared insert
// per command on SQLite (its fast path).

type ProgramRow = (String, String, i64, i64, String, String);

fn program_record(row: ProgramRow) -> Result<ProgramRecord, StoreError> {
    let (id, name, created_ms, modified_ms, targets, body) = row;
    Ok(ProgramRecord {
        id: object_id(id)?,
        name,
        created_ms,
        modified_ms,
        targets: targets_column(&targets)?,
        body: json_column(&body, "program")?,
    })
}

macro_rules! select_program {
    () => {
        "SELECT id, name, created, modified, targets, body FROM programs"
    };
}

/// An event's columns (its current VENs as a JSON list in byte order),
/// then `$rest`.
macro_rules! select_event {
    ($on:ident; $($rest:tt),*) => {
        sql!($on; "SELECT e.id, e.program_id, e.created, e.modified, e.start_ms, e.end_ms, \
             e.priority, e.targets, e.body, ",
            [either
                "(SELECT coalesce(json_agg(ven_id ORDER BY ven_id COLLATE \"C\"), '[]')::text \
                 FROM event_vens v WHERE v.event_id = e.id AND v.removed IS NULL)"
                "(SELECT json_group_array(ven_id) FROM (SELECT ven_id FROM event_vens v \
                 WHERE v.event_id = e.id AND v.removed IS NULL ORDER BY ven_id))"],
            " FROM events e", $($rest),*)
    };
}

/// The columns of `select_event!`.
type EventRow = (
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    String,
    String,
);

fn event_record(row: EventRow) -> Result<EventRecord, StoreError> {
    let (id, program_id, created_ms, modified_ms, start_ms, end_ms, priority, targets, body, vens) =
        row;
    Ok(EventRecord {
        id: object_id(id)?,
        program_id: object_id(program_id)?,
        created_ms,
        modified_ms,
        start_ms,
        end_ms,
        priority,
        targets: targets_column(&targets)?,
        vens: vens_column(&vens)?,
        body: json_column(&body, "event")?,
    })
}
async fn event_in(tx: &mut Tx, id: &ObjectId) -> Result<Option<EventRecord>, StoreError> {
    let row: Option<EventRow> = run!(tx.conn(), |c| sqlx::query_as(
        select_event!(c; " WHERE e.id = $1 AND e.deleted IS NULL")
    )
    .bind(id.as_str())
    .fetch_optional(c)
    .await)?;
    row.map(event_record).transpose()
}

/// Allocates command ids and writes the commands to the outbox.
async fn queue(
    tx: &mut Tx,
    event_id: &ObjectId,
    event: Option<&gridlink_protocol::Event>,
    send: &[VenId],
    cancel: &[VenId],
    now_ms: i64,
) -> Result<Vec<OutboxCommand>, StoreError> {
    let planned = actions(event_id, event, send, cancel);
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<(String, i64)> = run!(tx.conn(), |c| {
        sqlx::query_as(sql!(c; "INSERT INTO command_seq (ven_id, last_id) SELECT value, 1 FROM ", [json_each 1], " WHERE true \
         ON CONFLICT (ven_id) DO UPDATE SET last_id = command_seq.last_id + 1 RETURNING ven_id, last_id"))
    .bind(json_list(planned.iter().map(|(v, _)| v.as_str())))
    .fetch_all(c).await
    })?;
    let ids: std::collections::HashMap<String, i64> = ids.into_iter().collect();
    let mut out = Vec::with_capacity(planned.len());
    for (ven, action) in planned {
        let command_id = ids
            .get(ven.as_str())
            .copied()
            .ok_or_else(|| StoreError::Invalid(format!("no command id for {ven}")))?;
        let payload = encode_command(&ven, command_id as u64, now_ms, action)?;
        out.push(OutboxCommand {
            ven_id: ven,
            command_id: command_id as u64,
            payload,
        });
    }
    match tx.conn() {
        Db::Postgres(c) => {
            sqlx::query(
                "INSERT INTO command_outbox (ven_id, command_id, event_id, payload, created) \
                 SELECT v, c, $4, p, $5 FROM UNNEST($1::text[], $2::int8[], $3::bytea[]) AS u(v, c, p)",
            )
            .bind(out.iter().map(|c| c.ven_id.as_str()).collect::<Vec<_>>())
            .bind(out.iter().map(|c| c.command_id as i64).collect::<Vec<_>>())
            .bind(out.iter().map(|c| c.payload.as_slice()).collect::<Vec<_>>())
            .bind(event_id.as_str())
            .bind(now_ms)
            .execute(c)
            .await?;
        }
        Db::Sqlite(c) => {
            for command in &out {
                sqlx::query(
                    "INSERT INTO command_outbox (ven_id, command_id, event_id, payload, created) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(command.ven_id.as_str())
                .bind(command.command_id as i64)
                .bind(event_id.as_str())
                .bind(command.payload.as_slice())
                .bind(now_ms)
                .execute(&mut *c)
                .await?;
            }
        }
    }
    Ok(out)
}

async fn write_targets(tx: &mut Tx, id: &ObjectId, event: &EventWrite) -> Result<(), StoreError> {
    exec!(tx.conn(), |c| sqlx::query(
        "DELETE FROM event_targets WHERE event_id = $1"
    )
    .bind(id.as_str())
    .execute(c)
    .await)?;
    exec!(tx.conn(), |c| {
        sqlx::query(sql!(c; "INSERT INTO event_targets (event_id, target) SELECT $1, value FROM ", [json_each 2], " WHERE true \
         ON CONFLICT DO NOTHING"))
    .bind(id.as_str())
    .bind(json_list(event.targets.iter().map(String::as_str)))
    .execute(c).await
    })?;
    exec!(tx.conn(), |c| {
        sqlx::query(sql!(c; "INSERT INTO event_vens (event_id, ven_id) SELECT $1, value FROM ", [json_each 2], " WHERE true \
         ON CONFLICT (event_id, ven_id) DO UPDATE SET removed = NULL"))
    .bind(id.as_str())
    .bind(json_list(event.vens.iter().map(VenId::as_str)))
    .execute(c).await
    })?;
    Ok(())
}

async fn current_vens(tx: &mut Tx, id: &ObjectId) -> Result<Vec<VenId>, StoreError> {
    let rows: Vec<String> = run!(tx.conn(), |c| {
        sqlx::query_scalar(sql!(c; "SELECT ven_id FROM event_vens WHERE event_id = $1 AND removed IS NULL ORDER BY ven_id", collate_c))
    .bind(id.as_str())
    .fetch_all(c).await
    })?;
    rows.iter().map(|s| ven_id(s)).collect()
}

/// Replaces a VEN's groups.
pub(super) async fn replace_groups(
    tx: &mut Tx,
    ven: &VenId,
    groups: &[String],
) -> Result<(), StoreError> {
    exec!(tx.conn(), |c| sqlx::query(
        "DELETE FROM ven_groups WHERE ven_id = $1"
    )
    .bind(ven.as_str())
    .execute(c)
    .await)?;
    exec!(tx.conn(), |c| sqlx::query(sql!(c;
        "INSERT INTO ven_groups (ven_id, group_name) SELECT $1, value FROM ", [json_each 2],
        " WHERE true ON CONFLICT DO NOTHING"
    ))
    .bind(ven.as_str())
    .bind(json_list(groups.iter().map(String::as_str)))
    .execute(c)
    .await)?;
    Ok(())
}

/// Binds an event's columns ($n to $n+5) to `$query`.
macro_rules! bind_event {
    ($query:expr, $event:expr) => {
        $query
            .bind($event.program_id.as_str())
            .bind($event.start_ms)
            .bind($event.end_ms)
            .bind($event.priority)
            .bind(json_list($event.targets.iter().map(String::as_str)))
            .bind($event.body.to_string())
    };
}

impl DrStore for AnyStore {
    async fn create_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> Result<ProgramRecord, StoreError> {
        exec!(self.writer(), |pool| {
            sqlx::query(
            "INSERT INTO programs (id, name, created, modified, targets, body) VALUES ($1, $2, $3, $3, $4, $5)",
        )
        .bind(id.as_str())
        .bind(program.name.as_str())
        .bind(now_ms)
        .bind(json_list(program.targets.iter().map(String::as_str)))
        .bind(program.body.to_string())
        .execute(pool).await
        })?;
        Ok(ProgramRecord {
            id: id.clone(),
            name: program.name.clone(),
            created_ms: now_ms,
            modified_ms: now_ms,
            targets: program.targets.clone(),
            body: program.body.clone(),
        })
    }

    async fn update_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> Result<Option<ProgramRecord>, StoreError> {
        let row: Option<ProgramRow> = run!(self.writer(), |pool| {
            sqlx::query_as(sql!(pool; "UPDATE programs SET name = $2, modified = ", greatest, "(modified, $3), targets = $4, body = $5 \
             WHERE id = $1 RETURNING id, name, created, modified, targets, body"))
        .bind(id.as_str())
        .bind(program.name.as_str())
        .bind(now_ms)
        .bind(json_list(program.targets.iter().map(String::as_str)))
        .bind(program.body.to_string())
        .fetch_optional(pool).await
        })?;
        row.map(program_record).transpose()
    }

    async fn delete_program(
        &self,
        id: &ObjectId,
        now_ms: i64,
    ) -> Result<Option<(ProgramRecord, Vec<OutboxCommand>)>, StoreError> {
        let mut tx = self.begin().await?;
        let row: Option<ProgramRow> = run!(tx.conn(), |c| sqlx::query_as(concat!(
            select_program!(),
            " WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(c)
        .await)?;
        let Some(row) = row else { return Ok(None) };
        let live: Vec<String> = run!(tx.conn(), |c| sqlx::query_scalar(
            "SELECT id FROM events WHERE program_id = $1 AND deleted IS NULL \
             AND (end_ms IS NULL OR end_ms > $2) ORDER BY id",
        )
        .bind(id.as_str())
        .bind(now_ms)
        .fetch_all(c)
        .await)?;
        let mut commands = Vec::new();
        for event in live {
            let event = object_id(event)?;
            let vens = current_vens(&mut tx, &event).await?;
            commands.extend(queue(&mut tx, &event, None, &[], &vens, now_ms).await?);
        }
        for sql in [
            "DELETE FROM event_acks WHERE event_id IN (SELECT id FROM events WHERE program_id = $1)",
            "DELETE FROM event_vens WHERE event_id IN (SELECT id FROM events WHERE program_id = $1)",
            "DELETE FROM event_targets WHERE event_id IN (SELECT id FROM events WHERE program_id = $1)",
            "DELETE FROM events WHERE program_id = $1",
            "DELETE FROM programs WHERE id = $1",
        ] {
            exec!(tx.conn(), |c| sqlx::query(sql)
                .bind(id.as_str())
                .execute(c)
                .await)?;
        }
        tx.commit().await?;
        Ok(Some((program_record(row)?, commands)))
    }

    async fn program(&self, id: &ObjectId) -> Result<Option<ProgramRecord>, StoreError> {
        let row: Option<ProgramRow> = run!(self.reader(), |pool| sqlx::query_as(concat!(
            select_program!(),
            " WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(pool)
        .await)?;
        row.map(program_record).transpose()
    }

    async fn programs(&self, filter: &DrFilter) -> Result<Vec<ProgramRecord>, StoreError> {
        let rows: Vec<ProgramRow> = run!(self.reader(), |pool| {
            sqlx::query_as(sql!(pool; {select_program!()}, " WHERE ($1 = '[]' OR EXISTS (SELECT 1 FROM ",
               [either "json_array_elements_text(programs.targets::json)" "json_each(programs.targets)"], " t \
               WHERE t.value IN (SELECT value FROM ", [json_each 1], "))) \
             AND ($4 = '' OR programs.targets = '[]' OR EXISTS (SELECT 1 FROM ",
               [either "json_array_elements_text(programs.targets::json)" "json_each(programs.targets)"], " v \
               WHERE v.value IN (SELECT value FROM ", [json_each 4], "))) \
             ORDER BY created, id", collate_c, " LIMIT $2 OFFSET $3"))
        .bind(json_list(filter.targets.iter().map(String::as_str)))
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.skip))
        .bind(visible_param(filter))
        .fetch_all(pool).await
        })?;
        rows.into_iter().map(program_record).collect()
    }

    async fn set_ven_groups(&self, ven: &VenId, groups: &[String]) -> Result<(), StoreError> {
        check_groups(groups)?;
        let mut tx = self.begin().await?;
        exec!(tx.conn(), |c| sqlx::query(
            "INSERT INTO vens (ven_id) VALUES ($1) ON CONFLICT DO NOTHING"
        )
        .bind(ven.as_str())
        .execute(c)
        .await)?;
        replace_groups(&mut tx, ven, groups).await?;
        tx.commit().await
    }

    async fn ven_groups(&self, ven: &VenId) -> Result<Vec<String>, StoreError> {
        Ok(run!(self.reader(), |pool| {
            sqlx::query_scalar(sql!(pool; "SELECT group_name FROM ven_groups WHERE ven_id = $1 ORDER BY group_name", collate_c))
        .bind(ven.as_str())
        .fetch_all(pool).await
        })?)
    }

    async fn resolve_targets(&self, targets: &[String]) -> Result<Vec<Vec<VenId>>, StoreError> {
        let mut out = Vec::with_capacity(targets.len());
        for target in targets {
            let ids: Vec<String> = run!(self.reader(), |pool| sqlx::query_scalar(
                "SELECT ven_id FROM vens WHERE ven_id = $1 \
                 UNION SELECT ven_id FROM ven_groups WHERE group_name = $1",
            )
            .bind(target.as_str())
            .fetch_all(pool)
            .await)?;
            let mut vens = ids
                .iter()
                .map(|s| ven_id(s))
                .collect::<Result<Vec<_>, _>>()?;
            vens.sort();
            out.push(vens);
        }
        Ok(out)
    }

    async fn create_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> Result<(EventRecord, Vec<OutboxCommand>), StoreError> {
        let mut tx = self.begin().await?;
        exec!(tx.conn(), |c| {
            bind_event!(
            sqlx::query(
                "INSERT INTO events (id, created, modified, program_id, start_ms, end_ms, priority, targets, body) \
                 VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.as_str())
            .bind(now_ms),
            event
        )
        .execute(c)
        .await
        })?;
        write_targets(&mut tx, id, event).await?;
        let commands = queue(&mut tx, id, Some(&event.event), &event.vens, &[], now_ms).await?;
        let record = event_in(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("event {id} vanished")))?;
        tx.commit().await?;
        Ok((record, commands))
    }

    async fn update_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError> {
        let mut tx = self.begin().await?;
        let updated = exec!(tx.conn(), |c| {
            bind_event!(
            sqlx::query(sql!(c; "UPDATE events SET modified = ", greatest, "(modified, $2), program_id = $3, \
                 start_ms = $4, end_ms = $5, priority = $6, targets = $7, body = $8 \
                 WHERE id = $1 AND deleted IS NULL"))
            .bind(id.as_str())
            .bind(now_ms),
            event
        )
        .execute(c)
        .await
        })?;
        if updated == 0 {
            return Ok(None);
        }
        let previous = current_vens(&mut tx, id).await?;
        let dropped = diff_vens(&previous, &event.vens);
        exec!(tx.conn(), |c| sqlx::query(
            sql!(c; "UPDATE event_vens SET removed = $3 WHERE event_id = $1 \
             AND ven_id IN (SELECT value FROM ", [json_each 2], ")")
        )
        .bind(id.as_str())
        .bind(json_list(dropped.iter().map(VenId::as_str)))
        .bind(now_ms)
        .execute(c)
        .await)?;
        write_targets(&mut tx, id, event).await?;
        let commands = queue(
            &mut tx,
            id,
            Some(&event.event),
            &event.vens,
            &dropped,
            now_ms,
        )
        .await?;
        let record = event_in(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("event {id} vanished")))?;
        tx.commit().await?;
        Ok(Some((record, commands)))
    }

    async fn delete_event(
        &self,
        id: &ObjectId,
        now_ms: i64,
    ) -> Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(record) = event_in(&mut tx, id).await? else {
            return Ok(None);
        };
        exec!(tx.conn(), |c| {
            sqlx::query(sql!(c; "UPDATE events SET deleted = $2, modified = ", greatest, "(modified, $2) WHERE id = $1"))
        .bind(id.as_str())
        .bind(now_ms)
        .execute(c).await
        })?;
        let commands = queue(&mut tx, id, None, &[], &record.vens, now_ms).await?;
        tx.commit().await?;
        Ok(Some((record, commands)))
    }

    async fn event(&self, id: &ObjectId) -> Result<Option<EventRecord>, StoreError> {
        let row: Option<EventRow> =
            run!(self.reader(), |pool| sqlx::query_as(select_event!(pool;
                " WHERE e.id = $1 AND e.deleted IS NULL"
            ))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await)?;
        row.map(event_record).transpose()
    }

    async fn events(&self, filter: &DrFilter) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<EventRow> = run!(self.reader(), |pool| sqlx::query_as(
            select_event!(pool; " WHERE e.deleted IS NULL \
             AND ($1 IS NULL OR e.program_id = $1) \
             AND ($2 IS NULL OR e.end_ms IS NULL OR e.end_ms > $2) \
             AND ($3 = '[]' OR EXISTS (SELECT 1 FROM event_targets t WHERE t.event_id = e.id \
                  AND t.target IN (SELECT value FROM ", [json_each 3], "))) \
             AND ($6 = '' OR NOT EXISTS (SELECT 1 FROM event_targets t WHERE t.event_id = e.id) \
                  OR EXISTS (SELECT 1 FROM event_targets t WHERE t.event_id = e.id \
                  AND t.target IN (SELECT value FROM ", [json_each 6], "))) \
             ORDER BY e.created, e.id", collate_c, " LIMIT $4 OFFSET $5")
        )
        .bind(filter.program_id.as_ref().map(ObjectId::as_str))
        .bind(filter.active_at)
        .bind(json_list(filter.targets.iter().map(String::as_str)))
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.skip))
        .bind(visible_param(filter))
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(event_record).collect()
    }

    async fn unsent_commands(&self, limit: u32) -> Result<Vec<OutboxCommand>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>)> = run!(self.reader(), |pool| {
            sqlx::query_as(
            sql!(pool; "SELECT ven_id, command_id, payload FROM command_outbox WHERE sent IS NULL \
             ORDER BY created, ven_id", collate_c, ", command_id LIMIT $1")
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        })?;
        rows.into_iter()
            .map(|(ven, command_id, payload)| {
                Ok(OutboxCommand {
                    ven_id: ven_id(&ven)?,
                    command_id: command_id as u64,
                    payload,
                })
            })
            .collect()
    }

    async fn mark_sent(&self, sent: &[(VenId, u64)], now_ms: i64) -> Result<(), StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        let pairs = serde_json::Value::Array(
            sent.iter()
                .map(|(v, id)| serde_json::json!([v.as_str(), *id as i64]))
                .collect(),
        )
        .to_string();
        exec!(self.writer(), |pool| {
            sqlx::query(sql!(pool;
            "UPDATE command_outbox SET sent = $1 WHERE sent IS NULL AND (ven_id, command_id) IN (",
            [either "SELECT p->>0, (p->>1)::bigint FROM json_array_elements($2::json) p"
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each($2)"],
            ")"
        ))
        .bind(now_ms)
        .bind(pairs)
        .execute(pool).await
        })?;
        Ok(())
    }

    async fn record_ack(
        &self,
        ack: &CommandAck,
        received_ms: i64,
    ) -> Result<AckOutcome, StoreError> {
        let inserted = exec!(self.writer(), |pool| {
            sqlx::query(
            "INSERT INTO event_acks (event_id, ven_id, command_id, state, at, reason, received) \
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
               (SELECT 1 FROM event_vens WHERE event_id = $1 AND ven_id = $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ack.event_id.as_str())
        .bind(ack.ven_id.as_str())
        .bind(ack.command_id as i64)
        .bind(ack.state.name())
        .bind(ack.at.unix_ms())
        .bind(ack.reason.as_deref())
        .bind(received_ms)
        .execute(pool).await
        })?;
        if inserted > 0 {
            return Ok(AckOutcome::Stored);
        }
        let known: bool = run!(self.writer(), |pool| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM event_vens WHERE event_id = $1 AND ven_id = $2)",
        )
        .bind(ack.event_id.as_str())
        .bind(ack.ven_id.as_str())
        .fetch_one(pool)
        .await)?;
        Ok(if known {
            AckOutcome::Duplicate
        } else {
            AckOutcome::UnknownEvent
        })
    }

    // An agent often reaches two states in the same millisecond (received
    // and scheduled, received and opted_out): their lifecycle order breaks
    // the tie, so the last row is the VEN's latest state.
    async fn event_acks(&self, event_id: &ObjectId) -> Result<Vec<AckRecord>, StoreError> {
        let rows: Vec<(String, i64, String, i64, Option<String>, i64)> =
            run!(self.reader(), |pool| sqlx::query_as(
                sql!(pool; "SELECT ven_id, command_id, state, at, reason, received FROM event_acks \
             WHERE event_id = $1 ORDER BY ven_id", collate_c, ", at, received, command_id, \
             CASE state WHEN 'received' THEN 0 WHEN 'scheduled' THEN 1 \
             WHEN 'active' THEN 2 ELSE 3 END")
            )
            .bind(event_id.as_str())
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(|(ven, command_id, state, at_ms, reason, received_ms)| {
                Ok(AckRecord {
                    ven_id: ven_id(&ven)?,
                    command_id: command_id as u64,
                    state: ack_state(&state)?,
                    at_ms,
                    reason,
                    received_ms,
                })
            })
            .collect()
    }

    async fn site_power(
        &self,
        vens: &[VenId],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(VenId, PowerMean)>, StoreError> {
        let rows: Vec<(String, f64, i64)> = run!(self.reader(), |pool| {
            sqlx::query_as(sql!(pool; "SELECT s.ven_id, avg(m.value), count(*) \
             FROM series s JOIN vens v ON v.ven_id = s.ven_id JOIN metrics m ON m.series_id = s.id \
             WHERE s.ven_id IN (SELECT value FROM ", [json_each 1], ") AND s.quantity = 0 AND s.phase = 0 \
               AND (s.meter = v.site_meter OR (v.site_meter IS NULL AND (SELECT count(*) FROM series o \
                 WHERE o.ven_id = s.ven_id AND o.quantity = 0 AND o.phase = 0) = 1)) \
               AND m.ts >= $2 AND m.ts < $3 GROUP BY s.ven_id ORDER BY s.ven_id", collate_c))
        .bind(json_list(vens.iter().map(VenId::as_str)))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool).await
        })?;
        rows.into_iter()
            .map(|(ven, mean_w, readings)| {
                Ok((
                    ven_id(&ven)?,
                    PowerMean {
                        mean_w,
                        readings: readings as u64,
                    },
                ))
            })
            .collect()
    }
}
