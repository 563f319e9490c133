//! The alert engine: feeds the [`rules`](super::rules) from the feed of
//! committed telemetry and statuses and from a periodic scan, and raises
//! and clears alerts in the store.
//!
//! A state machine with two entry points, [`AlertEngine::handle`] (one
//! feed item) and [`AlertEngine::scan`], both taking the time, so tests
//! drive it without waiting; [`AlertEngine::run`] is the thin loop around
//! them that `serve` spawns.
//!
//! * Telemetry: each new reading of an `energy_import` / `energy_export`
//!   or `active_power` series is compared with the readings stored before
//!   it, after dropping readings not newer than the newest this process saw
//!   of that series (the feed may repeat items). Those are read from the
//!   store (several processes split the messages), unless the two newest
//!   readings this process saw of the series are consecutive with the new
//!   one (it follows the newer within their interval), which is what a
//!   single process sees.
//! * Statuses: an offline status (last will) raises `ven_offline` at once
//!   (subject to its hold-down); an online one clears it.
//! * Scan: offline by silence or stored last will over `store.vens()`, DR
//!   non-response over recent events, and the set of active (rule, subject)
//!   keys, which limits the clears of clean readings to alerts that exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gridlink_protocol::{Phase, Quantity, VenId};
use tokio::sync::{Notify, broadcast, watch};

use super::rules::{self, Finding, SeriesKind, SeriesRules};
use super::{AlertMetrics, AlertSettings, Cleared, Condition, Raised, Rule, Severity};
use crate::dispatch::response::measure;
use crate::feed::FeedItem;
use crate::store::dr::DrFilter;
use crate::store::{IngestBatch, Store, StoreError};

/// Events read per page by the DR scan.
const EVENT_PAGE: u32 = 500;

type SeriesKey = (VenId, String, Quantity, Phase);

/// The engine's state: what it needs to remember between feed items.
pub struct AlertEngine<S> {
    store: Arc<S>,
    settings: Arc<AlertSettings>,
    metrics: Arc<AlertMetrics>,
    /// Newest reading time this process saw per series (repeats are dropped).
    seen: HashMap<SeriesKey, [(i64, f64); 2]>,
    /// Per VEN: when its last batch was received, and the interval before it.
    reporting: HashMap<VenId, (i64, Option<i64>)>,
    /// Open alerts and pending conditions (refreshed by every scan).
    active: HashSet<(Rule, String)>,
    /// Woken when a notification was queued.
    delivery_wake: Arc<Notify>,
}

impl<S: Store> AlertEngine<S> {
    /// An engine over `store`.
    pub fn new(store: Arc<S>, settings: Arc<AlertSettings>, metrics: Arc<AlertMetrics>) -> Self {
        Self {
            store,
            settings,
            metrics,
            seen: HashMap::new(),
            reporting: HashMap::new(),
            active: HashSet::new(),
            delivery_wake: Arc::new(Notify::new()),
        }
    }

    /// Notified whenever an alert opened or resolved (its notifications are
    /// queued): give it to the delivery worker.
    pub fn delivery_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.delivery_wake)
    }

    /// Evaluates one feed item at `now_ms`.
    pub async fn handle(&mut self, item: &FeedItem, now_ms: i64) -> Result<(), StoreError> {
        match item {
            FeedItem::Telemetry(batch) => self.telemetry(batch, now_ms).await,
            FeedItem::Status { status, .. } => {
                let subject = status.ven_id.as_str().to_owned();
                if status.online {
                    self.clear_if_active(Rule::VenOffline, &subject, now_ms)
                        .await
                } else {
                    let finding = Finding {
                        message: format!("{} is offline (last will or shutdown)", status.ven_id),
                        details: serde_json::json!({ "reason": "last_will" }),
                    };
                    let condition = condition(
                        Rule::VenOffline,
                        subject,
                        Some(&status.ven_id),
                        None,
                        finding,
                    );
                    self.raise(&condition, now_ms).await
                }
            }
        }
    }

    async fn telemetry(&mut self, batch: &IngestBatch, now_ms: i64) -> Result<(), StoreError> {
        let ven = &batch.ven_id;
        let interval = match self.reporting.get(ven) {
            // A gap the VEN would have been offline for is an outage, not
            // its reporting interval.
            Some(&(last, interval))
                if batch.received_ms > last
                    && batch.received_ms - last
                        <= rules::silence_limit_ms(
                            self.settings.offline_after_ms,
                            self.settings.offline_intervals,
                            interval,
                        ) =>
            {
                Some(batch.received_ms - last)
            }
            Some(&(_, interval)) => interval,
            None => None,
        };
        let last = self
            .reporting
            .get(ven)
            .map_or(batch.received_ms, |&(last, _)| last.max(batch.received_ms));
        self.reporting.insert(ven.clone(), (last, interval));
        self.clear_if_active(Rule::VenOffline, ven.as_str(), now_ms)
            .await?;
        // The new readings of every series a rule reads.
        let mut checks = Vec::new();
        for series in &batch.series {
            let kind = match series.quantity {
                Quantity::EnergyImport | Quantity::EnergyExport => SeriesKind::EnergyCounter,
                Quantity::ActivePower => SeriesKind::ActivePower,
                _ => continue,
            };
            let key: SeriesKey = (
                ven.clone(),
                series.meter.clone(),
                series.quantity,
                series.phase,
            );
            let cached = self.seen.get(&key).copied();
            let newest_seen = cached.map_or(i64::MIN, |[(ts, _), _]| ts);
            let mut new: Vec<(i64, f64)> = series
                .points
                .iter()
                .filter(|p| p.ts_ms > newest_seen)
                .map(|&p| (p.ts_ms, series.value(p)))
                .collect();
            new.sort_by_key(|&(ts, _)| ts);
            if !new.is_empty() {
                checks.push((series, kind, key, cached, new));
            }
        }
        // Their previous readings, read from the store concurrently.
        let previous = join_all(
            checks
                .iter()
                .map(|(_, _, key, cached, new)| self.previous(key, *cached, new[0].0)),
        )
        .await;
        for ((series, kind, key, _, new), before) in checks.into_iter().zip(previous) {
            let before = before?;
            let series_rules = SeriesRules {
                kind,
                import_only: self.settings.is_import_only(ven.as_str(), &series.meter),
                spike_w: self.settings.spike_w,
                gap_intervals: self.settings.gap_intervals,
            };
            let subject = format!(
                "{ven}/{}/{}/{}",
                series.meter,
                series.quantity.name(),
                series.phase.name()
            );
            for (rule, finding) in rules::check_series(&series_rules, &before, &new) {
                match finding {
                    Some(mut finding) => {
                        if let serde_json::Value::Object(details) = &mut finding.details {
                            details.insert("meter".into(), series.meter.clone().into());
                            details.insert("quantity".into(), series.quantity.name().into());
                            details.insert("phase".into(), series.phase.name().into());
                        }
                        let condition = condition(rule, subject.clone(), Some(ven), None, finding);
                        self.raise(&condition, now_ms).await?;
                    }
                    None => self.clear_if_active(rule, &subject, now_ms).await?,
                }
            }
            let mut newest = before.iter().rev().chain(&new).rev();
            if let (Some(&last), previous) = (newest.next(), newest.next()) {
                // With one reading only, (MIN, 0) never passes the cache test.
                let previous = previous.copied().unwrap_or((i64::MIN, 0.0));
                self.seen.insert(key, [last, previous]);
            }
        }
        Ok(())
    }

    /// The two readings before `first_ts` of a series, newest first: the
    /// two newest this process saw when the new reading follows them within
    /// their interval (nothing fits between), else the store's.
    async fn previous(
        &self,
        key: &SeriesKey,
        cached: Option<[(i64, f64); 2]>,
        first_ts: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        match cached {
            Some([(t1, v1), (t0, v0)]) if t0 > i64::MIN && t1 > t0 && first_ts - t1 <= t1 - t0 => {
                Ok(vec![(t1, v1), (t0, v0)])
            }
            _ => {
                let (ven, meter, quantity, phase) = key;
                self.store
                    .readings_before(ven, meter, *quantity, *phase, first_ts, 2)
                    .await
            }
        }
    }

    /// The periodic evaluation at `now_ms`: refreshes the active keys,
    /// then offline VENs and DR non-response.
    pub async fn scan(&mut self, now_ms: i64) -> Result<(), StoreError> {
        self.active = self.store.active_alert_keys().await?.into_iter().collect();
        for ven in self.store.vens().await? {
            let interval = self.reporting.get(&ven.ven_id).and_then(|&(_, i)| i);
            let limit = rules::silence_limit_ms(
                self.settings.offline_after_ms,
                self.settings.offline_intervals,
                interval,
            );
            let subject = ven.ven_id.as_str().to_owned();
            match rules::offline(&ven, now_ms, limit) {
                Some(finding) => {
                    let condition =
                        condition(Rule::VenOffline, subject, Some(&ven.ven_id), None, finding);
                    self.raise(&condition, now_ms).await?;
                }
                None => {
                    self.clear_if_active(Rule::VenOffline, &subject, now_ms)
                        .await?;
                }
            }
        }
        self.scan_events(now_ms).await?;
        self.scan_milestones(now_ms).await
    }

    /// `project_milestone`: records newly reached milestones
    /// ([`crate::projects::refresh_all_milestones`]) and raises one alert
    /// (info) per reached milestone. Raising is idempotent, so a milestone
    /// recorded elsewhere (a `GET` of its project refreshes too) still gets
    /// its alert. A reached milestone stays reached: its alert does not
    /// resolve by itself (acknowledge it).
    async fn scan_milestones(&mut self, now_ms: i64) -> Result<(), StoreError> {
        crate::projects::refresh_all_milestones(&*self.store).await?;
        for project in self.store.projects().await? {
            for milestone in &project.milestones {
                let Some(reached_ms) = milestone.reached_ms else {
                    continue;
                };
                let mut subject = format!("project-{}/{}", project.id, milestone.name);
                let mut cut = subject.len().min(crate::model::alerts::MAX_SUBJECT_LEN);
                while !subject.is_char_boundary(cut) {
                    cut -= 1;
                }
                subject.truncate(cut);
                let quantity = milestone.quantity.as_str();
                let mut condition = Condition::new(
                    Rule::ProjectMilestone,
                    subject,
                    severity(Rule::ProjectMilestone),
                    format!(
                        "project {:?} reached its milestone {:?}: {} kWh {quantity}",
                        project.name, milestone.name, milestone.threshold_kwh
                    ),
                );
                condition.project_id = Some(project.id);
                condition.details = serde_json::json!({
                    "project_name": project.name,
                    "milestone": milestone.name,
                    "quantity": quantity,
                    "threshold_kwh": milestone.threshold_kwh,
                    "reached_ms": reached_ms,
                });
                self.raise(&condition, now_ms).await?;
            }
        }
        Ok(())
    }

    async fn scan_events(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let settings = Arc::clone(&self.settings);
        let mut evaluated: HashSet<(Rule, String)> = HashSet::new();
        let mut skip = 0;
        loop {
            // Only events that ended within the lookback (or have no end).
            let filter = DrFilter {
                active_at: Some(now_ms.saturating_sub(settings.dr_lookback_ms)),
                skip,
                limit: EVENT_PAGE,
                ..DrFilter::default()
            };
            let events = self.store.events(&filter).await?;
            let page = events.len();
            for event in events {
                let Some(start) = event.start_ms else {
                    continue;
                };
                let horizon = event
                    .end_ms
                    .unwrap_or(start)
                    .saturating_add(settings.dr_lookback_ms);
                if now_ms < start.saturating_add(settings.dr_ack_grace_ms) || now_ms >= horizon {
                    continue;
                }
                let event_id = event.id.as_str().to_owned();
                let acks = self.store.event_acks(&event.id).await?;
                for ven in &event.vens {
                    let subject = format!("{event_id}/{ven}");
                    evaluated.insert((Rule::DrNoAck, subject.clone()));
                    if acks.iter().any(|ack| &ack.ven_id == ven) {
                        self.clear_if_active(Rule::DrNoAck, &subject, now_ms)
                            .await?;
                    } else {
                        let finding = Finding {
                            message: format!(
                                "{ven} has not acknowledged event {event_id} ({} s after its start)",
                                (now_ms - start) / 1000
                            ),
                            details: serde_json::json!({
                                "start_ms": start, "grace_ms": settings.dr_ack_grace_ms,
                            }),
                        };
                        let condition =
                            condition(Rule::DrNoAck, subject, Some(ven), Some(&event_id), finding);
                        self.raise(&condition, now_ms).await?;
                    }
                }
                if let Some(end) = event.end_ms.filter(|&end| end <= now_ms) {
                    self.check_shed(&event, &event_id, start, end, now_ms, &mut evaluated)
                        .await?;
                }
            }
            if page < EVENT_PAGE as usize {
                break;
            }
            skip += EVENT_PAGE;
        }
        // DR alerts of events out of the window (or deleted, or no longer
        // targeting the VEN) are clear.
        let stale: Vec<(Rule, String)> = self
            .active
            .iter()
            .filter(|(rule, _)| matches!(rule, Rule::DrNoAck | Rule::DrNoShed))
            .filter(|key| !evaluated.contains(*key))
            .cloned()
            .collect();
        for (rule, subject) in stale {
            self.clear_if_active(rule, &subject, now_ms).await?;
        }
        Ok(())
    }

    /// `dr_no_shed` for every measured VEN of an ended event.
    async fn check_shed(
        &mut self,
        event: &crate::store::dr::EventRecord,
        event_id: &str,
        start: i64,
        end: i64,
        now_ms: i64,
        evaluated: &mut HashSet<(Rule, String)>,
    ) -> Result<(), StoreError> {
        let min_shed_w = self.settings.dr_shed_min_w;
        let measured = measure(&*self.store, &event.vens, start, end).await?;
        for (ven, base, dur, _) in measured.sheds() {
            let subject = format!("{event_id}/{ven}");
            evaluated.insert((Rule::DrNoShed, subject.clone()));
            match rules::no_shed(event_id, ven.as_str(), base.mean_w, dur.mean_w, min_shed_w) {
                Some(mut finding) => {
                    if let serde_json::Value::Object(details) = &mut finding.details {
                        details.insert("start_ms".into(), start.into());
                        details.insert("end_ms".into(), end.into());
                    }
                    let condition =
                        condition(Rule::DrNoShed, subject, Some(ven), Some(event_id), finding);
                    self.raise(&condition, now_ms).await?;
                }
                None => {
                    self.clear_if_active(Rule::DrNoShed, &subject, now_ms)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn raise(&mut self, condition: &Condition, now_ms: i64) -> Result<(), StoreError> {
        let raised = super::raise(&*self.store, &self.settings, condition, now_ms).await?;
        self.active
            .insert((condition.rule, condition.subject.clone()));
        if let Raised::Opened(alert) = raised {
            tracing::info!(
                id = alert.id,
                rule = alert.rule.as_str(),
                subject = alert.subject,
                "alert opened: {}",
                alert.message
            );
            self.metrics.opened.fetch_add(1, Ordering::Relaxed);
            self.delivery_wake.notify_one();
        }
        Ok(())
    }

    async fn clear_if_active(
        &mut self,
        rule: Rule,
        subject: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let key = (rule, subject.to_owned());
        if !self.active.contains(&key) {
            return Ok(());
        }
        match super::clear(&*self.store, &self.settings, rule, subject, now_ms).await? {
            Cleared::NotOpen => {
                self.active.remove(&key);
            }
            Cleared::Clearing { .. } => {}
            Cleared::Resolved(alert) => {
                tracing::info!(
                    id = alert.id,
                    rule = alert.rule.as_str(),
                    subject = alert.subject,
                    "alert resolved"
                );
                self.active.remove(&key);
                self.metrics.resolved.fetch_add(1, Ordering::Relaxed);
                self.delivery_wake.notify_one();
            }
        }
        Ok(())
    }

    /// Runs until `stop`: evaluates every feed item as it comes and scans
    /// every `scan_interval` (at once first). Database errors are logged,
    /// counted and the item skipped (the next scan re-evaluates states); a
    /// lagged feed is logged and followed on.
    pub async fn run(
        mut self,
        feed: broadcast::Receiver<Arc<FeedItem>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut feed = Some(feed);
        let mut ticker = tokio::time::interval(self.settings.scan_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = async {
                    match feed.as_mut() {
                        Some(feed) => feed.recv().await,
                        None => std::future::pending().await,
                    }
                } => match item {
                    Ok(item) => {
                        if let Err(error) = self.handle(&item, super::now_ms()).await {
                            self.metrics.rule_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%error, "alert rules: cannot evaluate a feed item");
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        self.metrics.feed_lagged.fetch_add(skipped, Ordering::Relaxed);
                        tracing::warn!(skipped, "alert rules fell behind the feed; skipped items");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        // Nothing more will be published: keep scanning.
                        feed = None;
                    }
                },
                _ = ticker.tick() => {
                    if let Err(error) = self.scan(super::now_ms()).await {
                        self.metrics.rule_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "alert scan failed; retrying next interval");
                    }
                }
                () = stopped(&mut stop) => return,
            }
        }
    }
}

/// Runs `futures` concurrently on this task; their outputs in order.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn condition(
    rule: Rule,
    subject: String,
    ven_id: Option<&VenId>,
    event_id: Option<&str>,
    finding: Finding,
) -> Condition {
    Condition {
        rule,
        subject,
        severity: severity(rule),
        ven_id: ven_id.cloned(),
        event_id: event_id.map(str::to_owned),
        project_id: None,
        message: finding.message,
        details: finding.details,
    }
}

/// The severity of each rule's alerts.
pub const fn severity(rule: Rule) -> Severity {
    match rule {
        Rule::VenOffline | Rule::DrNoAck => Severity::Critical,
        Rule::EnergyCounterBackwards
        | Rule::NegativeImport
        | Rule::PowerSpike
        | Rule::DataGap
        | Rule::DrNoShed => Severity::Warning,
        Rule::ProjectMilestone => Severity::Info,
    }
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stop| stop).await;
}
