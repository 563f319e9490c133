//! What the agent's end-to-end tests share: the agent binary as a child
//! process (started with a config, logging to a file, signalled by PID)
//! and reads of its local health endpoint.
#![allow(
    dead_code,
    reason = "each test crate includes this module and uses a different part of it"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `gridlink-agent run` process, killed when dropped.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Starts `gridlink-agent run --config CONFIG`, appending its log to `log`.
    pub fn spawn(config: &Path, log: PathBuf) -> Self {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the agent's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gridlink-agent"))
            .args(["run", "--config"])
            .arg(config)
            .env("GRIDLINK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start gridlink-agent");
        Self { child, log }
    }

    /// Sends `signal` (e.g. `-TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.child.id());
    }

    /// SIGTERM, then wait up to 20 s for a clean exit; returns the log.
    pub async fn stop(mut self) -> String {
        self.signal("-TERM");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the agent") {
                let log = self.log_text();
                assert!(status.success(), "agent exited with {status}\n{log}");
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent did not stop in 20 s\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of `GET path` on the agent's health port, if it answers.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// A counter or gauge from the agent's `/metrics`.
pub async fn metric(port: u16, name: &str) -> Option<u64> {
    let text = http_get(port, "/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
