//! Server child processes that are signalled by PID and always reaped.
//!
//! Every server is spawned in its own process group, so a Ctrl-C on the
//! terminal reaches only the test process (which then stops its servers
//! once, not twice), and with `PR_SET_PDEATHSIG = SIGKILL`, so a test
//! process that dies without running destructors (a `panic = "abort"`, a
//! nextest timeout's SIGKILL) takes its servers with it.
//!
//! Linux sends the parent-death signal when the *thread* that spawned the
//! child exits. Start and restart servers from the test's own thread or a
//! runtime worker, never from `spawn_blocking`, whose threads end when idle.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A child process we spawned (a server or a tool like `initdb`), running
/// or exited but not yet reaped.
#[derive(Debug)]
pub(crate) struct OwnedProcess {
    child: Child,
}

impl OwnedProcess {
    /// Spawns `command` with stdout and stderr appended to `output`.
    pub(crate) fn spawn(command: &mut Command, output: &Path) -> io::Result<Self> {
        let out = File::options().create(true).append(true).open(output)?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        die_with_parent(command);
        Ok(Self {
            child: command.spawn()?,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` unless the process has already been reaped (its PID
    /// could belong to someone else by now). A process that exited but is
    /// not yet reaped is a zombie whose PID is still ours, so the signal
    /// can never hit another process.
    pub(crate) fn signal(&mut self, signal: libc::c_int) {
        if self.exit_status().is_none() {
            send_signal(self.pid(), signal);
        }
    }

    /// Waits up to `within` for the process to exit and reaps it.
    pub(crate) fn wait_timeout(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal`, waits up to `grace` for the process to exit, then
    /// sends SIGKILL and reaps it. Returns the exit status.
    pub(crate) fn stop(&mut self, signal: libc::c_int, grace: Duration) -> ExitStatus {
        self.signal(signal);
        if let Some(status) = self.wait_timeout(grace) {
            return status;
        }
        self.signal(libc::SIGKILL);
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for PID {}: {e}", self.pid()))
    }
}

/// The last `lines` lines of a log file, for panic messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("({} not written)", path.display());
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    format!("--- last lines of {} ---\n{tail}\n---", path.display())
}

/// Whether the process runs with effective user id 0.
pub(crate) fn running_as_root() -> bool {
    #[expect(unsafe_code, reason = "geteuid has no safe wrapper in std")]
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("PID fits pid_t");
    #[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    // SAFETY: kill takes plain integers and touches no memory; `pid` is a
    // child of ours that has not been reaped (see `OwnedProcess::signal`).
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        // ESRCH: it exited on its own meanwhile; anything else is a bug.
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ESRCH),
            "kill({pid}, {signal}): {err}"
        );
    }
}

fn die_with_parent(command: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).expect("PID fits pid_t");
    #[expect(unsafe_code, reason = "pre_exec and prctl are unsafe")]
    // SAFETY: the closure runs between fork and exec and calls only the
    // async-signal-safe functions prctl and getppid; it neither allocates
    // nor takes locks (the error is built from a raw errno).
    unsafe {
        command.pre_exec(move || {
            // Runs after std's setuid/setgid, which would clear the setting.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
