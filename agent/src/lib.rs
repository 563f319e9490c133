//! gridlink-agent: the site gateway. It polls meters over Modbus TCP and
//! RTU ([`acquisition`]), makes every reading durable in a local sled
//! buffer ([`buffer`]), and publishes batches over mutually authenticated
//! MQTT ([`uplink`]), deleting a batch only after the broker's PUBACK.

pub mod acquisition;
pub mod buffer;
pub mod channels;
pub mod check;
pub mod config;
pub mod dr;
pub mod health;
pub mod metrics;
pub mod reading;
pub mod service;
pub mod shadow;
pub mod uplink;
