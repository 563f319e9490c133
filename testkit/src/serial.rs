//! A serial line for RTU tests: two pseudo-terminals linked by `socat`,
//! one end for the Modbus server, the other for the client.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{OwnedProcess, log_tail};

/// How long socat may take to create the ptys.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A `socat` process linking two ptys, `a()` and `b()`, in a temporary
/// directory; stopped by PID (and reaped) when dropped, and killed with the
/// test process if that dies first.
#[derive(Debug)]
pub struct PtyPair {
    process: OwnedProcess,
    a: PathBuf,
    b: PathBuf,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    /// Starts socat and waits until both ptys exist. Panics with socat's
    /// log, or with the command that installs it when it is missing.
    pub fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let log = dir.path().join("socat.log");
        let mut command = Command::new("socat");
        command
            .args(["-d", "-d"])
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()));
        let mut process = match OwnedProcess::spawn(&mut command, &log) {
            Ok(process) => process,
            Err(err) if err.kind() == io::ErrorKind::NotFound => panic!(
                "socat is not installed; the RTU tests need it for a serial pty pair: \
                 run scripts/test or scripts/setup-test-deps (they install it) or apt-get install -y socat"
            ),
            Err(err) => panic!("cannot start socat: {err}"),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !(a.exists() && b.exists()) {
            if let Some(status) = process.exit_status() {
                panic!("socat exited with {status}\n{}", log_tail(&log, 20));
            }
            assert!(
                Instant::now() < deadline,
                "socat made no ptys within {READY_TIMEOUT:?}\n{}",
                log_tail(&log, 20)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            process,
            a,
            b,
            _dir: dir,
        }
    }

    /// One end (the server's, by convention).
    pub fn a(&self) -> &Path {
        &self.a
    }

    /// The other end.
    pub fn b(&self) -> &Path {
        &self.b
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.process.stop(libc::SIGTERM, Duration::from_secs(2));
    }
}
