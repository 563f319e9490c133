//! What ingest just committed, for consumers in the same process: the
//! dashboard's live stream and the alert rules.
//!
//! MQTT ingest and HTTP ingest publish here after their transaction
//! committed, never before, so a consumer never sees data the database
//! does not hold. It is a broadcast with a bounded backlog: a consumer
//! that falls behind by more than [`FEED_CAPACITY`] items gets
//! [`tokio::sync::broadcast::error::RecvError::Lagged`], skips ahead and
//! should say so (the data is in the database; only the live view of it
//! was missed). Redeliveries may reappear here: a consumer ignores a
//! reading whose timestamp is not newer than the last it saw for that
//! series.
//!
//! ```
//! # async fn demo() {
//! use gridlink_cloud::feed::{Feed, FeedItem};
//!
//! let feed = Feed::new();
//! let mut rx = feed.subscribe();
//! # let status = gridlink_protocol::Status {
//! #     ven_id: gridlink_protocol::VenId::new("ven-1").unwrap(),
//! #     online: true,
//! #     at: gridlink_protocol::Timestamp::from_unix_ms(0).unwrap(),
//! #     agent_version: String::new(),
//! #     backlog_batches: 0,
//! #     dropped_readings: 0,
//! # };
//! feed.status(&status, 1);
//! match rx.recv().await.unwrap().as_ref() {
//!     FeedItem::Status { received_ms, .. } => assert_eq!(*received_ms, 1),
//!     FeedItem::Telemetry(_) => unreachable!(),
//! }
//! # }
//! ```

use std::sync::Arc;

use gridlink_protocol::Status;
use tokio::sync::broadcast;

use crate::store::IngestBatch;

/// Items a slow consumer may fall behind before it lags.
pub const FEED_CAPACITY: usize = 4096;

/// One committed thing.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// A telemetry batch (its readings are stored).
    Telemetry(IngestBatch),
    /// A status message or last will (recorded).
    Status {
        /// The message.
        status: Status,
        /// When the cloud received it, ms since the Unix epoch.
        received_ms: i64,
    },
}

/// The sending side; cheap to clone. Publishing with no consumer is a
/// no-op.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<FeedItem>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    /// A feed nobody listens to yet.
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(FEED_CAPACITY).0,
        }
    }

    /// A new consumer, seeing what is published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.tx.subscribe()
    }

    /// Publishes committed batches.
    pub fn telemetry(&self, batches: &[IngestBatch]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for batch in batches {
            let _ = self.tx.send(Arc::new(FeedItem::Telemetry(batch.clone())));
        }
    }

    /// Publishes a recorded status.
    pub fn status(&self, status: &Status, received_ms: i64) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(Arc::new(FeedItem::Status {
            status: status.clone(),
            received_ms,
        }));
    }
}
