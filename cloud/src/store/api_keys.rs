//! API keys for HTTP ingest (`POST /api/v1/ingest`): one row per key in
//! `api_keys` (only the SHA-256 of its secret is kept), the VENs it may
//! write in `api_key_vens`, and the per-VEN counter that gives requests
//! without an `Idempotency-Key` their `batch_seq` (`http_ingest_seq`).
//!
//! Creating a key registers its VENs (a row in `vens`, as `PUT
//! /api/v1/vens/{id}/groups` does), so `ingest.refuse_unknown_vens` does
//! not keep their data out. Revoking keeps the row, with the time.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::{ApiKeyStore, NewApiKey};
//! use gridlink_protocol::VenId;
//!
//! let key = NewApiKey {
//!     name: "meter portal".into(),
//!     customer: "ACME".into(),
//!     ven_ids: vec![VenId::new("cust-1-main").unwrap()],
//!     hash: [7; 32],
//! };
//! let record = store.create_api_key(&key, 1_700_000_000_000).await?;
//! let stored = store.api_key(record.id).await?.expect("just created");
//! assert_eq!(stored.hash, [7; 32]);
//! store.revoke_api_key(record.id, 1_700_000_001_000).await?;
//! # Ok(()) }
//! ```

use std::future::Future;

use gridlink_protocol::VenId;

use super::dr::json_list;
use super::{AnyStore, StoreError, check_token_name};

/// Most VENs one API key may write.
pub const MAX_API_KEY_VENS: usize = 1000;
/// Longest customer name of an API key.
pub const MAX_CUSTOMER_LEN: usize = 128;
/// The `batch_seq` of HTTP ingest requests starts here (2^63): agents
/// count from 0 and never reach it, so HTTP batches and MQTT batches of one
/// VEN cannot collide. Allocated sequence numbers are `2^63 + n` (n from
/// 1); those derived from an `Idempotency-Key` have the two top bits set.
pub const HTTP_SEQ_BASE: u64 = 1 << 63;

/// A key to store: who it is for, what it may write, and the hash of its
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// A human name ("meter portal"), 1 to 128 characters, no control
    /// characters.
    pub name: String,
    /// The customer it belongs to, 1 to [`MAX_CUSTOMER_LEN`] characters,
    /// no control characters.
    pub customer: String,
    /// The VENs it may write, 1 to [`MAX_API_KEY_VENS`] (repeats are
    /// stored once).
    pub ven_ids: Vec<VenId>,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
}

/// A stored key as the API lists it (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The key's id (also the middle part of the key).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its customer.
    pub customer: String,
    /// The VENs it may write, by id.
    pub ven_ids: Vec<VenId>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// When it was revoked, ms; `None` while it is valid.
    pub revoked_ms: Option<i64>,
}

/// A stored key with the hash its secret is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// The key.
    pub record: ApiKeyRecord,
    /// SHA-256 of its secret.
    pub hash: [u8; 32],
}

/// Storage of API keys.
pub trait ApiKeyStore: Send + Sync {
    /// Stores a key and registers its VENs if unknown, in one transaction.
    /// Invalid input is [`StoreError::Invalid`] and stores nothing.
    fn create_api_key(
        &self,
        key: &NewApiKey,
        now_ms: i64,
    ) -> impl Future<Output = Result<ApiKeyRecord, StoreError>> + Send;

    /// Every key (revoked ones too), by id.
    fn api_keys(&self) -> impl Future<Output = Result<Vec<ApiKeyRecord>, StoreError>> + Send;

    /// One key with its hash; `None` if there is no such id.
    fn api_key(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<StoredApiKey>, StoreError>> + Send;

    /// Revokes a key (a revoked key stays revoked at its first revocation
    /// time); `None` if there is no such id.
    fn revoke_api_key(
        &self,
        id: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord>, StoreError>> + Send;

    /// The next `batch_seq` for an HTTP ingest request of `ven_id`:
    /// [`HTTP_SEQ_BASE`] + n, n counting from 1 per VEN in the database, so
    /// it is never handed out twice, across processes and restarts.
    fn next_http_batch_seq(
        &self,
        ven_id: &VenId,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Checks a new key's fields; the error names the field.
fn check(key: &NewApiKey) -> Result<Vec<&str>, StoreError> {
    check_token_name(&key.name)?;
    if key.customer.trim().is_empty()
        || key.customer.chars().count() > MAX_CUSTOMER_LEN
        || key.customer.chars().any(char::is_control)
    {
        return Err(StoreError::Invalid(format!(
            "customer must be 1 to {MAX_CUSTOMER_LEN} characters without control characters"
        )));
    }
    let mut vens: Vec<&str> = key.ven_ids.iter().map(VenId::as_str).collect();
    vens.sort_unstable();
    vens.dedup();
    if vens.is_empty() || vens.len() > MAX_API_KEY_VENS {
        return Err(StoreError::Invalid(format!(
            "ven_ids must name 1 to {MAX_API_KEY_VENS} VENs"
        )));
    }
    Ok(vens)
}

/// One row of the key-with-VENs join: id, name, customer, hash, created,
/// revoked, and one VEN (null for a key without any).
type KeyRow = (
    i64,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<String>,
);

/// Folds join rows (sorted by key id) into keys with their hashes.
fn fold(rows: Vec<KeyRow>) -> Result<Vec<StoredApiKey>, StoreError> {
    let mut keys: Vec<StoredApiKey> = Vec::new();
    for (id, name, customer, hash, created_ms, revoked_ms, ven) in rows {
        if keys.last().is_none_or(|k| k.record.id != id) {
            let hash: [u8; 32] = hash
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Invalid(format!("stored hash of API key {id}")))?;
            keys.push(StoredApiKey {
                record: ApiKeyRecord {
                    id,
                    name,
                    customer,
                    ven_ids: Vec::new(),
                    created_ms,
                    revoked_ms,
                },
                hash,
            });
        }
        if let (Some(ven), Some(key)) = (ven, keys.last_mut()) {
            let ven = VenId::new(ven)
                .map_err(|e| StoreError::Invalid(format!("stored VEN of API key {id}: {e}")))?;
            key.record.ven_ids.push(ven);
        }
    }
    Ok(keys)
}

const fn http_seq(n: i64) -> u64 {
    HTTP_SEQ_BASE | (n as u64 & !HTTP_SEQ_BASE)
}

/// The keys with their VENs, one row per (key, VEN): a literal, so the
/// queries built on it stay static SQL.
macro_rules! select_keys {
    () => {
        "SELECT k.id, k.name, k.customer, k.hash, k.created, k.revoked, v.ven_id \
         FROM api_keys k LEFT JOIN api_key_vens v ON v.key_id = k.id"
    };
}

impl ApiKeyStore for AnyStore {
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        now_ms: i64,
    ) -> Result<ApiKeyRecord, StoreError> {
        let vens = check(key)?;
        let list = json_list(vens.iter().copied());
        let mut tx = self.begin().await?;
        let id: i64 = run!(tx.conn(), |c| {
            sqlx::query_scalar(
            "INSERT INTO api_keys (name, customer, hash, created) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(&key.name)
        .bind(&key.customer)
        .bind(key.hash.as_slice())
        .bind(now_ms)
        .fetch_one(c)
        .await
        })?;
        // In VEN order, so concurrent writers lock the rows in one order.
        exec!(tx.conn(), |c| sqlx::query(sql!(c;
            "INSERT INTO vens (ven_id) SELECT value FROM ", [json_each 1],
            " WHERE true ORDER BY 1 ON CONFLICT DO NOTHING"
        ))
        .bind(&list)
        .execute(c)
        .await)?;
        exec!(tx.conn(), |c| sqlx::query(sql!(c;
            "INSERT INTO api_key_vens (key_id, ven_id) SELECT $1, value FROM ", [json_each 2]
        ))
        .bind(id)
        .bind(&list)
        .execute(c)
        .await)?;
        tx.commit().await?;
        record(id, key, &vens, now_ms)
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows: Vec<KeyRow> = run!(self.reader(), |pool| sqlx::query_as(concat!(
            select_keys!(),
            " ORDER BY k.id, v.ven_id"
        ))
        .fetch_all(pool)
        .await)?;
        Ok(fold(rows)?.into_iter().map(|k| k.record).collect())
    }

    async fn api_key(&self, id: i64) -> Result<Option<StoredApiKey>, StoreError> {
        let rows: Vec<KeyRow> = run!(self.reader(), |pool| sqlx::query_as(concat!(
            select_keys!(),
            " WHERE k.id = $1 ORDER BY v.ven_id"
        ))
        .bind(id)
        .fetch_all(pool)
        .await)?;
        Ok(fold(rows)?.pop())
    }

    async fn revoke_api_key(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        exec!(self.writer(), |pool| sqlx::query(
            "UPDATE api_keys SET revoked = COALESCE(revoked, $2) WHERE id = $1"
        )
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await)?;
        // Read through the writer: SQLite's readers may not see the commit yet.
        let rows: Vec<KeyRow> = run!(self.writer(), |pool| sqlx::query_as(concat!(
            select_keys!(),
            " WHERE k.id = $1 ORDER BY v.ven_id"
        ))
        .bind(id)
        .fetch_all(pool)
        .await)?;
        Ok(fold(rows)?.pop().map(|k| k.record))
    }

    async fn next_http_batch_seq(&self, ven_id: &VenId) -> Result<u64, StoreError> {
        // In an explicit transaction: on SQLite, as one autocommit statement
        // this upsert made each HTTP ingest request ~10 ms slower (measured
        // with benches/http_ingest.rs: 10.5 ms p50 against 1.2 ms).
        let mut tx = self.begin().await?;
        let n: i64 = run!(tx.conn(), |c| sqlx::query_scalar(
            "INSERT INTO http_ingest_seq AS s (ven_id, last_seq) VALUES ($1, 1) \
             ON CONFLICT (ven_id) DO UPDATE SET last_seq = s.last_seq + 1 RETURNING last_seq",
        )
        .bind(ven_id.as_str())
        .fetch_one(c)
        .await)?;
        tx.commit().await?;
        Ok(http_seq(n))
    }
}

/// The record of a key just stored.
fn record(
    id: i64,
    key: &NewApiKey,
    vens: &[&str],
    now_ms: i64,
) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id,
        name: key.name.clone(),
        customer: key.customer.clone(),
        ven_ids: vens
            .iter()
            .map(|v| VenId::new(*v).map_err(|e| StoreError::Invalid(e.to_string())))
            .collect::<Result<_, _>>()?,
        created_ms: now_ms,
        revoked_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vens: &[&str]) -> NewApiKey {
        NewApiKey {
            name: "portal".into(),
            customer: "ACME".into(),
            ven_ids: vens.iter().map(|v| VenId::new(*v).unwrap()).collect(),
            hash: [1; 32],
        }
    }

    #[test]
    fn new_keys_are_checked() {
        assert_eq!(check(&key(&["b", "a", "b"])).unwrap(), ["a", "b"]);
        assert!(check(&key(&[])).is_err());
        let mut k = key(&["a"]);
        k.customer = " ".into();
        assert!(check(&k).is_err());
        k.customer = "x".repeat(MAX_CUSTOMER_LEN + 1);
        assert!(check(&k).is_err());
        let mut k = key(&["a"]);
        k.name = String::new();
        assert!(check(&k).is_err());
        let many: Vec<String> = (0..=MAX_API_KEY_VENS).map(|i| format!("v{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(check(&key(&many)).is_err());
    }

    #[test]
    fn http_seqs_are_above_every_agent_seq() {
        assert_eq!(http_seq(1), (1 << 63) + 1);
        assert!(http_seq(1) > u64::from(u32::MAX) << 31);
        assert_eq!(http_seq(i64::MAX), u64::MAX);
    }

    #[test]
    fn join_rows_fold_into_keys() {
        let rows = vec![
            (
                1,
                "a".into(),
                "c".into(),
                vec![0; 32],
                5,
                None,
                Some("v1".into()),
            ),
            (
                1,
                "a".into(),
                "c".into(),
                vec![0; 32],
                5,
                None,
                Some("v2".into()),
            ),
            (2, "b".into(), "c".into(), vec![1; 32], 6, Some(7), None),
        ];
        let keys = fold(rows).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].record.ven_ids.len(), 2);
        assert_eq!(keys[1].record.revoked_ms, Some(7));
        assert!(keys[1].record.ven_ids.is_empty());
        let bad = vec![(1, "a".into(), "c".into(), vec![0; 3], 5, None, None)];
        assert!(fold(bad).is_err());
    }
}
