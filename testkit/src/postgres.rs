//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory and
//! the `postgres` server spawned directly (not through `pg_ctl`), so the
//! test holds its PID.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tempfile::TempDir;

use crate::process::{OwnedProcess, log_tail, running_as_root};

/// How long start-up may take (about 0.6 s on the development machine).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown (SIGINT) may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The Debian PostgreSQL major version the project targets.
const PREFERRED_VERSION: &str = "15";

/// A PostgreSQL server on `127.0.0.1` and a free port, with trust
/// authentication for the `postgres` superuser and durability switched off
/// (`fsync`, `synchronous_commit`, `full_page_writes`): data does not
/// survive a crash, and the cluster is deleted on drop anyway.
///
/// ```no_run
/// # async fn demo() {
/// use gridlink_testkit::postgres::PostgresCluster;
///
/// let cluster = PostgresCluster::start().await;
/// let url = cluster.create_database("ingest_test").await;
/// let pool = sqlx::PgPool::connect(&url).await.unwrap();
/// # drop(pool);
/// # }
/// ```
#[derive(Debug)]
pub struct PostgresCluster {
    process: OwnedProcess,
    port: u16,
    bin: PathBuf,
    user: Option<SystemUser>,
    // Declared last: deleted after the server has stopped.
    dir: TempDir,
}

/// The system account `initdb` and `postgres` run as when the tests run as
/// root (both refuse to run as root).
#[derive(Debug, Clone, Copy)]
struct SystemUser {
    uid: u32,
    gid: u32,
}

impl PostgresCluster {
    /// Runs `initdb` and starts the server, waiting until it accepts a
    /// connection. Panics with the server log if anything fails.
    pub async fn start() -> Self {
        let bin = binaries();
        let user = running_as_root().then(postgres_user);
        let dir = tempfile::Builder::new()
            .prefix("gridlink-postgres-")
            .tempdir()
            .expect("create a temporary directory for postgres");
        let socket_dir = dir.path().join("socket");
        fs::create_dir(&socket_dir).expect("create postgres socket dir");
        if let Some(user) = user {
            for path in [dir.path(), &socket_dir] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
            }
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "--no-sync",
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ])
            .current_dir(dir.path());
        as_user(&mut initdb, user);
        let mut init = OwnedProcess::spawn(&mut initdb, &log)
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.join("initdb").display()));
        let status = init.wait_timeout(READY_TIMEOUT).unwrap_or_else(|| {
            init.stop(libc::SIGKILL, STOP_GRACE);
            panic!(
                "initdb did not finish within {READY_TIMEOUT:?}\n{}",
                log_tail(&log, 30)
            )
        });
        assert!(
            status.success(),
            "initdb failed ({status})\n{}",
            log_tail(&log, 30)
        );

        let port = crate::free_port();
        let process = spawn_server(&bin, dir.path(), port, user);
        let mut cluster = Self {
            process,
            port,
            bin,
            user,
            dir,
        };
        cluster.wait_until_ready().await;
        cluster
    }

    /// Stops the server (fast shutdown: sessions are cut, a checkpoint is
    /// written), keeping its data, for outage tests. Clients see their
    /// connections closed and new ones refused.
    pub fn stop(&mut self) {
        self.process.stop(libc::SIGINT, STOP_GRACE);
    }

    /// Starts the stopped server again on the same port and data directory
    /// and waits until it accepts sessions.
    pub async fn start_again(&mut self) {
        self.process = spawn_server(&self.bin, self.dir.path(), self.port, self.user);
        self.wait_until_ready().await;
    }

    /// The server's (postmaster's) PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this cluster.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database `name` (1-63 of `[a-z0-9_]`, not starting
    /// with a digit) and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        assert!(
            (1..=63).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit(),
            "database name {name:?} must be 1-63 of [a-z0-9_], not starting with a digit"
        );
        let mut conn = PgConnection::connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.url(), self.log_tail(30)));
        // The name is checked above, so it is safe to splice in.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        self.database_url(name)
    }

    /// The end of the server log (initdb's and the server's output).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    async fn wait_until_ready(&mut self) {
        let url = self.url();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.exit_status() {
                panic!(
                    "postgres exited during start-up ({status}), port {}\n{}",
                    self.port,
                    self.log_tail(30)
                );
            }
            // Not just the port: a server still starting up refuses sessions.
            let attempt = PgConnection::connect(&url).await;
            match attempt {
                Ok(mut conn) => {
                    // If another process took the port, this is not our server.
                    let data_dir: String = sqlx::query_scalar("SHOW data_directory")
                        .fetch_one(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("SHOW data_directory on {url}: {e}"));
                    let _ = conn.close().await;
                    let ours = self.dir.path().join("data");
                    assert!(
                        Path::new(&data_dir) == ours,
                        "port {} is served by a postgres with data directory {data_dir}, not {}\n{}",
                        self.port,
                        ours.display(),
                        self.log_tail(30)
                    );
                    return;
                }
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "postgres did not accept a session on {url} within {READY_TIMEOUT:?}: {e}\n{}",
                    self.log_tail(30)
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // SIGINT = fast shutdown: roll back sessions, checkpoint, exit.
        self.process.stop(libc::SIGINT, STOP_GRACE);
    }
}

/// Spawns the `postgres` server on `port` over the cluster in `dir`.
fn spawn_server(bin: &Path, dir: &Path, port: u16, user: Option<SystemUser>) -> OwnedProcess {
    let mut server = Command::new(bin.join("postgres"));
    server
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir.join("socket"))
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .current_dir(dir);
    as_user(&mut server, user);
    OwnedProcess::spawn(&mut server, &dir.join("postgres.log"))
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.join("postgres").display()))
}

fn as_user(command: &mut Command, user: Option<SystemUser>) {
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
}

/// The directory with `initdb` and `postgres`: Debian's
/// `/usr/lib/postgresql/15/bin`, else the highest version there, else `PATH`.
fn binaries() -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql");
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    let preferred = debian.join(PREFERRED_VERSION).join("bin");
    if has_server(&preferred) {
        return preferred;
    }
    let highest = fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = highest {
        return bin;
    }
    crate::find_on_path("postgres")
        .and_then(|p| p.parent().map(Path::to_owned))
        .filter(|dir| has_server(dir))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin \
                 or on PATH: run scripts/test or scripts/setup-test-deps (they install them) \
                 or apt-get install -y postgresql"
            )
        })
}

/// The `postgres` account from `/etc/passwd` (the Debian package creates it).
fn postgres_user() -> SystemUser {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some(SystemUser {
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                }),
                _ => None,
            }
        })
        .unwrap_or_else(|| {
            panic!(
                "running as root, but there is no `postgres` user in /etc/passwd to run initdb and \
                 postgres as (they refuse root): apt-get install -y postgresql creates it"
            )
        })
}
