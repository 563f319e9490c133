//! The device shadow service, for brokers without one (Mosquitto, the
//! demo's broker). AWS IoT Core runs the shadow itself: there, turn this
//! off (`shadow.enabled = false`).
//!
//! It answers the AWS IoT classic shadow topics with the same JSON and the
//! same semantics ([`gridlink_protocol::shadow`]), so the agent's code is
//! the same on both:
//!
//! | request (VEN → cloud) | answers (cloud → VEN) |
//! |---|---|
//! | `$aws/things/{venId}/shadow/update` | `update/accepted` and, when desired still differs from reported, `update/delta`; or `update/rejected` (400 malformed or invalid, 409 version conflict, 413 too large) |
//! | `$aws/things/{venId}/shadow/get` | `get/accepted` (the whole document), or `get/rejected` (404 `No shadow exists with name: {venId}`) |
//!
//! - One MQTT client with the backend identity (mTLS), its own client id
//!   (`{mqtt.client_id}-shadow`), a persistent session and manual
//!   acknowledgements: a request is acknowledged only after its document
//!   is stored and its answers are queued, so a request that arrives while
//!   the database is down waits at the broker.
//! - Plain subscriptions to `$aws/things/+/shadow/update` and `.../get`:
//!   Mosquitto 2.0 does not deliver `$aws/...` topics through a shared
//!   subscription (`$share/{group}/$aws/...` gets nothing;
//!   `tests/shadow.rs` checks this, so a broker that starts delivering them
//!   is noticed). Run the shadow service in ONE `serve` process
//!   (`shadow.enabled = false` in the others), or every process answers
//!   every request. Documents are still written with an optimistic version
//!   check ([`ShadowStore`]), so the service and the API never lose each
//!   other's updates.
//! - The API's `PATCH /api/v1/vens/{id}/shadow` stores a desired change
//!   itself ([`update`]) and publishes its answers through this client's
//!   [`ShadowHandle`].

pub mod config;
mod metrics;

pub use metrics::ShadowMetrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gridlink_protocol::shadow::{
    ShadowDelta, ShadowDocument, ShadowGetRequest, ShadowRejected, ShadowUpdateAccepted,
    ShadowUpdateRequest,
};
use gridlink_protocol::{MAX_PAYLOAD_BYTES, ShadowOp, Topic, TopicKind, VenId};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};

use crate::mqtt::{MqttError, MqttSettings, mqtt_options};
use crate::store::{ShadowStore, ShadowWrite, StoreError};

/// Attempts of one update when other writers keep changing the document
/// between our read and our write.
const MAX_WRITE_ATTEMPTS: u32 = 10;
/// Requests between the MQTT task and the worker (the broker sends at most
/// its in-flight window unacknowledged).
const CHANNEL: usize = 1024;

/// A request as the service understood it.
#[derive(Debug, Clone, PartialEq)]
pub enum ShadowRequest {
    /// `shadow/update`.
    Update(ShadowUpdateRequest),
    /// `shadow/get`.
    Get(ShadowGetRequest),
}

/// Parses a request payload (JSON, as AWS takes it; a `get` may be
/// empty). One over the protocol's 128 KiB is rejected with 413 unread; a
/// malformed one with 400, echoing its `clientToken` when one can be read.
/// Pure.
pub fn parse_request(
    op: ShadowOp,
    payload: &[u8],
    now: i64,
) -> Result<ShadowRequest, ShadowRejected> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        // AWS IoT answers an oversized request with 413 and this message.
        return Err(ShadowRejected {
            code: 413,
            message: format!(
                "Payload exceeds the maximum size allowed: {} bytes, at most {MAX_PAYLOAD_BYTES}",
                payload.len()
            ),
            timestamp: now,
            client_token: None,
        });
    }
    let parsed = match op {
        ShadowOp::Get if payload.iter().all(u8::is_ascii_whitespace) => {
            Ok(ShadowRequest::Get(ShadowGetRequest::default()))
        }
        ShadowOp::Get => serde_json::from_slice(payload).map(ShadowRequest::Get),
        _ => serde_json::from_slice(payload).map(ShadowRequest::Update),
    };
    parsed.map_err(|error| {
        let client_token = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("clientToken")?.as_str().map(str::to_owned))
            .filter(|t| t.len() <= 64);
        let message = if serde_json::from_slice::<serde_json::Value>(payload).is_ok() {
            format!("Invalid request: {error}")
        } else {
            format!("Invalid JSON: {error}")
        };
        ShadowRejected {
            code: 400,
            message,
            timestamp: now,
            client_token,
        }
    })
}

/// The result of an accepted update: the answer for `update/accepted`, the
/// document as stored, and its delta message if desired still differs from
/// reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    /// For `update/accepted`.
    pub accepted: ShadowUpdateAccepted,
    /// The document now stored.
    pub document: ShadowDocument,
    /// For `update/delta`, if there is a delta.
    pub delta: Option<ShadowDelta>,
}

/// Applies `request` to the VEN's stored shadow (creating it) at `now`
/// (Unix seconds) and stores the result with an optimistic version check,
/// reading again and re-applying when another writer came first. The inner
/// `Err` is the rejection to answer (also 409 when the request names a
/// version that is no longer current).
pub async fn update<S: ShadowStore>(
    store: &S,
    ven_id: &VenId,
    request: &ShadowUpdateRequest,
    now: i64,
) -> Result<Result<Updated, ShadowRejected>, StoreError> {
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let stored = store.shadow(ven_id).await?;
        let expected = stored.as_ref().map_or(0, |d| d.version);
        let mut document = stored.unwrap_or_default();
        let accepted = match document.apply(request, now) {
            Ok(accepted) => accepted,
            Err(rejected) => return Ok(Err(rejected)),
        };
        let updated_ms = now.saturating_mul(1000);
        match store
            .save_shadow(ven_id, &document, expected, updated_ms)
            .await?
        {
            ShadowWrite::Saved => {
                let delta = document.delta_message();
                return Ok(Ok(Updated {
                    accepted,
                    document,
                    delta,
                }));
            }
            ShadowWrite::Conflict => {}
        }
    }
    Ok(Err(ShadowRejected {
        code: 409,
        message: format!(
            "Version conflict: the shadow changed {MAX_WRITE_ATTEMPTS} times while this update was applied"
        ),
        timestamp: now,
        client_token: request.client_token.clone(),
    }))
}

/// The answers to one request on `request_op` (`Update` or `Get`):
/// `(topic, JSON payload)` in publish order. Pure.
pub fn answers(
    ven_id: &VenId,
    request_op: ShadowOp,
    result: &Result<Answer, ShadowRejected>,
) -> Vec<(Topic, Vec<u8>)> {
    let topic = |op| Topic::shadow(ven_id.clone(), op);
    match result {
        Ok(Answer::Updated(updated)) => {
            let mut out = vec![(topic(ShadowOp::UpdateAccepted), json(&updated.accepted))];
            if let Some(delta) = &updated.delta {
                out.push((topic(ShadowOp::UpdateDelta), json(delta)));
            }
            out
        }
        Ok(Answer::Document(document, token)) => vec![(
            topic(ShadowOp::GetAccepted),
            json(&document.get_accepted(token.clone())),
        )],
        Err(rejected) => {
            let op = if request_op == ShadowOp::Get {
                ShadowOp::GetRejected
            } else {
                ShadowOp::UpdateRejected
            };
            vec![(topic(op), json(rejected))]
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// What an accepted request answers with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An update stored.
    Updated(Updated),
    /// The document for `get/accepted`, with the request's token.
    Document(ShadowDocument, Option<String>),
}

/// A cheap handle on the shadow service's MQTT client, for the API: it
/// publishes the answers of an update made through `PATCH
/// /api/v1/vens/{id}/shadow`.
#[derive(Debug, Clone)]
pub struct ShadowHandle {
    client: AsyncClient,
    metrics: Arc<ShadowMetrics>,
}

impl ShadowHandle {
    /// Queues `update/accepted` and, if there is a delta, `update/delta`
    /// for the VEN (QoS 1). Not durable: if the queue is full or the
    /// service has stopped, the VEN still finds the change in the
    /// `get/accepted` it asks for at every connection. Returns whether
    /// everything was queued.
    pub fn publish_update(&self, ven_id: &VenId, updated: &Updated) -> bool {
        let mut queued = true;
        for (topic, payload) in answers(
            ven_id,
            ShadowOp::Update,
            &Ok(Answer::Updated(updated.clone())),
        ) {
            let is_delta = topic.kind == TopicKind::Shadow(ShadowOp::UpdateDelta);
            match self
                .client
                .try_publish(topic.to_string(), QoS::AtLeastOnce, false, payload)
            {
                Ok(()) if is_delta => {
                    self.metrics
                        .deltas_published
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(%error, %topic, "cannot queue a shadow answer");
                    queued = false;
                }
            }
        }
        queued
    }
}

/// The shadow service before it runs: its MQTT connection and the handle
/// the API publishes through.
pub struct ShadowService {
    settings: MqttSettings,
    client: AsyncClient,
    eventloop: EventLoop,
    metrics: Arc<ShadowMetrics>,
}

impl std::fmt::Debug for ShadowService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowService")
            .field("client_id", &client_id(&self.settings))
            .finish_non_exhaustive()
    }
}

/// The shadow service's MQTT client id: ingest's with `-shadow` appended.
pub fn client_id(settings: &MqttSettings) -> String {
    format!("{}-shadow", settings.client_id)
}

impl ShadowService {
    /// Prepares the client (nothing is sent until [`run`](Self::run)).
    /// Fails if the certificate or key cannot be read.
    pub fn new(settings: MqttSettings, metrics: Arc<ShadowMetrics>) -> Result<Self, MqttError> {
        let options = mqtt_options(&settings, &client_id(&settings))?;
        let (client, eventloop) = AsyncClient::new(options, CHANNEL);
        Ok(Self {
            settings,
            client,
            eventloop,
            metrics,
        })
    }

    /// The handle the API publishes through.
    pub fn handle(&self) -> ShadowHandle {
        ShadowHandle {
            client: self.client.clone(),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// Answers shadow requests until `shutdown` turns true.
    pub async fn run<S: ShadowStore + 'static>(
        self,
        store: Arc<S>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), MqttError> {
        let Self {
            settings: _,
            client,
            mut eventloop,
            metrics,
        } = self;
        // Not shared: Mosquitto does not deliver `$aws/...` through `$share/`.
        let filters: Vec<String> = [ShadowOp::Update, ShadowOp::Get]
            .into_iter()
            .map(|op| TopicKind::Shadow(op).wildcard_filter())
            .collect();
        let (tx, mut rx) = mpsc::channel::<(Publish, u64)>(CHANNEL);
        let generation = Arc::new(AtomicU64::new(0));
        let subscriber = client.clone();
        let mqtt_metrics = Arc::clone(&metrics);
        let mqtt_generation = Arc::clone(&generation);
        let mut mqtt_shutdown = shutdown.clone();
        let mqtt = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    _ = mqtt_shutdown.wait_for(|&stop| stop) => return,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        failures = 0;
                        let generation = mqtt_generation.fetch_add(1, Ordering::SeqCst) + 1;
                        mqtt_metrics.connected.store(1, Ordering::Relaxed);
                        tracing::info!(
                            session_present = ack.session_present,
                            generation,
                            "shadow service connected to the broker"
                        );
                        for filter in &filters {
                            if let Err(error) =
                                subscriber.try_subscribe(filter.clone(), QoS::AtLeastOnce)
                            {
                                tracing::error!(%error, filter, "cannot subscribe");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let generation = mqtt_generation.load(Ordering::SeqCst);
                        if tx.send((publish, generation)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        mqtt_metrics.connected.store(0, Ordering::Relaxed);
                        let delay =
                            Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
                                .min(Duration::from_secs(5));
                        failures = failures.saturating_add(1);
                        tracing::warn!(%error, ?delay, "shadow service lost the broker; reconnecting");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = mqtt_shutdown.wait_for(|&stop| stop) => return,
                        }
                    }
                }
            }
        });

        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = shutdown.wait_for(|&stop| stop) => None,
            };
            let Some((publish, received_in)) = next else {
                break;
            };
            if !handle(&*store, &client, &metrics, &publish, &mut shutdown).await {
                break; // shutting down with the database away: not acknowledged
            }
            // An acknowledgement for an earlier connection's packet id would
            // acknowledge the wrong message: the broker redelivers instead.
            if received_in == generation.load(Ordering::SeqCst)
                && let Err(error) = client.try_ack(&publish)
            {
                tracing::warn!(%error, "cannot queue an acknowledgement; the broker will redeliver");
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), mqtt).await;
        metrics.connected.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// Unix seconds, now.
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Answers one request. `true`: answered (acknowledge it); `false`:
/// shutdown came while the database was away (leave it to the broker).
async fn handle<S: ShadowStore>(
    store: &S,
    client: &AsyncClient,
    metrics: &ShadowMetrics,
    publish: &Publish,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let topic = match Topic::parse(&publish.topic) {
        Ok(topic) => topic,
        Err(error) => {
            tracing::warn!(%error, "shadow service: not a shadow topic; dropped");
            return true;
        }
    };
    let op = match topic.kind {
        TopicKind::Shadow(op @ (ShadowOp::Update | ShadowOp::Get)) => op,
        other => {
            tracing::warn!(topic = %publish.topic, ?other, "shadow service: not a request; dropped");
            return true;
        }
    };
    let ven_id = topic.ven_id;
    metrics.requests.fetch_add(1, Ordering::Relaxed);
    let now = now_s();
    let result = match parse_request(op, &publish.payload, now) {
        Err(rejected) => {
            metrics.malformed.fetch_add(1, Ordering::Relaxed);
            Err(rejected)
        }
        Ok(request) => {
            let mut delay = Duration::from_millis(100);
            loop {
                let attempt = match &request {
                    ShadowRequest::Update(update_request) => {
                        update(store, &ven_id, update_request, now)
                            .await
                            .map(|r| r.map(Answer::Updated))
                    }
                    ShadowRequest::Get(get) => store.shadow(&ven_id).await.map(|stored| {
                        stored
                            .map(|doc| Answer::Document(doc, get.client_token.clone()))
                            .ok_or_else(|| ShadowRejected {
                                code: 404,
                                message: format!("No shadow exists with name: {ven_id}"),
                                timestamp: now,
                                client_token: get.client_token.clone(),
                            })
                    }),
                };
                match attempt {
                    Ok(result) => break result,
                    Err(StoreError::Unavailable(error)) => {
                        tracing::warn!(%error, ?delay, "shadow: database unavailable; retrying, not acknowledged");
                        if *shutdown.borrow() {
                            return false;
                        }
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = shutdown.wait_for(|&stop| stop) => return false,
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(error) => {
                        tracing::error!(%error, ven = %ven_id, "shadow: the store failed");
                        break Err(ShadowRejected {
                            code: 500,
                            message: "Internal service failure".into(),
                            timestamp: now,
                            client_token: match &request {
                                ShadowRequest::Update(u) => u.client_token.clone(),
                                ShadowRequest::Get(g) => g.client_token.clone(),
                            },
                        });
                    }
                }
            }
        }
    };
    match &result {
        Ok(Answer::Updated(_)) => {
            metrics.updates_accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Answer::Document(..)) => {}
        Err(rejected) => metrics.rejected(rejected.code),
    }
    for (topic, payload) in answers(&ven_id, op, &result) {
        if topic.kind == TopicKind::Shadow(ShadowOp::UpdateDelta) {
            metrics.deltas_published.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(error) = client
            .publish(topic.to_string(), QoS::AtLeastOnce, false, payload)
            .await
        {
            tracing::warn!(%error, %topic, "cannot queue a shadow answer");
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ven() -> VenId {
        VenId::new("ven-1").unwrap()
    }

    #[test]
    fn requests_parse_or_are_rejected_with_400_and_their_token() {
        assert_eq!(
            parse_request(ShadowOp::Get, b"", 1).unwrap(),
            ShadowRequest::Get(ShadowGetRequest::default())
        );
        assert!(matches!(
            parse_request(ShadowOp::Update, br#"{"state":{"reported":{"a":1}}}"#, 1),
            Ok(ShadowRequest::Update(_))
        ));
        let bad = parse_request(ShadowOp::Update, b"{nope", 7).unwrap_err();
        assert_eq!((bad.code, bad.timestamp), (400, 7));
        assert!(bad.message.starts_with("Invalid JSON"), "{}", bad.message);
        let bad =
            parse_request(ShadowOp::Update, br#"{"state":3,"clientToken":"t"}"#, 7).unwrap_err();
        assert!(
            bad.message.starts_with("Invalid request"),
            "{}",
            bad.message
        );
        assert_eq!(bad.client_token.as_deref(), Some("t"));
        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        for op in [ShadowOp::Update, ShadowOp::Get] {
            let bad = parse_request(op, &huge, 7).unwrap_err();
            assert_eq!(bad.code, 413, "{}", bad.message);
        }
    }

    #[test]
    fn answers_go_to_the_request_topics() {
        let rejected = ShadowRejected {
            code: 400,
            message: "x".into(),
            timestamp: 1,
            client_token: None,
        };
        let topics = |op, result| {
            answers(&ven(), op, &result)
                .into_iter()
                .map(|(t, _)| t.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            topics(ShadowOp::Get, Err(rejected.clone())),
            ["$aws/things/ven-1/shadow/get/rejected"]
        );
        assert_eq!(
            topics(ShadowOp::Update, Err(rejected)),
            ["$aws/things/ven-1/shadow/update/rejected"]
        );
        let mut document = ShadowDocument::default();
        let request: ShadowUpdateRequest =
            serde_json::from_str(r#"{"state":{"desired":{"a":1}}}"#).unwrap();
        let accepted = document.apply(&request, 1).unwrap();
        let updated = Updated {
            accepted,
            delta: document.delta_message(),
            document: document.clone(),
        };
        assert_eq!(
            topics(ShadowOp::Update, Ok(Answer::Updated(updated))),
            [
                "$aws/things/ven-1/shadow/update/accepted",
                "$aws/things/ven-1/shadow/update/delta"
            ]
        );
        assert_eq!(
            topics(ShadowOp::Get, Ok(Answer::Document(document, None))),
            ["$aws/things/ven-1/shadow/get/accepted"]
        );
    }
}
