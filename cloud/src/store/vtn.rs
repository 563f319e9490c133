//! The OpenADR 3.1 objects beyond programs and events (VENs, resources,
//! reports, subscriptions), the VTN's OAuth 2.0 clients and the key that
//! signs their access tokens ([`VtnStore`], a supertrait of
//! [`Store`](super::Store)). The tables are in the migration
//! `20261207030000_vtn.sql`.
//!
//! One gridlink VEN is one OpenADR `ven`: [`VtnStore::sync_agents`] gives
//! every VEN the MQTT side knows (`vens`, by registration or its first
//! message) a `ven` object named by its VEN id (clientID = VEN id, the
//! certificate's CN), and each of its loads a `resource`, unless a `ven`
//! of that name exists already (registered through the API before the
//! gateway got its certificate), which is then linked to it.
//!
//! One body of SQL serves both databases.

use std::future::Future;

use gridlink_protocol::ObjectId;
use serde_json::{Map, Value};

use super::dr::{json_column, json_list, object_id};
use super::{AnyStore, StoreError, Tx};

/// The kinds of object kept in `vtn_objects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `ven`.
    Ven,
    /// `resource` (of a VEN).
    Resource,
    /// `report` (of an event).
    Report,
    /// `subscription`.
    Subscription,
}

impl ObjectKind {
    /// The spec's `objectType`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ven => "VEN",
            Self::Resource => "RESOURCE",
            Self::Report => "REPORT",
            Self::Subscription => "SUBSCRIPTION",
        }
    }

    /// The lower-case word for messages ("ven", "resource", ...).
    pub const fn noun(self) -> &'static str {
        match self {
            Self::Ven => "ven",
            Self::Resource => "resource",
            Self::Report => "report",
            Self::Subscription => "subscription",
        }
    }
}

/// One stored object.
#[derive(Debug, Clone, PartialEq)]
pub struct VtnObject {
    /// Its id.
    pub id: ObjectId,
    /// What it is.
    pub kind: ObjectKind,
    /// Its owner's clientID.
    pub client_id: Option<String>,
    /// venName, resourceName, or a report's or subscription's clientName.
    pub name: Option<String>,
    /// A resource's venID, a report's eventID.
    pub parent: Option<String>,
    /// A report's or subscription's programID.
    pub program_id: Option<String>,
    /// What must be unique (`VEN/<venName>`, `RESOURCE/<venID>/<name>`).
    pub unique_key: Option<String>,
    /// The gridlink VEN id a VEN or resource stands for, if it is an agent's.
    pub agent_ven: Option<String>,
    /// Its targets (VENs, resources, subscriptions).
    pub targets: Vec<String>,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Last modification, ms.
    pub modified_ms: i64,
    /// The request JSON as accepted.
    pub body: Value,
}

/// What a search selects; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFilter {
    /// Only objects of this owner.
    pub client_id: Option<String>,
    /// Only objects of this name.
    pub name: Option<String>,
    /// Only objects with this parent (a resource's VEN, a report's event).
    pub parent: Option<String>,
    /// Only objects of this program.
    pub program_id: Option<String>,
    /// Only objects with at least one of these targets (empty: any).
    pub targets: Vec<String>,
    /// Objects to skip.
    pub skip: u32,
    /// Most objects returned.
    pub limit: u32,
}

/// What an OAuth client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientRole {
    /// Business logic: reads everything, writes programs and events.
    Bl,
    /// A VEN: reads what it is targeted by and what it owns.
    Ven,
}

impl ClientRole {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bl => "bl",
            Self::Ven => "ven",
        }
    }

    /// The role of a stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "bl" => Some(Self::Bl),
            "ven" => Some(Self::Ven),
            _ => None,
        }
    }
}

/// An OAuth client (its secret's hash is not part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtnClient {
    /// The client id (what `/auth/token` is called with).
    pub client_id: String,
    /// A human name.
    pub name: String,
    /// BL or VEN.
    pub role: ClientRole,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Revocation time, ms; `None` while it works.
    pub revoked_ms: Option<i64>,
}

/// A VEN object's id for a gridlink VEN id: the VEN id itself where it is a
/// valid object id (no `:`), else `ven-` and 32 hex digits of its SHA-256.
pub fn agent_ven_object_id(ven_id: &str) -> String {
    if !ven_id.is_empty()
        && ven_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        ven_id.to_owned()
    } else {
        format!("ven-{}", digest_hex(&[ven_id]))
    }
}

/// A resource object's id for a load of a gridlink VEN: `res-` and 32 hex
/// digits of the SHA-256 of both names.
pub fn agent_resource_object_id(ven_id: &str, load: &str) -> String {
    format!("res-{}", digest_hex(&[ven_id, "\0", load]))
}

fn digest_hex(parts: &[&str]) -> String {
    use std::fmt::Write as _;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// VENs, resources, reports, subscriptions and OAuth clients.
pub trait VtnStore: Send + Sync {
    /// Stores a new client with the SHA-256 of its secret.
    fn create_client(
        &self,
        client_id: &str,
        name: &str,
        role: ClientRole,
        secret_hash: &[u8; 32],
        now_ms: i64,
    ) -> impl Future<Output = Result<VtnClient, StoreError>> + Send;

    /// A client and its secret's hash.
    fn client_with_secret(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<(VtnClient, Vec<u8>)>, StoreError>> + Send;

    /// Every client, by creation.
    fn clients(&self) -> impl Future<Output = Result<Vec<VtnClient>, StoreError>> + Send;

    /// Revokes a client (its tokens stop working at once); `None` if unknown.
    fn revoke_client(
        &self,
        client_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<VtnClient>, StoreError>> + Send;

    /// The token signing key: `candidate` if none is stored yet (the first
    /// process stores it), else the stored one.
    fn signing_key(
        &self,
        candidate: &[u8; 32],
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Stores a new object; a taken unique name is
    /// [`StoreError::UniqueViolation`].
    fn create_object(
        &self,
        object: &VtnObject,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces an object's client fields (same id and kind); `None` if
    /// there is none. `created_ms` is kept.
    fn update_object(
        &self,
        object: &VtnObject,
    ) -> impl Future<Output = Result<Option<VtnObject>, StoreError>> + Send;

    /// Deletes an object (a VEN with its resources); `None` if unknown.
    fn delete_object(
        &self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> impl Future<Output = Result<Option<VtnObject>, StoreError>> + Send;

    /// One object.
    fn object(
        &self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> impl Future<Output = Result<Option<VtnObject>, StoreError>> + Send;

    /// A page of objects, by creation.
    fn objects(
        &self,
        kind: ObjectKind,
        filter: &ObjectFilter,
    ) -> impl Future<Output = Result<Vec<VtnObject>, StoreError>> + Send;

    /// Gives every gridlink VEN without one a `ven` object and each of its
    /// loads a `resource`; returns how many objects were added.
    fn sync_agents(&self, now_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The targets granted to a VEN client: its VEN objects' names and
    /// targets, their resources' targets, and the groups of the gridlink
    /// VENs they stand for. Empty if it has no VEN object.
    fn grants(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The names of the VENs granted one of `targets` (by name, by their
    /// own or their resources' targets, or by a group of the gridlink VEN
    /// they stand for); every VEN's for no targets.
    fn ven_names_for(
        &self,
        targets: &[String],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

type ObjectRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    String,
    String,
);

fn kind_of(name: &str) -> Result<ObjectKind, StoreError> {
    Ok(match name {
        "VEN" => ObjectKind::Ven,
        "RESOURCE" => ObjectKind::Resource,
        "REPORT" => ObjectKind::Report,
        "SUBSCRIPTION" => ObjectKind::Subscription,
        other => return Err(StoreError::Invalid(format!("stored object kind {other:?}"))),
    })
}

fn object_record(row: ObjectRow) -> Result<VtnObject, StoreError> {
    let (
        id,
        kind,
        client_id,
        name,
        parent,
        program_id,
        unique_key,
        agent_ven,
        created_ms,
        modified_ms,
        body,
        targets,
    ) = row;
    let targets: Vec<String> = serde_json::from_str(&targets)
        .map_err(|e| StoreError::Invalid(format!("stored targets: {e}")))?;
    Ok(VtnObject {
        id: object_id(id)?,
        kind: kind_of(&kind)?,
        client_id,
        name,
        parent,
        program_id,
        unique_key,
        agent_ven,
        targets,
        created_ms,
        modified_ms,
        body: json_column(&body, "object")?,
    })
}

macro_rules! select_object {
    ($on:ident; $($rest:tt),*) => {
        sql!($on; "SELECT o.id, o.kind, o.client_id, o.name, o.parent, o.program_id, \
             o.unique_key, o.agent_ven, o.created, o.modified, o.body, ",
            [either
                "(SELECT coalesce(json_agg(t.target ORDER BY t.target COLLATE \"C\"), '[]')::text \
                 FROM vtn_object_targets t WHERE t.object_id = o.id)"
                "(SELECT json_group_array(target) FROM (SELECT target FROM vtn_object_targets t \
                 WHERE t.object_id = o.id ORDER BY target))"],
            " FROM vtn_objects o", $($rest),*)
    };
}

async fn object_in(
    tx: &mut Tx,
    kind: ObjectKind,
    id: &str,
) -> Result<Option<VtnObject>, StoreError> {
    let row: Option<ObjectRow> = run!(tx.conn(), |c| sqlx::query_as(select_object!(c;
        " WHERE o.id = $1 AND o.kind = $2"
    ))
    .bind(id)
    .bind(kind.as_str())
    .fetch_optional(c)
    .await)?;
    row.map(object_record).transpose()
}

async fn write_object_targets(tx: &mut Tx, id: &str, targets: &[String]) -> Result<(), StoreError> {
    exec!(tx.conn(), |c| sqlx::query(
        "DELETE FROM vtn_object_targets WHERE object_id = $1"
    )
    .bind(id)
    .execute(c)
    .await)?;
    exec!(tx.conn(), |c| sqlx::query(sql!(c;
        "INSERT INTO vtn_object_targets (object_id, target) SELECT DISTINCT $1, value FROM ",
        [json_each 2]
    ))
    .bind(id)
    .bind(json_list(targets.iter().map(String::as_str)))
    .execute(c)
    .await)?;
    Ok(())
}

async fn insert_object(tx: &mut Tx, object: &VtnObject) -> Result<u64, StoreError> {
    let inserted = exec!(tx.conn(), |c| sqlx::query(
        "INSERT INTO vtn_objects (id, kind, client_id, name, parent, program_id, unique_key, \
         agent_ven, created, modified, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT DO NOTHING"
    )
    .bind(object.id.as_str())
    .bind(object.kind.as_str())
    .bind(object.client_id.as_deref())
    .bind(object.name.as_deref())
    .bind(object.parent.as_deref())
    .bind(object.program_id.as_deref())
    .bind(object.unique_key.as_deref())
    .bind(object.agent_ven.as_deref())
    .bind(object.created_ms)
    .bind(object.modified_ms)
    .bind(object.body.to_string())
    .execute(c)
    .await)?;
    if inserted > 0 {
        write_object_targets(tx, object.id.as_str(), &object.targets).await?;
    }
    Ok(inserted)
}

fn client_record(
    (client_id, name, role, created_ms, revoked_ms): (String, String, String, i64, Option<i64>),
) -> Result<VtnClient, StoreError> {
    let role = ClientRole::from_name(&role)
        .ok_or_else(|| StoreError::Invalid(format!("stored client role {role:?}")))?;
    Ok(VtnClient {
        client_id,
        name,
        role,
        created_ms,
        revoked_ms,
    })
}

/// The body of an agent's `ven` object.
fn agent_ven_body(ven_id: &str) -> Value {
    let mut body = Map::new();
    body.insert("clientID".into(), Value::String(ven_id.to_owned()));
    body.insert("venName".into(), Value::String(ven_id.to_owned()));
    Value::Object(body)
}

/// The body of an agent load's `resource` object.
fn agent_resource_body(ven_id: &str, ven_object: &str, load: &str) -> Value {
    let mut body = Map::new();
    body.insert("clientID".into(), Value::String(ven_id.to_owned()));
    body.insert("resourceName".into(), Value::String(load.to_owned()));
    body.insert("venID".into(), Value::String(ven_object.to_owned()));
    Value::Object(body)
}

/// A `vtn_clients` row with its secret's hash.
type ClientSecretRow = (String, String, String, i64, Option<i64>, Vec<u8>);

impl VtnStore for AnyStore {
    async fn create_client(
        &self,
        client_id: &str,
        name: &str,
        role: ClientRole,
        secret_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<VtnClient, StoreError> {
        exec!(self.writer(), |pool| sqlx::query(
            "INSERT INTO vtn_clients (client_id, name, role, secret_hash, created) \
             VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(client_id)
        .bind(name)
        .bind(role.as_str())
        .bind(secret_hash.as_slice())
        .bind(now_ms)
        .execute(pool)
        .await)?;
        Ok(VtnClient {
            client_id: client_id.to_owned(),
            name: name.to_owned(),
            role,
            created_ms: now_ms,
            revoked_ms: None,
        })
    }

    async fn client_with_secret(
        &self,
        client_id: &str,
    ) -> Result<Option<(VtnClient, Vec<u8>)>, StoreError> {
        let row: Option<ClientSecretRow> = run!(self.reader(), |pool| sqlx::query_as(
            "SELECT client_id, name, role, created, revoked, secret_hash \
                 FROM vtn_clients WHERE client_id = $1"
        )
        .bind(client_id)
        .fetch_optional(pool)
        .await)?;
        row.map(|(id, name, role, created, revoked, hash)| {
            client_record((id, name, role, created, revoked)).map(|c| (c, hash))
        })
        .transpose()
    }

    async fn clients(&self) -> Result<Vec<VtnClient>, StoreError> {
        let rows: Vec<(String, String, String, i64, Option<i64>)> =
            run!(self.reader(), |pool| sqlx::query_as(
                "SELECT client_id, name, role, created, revoked FROM vtn_clients \
                 ORDER BY created, client_id"
            )
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(client_record).collect()
    }

    async fn revoke_client(
        &self,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<VtnClient>, StoreError> {
        let row: Option<(String, String, String, i64, Option<i64>)> =
            run!(self.writer(), |pool| sqlx::query_as(
                "UPDATE vtn_clients SET revoked = coalesce(revoked, $2) WHERE client_id = $1 \
                 RETURNING client_id, name, role, created, revoked"
            )
            .bind(client_id)
            .bind(now_ms)
            .fetch_optional(pool)
            .await)?;
        row.map(client_record).transpose()
    }

    async fn signing_key(&self, candidate: &[u8; 32], now_ms: i64) -> Result<Vec<u8>, StoreError> {
        exec!(self.writer(), |pool| sqlx::query(
            "INSERT INTO vtn_signing_key (id, secret, created) VALUES (1, $1, $2) \
             ON CONFLICT DO NOTHING"
        )
        .bind(candidate.as_slice())
        .bind(now_ms)
        .execute(pool)
        .await)?;
        Ok(run!(self.writer(), |pool| sqlx::query_scalar(
            "SELECT secret FROM vtn_signing_key WHERE id = 1"
        )
        .fetch_one(pool)
        .await)?)
    }

    async fn create_object(&self, object: &VtnObject) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if let Some(key) = &object.unique_key {
            let taken: Option<String> = run!(tx.conn(), |c| sqlx::query_scalar(
                "SELECT id FROM vtn_objects WHERE unique_key = $1"
            )
            .bind(key.as_str())
            .fetch_optional(c)
            .await)?;
            if let Some(taken) = taken {
                return Err(StoreError::Conflict(format!(
                    "the {} name is taken by {taken}",
                    object.kind.noun()
                )));
            }
        }
        if insert_object(&mut tx, object).await? == 0 {
            return Err(StoreError::Conflict(format!(
                "the {} {} exists already",
                object.kind.noun(),
                object.id
            )));
        }
        tx.commit().await
    }

    async fn update_object(&self, object: &VtnObject) -> Result<Option<VtnObject>, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(key) = &object.unique_key {
            let taken: Option<String> = run!(tx.conn(), |c| sqlx::query_scalar(
                "SELECT id FROM vtn_objects WHERE unique_key = $1 AND id <> $2"
            )
            .bind(key.as_str())
            .bind(object.id.as_str())
            .fetch_optional(c)
            .await)?;
            if let Some(taken) = taken {
                return Err(StoreError::Conflict(format!(
                    "the {} name is taken by {taken}",
                    object.kind.noun()
                )));
            }
        }
        let updated = exec!(tx.conn(), |c| sqlx::query(sql!(c;
            "UPDATE vtn_objects SET client_id = $3, name = $4, parent = $5, program_id = $6, \
             unique_key = $7, modified = ", greatest, "(modified, $8), body = $9 \
             WHERE id = $1 AND kind = $2"
        ))
        .bind(object.id.as_str())
        .bind(object.kind.as_str())
        .bind(object.client_id.as_deref())
        .bind(object.name.as_deref())
        .bind(object.parent.as_deref())
        .bind(object.program_id.as_deref())
        .bind(object.unique_key.as_deref())
        .bind(object.modified_ms)
        .bind(object.body.to_string())
        .execute(c)
        .await)?;
        if updated == 0 {
            return Ok(None);
        }
        write_object_targets(&mut tx, object.id.as_str(), &object.targets).await?;
        let record = object_in(&mut tx, object.kind, object.id.as_str()).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_object(
        &self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<VtnObject>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(record) = object_in(&mut tx, kind, id.as_str()).await? else {
            return Ok(None);
        };
        if kind == ObjectKind::Ven {
            exec!(tx.conn(), |c| sqlx::query(
                "DELETE FROM vtn_object_targets WHERE object_id IN \
                 (SELECT id FROM vtn_objects WHERE kind = 'RESOURCE' AND parent = $1)"
            )
            .bind(id.as_str())
            .execute(c)
            .await)?;
            exec!(tx.conn(), |c| sqlx::query(
                "DELETE FROM vtn_objects WHERE kind = 'RESOURCE' AND parent = $1"
            )
            .bind(id.as_str())
            .execute(c)
            .await)?;
        }
        exec!(tx.conn(), |c| sqlx::query(
            "DELETE FROM vtn_object_targets WHERE object_id = $1"
        )
        .bind(id.as_str())
        .execute(c)
        .await)?;
        exec!(tx.conn(), |c| sqlx::query(
            "DELETE FROM vtn_objects WHERE id = $1"
        )
        .bind(id.as_str())
        .execute(c)
        .await)?;
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn object(
        &self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<VtnObject>, StoreError> {
        let row: Option<ObjectRow> =
            run!(self.reader(), |pool| sqlx::query_as(select_object!(pool;
                " WHERE o.id = $1 AND o.kind = $2"
            ))
            .bind(id.as_str())
            .bind(kind.as_str())
            .fetch_optional(pool)
            .await)?;
        row.map(object_record).transpose()
    }

    async fn objects(
        &self,
        kind: ObjectKind,
        filter: &ObjectFilter,
    ) -> Result<Vec<VtnObject>, StoreError> {
        let rows: Vec<ObjectRow> = run!(self.reader(), |pool| {
            sqlx::query_as(select_object!(pool;
            " WHERE o.kind = $1 \
             AND ($2 IS NULL OR o.client_id = $2) \
             AND ($3 IS NULL OR o.name = $3) \
             AND ($4 IS NULL OR o.parent = $4) \
             AND ($5 IS NULL OR o.program_id = $5) \
             AND ($6 = '[]' OR EXISTS (SELECT 1 FROM vtn_object_targets t WHERE t.object_id = o.id \
                  AND t.target IN (SELECT value FROM ", [json_each 6], "))) \
             ORDER BY o.created, o.id", collate_c, " LIMIT $7 OFFSET $8"
        ))
        .bind(kind.as_str())
        .bind(filter.client_id.as_deref())
        .bind(filter.name.as_deref())
        .bind(filter.parent.as_deref())
        .bind(filter.program_id.as_deref())
        .bind(json_list(filter.targets.iter().map(String::as_str)))
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.skip))
        .fetch_all(pool)
        .await
        })?;
        rows.into_iter().map(object_record).collect()
    }

    async fn sync_agents(&self, now_ms: i64) -> Result<u64, StoreError> {
        // Gridlink VENs with no VEN object linked, and whether one of their
        // name exists (registered through the API first).
        let missing: Vec<(String, Option<String>)> = run!(self.reader(), |pool| {
            sqlx::query_as(
            "SELECT v.ven_id, (SELECT o.id FROM vtn_objects o WHERE o.unique_key = 'VEN/' || v.ven_id) \
             FROM vens v WHERE NOT EXISTS (SELECT 1 FROM vtn_objects o \
             WHERE o.kind = 'VEN' AND o.agent_ven = v.ven_id) ORDER BY v.ven_id"
        )
        .fetch_all(pool)
        .await
        })?;
        let loads: Vec<(String, String, String)> = run!(self.reader(), |pool| sqlx::query_as(
            "SELECT l.ven_id, l.name, o.id FROM loads l JOIN vtn_objects o \
             ON o.kind = 'VEN' AND o.agent_ven = l.ven_id \
             WHERE NOT EXISTS (SELECT 1 FROM vtn_objects r WHERE r.kind = 'RESOURCE' \
             AND r.agent_ven = l.ven_id AND r.name = l.name) ORDER BY l.ven_id, l.name"
        )
        .fetch_all(pool)
        .await)?;
        if missing.is_empty() && loads.is_empty() {
            return Ok(0);
        }
        let mut added = 0;
        let mut tx = self.begin().await?;
        for (ven_id, existing) in missing {
            if let Some(existing) = existing {
                exec!(tx.conn(), |c| sqlx::query(
                    "UPDATE vtn_objects SET agent_ven = $2 WHERE id = $1 AND agent_ven IS NULL"
                )
                .bind(existing.as_str())
                .bind(ven_id.as_str())
                .execute(c)
                .await)?;
                continue;
            }
            let object = VtnObject {
                id: object_id(agent_ven_object_id(&ven_id))?,
                kind: ObjectKind::Ven,
                client_id: Some(ven_id.clone()),
                name: Some(ven_id.clone()),
                parent: None,
                program_id: None,
                unique_key: Some(format!("VEN/{ven_id}")),
                agent_ven: Some(ven_id.clone()),
                targets: Vec::new(),
                created_ms: now_ms,
                modified_ms: now_ms,
                body: agent_ven_body(&ven_id),
            };
            added += insert_object(&mut tx, &object).await?;
        }
        for (ven_id, load, ven_object) in loads {
            let object = VtnObject {
                id: object_id(agent_resource_object_id(&ven_id, &load))?,
                kind: ObjectKind::Resource,
                client_id: Some(ven_id.clone()),
                name: Some(load.clone()),
                parent: Some(ven_object.clone()),
                program_id: None,
                unique_key: Some(format!("RESOURCE/{ven_object}/{load}")),
                agent_ven: Some(ven_id.clone()),
                targets: Vec::new(),
                created_ms: now_ms,
                modified_ms: now_ms,
                body: agent_resource_body(&ven_id, &ven_object, &load),
            };
            added += insert_object(&mut tx, &object).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn grants(&self, client_id: &str) -> Result<Vec<String>, StoreError> {
        let mut grants: Vec<String> = run!(self.reader(), |pool| {
            sqlx::query_scalar(
            "SELECT o.name FROM vtn_objects o WHERE o.kind = 'VEN' AND o.client_id = $1 \
             AND o.name IS NOT NULL \
             UNION SELECT t.target FROM vtn_object_targets t JOIN vtn_objects o ON o.id = t.object_id \
             WHERE o.kind = 'VEN' AND o.client_id = $1 \
             UNION SELECT t.target FROM vtn_object_targets t JOIN vtn_objects r ON r.id = t.object_id \
             JOIN vtn_objects o ON o.id = r.parent \
             WHERE r.kind = 'RESOURCE' AND o.kind = 'VEN' AND o.client_id = $1 \
             UNION SELECT g.group_name FROM ven_groups g JOIN vtn_objects o ON o.agent_ven = g.ven_id \
             WHERE o.kind = 'VEN' AND o.client_id = $1"
        )
        .bind(client_id)
        .fetch_all(pool)
        .await
        })?;
        grants.sort();
        grants.dedup();
        Ok(grants)
    }

    async fn ven_names_for(&self, targets: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(run!(self.reader(), |pool| {
            sqlx::query_scalar(sql!(pool;
            "SELECT o.name FROM vtn_objects o WHERE o.kind = 'VEN' AND o.name IS NOT NULL AND \
             ($1 = '[]' OR o.name IN (SELECT value FROM ", [json_each 1], ") \
             OR EXISTS (SELECT 1 FROM vtn_object_targets t WHERE t.object_id = o.id \
                 AND t.target IN (SELECT value FROM ", [json_each 1], ")) \
             OR EXISTS (SELECT 1 FROM vtn_objects r JOIN vtn_object_targets t ON t.object_id = r.id \
                 WHERE r.kind = 'RESOURCE' AND r.parent = o.id \
                 AND t.target IN (SELECT value FROM ", [json_each 1], ")) \
             OR EXISTS (SELECT 1 FROM ven_groups g WHERE g.ven_id = o.agent_ven \
                 AND g.group_name IN (SELECT value FROM ", [json_each 1], "))) \
             ORDER BY o.name", collate_c
        ))
        .bind(json_list(targets.iter().map(String::as_str)))
        .fetch_all(pool)
        .await
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_object_ids() {
        assert_eq!(agent_ven_object_id("site-1_gw"), "site-1_gw");
        let colon = agent_ven_object_id("site:1");
        assert!(colon.starts_with("ven-") && colon.len() == 36, "{colon}");
        assert_ne!(colon, agent_ven_object_id("site:2"));
        assert!(ObjectId::new(colon).is_ok());
        let a = agent_resource_object_id("v", "hvac");
        assert_ne!(a, agent_resource_object_id("vh", "vac"));
        assert!(ObjectId::new(a).is_ok());
    }
}
