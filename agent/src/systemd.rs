//! systemd service notification (`sd_notify`): `READY=1` once the agent
//! runs, `WATCHDOG=1` while it is healthy, `STOPPING=1` on the way out.
//!
//! The unit (`cross/debian/gridlink-agent.service`) is `Type=notify` with
//! `WatchdogSec=`; systemd restarts the agent if the watchdog pings stop.
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.
//!
//! The protocol is one datagram per message on the unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), so no
//! libsystemd is linked.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notification socket, if there is one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (honouring `WATCHDOG_PID`)
    /// from the environment.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("NOTIFY_SOCKET").ok().as_deref(),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        )
    }

    /// A notifier for the given variables' values (tests pass their own).
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Self {
        let socket = socket.and_then(|name| {
            let address = socket_address(name)?;
            let datagram = UnixDatagram::unbound().ok()?;
            Some((datagram, address))
        });
        let for_us = watchdog_pid.is_none_or(|pid| pid.parse() == Ok(std::process::id()));
        let watchdog = watchdog_usec
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// How often to send `WATCHDOG=1`: half the configured watchdog
    /// interval, as `sd_watchdog_enabled(3)` advises; `None` without one.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends a state string such as `READY=1`. Errors are ignored: the
    /// agent must never stop because systemd is not listening.
    pub fn notify(&self, state: &str) {
        if let Some((socket, address)) = &self.socket
            && let Err(error) = socket.send_to_addr(state.as_bytes(), address)
        {
            tracing::debug!(%error, state, "sd_notify failed");
        }
    }
}

fn socket_address(name: &str) -> Option<std::os::unix::net::SocketAddr> {
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()
    } else if name.starts_with('/') {
        std::os::unix::net::SocketAddr::from_pathname(name).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_a_path_socket_and_halves_the_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str(), Some("20000000"), None);
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(10)));
        notifier.notify("READY=1");
        let mut buf = [0_u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn abstract_sockets_and_foreign_watchdog_pids() {
        let name = format!("gridlink-test-{}", std::process::id());
        let address = socket_address(&format!("@{name}")).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier::new(Some(&format!("@{name}")), Some("1000000"), Some("1"));
        assert_eq!(
            notifier.watchdog_interval(),
            None,
            "WATCHDOG_PID is another process"
        );
        notifier.notify("WATCHDOG=1");
        let mut buf = [0_u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn without_systemd_nothing_happens() {
        let notifier = Notifier::new(None, None, None);
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.notify("READY=1");
        assert!(Notifier::new(Some("relative"), None, None).socket.is_none());
    }
}
