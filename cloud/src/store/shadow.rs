//! Device shadows: one [`ShadowDocument`] per VEN in the `shadows` table,
//! written with an optimistic version check so that several shadow
//! services (one per `serve` process) and the API never lose each other's
//! updates.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::{ShadowStore, ShadowWrite};
//! use gridlink_protocol::VenId;
//! use gridlink_protocol::shadow::ShadowDocument;
//!
//! let ven = VenId::new("ven-1").unwrap();
//! let stored = store.shadow(&ven).await?;
//! let expected = stored.as_ref().map_or(0, |d| d.version);
//! let mut next = stored.unwrap_or_default();
//! next.version += 1;
//! match store.save_shadow(&ven, &next, expected, 0).await? {
//!     ShadowWrite::Saved => {}
//!     ShadowWrite::Conflict => { /* someone else wrote first: read again */ }
//! }
//! # Ok(()) }
//! ```

use std::future::Future;

use gridlink_protocol::VenId;
use gridlink_protocol::shadow::ShadowDocument;

use super::{AnyStore, StoreError};

/// What [`ShadowStore::save_shadow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowWrite {
    /// The document is stored.
    Saved,
    /// The stored version was not the expected one (or a shadow was created
    /// meanwhile): nothing was written; read again and retry.
    Conflict,
}

/// Storage of device shadows.
pub trait ShadowStore: Send + Sync {
    /// The VEN's shadow, `None` if it has none.
    fn shadow(
        &self,
        ven_id: &VenId,
    ) -> impl Future<Output = Result<Option<ShadowDocument>, StoreError>> + Send;

    /// Stores `document` (whose `version` is the new one) if the stored
    /// version is `expected`; `expected == 0` means "no shadow stored yet".
    /// `updated_ms` is kept beside it (ms since the Unix epoch).
    fn save_shadow(
        &self,
        ven_id: &VenId,
        document: &ShadowDocument,
        expected: u64,
        updated_ms: i64,
    ) -> impl Future<Output = Result<ShadowWrite, StoreError>> + Send;
}

fn to_json(document: &ShadowDocument) -> Result<(String, i64), StoreError> {
    let json = serde_json::to_string(document)
        .map_err(|e| StoreError::Invalid(format!("shadow document: {e}")))?;
    let version = i64::try_from(document.version)
        .map_err(|_| StoreError::Invalid("shadow version out of range".into()))?;
    Ok((json, version))
}

fn from_json(ven_id: &VenId, json: &str) -> Result<ShadowDocument, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Invalid(format!("stored shadow of {ven_id}: {e}")))
}

fn expected_version(expected: u64) -> Result<i64, StoreError> {
    i64::try_from(expected).map_err(|_| StoreError::Invalid("shadow version out of range".into()))
}

const fn written(rows: u64) -> ShadowWrite {
    if rows == 1 {
        ShadowWrite::Saved
    } else {
        ShadowWrite::Conflict
    }
}

impl ShadowStore for AnyStore {
    async fn shadow(&self, ven_id: &VenId) -> Result<Option<ShadowDocument>, StoreError> {
        let row: Option<(String,)> = run!(self.reader(), |pool| sqlx::query_as(
            sql!(pool; "SELECT ", [text "document"], " FROM shadows WHERE ven_id = $1")
        )
        .bind(ven_id.as_str())
        .fetch_optional(pool)
        .await)?;
        row.map(|(json,)| from_json(ven_id, &json)).transpose()
    }

    async fn save_shadow(
        &self,
        ven_id: &VenId,
        document: &ShadowDocument,
        expected: u64,
        updated_ms: i64,
    ) -> Result<ShadowWrite, StoreError> {
        let (json, version) = to_json(document)?;
        let result = if expected == 0 {
            exec!(self.writer(), |pool| sqlx::query(sql!(pool;
                "INSERT INTO shadows (ven_id, document, version, updated_at) VALUES ($1, ",
                [either "$2::jsonb" "$2"], ", $3, $4) ON CONFLICT (ven_id) DO NOTHING"
            ))
            .bind(ven_id.as_str())
            .bind(json)
            .bind(version)
            .bind(updated_ms)
            .execute(pool)
            .await)
        } else {
            exec!(self.writer(), |pool| sqlx::query(sql!(pool;
                "UPDATE shadows SET document = ", [either "$2::jsonb" "$2"],
                ", version = $3, updated_at = $4 WHERE ven_id = $1 AND version = $5"
            ))
            .bind(ven_id.as_str())
            .bind(json)
            .bind(version)
            .bind(updated_ms)
            .bind(expected_version(expected)?)
            .execute(pool)
            .await)
        };
        Ok(written(result?))
    }
}
