//! Alerts: conditions waiting out their hold-down (`alert_conditions`),
//! alerts open and resolved (`alerts`, at most one open per rule and
//! subject, enforced by a partial unique index), and the delivery outbox of
//! their notifications (`alert_deliveries`).
//!
//! Opening or resolving an alert and queueing its notifications happen in
//! one transaction, so a notification is queued exactly once per
//! transition, whichever of several `serve` processes saw the condition.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::alerts::{AlertStore, Channel, Condition, Rule, Severity};
//!
//! let condition = Condition::new(Rule::VenOffline, "ven-1", Severity::Critical, "ven-1 is offline");
//! // Opens at once (open_after 0), queueing one webhook notification.
//! let raised = store.raise_alert(&condition, 1_000, 0, &[Channel::Webhook]).await?;
//! // Resolves after the condition was clear for 60 s.
//! store.clear_alert(Rule::VenOffline, "ven-1", 2_000, 60_000, &[Channel::Webhook]).await?;
//! # Ok(()) }
//! ```

use std::future::Future;

use gridlink_protocol::{Phase, Quantity, VenId};

use super::{AnyStore, StoreError, phase_code, quantity_code};

pub use crate::model::alerts::{
    Alert, AlertFilter, AlertState, Channel, Cleared, Condition, Delivery, DeliveryOutcome,
    MAX_SUBJECT_LEN, Raised, Rule, Severity,
};

/// The outbox of one alert: `(kind, channel, delivered, attempts)` per row.
pub type DeliveryState = (String, Channel, bool, u32);

/// Storage of alerts (both backends).
pub trait AlertStore: Send + Sync {
    /// Records that `condition` holds at `now_ms`. Opens an alert (and
    /// queues an `opened` notification per channel of `channels`) when the
    /// condition has been seen continuously for `open_after_ms` (at once
    /// for 0); if one is open already, resets its resolve hold-down.
    fn raise_alert(
        &self,
        condition: &Condition,
        now_ms: i64,
        open_after_ms: i64,
        channels: &[Channel],
    ) -> impl Future<Output = Result<Raised, StoreError>> + Send;

    /// Records that the condition of (`rule`, `subject`) is clear at
    /// `now_ms`: a pending condition is forgotten; an open alert resolves
    /// (queueing a `resolved` notification per channel) once the condition
    /// has been clear for `resolve_after_ms` (at once for 0).
    fn clear_alert(
        &self,
        rule: Rule,
        subject: &str,
        now_ms: i64,
        resolve_after_ms: i64,
        channels: &[Channel],
    ) -> impl Future<Output = Result<Cleared, StoreError>> + Send;

    /// Alerts, newest first (by opening time).
    fn alerts(
        &self,
        filter: &AlertFilter,
    ) -> impl Future<Output = Result<Vec<Alert>, StoreError>> + Send;

    /// One alert.
    fn alert(&self, id: i64) -> impl Future<Output = Result<Option<Alert>, StoreError>> + Send;

    /// Marks an alert acknowledged by `by` (a token's name) with an
    /// optional note; does not resolve it. `None` if there is no such alert.
    fn acknowledge_alert(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<Alert>, StoreError>> + Send;

    /// The (rule, subject) of every open alert and pending condition.
    fn active_alert_keys(
        &self,
    ) -> impl Future<Output = Result<Vec<(Rule, String)>, StoreError>> + Send;

    /// The newest `limit` raw readings `(ts_ms, value)` of a series with
    /// `ts < before_ms`, newest first.
    fn readings_before(
        &self,
        ven_id: &VenId,
        meter: &str,
        quantity: Quantity,
        phase: Phase,
        before_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(i64, f64)>, StoreError>> + Send;

    /// Claims up to `limit` due deliveries (not delivered, not given up,
    /// `next_attempt_ms <= now_ms`, not claimed by a live lease) for
    /// `lease_ms`, counting an attempt each. Several processes never claim
    /// the same row at once (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite
    /// has one writer); a claim whose process died expires with its lease.
    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    /// Records how a claimed delivery ended.
    fn finish_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The outbox rows of an alert, by id (for tests and operators).
    fn alert_deliveries(
        &self,
        alert_id: i64,
    ) -> impl Future<Output = Result<Vec<DeliveryState>, StoreError>> + Send;
}

/// The columns of an alert row, in [`ALERT_COLUMNS`] order.
type AlertRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    String,
    String,
);

/// What every alert query selects.
macro_rules! alert_columns {
    () => {
        "id, rule, severity, subject, ven_id, event_id, project_id, state, opened_ms, \
         resolved_ms, acknowledged_ms, acknowledged_by, message, details"
    };
}

/// The columns of [`AlertRow`].
pub const ALERT_COLUMNS: &str = alert_columns!();

fn alert_from_row(row: AlertRow) -> Result<Alert, StoreError> {
    let (
        id,
        rule,
        severity,
        subject,
        ven_id,
        event_id,
        project_id,
        state,
        opened_ms,
        resolved_ms,
        acknowledged_ms,
        acknowledged_by,
        message,
        details,
    ) = row;
    Ok(Alert {
        id,
        rule: Rule::from_name(&rule)
            .ok_or_else(|| StoreError::Invalid(format!("alert {id}: unknown rule {rule:?}")))?,
        severity: Severity::from_name(&severity).ok_or_else(|| {
            StoreError::Invalid(format!("alert {id}: unknown severity {severity:?}"))
        })?,
        subject,
        ven_id,
        event_id,
        project_id,
        state: if state == "open" {
            AlertState::Open
        } else {
            AlertState::Resolved
        },
        opened_ms,
        resolved_ms,
        acknowledged_ms,
        acknowledged_by,
        message,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Invalid(format!("alert {id}: details: {e}")))?,
    })
}

fn check_condition(condition: &Condition) -> Result<String, StoreError> {
    if condition.subject.is_empty() || condition.subject.len() > MAX_SUBJECT_LEN {
        return Err(StoreError::Invalid(format!(
            "alert subject must be 1 to {MAX_SUBJECT_LEN} bytes"
        )));
    }
    serde_json::to_string(&condition.details)
        .map_err(|e| StoreError::Invalid(format!("alert details: {e}")))
}

/// The notification every channel sends: `{"event": "opened"|"resolved",
/// "alert": Alert}`.
pub fn notification_payload(kind: &str, alert: &Alert) -> Result<String, StoreError> {
    serde_json::to_string(&serde_json::json!({ "event": kind, "alert": alert }))
        .map_err(|e| StoreError::Invalid(format!("alert notification: {e}")))
}

fn delivery_from_row(
    (id, alert_id, kind, channel, payload, attempts): (i64, i64, String, String, String, i64),
) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id,
        alert_id,
        kind,
        channel: Channel::from_name(&channel).ok_or_else(|| {
            StoreError::Invalid(format!("delivery {id}: unknown channel {channel:?}"))
        })?,
        payload,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    })
}

impl AlertStore for AnyStore {
    async fn raise_alert(
        &self,
        condition: &Condition,
        now_ms: i64,
        open_after_ms: i64,
        channels: &[Channel],
    ) -> Result<Raised, StoreError> {
        let details = check_condition(condition)?;
        let rule = condition.rule.as_str();
        let subject = condition.subject.as_str();
        let mut tx = self.begin().await?;
        let open: Option<(i64,)> = run!(tx.conn(), |c| sqlx::query_as(
            "UPDATE alerts SET clear_since_ms = NULL, last_raised_ms = $3 \
                     WHERE rule = $1 AND subject = $2 AND state = 'open' RETURNING id",
        )
        .bind(rule)
        .bind(subject)
        .bind(now_ms)
        .fetch_optional(c)
        .await)?;
        if let Some((id,)) = open {
            tx.commit().await?;
            return Ok(Raised::AlreadyOpen(id));
        }
        let (since_ms,): (i64,) = run!(tx.conn(), |c| sqlx::query_as(
            "INSERT INTO alert_conditions (rule, subject, since_ms, last_ms) \
                     VALUES ($1, $2, $3, $3) \
                     ON CONFLICT (rule, subject) DO UPDATE SET last_ms = excluded.last_ms \
                     RETURNING since_ms",
        )
        .bind(rule)
        .bind(subject)
        .bind(now_ms)
        .fetch_one(c)
        .await)?;
        if now_ms.saturating_sub(since_ms) < open_after_ms {
            tx.commit().await?;
            return Ok(Raised::Pending { since_ms });
        }
        let row: Option<AlertRow> = run!(tx.conn(), |c| sqlx::query_as(concat!(
            "INSERT INTO alerts (rule, severity, subject, ven_id, event_id, project_id, \
                     state, opened_ms, message, details, last_raised_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $7) \
                     ON CONFLICT DO NOTHING RETURNING ",
            alert_columns!()
        ))
        .bind(rule)
        .bind(condition.severity.as_str())
        .bind(subject)
        .bind(condition.ven_id.as_ref().map(VenId::as_str))
        .bind(condition.event_id.as_deref())
        .bind(condition.project_id)
        .bind(now_ms)
        .bind(condition.message.as_str())
        .bind(details)
        .fetch_optional(c)
        .await)?;
        exec!(tx.conn(), |c| sqlx::query(
            "DELETE FROM alert_conditions WHERE rule = $1 AND subject = $2"
        )
        .bind(rule)
        .bind(subject)
        .execute(c)
        .await)?;
        let Some(row) = row else {
            // Another process opened it meanwhile.
            let (id,): (i64,) = run!(tx.conn(), |c| sqlx::query_as(
                "SELECT id FROM alerts WHERE rule = $1 AND subject = $2 AND state = 'open'",
            )
            .bind(rule)
            .bind(subject)
            .fetch_one(c)
            .await)?;
            tx.commit().await?;
            return Ok(Raised::AlreadyOpen(id));
        };
        let alert = alert_from_row(row)?;
        let payload = notification_payload("opened", &alert)?;
        for channel in channels {
            exec!(tx.conn(), |c| sqlx::query(
                "INSERT INTO alert_deliveries \
                         (alert_id, kind, channel, payload, created_ms, next_attempt_ms) \
                         VALUES ($1, 'opened', $2, $3, $4, $4)",
            )
            .bind(alert.id)
            .bind(channel.as_str())
            .bind(payload.as_str())
            .bind(now_ms)
            .execute(c)
            .await)?;
        }
        tx.commit().await?;
        Ok(Raised::Opened(Box::new(alert)))
    }

    async fn clear_alert(
        &self,
        rule: Rule,
        subject: &str,
        now_ms: i64,
        resolve_after_ms: i64,
        channels: &[Channel],
    ) -> Result<Cleared, StoreError> {
        let rule = rule.as_str();
        let mut tx = self.begin().await?;
        exec!(tx.conn(), |c| sqlx::query(
            "DELETE FROM alert_conditions WHERE rule = $1 AND subject = $2"
        )
        .bind(rule)
        .bind(subject)
        .execute(c)
        .await)?;
        let open: Option<(i64, i64)> = run!(tx.conn(), |c| sqlx::query_as(
            "UPDATE alerts SET clear_since_ms = COALESCE(clear_since_ms, $3) \
                     WHERE rule = $1 AND subject = $2 AND state = 'open' \
                     RETURNING id, clear_since_ms",
        )
        .bind(rule)
        .bind(subject)
        .bind(now_ms)
        .fetch_optional(c)
        .await)?;
        let Some((id, since_ms)) = open else {
            tx.commit().await?;
            return Ok(Cleared::NotOpen);
        };
        if now_ms.saturating_sub(since_ms) < resolve_after_ms {
            tx.commit().await?;
            return Ok(Cleared::Clearing { id, since_ms });
        }
        let row: Option<AlertRow> = run!(tx.conn(), |c| sqlx::query_as(concat!(
            "UPDATE alerts SET state = 'resolved', resolved_ms = $2 \
                     WHERE id = $1 AND state = 'open' RETURNING ",
            alert_columns!()
        ))
        .bind(id)
        .bind(now_ms)
        .fetch_optional(c)
        .await)?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(Cleared::NotOpen);
        };
        let alert = alert_from_row(row)?;
        let payload = notification_payload("resolved", &alert)?;
        for channel in channels {
            exec!(tx.conn(), |c| sqlx::query(
                "INSERT INTO alert_deliveries \
                         (alert_id, kind, channel, payload, created_ms, next_attempt_ms) \
                         VALUES ($1, 'resolved', $2, $3, $4, $4)",
            )
            .bind(alert.id)
            .bind(channel.as_str())
            .bind(payload.as_str())
            .bind(now_ms)
            .execute(c)
            .await)?;
        }
        tx.commit().await?;
        Ok(Cleared::Resolved(Box::new(alert)))
    }

    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let rows: Vec<AlertRow> = run!(self.reader(), |pool| sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE ($1 IS NULL OR state = $1) \
                     AND ($2 IS NULL OR ven_id = $2) AND ($3 IS NULL OR rule = $3) \
                     ORDER BY opened_ms DESC, id DESC LIMIT $4"
        ))
        .bind(filter.state.map(AlertState::as_str))
        .bind(filter.ven_id.as_ref().map(VenId::as_str))
        .bind(filter.rule.map(Rule::as_str))
        .bind(i64::from(filter.limit))
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(alert_from_row).collect()
    }

    async fn alert(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        let row: Option<AlertRow> = run!(self.reader(), |pool| sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(alert_from_row).transpose()
    }

    async fn acknowledge_alert(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Alert>, StoreError> {
        let row: Option<AlertRow> = run!(self.writer(), |pool| sqlx::query_as(concat!(
            "UPDATE alerts SET acknowledged_ms = $2, acknowledged_by = $3, ack_note = $4 \
                     WHERE id = $1 RETURNING ",
            alert_columns!()
        ))
        .bind(id)
        .bind(now_ms)
        .bind(by)
        .bind(note)
        .fetch_optional(pool)
        .await)?;
        row.map(alert_from_row).transpose()
    }

    async fn active_alert_keys(&self) -> Result<Vec<(Rule, String)>, StoreError> {
        let rows: Vec<(String, String)> = run!(self.reader(), |pool| sqlx::query_as(
            "SELECT rule, subject FROM alerts WHERE state = 'open' \
                     UNION SELECT rule, subject FROM alert_conditions",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(rule, subject)| Some((Rule::from_name(&rule)?, subject)))
            .collect())
    }

    async fn readings_before(
        &self,
        ven_id: &VenId,
        meter: &str,
        quantity: Quantity,
        phase: Phase,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(run!(self.reader(), |pool| sqlx::query_as(
            "SELECT m.ts, m.value FROM metrics m JOIN series s ON s.id = m.series_id \
                     WHERE s.ven_id = $1 AND s.meter = $2 AND s.quantity = $3 AND s.phase = $4 \
                     AND m.ts < $5 ORDER BY m.ts DESC LIMIT $6",
        )
        .bind(ven_id.as_str())
        .bind(meter)
        .bind(quantity_code(quantity))
        .bind(phase_code(phase))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?)
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<(i64, i64, String, String, String, i64)> =
            run!(self.writer(), |pool| sqlx::query_as(sql!(pool;
                "UPDATE alert_deliveries SET lease_until_ms = $2, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM alert_deliveries \
                 WHERE delivered_ms IS NULL AND gave_up_ms IS NULL AND next_attempt_ms <= $1 \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= $1) \
                 ORDER BY id LIMIT $3 ",
                skip_locked,
                ") RETURNING id, alert_id, kind, channel, payload, attempts"
            ))
            .bind(now_ms)
            .bind(now_ms.saturating_add(lease_ms))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?;
        let mut deliveries = rows
            .into_iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        deliveries.sort_by_key(|d| d.id);
        Ok(deliveries)
    }

    async fn finish_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (sql, at, error) = match outcome {
            DeliveryOutcome::Delivered => (
                "UPDATE alert_deliveries SET delivered_ms = $2, lease_until_ms = NULL, \
                         last_error = $3 WHERE id = $1",
                now_ms,
                None,
            ),
            DeliveryOutcome::Retry {
                next_attempt_ms,
                error,
            } => (
                "UPDATE alert_deliveries SET next_attempt_ms = $2, lease_until_ms = NULL, \
                         last_error = $3 WHERE id = $1",
                *next_attempt_ms,
                Some(error.as_str()),
            ),
            DeliveryOutcome::GiveUp { error } => (
                "UPDATE alert_deliveries SET gave_up_ms = $2, lease_until_ms = NULL, \
                         last_error = $3 WHERE id = $1",
                now_ms,
                Some(error.as_str()),
            ),
        };
        exec!(self.writer(), |pool| sqlx::query(sql)
            .bind(id)
            .bind(at)
            .bind(error)
            .execute(pool)
            .await)?;
        Ok(())
    }

    async fn alert_deliveries(&self, alert_id: i64) -> Result<Vec<DeliveryState>, StoreError> {
        let rows: Vec<(String, String, Option<i64>, i64)> =
            run!(self.reader(), |pool| sqlx::query_as(
                "SELECT kind, channel, delivered_ms, attempts FROM alert_deliveries \
                     WHERE alert_id = $1 ORDER BY id",
            )
            .bind(alert_id)
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(|(kind, channel, delivered, attempts)| {
                let channel = Channel::from_name(&channel)
                    .ok_or_else(|| StoreError::Invalid(format!("unknown channel {channel:?}")))?;
                Ok((
                    kind,
                    channel,
                    delivered.is_some(),
                    u32::try_from(attempts).unwrap_or(u32::MAX),
                ))
            })
            .collect()
    }
}
