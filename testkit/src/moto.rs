//! A local moto server (`pip install 'moto[server]'`) standing in for the
//! AWS IoT API, on `127.0.0.1` and a free port, killed when dropped.
//!
//! moto's IoT covers things, certificates (CreateCertificateFromCsr makes
//! its own key, not the CSR's), policies, attachments, DescribeEndpoint and
//! UpdateCertificate.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{OwnedProcess, log_tail};

/// How long moto may take to start (it imports every AWS service model).
const READY_TIMEOUT: Duration = Duration::from_mins(1);

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    dir: TempDir,
    port: u16,
    process: Option<OwnedProcess>,
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` and waits until it
    /// answers. Panics with its output if it does not start.
    pub fn spawn() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gridlink-moto-")
            .tempdir()
            .expect("create a temporary directory for moto");
        let port = crate::free_port();
        let mut command = Command::new(binary());
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path());
        let process = OwnedProcess::spawn(&mut command, &dir.path().join("moto.out"))
            .unwrap_or_else(|e| panic!("spawn moto_server: {e}"));
        let mut server = Self {
            dir,
            port,
            process: Some(process),
        };
        server.wait_until_ready();
        server
    }

    /// The endpoint URL to give AWS clients (`--endpoint-url`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let (status, body) = http(self.port, "POST", "/moto-api/reset")
            .unwrap_or_else(|e| panic!("moto reset: {e}"));
        assert_eq!(status, 200, "moto reset: {body}");
    }

    /// The last lines moto printed.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.dir.path().join("moto.out"), lines)
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.as_mut().and_then(OwnedProcess::exit_status) {
                panic!(
                    "moto_server exited during start-up ({status})\n{}",
                    self.log_tail(30)
                );
            }
            if matches!(http(self.port, "GET", "/moto-api/"), Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within {READY_TIMEOUT:?}\n{}",
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(libc::SIGKILL, Duration::from_secs(5));
        }
    }
}

/// A minimal HTTP/1.1 request without a body; returns status and body.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

fn binary() -> PathBuf {
    crate::find_on_path("moto_server").unwrap_or_else(|| {
        panic!(
            "moto_server not found: run scripts/test or scripts/setup-test-deps (they install it) \
             or pip install 'moto[server]'"
        )
    })
}
