//! API tokens beyond their lookup ([`Store::token`](super::Store::token)):
//! issuing with an expiry, listing and revoking ([`TokenStore`], a
//! supertrait of [`Store`](super::Store)).
//!
//! One body of SQL serves both databases (sqlx's `$n` placeholders work on
//! SQLite too); the only difference is the row lock PostgreSQL takes while
//! revoking (`FOR UPDATE`; SQLite has one writer, so the transaction is
//! serial anyway).
//!
//! A token is *active* while it is not revoked and not expired
//! ([`TokenRecord::is_active`]). The last active admin token cannot be
//! revoked ([`StoreError::Conflict`]): the API would have no one left who
//! may issue tokens, and only the CLI on the server could repair that.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::{Role, TokenStore};
//!
//! let now = 1_700_000_000_000;
//! let record = store
//!     .create_expiring_token("ops dashboard", Role::Viewer, &[7; 32], now, Some(now + 86_400_000))
//!     .await?;
//! assert!(record.is_active(now));
//! store.revoke_token(record.id, now + 1).await?;
//! assert!(store.tokens().await?.iter().all(|t| t.id != record.id || t.revoked_ms.is_some()));
//! # Ok(()) }
//! ```

use std::future::Future;

use super::{AnyStore, Role, StoreError, TokenRecord, check_token_name};

/// The columns of a token, in the order of [`TokenRow`].
pub(crate) const TOKEN_COLUMNS: &str = "id, name, role, created, expires, revoked";

/// One `api_tokens` row: id, name, role, created, expires, revoked.
pub(crate) type TokenRow = (i64, String, String, i64, Option<i64>, Option<i64>);

/// The record of a stored row.
pub(crate) fn token_record(
    (id, name, role, created_ms, expires_ms, revoked_ms): TokenRow,
) -> Result<TokenRecord, StoreError> {
    let role = Role::from_name(&role)
        .ok_or_else(|| StoreError::Invalid(format!("stored token role {role:?}")))?;
    Ok(TokenRecord {
        id,
        name,
        role,
        created_ms,
        expires_ms,
        revoked_ms,
    })
}

/// Issuing, listing and revoking API tokens.
pub trait TokenStore: Send + Sync {
    /// Stores a token hash created at `now_ms` that expires at
    /// `expires_ms` (`None`: never); returns the record. An empty or too
    /// long name is [`StoreError::Invalid`].
    fn create_expiring_token(
        &self,
        name: &str,
        role: Role,
        hash: &[u8; 32],
        now_ms: i64,
        expires_ms: Option<i64>,
    ) -> impl Future<Output = Result<TokenRecord, StoreError>> + Send;

    /// Every token (revoked and expired ones too), by id, without hashes.
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>, StoreError>> + Send;

    /// Revokes a token at `now_ms` (a revoked token keeps its first
    /// revocation time); `None` if there is no such id. Revoking the last
    /// active admin token is [`StoreError::Conflict`] and changes nothing.
    fn revoke_token(
        &self,
        id: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;
}

impl TokenStore for AnyStore {
    async fn create_expiring_token(
        &self,
        name: &str,
        role: Role,
        hash: &[u8; 32],
        now_ms: i64,
        expires_ms: Option<i64>,
    ) -> Result<TokenRecord, StoreError> {
        check_token_name(name)?;
        let id: i64 = run!(self.writer(), |pool| sqlx::query_scalar(
            "INSERT INTO api_tokens (name, role, hash, created, expires) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash.as_slice())
        .bind(now_ms)
        .bind(expires_ms)
        .fetch_one(pool)
        .await)?;
        Ok(TokenRecord {
            id,
            name: name.to_owned(),
            role,
            created_ms: now_ms,
            expires_ms,
            revoked_ms: None,
        })
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows: Vec<TokenRow> = run!(self.reader(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id")
        ))
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(token_record).collect()
    }

    async fn revoke_token(&self, id: i64, now_ms: i64) -> Result<Option<TokenRecord>, StoreError> {
        let mut tx = self.begin().await?;
        // Lock every admin token still unrevoked (PostgreSQL), so
        // two admins revoking each other at once cannot both
        // succeed.
        let _: Vec<i64> = run!(tx.conn(), |c| sqlx::query_scalar(sql!(c;
            "SELECT id FROM api_tokens WHERE role = 'admin' AND revoked IS NULL ORDER BY id",
            for_update
        ))
        .fetch_all(c)
        .await)?;
        let row: Option<TokenRow> = run!(tx.conn(), |c| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(c)
        .await)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let record = token_record(row)?;
        if record.revoked_ms.is_some() {
            return Ok(Some(record));
        }
        if record.role == Role::Admin && record.is_active(now_ms) {
            let others: i64 = run!(tx.conn(), |c| sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_tokens WHERE role = 'admin' AND id <> $1 \
                         AND revoked IS NULL AND (expires IS NULL OR expires > $2)",
            )
            .bind(id)
            .bind(now_ms)
            .fetch_one(c)
            .await)?;
            if others == 0 {
                return Err(StoreError::Conflict(format!(
                    "token {id} is the last active admin token; issue another admin \
                             token before revoking it, or no one could manage tokens through \
                             the API"
                )));
            }
        }
        exec!(tx.conn(), |c| sqlx::query(
            "UPDATE api_tokens SET revoked = $2 WHERE id = $1"
        )
        .bind(id)
        .bind(now_ms)
        .execute(c)
        .await)?;
        tx.commit().await?;
        Ok(Some(TokenRecord {
            revoked_ms: Some(now_ms),
            ..record
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_records() {
        let record = token_record((1, "a".into(), "admin".into(), 5, Some(10), None)).unwrap();
        assert_eq!(record.role, Role::Admin);
        assert!(record.is_active(9));
        assert!(!record.is_active(10));
        let revoked = TokenRecord {
            revoked_ms: Some(7),
            ..record
        };
        assert!(!revoked.is_active(6));
        assert!(token_record((1, "a".into(), "root".into(), 5, None, None)).is_err());
    }
}
