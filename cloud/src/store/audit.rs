//! The audit trail of writes through the API (`audit_log`): who, when,
//! what and the request id of every POST, PUT, PATCH and DELETE a token
//! holder made ([`AuditStore`], a supertrait of [`Store`](super::Store)).
//! The API records them (`crate::api::audit`) and lists them at `GET
//! /api/v1/audit`.
//!
//! The table is append-only: this trait has no update or delete, and the
//! database refuses both (triggers on PostgreSQL and SQLite, see the
//! migration `*_audit.sql`). Nothing expires rows: retention is left to the
//! operator (an archive job may copy and, after dropping the triggers in a
//! maintenance window, prune).
//!
//! One body of SQL serves both databases (sqlx's `$n` placeholders work on
//! SQLite too).
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::{AuditEntry, AuditQuery, AuditStore, Role};
//!
//! let entry = AuditEntry {
//!     at_ms: 1_700_000_000_000,
//!     token_id: 1,
//!     token_name: "ops".into(),
//!     role: Role::Operator,
//!     action: "event.create".into(),
//!     object_type: "event".into(),
//!     object_id: Some("e1".into()),
//!     request_id: "3f2a".into(),
//!     method: "POST".into(),
//!     path: "/openadr3/3.1.0/events".into(),
//!     status: 201,
//!     summary: serde_json::json!({"eventName": "peak"}),
//! };
//! store.record_audit(&entry).await?;
//! let newest = store.audit_entries(&AuditQuery::default()).await?;
//! assert_eq!(newest[0].entry.action, "event.create");
//! # Ok(()) }
//! ```

use std::future::Future;

use super::{AnyStore, Role, StoreError};

/// Most entries one [`AuditQuery`] returns.
pub const MAX_AUDIT_LIMIT: u32 = 500;

/// One write through the API, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When the API answered, ms since the Unix epoch.
    pub at_ms: i64,
    /// The caller's token id.
    pub token_id: i64,
    /// The caller's token name at the time.
    pub token_name: String,
    /// The caller's role at the time.
    pub role: Role,
    /// What was done: `object.verb` (`event.create`, `token.revoke`).
    pub action: String,
    /// What kind of object (`event`, `program`, `token`, `ven`).
    pub object_type: String,
    /// Which object, when known (the path's id, or the id a create
    /// answered with).
    pub object_id: Option<String>,
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// The HTTP method.
    pub method: String,
    /// The request's path (without the query).
    pub path: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// What the request asked to change (its JSON body with secrets
    /// redacted, or a shortened form), never a secret.
    pub summary: serde_json::Value,
}

/// A stored [`AuditEntry`] with its id (ids grow with time).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The row's id.
    pub id: i64,
    /// The entry.
    pub entry: AuditEntry,
}

/// Who an [`AuditQuery`] asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditActor {
    /// The token with this id.
    TokenId(i64),
    /// Tokens with this name.
    TokenName(String),
}

/// Which entries to list: every filter that is set must match; newest
/// first, `skip` then at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// `at_ms` at or after this.
    pub from_ms: Option<i64>,
    /// `at_ms` before this.
    pub to_ms: Option<i64>,
    /// The caller.
    pub actor: Option<AuditActor>,
    /// The action, exactly.
    pub action: Option<String>,
    /// The object's type, exactly.
    pub object_type: Option<String>,
    /// The object's id, exactly.
    pub object_id: Option<String>,
    /// Entries skipped (newest first).
    pub skip: u32,
    /// At most this many (capped at [`MAX_AUDIT_LIMIT`]).
    pub limit: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            from_ms: None,
            to_ms: None,
            actor: None,
            action: None,
            object_type: None,
            object_id: None,
            skip: 0,
            limit: 50,
        }
    }
}

/// The audit trail.
pub trait AuditStore: Send + Sync {
    /// Appends one entry; returns its id. Durable when this returns `Ok`
    /// (one committed statement).
    fn record_audit(
        &self,
        entry: &AuditEntry,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The entries matching `query`, newest first.
    fn audit_entries(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;
}

/// One `audit_log` row in the order of the `SELECT` below.
type AuditRow = (
    i64,
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i32,
    String,
);

fn audit_record(row: AuditRow) -> Result<AuditRecord, StoreError> {
    let (
        id,
        at_ms,
        token_id,
        token_name,
        role,
        action,
        object_type,
        object_id,
        request_id,
        method,
        path,
        status,
        summary,
    ) = row;
    let role = Role::from_name(&role)
        .ok_or_else(|| StoreError::Invalid(format!("stored audit role {role:?}")))?;
    let summary = serde_json::from_str(&summary)
        .map_err(|e| StoreError::Invalid(format!("stored audit summary of {id}: {e}")))?;
    Ok(AuditRecord {
        id,
        entry: AuditEntry {
            at_ms,
            token_id,
            token_name,
            role,
            action,
            object_type,
            object_id,
            request_id,
            method,
            path,
            status: u16::try_from(status)
                .map_err(|_| StoreError::Invalid(format!("stored audit status {status}")))?,
            summary,
        },
    })
}

impl AuditStore for AnyStore {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        Ok(run!(self.writer(), |pool| sqlx::query_scalar(
            "INSERT INTO audit_log (at_ms, token_id, token_name, role, action, \
                     object_type, object_id, request_id, method, path, status, summary) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(entry.at_ms)
        .bind(entry.token_id)
        .bind(&entry.token_name)
        .bind(entry.role.as_str())
        .bind(&entry.action)
        .bind(&entry.object_type)
        .bind(entry.object_id.as_deref())
        .bind(&entry.request_id)
        .bind(&entry.method)
        .bind(&entry.path)
        .bind(i32::from(entry.status))
        .bind(entry.summary.to_string())
        .fetch_one(pool)
        .await)?)
    }

    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let (actor_id, actor_name) = match &query.actor {
            Some(AuditActor::TokenId(id)) => (Some(*id), None),
            Some(AuditActor::TokenName(name)) => (None, Some(name.as_str())),
            None => (None, None),
        };
        let rows: Vec<AuditRow> = run!(self.reader(), |pool| sqlx::query_as(
            "SELECT id, at_ms, token_id, token_name, role, action, object_type, \
                     object_id, request_id, method, path, status, summary FROM audit_log \
                     WHERE ($1 IS NULL OR at_ms >= $1) AND ($2 IS NULL OR at_ms < $2) \
                     AND ($3 IS NULL OR token_id = $3) AND ($4 IS NULL OR token_name = $4) \
                     AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR object_type = $6) \
                     AND ($7 IS NULL OR object_id = $7) \
                     ORDER BY at_ms DESC, id DESC LIMIT $8 OFFSET $9",
        )
        .bind(query.from_ms)
        .bind(query.to_ms)
        .bind(actor_id)
        .bind(actor_name)
        .bind(query.action.as_deref())
        .bind(query.object_type.as_deref())
        .bind(query.object_id.as_deref())
        .bind(i64::from(query.limit.min(MAX_AUDIT_LIMIT)))
        .bind(i64::from(query.skip))
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(audit_record).collect()
    }
}
