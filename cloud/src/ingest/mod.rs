//! Ingest: both ways readings, statuses, load snapshots and DR
//! acknowledgements enter the cloud.
//!
//! - [`mqtt`]: the MQTT consumer ([`run`]): subscriptions on the broker,
//!   grouped writes, an acknowledgement only after the commit, drops
//!   counted by reason ([`IngestMetrics`]).
//! - [`http`]: `POST /api/v1/ingest`'s limits, rate limiter, batch keys and
//!   counters ([`HttpIngestMetrics`]); its route is in `crate::api`.
//!
//! Both store through [`Store::ingest`](crate::store::Store::ingest) and
//! publish what they stored on the live feed (`crate::feed`).

pub mod config;
pub mod http;
mod metrics;
pub mod mqtt;
pub mod ratelimit;

pub use http::{HttpIngest, HttpIngestMetrics, IngestRejection};
pub use metrics::{DropReason, IngestMetrics};
pub use mqtt::{IngestSettings, run};
