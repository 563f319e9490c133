//! gridlink-cloud: consumes VEN telemetry over MQTT (and HTTP), stores it
//! in PostgreSQL or SQLite, dispatches demand-response events, raises
//! alerts, exports daily, and serves it all over an HTTP API and a
//! dashboard.
//!
//! # Floors
//!
//! The crate is built in floors; a module imports only its own floor or a
//! lower one, and two modules never import each other unless one is the
//! other's parent (`scripts/check-layers` checks both in the test command).
//!
//! ```text
//!  server        wires everything for `serve`: one process, stopped together
//!  config        cloud.toml + GRIDLINK_* variables -> each part's settings
//!  api/          axum routes, auth extractor, problem documents, dashboard,
//!                openapi/ (the served /openapi.json)
//!  metrics       the aggregate of every service's counters (/metrics)
//!  ingest/ dispatch/ alerts/ export/ shadow/ projects/ notify/     the services
//!  mqtt  feed  aws                                          the adapters
//!  store/        one SQL store, PostgreSQL or SQLite
//!  model/        domain types and the one clock
//! ```
//!
//! Each service is a folder with the same files where they apply: `mod.rs`
//! (its public face), `config.rs`, `metrics.rs`, the logic, unit tests in
//! each file. A constant two floors need lives in the lower one (the
//! baseline window of the measured DR response is `dispatch::response`'s,
//! read by `api` and `alerts`).
//!
//! # Data flow
//!
//! ```text
//!  VEN --MQTT--> broker --> ingest::mqtt ---+--> store (one transaction,
//!  customer --POST /api/v1/ingest--> api ---+     then the PUBACK / 201)
//!                                           +--> feed --> api live stream
//!                                                     \-> alerts --> webhook,
//!                                                                   e-mail, SNS
//!  operator --POST /openadr3/.../events--> api --> store (event + outbox)
//!       dispatch <-- wake --+  dispatch --MQTT ven/cmd--> VEN --ven/ack--> ingest
//!  shadow <--$aws/things/.../shadow--> broker      export --daily--> file / S3
//! ```
//!
//! Durability: a message is acknowledged to the broker only after the
//! store committed what it carries (see [`ingest::mqtt`]); commands leave
//! through the outbox the event write committed (see [`dispatch`]).

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
pub mod notify;
pub mod projects;
pub mod server;
pub mod shadow;
pub mod store;
