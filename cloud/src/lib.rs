//! gridlink-cloud: consumes VEN telemetry over MQTT, stores it in
//! PostgreSQL or SQLite, and serves it over an HTTP API.

pub mod alerts;
pub mod api;
pub mod aws;
pub mod config;
pub mod dispatch;
pub mod export;
pub mod feed;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod projects;
pub mod server;
pub mod shadow;
pub mod store;
