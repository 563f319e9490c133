//! Whole-system tests of gridlink, and the tests that need several crates
//! or an outside server together. The crate is a leaf: it depends on every
//! other workspace crate (as dev-dependencies) and none depends on it, so
//! no dev-dependency cycle runs through it (`scripts/check-layout`).
//!
//! * `tests/faults.rs`: the shipped binaries (`gridlink-cloud`,
//!   `gridlink-agent`, `gridlink-sim`) started as an operator starts them,
//!   with real Mosquitto and PostgreSQL from `gridlink-testkit`, and faults
//!   injected by signals.
//! * `tests/dr.rs`: demand response end to end in one process (the cloud's
//!   `serve()`, simulated sites, agents) with Mosquitto, on SQLite and on
//!   PostgreSQL.
//! * `tests/provision_*.rs`: the `gridlink-provision` binary against its
//!   peers: Mosquitto started from its `broker-config` (`provision_broker`),
//!   moto for AWS IoT (`provision_aws`) and the cloud's router for
//!   `register-ven` (`provision_register`).
//!
//! This library holds what they share: where the binaries are, and child
//! processes that can be signalled, stopped and read back.
//!
//! The binaries are the workspace's own build output. `cargo test
//! --workspace` and `cargo nextest run --workspace` build every package's
//! binaries before any test runs (the cloud's, the agent's, the
//! simulator's and the provisioning CLI's integration tests need them), so the e2e tests find them
//! beside their own executable; run `cargo build --workspace --bins`
//! first when testing this crate alone.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of the workspace binary `name` (e.g. `gridlink-cloud`), built
/// in the same profile as the running test. Panics, saying how to build it,
/// when it is not there.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash>: the binaries are in target/<profile>.
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` (or the whole test command) first",
        path.display()
    );
    path
}

/// A child process in its own process group, its stdout and stderr in a log
/// file, killed with its group when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` as `name`, appending its output to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{name}: open {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("{name}: log file: {e}"));
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: start: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`, ...) with
    /// kill(1): the workspace denies `unsafe`, which `libc::kill` needs.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id();
        let status = Command::new("kill")
            .args(["-s", &signal.to_string(), "--", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "{}: kill -{signal} {pid}", self.name);
    }

    /// SIGKILL and reap: no shutdown code runs.
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `within` for the exit; returns the exit
    /// status's success and the log.
    pub fn terminate(mut self, within: Duration) -> (bool, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return (status.success(), self.log_text());
            }
            if Instant::now() >= deadline {
                let log = self.log_text();
                panic!("{} did not stop within {within:?}\n{log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // The whole process group (its id is the child's). `--` keeps
            // procps kill from reading the negative id as an option: without
            // it, `kill -KILL -PGID` signals every process it may.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The body of `GET path` from `127.0.0.1:port` (HTTP/1.1, no TLS), if the
/// server answers within 2 s.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// A sample's value from a Prometheus text exposition: the line that
/// starts with `series` (a name, or a name with its labels) and a space.
pub fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# HELP x\nx_total 5\ny{reason=\"oversized\"} 2\ny{reason=\"malformed\"} 0\n";
        assert_eq!(sample(text, "x_total"), Some(5));
        assert_eq!(sample(text, "y{reason=\"oversized\"}"), Some(2));
        assert_eq!(sample(text, "x"), None);
    }
}
