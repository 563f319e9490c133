//! gridlink's test harness: real servers on 127.0.0.1 for integration tests,
//! each in its own temporary directory on a free port, stopped by PID when
//! dropped (and killed by the kernel if the test process dies first).
//!
//! * [`mosquitto::Mosquitto`]: the broker with mutual TLS, certificate CN
//!   as user name and the per-VEN ACL, as in production.
//! * [`mqtt`]: rumqttc options with a VEN's or the backend's certificate,
//!   and [`mqtt::MqttTestClient`] to publish, subscribe and wait (bounded).
//! * `postgres::PostgresCluster` (feature `postgres`, which brings sqlx):
//!   a throwaway PostgreSQL cluster.
//! * [`webhook::WebhookReceiver`] and [`smtp::SmtpSink`]: an HTTP receiver
//!   and an SMTP server that record what they get (alert delivery tests).
//!
//! The servers come from Debian packages (`scripts/setup-test-deps`); a
//! missing one fails the test with the command that installs it. Each runs
//! in its own process group with `PR_SET_PDEATHSIG`, which Linux ties to the
//! spawning *thread*: start and restart servers from the test itself or a
//! runtime worker, never inside `spawn_blocking`.
//!
//! ```no_run
//! # async fn demo() {
//! use gridlink_protocol::VenId;
//! use gridlink_provision::pki::TestPki;
//! use gridlink_testkit::mosquitto::Mosquitto;
//! use gridlink_testkit::mqtt::MqttTestClient;
//! use rumqttc::QoS;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let pki = TestPki::generate(dir.path(), &[VenId::new("ven-1").unwrap()]).unwrap();
//! let broker = Mosquitto::spawn(&pki).await;
//!
//! let mut backend = MqttTestClient::connect(broker.client_options(&pki, "backend")).await.unwrap();
//! backend.subscribe("$share/gridlink/ven/status/+", QoS::AtLeastOnce).await;
//! let mut ven = MqttTestClient::connect(broker.client_options(&pki, "ven-1")).await.unwrap();
//! ven.publish("ven/status/ven-1", b"{}".to_vec()).await;
//! assert_eq!(backend.expect_publish().await.topic, "ven/status/ven-1");
//! # }
//! ```

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

pub mod mosquitto;
pub mod moto;
pub mod mqtt;
#[cfg(feature = "postgres")]
pub mod postgres;
mod process;
pub mod serial;
pub mod smtp;
pub mod webhook;

/// A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0,
/// read back, released. Another process could take it before the server
/// binds it; the servers' start-up then fails loudly rather than silently.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether the process with `pid` exists (`/proc/<pid>`), e.g. to check
/// that a server is gone after its handle was dropped.
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The first executable file `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
