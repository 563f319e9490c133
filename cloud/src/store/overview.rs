//! What the dashboard's overview needs beyond the other stores: every
//! VEN's latest site-meter power ([`OverviewStore::latest_site_power`]).
//!
//! The site meter is chosen as [`DrStore::site_power`](super::DrStore::site_power)
//! chooses it: the registered `site_meter`, or without one the VEN's only
//! `active_power` / `total` series; a VEN with several such series and no
//! registered site meter is left out (no figure rather than a sub-meter's).
//!
//! The latest reading is read from the newest 1-minute rollup bucket
//! (`last_ts`, `last_value`): one primary-key lookup per VEN, however much
//! raw data is stored, and still there after raw retention.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::OverviewStore as _;
//!
//! for power in store.latest_site_power().await? {
//!     println!("{}: {} W at {} ms", power.ven_id, power.value_w, power.ts_ms);
//! }
//! # Ok(()) }
//! ```

use std::future::Future;

use gridlink_protocol::VenId;

use super::{AnyStore, StoreError};

/// The newest reading of a VEN's site meter (`active_power` / `total`).
#[derive(Debug, Clone, PartialEq)]
pub struct SitePower {
    /// The VEN.
    pub ven_id: VenId,
    /// The reading's own time, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Active power in W: positive is import from the grid, negative export.
    pub value_w: f64,
}

/// Storage queries of the dashboard's overview.
pub trait OverviewStore: Send + Sync {
    /// Every VEN's latest site-meter power reading, by VEN id; VENs without
    /// one (no readings, or no identifiable site meter) are left out.
    fn latest_site_power(&self) -> impl Future<Output = Result<Vec<SitePower>, StoreError>> + Send;
}

/// The site-meter series of each VEN joined with its newest 1-minute
/// bucket, by VEN id.
macro_rules! latest_site_power_sql {
    () => {
        concat!(
            "SELECT s.ven_id, r.last_ts, r.last_value \
             FROM series s JOIN vens v ON v.ven_id = s.ven_id \
             JOIN metrics_1m r ON r.series_id = s.id \
               AND r.bucket = (SELECT max(b.bucket) FROM metrics_1m b WHERE b.series_id = s.id) \
             WHERE s.quantity = 0 AND s.phase = 0 \
               AND (s.meter = v.site_meter OR (v.site_meter IS NULL AND (SELECT count(*) FROM series o \
                 WHERE o.ven_id = s.ven_id AND o.quantity = 0 AND o.phase = 0) = 1)) \
             ORDER BY s.ven_id"
        )
    };
}

fn rows_to_power(rows: Vec<(String, i64, f64)>) -> Result<Vec<SitePower>, StoreError> {
    rows.into_iter()
        .map(|(ven, ts_ms, value_w)| {
            let ven_id = VenId::new(&ven)
                .map_err(|e| StoreError::Invalid(format!("stored VEN id {ven:?}: {e}")))?;
            Ok(SitePower {
                ven_id,
                ts_ms,
                value_w,
            })
        })
        .collect()
}

impl OverviewStore for AnyStore {
    async fn latest_site_power(&self) -> Result<Vec<SitePower>, StoreError> {
        let rows: Vec<(String, i64, f64)> = run!(self.reader(), |pool| sqlx::query_as(
            sql!(pool; {latest_site_power_sql!()}, collate_c)
        )
        .fetch_all(pool)
        .await)?;
        rows_to_power(rows)
    }
}
