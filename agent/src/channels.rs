//! The messages that pass between the agent's tasks: the uplink (MQTT), the
//! DR executor (`crate::dr`), the shadow client (`crate::shadow`) and
//! acquisition. Each is carried on a tokio channel made in
//! [`crate::service::run`]:
//!
//! | from | to | channel | message |
//! |---|---|---|---|
//! | uplink | shadow | `mpsc` | [`ShadowInbound`]: a message on one of this VEN's `shadow/.../accepted`, `rejected` or `delta` topics |
//! | shadow | uplink | `mpsc` | [`Outgoing`]: a shadow request to publish (not durable: it is made anew at every connection) |
//! | uplink | shadow, DR | `watch` | [`Connection`]: the connection generation, so a task can re-announce itself after a CONNACK |
//! | shadow | DR | `watch` | [`DrSettings`]: per-load participation and the shed limit in force |
//! | shadow | acquisition | `watch` | `Option<Duration>`: a poll interval overriding every device's configured one |
//! | DR | shadow | `watch` | [`DrView`]: loads and events, for the reported state |

use std::collections::BTreeSet;

use gridlink_protocol::{LoadState, ShadowOp, Topic};

/// A message the broker delivered on one of this VEN's shadow response
/// topics (`update/accepted`, `update/rejected`, `update/delta`,
/// `get/accepted`, `get/rejected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowInbound {
    /// Which response topic.
    pub op: ShadowOp,
    /// The JSON payload as received.
    pub payload: Vec<u8>,
}

/// A message for the uplink to publish at QoS 1 while connected. Not
/// durable: what is queued when the agent stops is lost, which suits
/// shadow requests (the shadow client sends a fresh report and `get` after
/// every connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where to publish.
    pub topic: Topic,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The uplink's connection state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connection {
    /// True between a CONNACK and the loss of the connection.
    pub connected: bool,
    /// Number of CONNACKs so far; changes at every new connection.
    pub generation: u64,
}

/// DR settings in force, from the config's defaults and the shadow's
/// accepted desired state. Never outside the configured hard limits: the
/// shadow client checks before it sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrSettings {
    /// Loads opted out of DR: events leave them alone.
    pub opted_out: BTreeSet<String>,
    /// Longest time a load may stay shed, in seconds (at most the hard
    /// limit `dr.max_shed_s`).
    pub max_shed_s: u64,
}

/// What the DR executor shows the rest of the agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrView {
    /// Every configured load, as in the last load snapshot.
    pub loads: Vec<LoadState>,
    /// Ids of events active now.
    pub active_events: Vec<String>,
    /// Ids of events scheduled and not yet started.
    pub scheduled_events: Vec<String>,
    /// Names of the loads shed now.
    pub shed_loads: Vec<String>,
}
