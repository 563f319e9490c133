//! `GET /api/v1/live`: what ingest commits, as it commits it, as
//! server-sent events (`text/event-stream`) from [`Feed`](crate::feed::Feed).
//!
//! Query: `ven_id` (optional) keeps only that VEN's items. Events:
//!
//! * `ready`, first, once subscribed: `{"ven_id": "ven-1" | null, "now_ms": 1795...}`;
//!   nothing committed after it is missed.
//! * `reading`, one per committed telemetry batch, its data a JSON ARRAY of
//!   readings `{"ven_id","meter","quantity","phase","ts_ms","value"}`
//!   (`quantity` and `phase` by their API names, `value` in the quantity's
//!   unit). A reading whose time is not newer than the last this stream
//!   sent for its series (a redelivery) is left out; a batch left empty is
//!   not sent.
//! * `status`, one per recorded status or last will:
//!   `{"ven_id","online","at_ms","received_ms"}` (`at_ms` the VEN's time,
//!   `received_ms` the cloud's).
//! * `lagged` `{"skipped": n}` when this stream fell more than
//!   [`FEED_CAPACITY`](crate::feed::FEED_CAPACITY) items behind: `n` items
//!   were skipped (they are stored; reload the charts) and the stream goes on.
//!
//! A comment line (`: keep-alive`) is sent every [`KEEP_ALIVE`] so proxies
//! keep the connection open. Auth is the usual `Authorization: Bearer`
//! header (browsers read the stream with `fetch`, as `EventSource` cannot
//! send headers; tokens never go into URLs).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use gridlink_protocol::{Phase, Quantity, VenId};
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use super::error::ApiError;
use super::params::{self, QueryParams};
use super::{AppState, now_ms};
use crate::feed::FeedItem;
use crate::store::Store;

/// Interval of the keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A series within the stream, for dropping redeliveries.
type SeriesKey = (VenId, String, Quantity, Phase);

/// One stream's state: its feed receiver, filter and newest time per series.
struct LiveStream {
    rx: broadcast::Receiver<Arc<FeedItem>>,
    ven: Option<VenId>,
    newest: HashMap<SeriesKey, i64>,
    ready: Option<Event>,
}

impl LiveStream {
    /// The event for a feed item, or `None` when it is filtered out.
    fn event(&mut self, item: &FeedItem) -> Option<Event> {
        match item {
            FeedItem::Telemetry(batch) => {
                if self.ven.as_ref().is_some_and(|v| *v != batch.ven_id) {
                    return None;
                }
                let mut readings = Vec::new();
                for series in &batch.series {
                    let key = (
                        batch.ven_id.clone(),
                        series.meter.clone(),
                        series.quantity,
                        series.phase,
                    );
                    let newest = self.newest.entry(key).or_insert(i64::MIN);
                    for &point in &series.points {
                        if point.ts_ms <= *newest {
                            continue;
                        }
                        *newest = point.ts_ms;
                        readings.push(json!({
                            "ven_id": batch.ven_id,
                            "meter": series.meter,
                            "quantity": series.quantity.name(),
                            "phase": series.phase.name(),
                            "ts_ms": point.ts_ms,
                            "value": series.value(point),
                        }));
                    }
                }
                (!readings.is_empty()).then(|| {
                    Event::default()
                        .event("reading")
                        .data(Value::Array(readings).to_string())
                })
            }
            FeedItem::Status {
                status,
                received_ms,
            } => {
                if self.ven.as_ref().is_some_and(|v| *v != status.ven_id) {
                    return None;
                }
                let data = json!({
                    "ven_id": status.ven_id,
                    "online": status.online,
                    "at_ms": status.at.unix_ms(),
                    "received_ms": received_ms,
                });
                Some(Event::default().event("status").data(data.to_string()))
            }
        }
    }

    /// The next event to send; `None` when the feed is closed (the
    /// server is stopping).
    async fn next(&mut self) -> Option<Event> {
        if let Some(ready) = self.ready.take() {
            return Some(ready);
        }
        loop {
            match self.rx.recv().await {
                Ok(item) => {
                    if let Some(event) = self.event(&item) {
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "live stream lagged");
                    return Some(
                        Event::default()
                            .event("lagged")
                            .data(json!({ "skipped": skipped }).to_string()),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// `GET /api/v1/live`.
pub(crate) async fn live<S: Store>(
    State(state): State<AppState<S>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut params = QueryParams::new(query, &["ven_id"])?;
    let ven = params.optional("ven_id", params::ven_id);
    params.finish(Some(()))?;
    if let Some(ven) = &ven
        && state.store.ven(ven).await?.is_none()
    {
        return Err(ApiError::UnknownVen(ven.clone()));
    }
    // Subscribed before `ready` is sent: nothing committed after it is missed.
    let rx = state.feed.subscribe();
    let ready = Event::default()
        .event("ready")
        .data(json!({ "ven_id": ven, "now_ms": now_ms() }).to_string());
    let stream = LiveStream {
        rx,
        ven,
        newest: HashMap::new(),
        ready: Some(ready),
    };
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next().await?;
        Some((Ok(event), stream))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}
