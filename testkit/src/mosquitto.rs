//! A real Mosquitto broker with the production rules: mutual TLS, the
//! certificate CN as user name, and an ACL that confines each VEN to its own
//! topics.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gridlink_provision::pki::TestPki;
use rumqttc::MqttOptions;
use tempfile::TempDir;

use crate::mqtt;
use crate::process::{OwnedProcess, log_tail, running_as_root};

/// How long the broker may take to accept TCP connections (it is ready in
/// well under 0.1 s on the development machine).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a graceful stop may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Messages the broker queues per client beyond those in flight. Mosquitto's
/// default of 1000 silently drops QoS 1 messages for a slow or offline
/// subscriber (a 100k-message burst arrived only in part), which would make
/// every "no reading lost" test meaningless. A million is far beyond any
/// test's burst yet still bounds broker memory.
pub const MAX_QUEUED_MESSAGES: u32 = 1_000_000;

/// Unacknowledged QoS 1 messages in flight to one client, as in AWS IoT
/// Core's per-connection limit (Mosquitto's default is 20).
pub const MAX_INFLIGHT_MESSAGES: u32 = 100;

/// Mosquitto's `max_packet_size`: the protocol's payload limit (AWS IoT's
/// 128 KB) plus room for the PUBLISH header and topic, so a full-size payload
/// passes and a larger one is refused (the broker disconnects the sender).
pub const MAX_PACKET_BYTES: usize = mqtt::MAX_PACKET_BYTES;

/// A Mosquitto broker on `127.0.0.1` and a free port, configured in a
/// temporary directory and killed (by PID) when dropped.
///
/// ```no_run
/// # async fn demo() {
/// use gridlink_protocol::VenId;
/// use gridlink_provision::pki::TestPki;
/// use gridlink_testkit::mosquitto::Mosquitto;
///
/// let dir = tempfile::tempdir().unwrap();
/// let pki = TestPki::generate(dir.path(), &[VenId::new("ven-1").unwrap()]).unwrap();
/// let mut broker = Mosquitto::spawn(&pki).await;
/// let options = broker.client_options(&pki, "ven-1");
/// broker.stop(); // graceful: the broker saves its persistent state
/// broker.start().await; // same port, same config, same state
/// # drop(options);
/// # }
/// ```
#[derive(Debug)]
pub struct Mosquitto {
    dir: TempDir,
    port: u16,
    process: Option<OwnedProcess>,
}

impl Mosquitto {
    /// Writes the config, ACL and persistence directory into a new temporary
    /// directory and starts the broker with `pki`'s CA and server
    /// certificate. Panics (with the broker's log) if it does not come up.
    pub async fn spawn(pki: &TestPki) -> Self {
        Self::spawn_with_max_packet_size(pki, Some(MAX_PACKET_BYTES)).await
    }

    /// As [`Mosquitto::spawn`] with `max_packet_size` set to `max_packet`,
    /// or, with `None`, left at Mosquitto's default (no limit below the
    /// protocol's 256 MiB): how a broker looks that was not configured by
    /// `gridlink-provision broker-config`.
    pub async fn spawn_with_max_packet_size(pki: &TestPki, max_packet: Option<usize>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gridlink-mosquitto-")
            .tempdir()
            .expect("create a temporary directory for mosquitto");
        let port = crate::free_port();
        fs::create_dir(dir.path().join("data")).expect("create mosquitto persistence dir");
        fs::write(
            dir.path().join("acl"),
            gridlink_provision::policy::mosquitto_acl(),
        )
        .expect("write mosquitto ACL");
        fs::write(
            dir.path().join("mosquitto.conf"),
            config(dir.path(), port, pki, running_as_root(), max_packet),
        )
        .expect("write mosquitto.conf");
        let mut broker = Self {
            dir,
            port,
            process: None,
        };
        broker.start().await;
        broker
    }

    /// Starts Mosquitto from a configuration made elsewhere (e.g. by
    /// `gridlink-provision broker-config`) that listens on `port`. Logging
    /// to this broker's log file is appended, and `user root` when the
    /// tests run as root (so it can read 0600 keys).
    pub async fn spawn_configured(config: &str, port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gridlink-mosquitto-")
            .tempdir()
            .expect("create a temporary directory for mosquitto");
        let mut conf = config.to_owned();
        let _ = write!(
            conf,
            "\n# Added by gridlink-testkit.\nlog_dest file {}\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\n",
            dir.path().join("mosquitto.log").display()
        );
        if running_as_root() {
            conf.push_str("user root\n");
        }
        fs::write(dir.path().join("mosquitto.conf"), conf).expect("write mosquitto.conf");
        let mut broker = Self {
            dir,
            port,
            process: None,
        };
        broker.start().await;
        broker
    }

    /// Sends SIGHUP: Mosquitto reloads its configuration, ACL and CRL.
    pub fn reload(&mut self) {
        if let Some(process) = self.process.as_mut() {
            process.signal(libc::SIGHUP);
        }
    }

    /// Starts the broker again after [`Mosquitto::stop`] or
    /// [`Mosquitto::kill`], on the same port with the same config and
    /// persistence directory. Panics if it is already running.
    pub async fn start(&mut self) {
        assert!(
            self.process.is_none(),
            "mosquitto is already running (PID {:?})",
            self.pid()
        );
        let mut command = Command::new(binary());
        command
            .arg("-c")
            .arg(self.config_path())
            .current_dir(self.dir.path());
        let log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let process = OwnedProcess::spawn(&mut command, &self.output_path())
            .unwrap_or_else(|e| panic!("spawn mosquitto: {e}"));
        self.process = Some(process);
        self.wait_until_ready(log_start).await;
    }

    /// Stops the broker gracefully (SIGTERM; it saves its persistent
    /// sessions and queued messages to disk) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(libc::SIGTERM, STOP_GRACE);
        }
    }

    /// Kills the broker with SIGKILL, like a crash: whatever it held only in
    /// memory since its last save is lost.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(libc::SIGKILL, STOP_GRACE);
        }
    }

    /// The broker's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(OwnedProcess::pid)
    }

    /// The host the broker listens on (and its certificate names).
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The TLS listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// MQTT options for `identity` (`"backend"` or a VEN id) with its
    /// client certificate from `pki`. See [`mqtt::client_options`].
    pub fn client_options(&self, pki: &TestPki, identity: &str) -> MqttOptions {
        mqtt::client_options(pki, identity, self.host(), self.port)
    }

    /// The generated `mosquitto.conf`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// The broker's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// The end of the broker's log and of its stdout/stderr (where it
    /// reports config errors before logging starts).
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "{}\n{}",
            log_tail(&self.log_path(), lines),
            log_tail(&self.output_path(), lines)
        )
    }

    fn logged_running_since(&self, log_start: u64) -> bool {
        // "mosquitto version 2.0.11 running", after the listener is open.
        fs::read(self.log_path()).is_ok_and(|log| {
            let new = log.get(log_start as usize..).unwrap_or_default();
            String::from_utf8_lossy(new)
                .lines()
                .any(|line| line.contains("mosquitto version") && line.ends_with(" running"))
        })
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.out")
    }

    /// Waits until this broker logged that it runs (after `log_start`, the
    /// log's length before this start) and its port accepts connections.
    /// The log check matters: if another process took the port, the port
    /// accepts connections although this broker failed to bind it.
    async fn wait_until_ready(&mut self, log_start: u64) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.as_mut().and_then(OwnedProcess::exit_status) {
                panic!(
                    "mosquitto exited during start-up ({status}), port {}\n{}",
                    self.port,
                    self.log_tail(30)
                );
            }
            if self.logged_running_since(log_start)
                && tokio::net::TcpStream::connect(addr).await.is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto did not accept connections on {addr} within {READY_TIMEOUT:?}\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The broker configuration. `as_root`: keep running as root (Mosquitto
/// started as root otherwise switches to the `mosquitto` user, which cannot
/// read the 0600 keys or the temporary directory).
fn config(
    dir: &Path,
    port: u16,
    pki: &TestPki,
    as_root: bool,
    max_packet: Option<usize>,
) -> String {
    let mut conf = String::from("# Generated by gridlink-testkit.\n");
    if as_root {
        conf.push_str("user root\n");
    }
    let server = pki.server();
    let _ = write!(
        conf,
        "\
per_listener_settings false
allow_anonymous false
acl_file {dir}/acl

persistence true
persistence_location {dir}/data/

log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S

# Mosquitto's defaults drop QoS 1 messages (max_queued_messages 1000).
max_queued_messages {MAX_QUEUED_MESSAGES}
max_queued_bytes 0
max_inflight_messages {MAX_INFLIGHT_MESSAGES}
{max_packet}
listener {port} 127.0.0.1
cafile {ca}
certfile {cert}
keyfile {key}
require_certificate true
use_identity_as_username true
",
        dir = dir.display(),
        max_packet = max_packet.map_or_else(
            || "# max_packet_size: Mosquitto's default (none)\n".to_string(),
            |bytes| format!("max_packet_size {bytes}\n")
        ),
        ca = pki.ca_cert().display(),
        cert = server.cert.display(),
        key = server.key.display(),
    );
    conf
}

/// The mosquitto binary: on `PATH`, or Debian's `/usr/sbin/mosquitto` (not on
/// a normal user's `PATH`).
fn binary() -> PathBuf {
    crate::find_on_path("mosquitto")
        .or_else(|| {
            let sbin = Path::new("/usr/sbin/mosquitto");
            sbin.is_file().then(|| sbin.to_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "mosquitto not found: run scripts/test or scripts/setup-test-deps (they install it) \
                 or apt-get install -y mosquitto"
            )
        })
}

#[cfg(test)]
mod tests {
    use gridlink_provision::pki::BACKEND_IDENTITY;

    use super::*;

    #[test]
    fn acl_names_the_backend_identity_the_pki_issues() {
        let acl = gridlink_provision::policy::mosquitto_acl();
        assert!(acl.lines().any(|l| l == format!("user {BACKEND_IDENTITY}")));
    }

    #[test]
    fn config_keeps_root_only_when_running_as_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = TestPki::generate(dir.path(), &[]).expect("PKI");
        let as_root = config(Path::new("/x"), 1234, &pki, true, Some(MAX_PACKET_BYTES));
        let as_user = config(Path::new("/x"), 1234, &pki, false, None);
        assert!(as_root.lines().any(|l| l == "user root"));
        assert!(!as_user.contains("user root"));
        for conf in [&as_root, &as_user] {
            assert!(conf.contains("listener 1234 127.0.0.1\n"));
            assert!(conf.contains("max_queued_messages 1000000\n"));
            assert!(conf.contains("require_certificate true\n"));
            assert!(conf.contains("acl_file /x/acl\n"));
        }
        assert!(as_root.contains(&format!("max_packet_size {MAX_PACKET_BYTES}\n")));
        assert!(!as_user.contains("max_packet_size "));
    }
}
