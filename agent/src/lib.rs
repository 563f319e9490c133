//! gridlink-agent: the site gateway. It polls meters over Modbus TCP and
//! RTU ([`acquisition`]), makes every reading durable in a local sled
//! buffer ([`buffer`]), and publishes batches over mutually authenticated
//! MQTT ([`uplink`]), deleting a batch only after the broker's PUBACK.
//! It executes OpenADR demand-response events on the site's loads
//! ([`dr`]: persisted before they are acknowledged, restored on the local
//! clock), and reports its state and takes settings through the device
//! shadow ([`shadow`]). [`service`] wires the tasks together.

pub mod acquisition;
pub mod blocking;
pub mod buffer;
pub mod channels;
pub mod check;
pub mod config;
pub mod dr;
pub mod health;
pub mod keygen;
pub mod metrics;
pub mod reading;
pub mod service;
pub mod shadow;
pub mod systemd;
pub mod uplink;
