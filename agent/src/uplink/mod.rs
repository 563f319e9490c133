//! The MQTT uplink: publishes sealed batches from the durable buffer to the
//! broker over mutually authenticated TLS and removes each batch only after
//! the broker's PUBACK.
//!
//! # Shape
//!
//! The split is rumqttc's own (`state` below `eventloop`): the policy is a
//! pure state machine, and a thin loop performs what it decides.
//!
//! ```text
//!  rumqttc                          run_with (eventloop.rs)      UplinkState (state.rs)
//!  EventLoop ---packet, error----->  Event -------------------->  SendWindow (window.rs)
//!  AsyncClient <-try_publish/sub---  performs Effect <----------  RateLimiter (limiter.rs)
//!                                      | spawn_blocking: read a page,
//!                                      v delete a batch, remove an ack
//!                                    Buffer, DrStore (sled)
//!  incoming PUBLISH --> inbound.rs --> DR (commands), shadow client (responses)
//! ```
//!
//! - [`UplinkState`] (`state.rs`) decides what to publish next and what to
//!   delete. It takes [`Event`]s and the current time and gives
//!   [`Effect`]s; it does no network, disk or clock I/O, so the priority
//!   order and the limits are unit-tested with plain values.
//! - [`SendWindow`] (`window.rs`) is its bookkeeping of what is in flight:
//!   which packet id acknowledges which batch, and what a lost session
//!   means. [`RateLimiter`] (`limiter.rs`) is its token buckets.
//! - [`run`] / [`run_with`] (`eventloop.rs`) is the loop: it polls
//!   rumqttc's `EventLoop`, feeds the state machine, and performs the
//!   effects. rumqttc's `try_` calls do not block; sled does, so buffer
//!   and outbox reads and removals run in `tokio::task::spawn_blocking`.
//! - `inbound.rs` routes incoming publishes ([`check_command`]); `options.rs`
//!   builds the TLS and MQTT options ([`tls_config`], [`mqtt_options`]).
//!
//! # Delivery rules
//!
//! - QoS 1, persistent session (`clean_session = false`), client id = ven id.
//! - At most `max_inflight` unacknowledged publishes, at most
//!   `publishes_per_s` publishes and `bytes_per_s` payload bytes per second:
//!   AWS IoT Core's per-connection limits, enforced here (in
//!   [`UplinkState::poll`], before every publish) so the broker never has
//!   to throttle or disconnect us.
//! - Publishing order while the window and the limits allow: DR
//!   acknowledgements, shadow messages, the load snapshot, telemetry.
//! - The backlog drains oldest first. Batches sealed after the connection
//!   came up are live data; while a backlog exists every fourth publish is
//!   the oldest live batch, so live data keeps flowing during a long drain.
//!   Each stream is sent in sequence order.
//! - After a reconnect with the session kept, rumqttc retransmits what was
//!   in flight. If the broker lost the session, rumqttc drops its pending
//!   publishes, so the window forgets them and sends again from the
//!   buffer. Either way a batch can reach the broker twice; the cloud drops
//!   the second copy by `(ven_id, batch_seq)`.
//! - The last will is a retained offline [`Status`](gridlink_protocol::Status)
//!   on `ven/status/{venId}`; an online status is published after every
//!   CONNACK.
//!
//! # Where data becomes durable, and where it is deleted
//!
//! The uplink makes nothing durable: a batch is durable once
//! [`Buffer::seal`](crate::buffer::Buffer::seal) has synced it (only then
//! does [`Buffer::pending`](crate::buffer::Buffer::pending) return it), a
//! DR acknowledgement once [`DrStore::save`] has. The uplink deletes a
//! batch ([`Effect::DeleteBatch`], [`Buffer::ack`](crate::buffer::Buffer::ack))
//! or an acknowledgement ([`Effect::RemoveAck`], [`DrStore::remove_ack`])
//! only when the PUBACK for exactly its packet id arrives. Those removals
//! are not synced: a crash that takes one back sends it once more.

mod eventloop;
mod inbound;
mod limiter;
mod options;
mod state;
mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gridlink_protocol::{MAX_PAYLOAD_BYTES, VenId};
use tokio::sync::{mpsc, watch};

use crate::channels::{Connection, Outgoing as ChannelOutgoing, ShadowInbound};
use crate::dr::InboundCommand;
use crate::dr::store::DrStore;

pub use eventloop::{backoff, run, run_with};
pub use inbound::check_command;
pub use limiter::RateLimiter;
pub use options::{mqtt_options, tls_config};
pub use state::{Effect, Event, Limits, OUTGOING_QUEUE, Topics, UplinkState};
pub use window::{SendWindow, Source, Submitted};

/// The ALPN protocol AWS IoT Core expects for MQTT with client
/// certificates on port 443.
pub const AWS_IOT_ALPN: &[u8] = b"x-amzn-mqtt-ca";

/// Room for a PUBLISH header beyond its payload (fixed header, topic, id).
const PUBLISH_HEADER_ALLOWANCE: usize = 512;

/// Largest MQTT packet sent or accepted: a full 128 KB payload plus header.
/// rumqttc's default is 10 KiB.
pub const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + PUBLISH_HEADER_ALLOWANCE;

/// Everything the uplink needs to connect and pace itself.
#[derive(Debug, Clone)]
pub struct UplinkSettings {
    /// The VEN: MQTT client id and topic segment.
    pub ven_id: VenId,
    /// Broker host name or address.
    pub host: String,
    /// Broker port (8883, or 443 with ALPN).
    pub port: u16,
    /// Offer ALPN `x-amzn-mqtt-ca` (AWS IoT Core on port 443).
    pub alpn: bool,
    /// CA certificate(s) the broker's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// The VEN's client certificate (PEM).
    pub cert: PathBuf,
    /// The VEN's private key (PEM).
    pub key: PathBuf,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Publishes per second; 0 = unlimited (benchmarks only).
    pub publishes_per_s: u32,
    /// Payload bytes per second; 0 = unlimited (benchmarks only).
    pub bytes_per_s: u32,
    /// Unacknowledged QoS 1 publishes at once (AWS IoT: 100).
    pub max_inflight: u16,
}

/// Why the uplink could not start.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The last-will payload could not be encoded.
    #[error("last will: {0}")]
    Encode(#[from] gridlink_protocol::EncodeError),
    /// Reading the buffer failed.
    #[error("buffer: {0}")]
    Buffer(#[from] crate::buffer::BufferError),
}

/// What the uplink exchanges with DR and the shadow client, beyond the
/// buffer. Every part is optional: [`run`] uses none of them.
#[derive(Debug, Default)]
pub struct UplinkLinks {
    /// The durable outbox of DR acknowledgements, published ahead of
    /// telemetry and removed on PUBACK.
    pub dr_store: Option<Arc<DrStore>>,
    /// Where valid commands go. Without it commands are acknowledged to the
    /// broker and dropped.
    pub commands: Option<mpsc::Sender<InboundCommand>>,
    /// Where shadow responses go.
    pub shadow_inbound: Option<mpsc::Sender<ShadowInbound>>,
    /// Messages to publish while connected (shadow requests).
    pub outgoing: Option<mpsc::Receiver<ChannelOutgoing>>,
    /// The latest encoded load snapshot, published on change and after
    /// every CONNACK.
    pub snapshot: Option<watch::Receiver<Option<Arc<Vec<u8>>>>>,
    /// The connection state, for the shadow and DR.
    pub connection: Option<watch::Sender<Connection>>,
}
