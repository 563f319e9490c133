//! Faults in one run, with the default settings, from the shipped binaries:
//! Mosquitto with the production ACL and `broker-config`'s packet limit,
//! PostgreSQL, `gridlink-cloud serve`, three `gridlink-sim site` processes
//! and their three `gridlink-agent run` processes. In turn:
//!
//! 1. the cloud is killed (SIGKILL), the broker restarts while it is away, and
//!    the cloud comes back (the pair that lost data with shared
//!    subscriptions);
//! 2. the broker is killed (SIGKILL) and started again;
//! 3. one agent is killed (SIGKILL) mid-flight and started again;
//! 4. PostgreSQL restarts under the cloud;
//! 5. one VEN publishes a poison message (131,800 bytes, which the broker
//!    accepts) on its meter topic;
//! 6. the cloud is killed (SIGKILL) while the agents keep publishing.
//!
//! Then every reading the agents stored durably is compared with the rows
//! in PostgreSQL: 0 lost, 0 duplicated, every VEN's batches contiguous.
//!
//! Counting: an agent's `gridlink_readings_stored_total` is exact for each
//! of its lives because acquisition is paused (its simulator stopped with SIGSTOP)
//! before the agent is killed or stopped, and read once it no longer
//! moves; the agent itself is still sealing and publishing when killed.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gridlink_e2e::{Process, binary, http_get, sample};
use gridlink_protocol::VenId;
use gridlink_provision::pki::TestPki;
use gridlink_testkit::free_port;
use gridlink_testkit::mosquitto::Mosquitto;
use gridlink_testkit::mqtt::MqttTestClient;
use gridlink_testkit::postgres::PostgresCluster;

const VENS: [&str; 3] = ["ven-1", "ven-2", "ven-3"];
const POLL_MS: u64 = 200;
const SEAL_MS: u64 = 1000;
/// The poison payload: over the cloud's old client limit (131,584 bytes),
/// under `broker-config`'s `max_packet_size` (132,096).
const POISON_BYTES: usize = 131_800;
/// Generous bound of every wait.
const WAIT: Duration = Duration::from_mins(1);

struct Site {
    ven: &'static str,
    sim: Process,
    agent: Option<Process>,
    modbus_port: u16,
    health_port: u16,
    config: PathBuf,
    /// Readings the agent stored durably, one entry per finished life.
    lives: Vec<u64>,
}

struct Rig {
    dir: tempfile::TempDir,
    pki: TestPki,
    broker: Mosquitto,
    postgres: PostgresCluster,
    database_url: String,
    cloud: Option<Process>,
    cloud_port: u16,
    cloud_lives: u32,
    sites: Vec<Site>,
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<VenId> = VENS.iter().map(|v| VenId::new(*v).unwrap()).collect();
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        let pki = TestPki::generate(&dir.path().join("pki"), &ids).unwrap();
        let broker = Mosquitto::spawn_with_max_packet_size(
            &pki,
            Some(gridlink_provision::broker::MAX_PACKET_BYTES),
        )
        .await;
        let postgres = PostgresCluster::start().await;
        let database_url = postgres.create_database("faults").await;
        let mut rig = Self {
            dir,
            pki,
            broker,
            postgres,
            database_url,
            cloud: None,
            cloud_port: free_port(),
            cloud_lives: 0,
            sites: Vec::new(),
        };
        rig.start_cloud();
        for (i, ven) in VENS.into_iter().enumerate() {
            let modbus_port = free_port();
            let mut command = Command::new(binary("gridlink-sim"));
            command.args([
                "site",
                "--listen",
                &format!("127.0.0.1:{modbus_port}"),
                "--meters",
                "1",
                "--loads",
                "2",
                "--seed",
                &(i + 7).to_string(),
            ]);
            let sim = Process::spawn(
                &format!("sim-{ven}"),
                command,
                &rig.dir.path().join(format!("sim-{ven}.log")),
            );
            let mut site = Site {
                ven,
                sim,
                agent: None,
                modbus_port,
                health_port: free_port(),
                config: rig.dir.path().join(format!("agent-{ven}.toml")),
                lives: Vec::new(),
            };
            rig.write_agent_config(&site);
            wait_until("the simulator listening", || {
                std::net::TcpStream::connect(("127.0.0.1", modbus_port)).is_ok()
            });
            rig.start_agent(&mut site);
            rig.sites.push(site);
        }
        rig
    }

    fn start_cloud(&mut self) {
        let backend = self.pki.backend();
        let mut command = Command::new(binary("gridlink-cloud"));
        command
            .arg("serve")
            .env_clear()
            .env("GRIDLINK_LOG", "info")
            .env("GRIDLINK_DATABASE_URL", &self.database_url)
            .env(
                "GRIDLINK_HTTP_LISTEN",
                format!("127.0.0.1:{}", self.cloud_port),
            )
            .env("GRIDLINK_MQTT_HOST", "127.0.0.1")
            .env("GRIDLINK_MQTT_PORT", self.broker.port().to_string())
            .env("GRIDLINK_MQTT_CA", self.pki.ca_cert())
            .env("GRIDLINK_MQTT_CERT", &backend.cert)
            .env("GRIDLINK_MQTT_KEY", &backend.key)
            .env("GRIDLINK_MQTT_CLIENT_ID", "cloud-e2e");
        self.cloud_lives += 1;
        self.cloud = Some(Process::spawn(
            "gridlink-cloud",
            command,
            &self.dir.path().join("cloud.log"),
        ));
        wait_until("the cloud connected to the broker", || {
            self.cloud_metric("gridlink_mqtt_connected") == Some(1)
        });
    }

    fn cloud_metric(&self, series: &str) -> Option<u64> {
        sample(&http_get(self.cloud_port, "/metrics")?, series)
    }

    fn write_agent_config(&self, site: &Site) {
        let identity = self.pki.identity(site.ven).unwrap();
        let text = format!(
            r#"ven_id = "{ven}"

[mqtt]
host = "127.0.0.1"
port = {port}
ca = "{ca}"
cert = "{cert}"
key = "{key}"
reconnect_backoff_min_ms = 100
reconnect_backoff_max_ms = 1000

[buffer]
path = "{buffer}"
seal_interval_ms = {SEAL_MS}

[health]
listen = "127.0.0.1:{health}"

[[devices]]
name = "main"
controller = "tcp://127.0.0.1:{modbus}"
unit_id = 1
poll_interval_ms = {POLL_MS}
timeout_ms = 300

  [[devices.points]]
  register = "input"
  address = 0
  type = "f32"
  quantity = "voltage"
  phase = "L1"

  [[devices.points]]
  register = "input"
  address = 52
  type = "f32"
  quantity = "active_power"
  phase = "total"

  [[devices.points]]
  register = "input"
  address = 70
  type = "f32"
  quantity = "frequency"
"#,
            ven = site.ven,
            port = self.broker.port(),
            ca = self.pki.ca_cert().display(),
            cert = identity.cert.display(),
            key = identity.key.display(),
            buffer = self
                .dir
                .path()
                .join(format!("buffer-{}", site.ven))
                .display(),
            health = site.health_port,
            modbus = site.modbus_port,
        );
        std::fs::write(&site.config, text).unwrap();
    }

    fn start_agent(&self, site: &mut Site) {
        let mut command = Command::new(binary("gridlink-agent"));
        command
            .args(["run", "--config"])
            .arg(&site.config)
            .env("GRIDLINK_LOG", "info");
        site.agent = Some(Process::spawn(
            &format!("agent-{}", site.ven),
            command,
            &self.dir.path().join(format!("agent-{}.log", site.ven)),
        ));
        let port = site.health_port;
        wait_until("the agent's metrics", || {
            http_get(port, "/metrics").is_some()
        });
    }

    /// Stored rows per VEN, and per VEN its batches: count, lowest and
    /// highest `batch_seq`, readings they hold.
    async fn stored(&self) -> BTreeMap<String, (u64, u64, i64, i64, u64)> {
        let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.ven_id, count(*) FROM metrics m JOIN series s ON s.id = m.series_id \
             GROUP BY s.ven_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let batches: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT ven_id, count(*), min(batch_seq), max(batch_seq), sum(readings)::BIGINT \
             FROM ingested_batches GROUP BY ven_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        let mut out = BTreeMap::new();
        for (ven, count) in rows {
            out.insert(ven, (count as u64, 0, 0, 0, 0));
        }
        for (ven, n, lo, hi, readings) in batches {
            let entry = out.entry(ven).or_insert((0, 0, 0, 0, 0));
            entry.1 = n as u64;
            entry.2 = lo;
            entry.3 = hi;
            entry.4 = readings as u64;
        }
        out
    }

    fn cloud_batches(&self) -> u64 {
        self.cloud_metric("gridlink_ingest_batches_total")
            .unwrap_or(0)
    }

    /// Waits until the running cloud has stored `n` more batches.
    fn wait_for_batches(&self, n: u64) {
        let start = self.cloud_batches();
        wait_until(&format!("{n} more batches stored"), || {
            self.cloud_batches() >= start + n
        });
    }
}

/// Pauses the site's acquisition, waits until its agent's stored count no
/// longer moves, and returns that count (exact for this life).
fn pause_and_count(site: &Site) -> u64 {
    site.sim.signal(libc::SIGSTOP);
    let mut last = None;
    let mut stable_since = Instant::now();
    wait_until("the agent's stored count to settle", || {
        let now = http_get(site.health_port, "/metrics")
            .and_then(|m| sample(&m, "gridlink_readings_stored_total"));
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        // Three poll time-outs with nothing new: the last poll is done.
        last.is_some() && stable_since.elapsed() > Duration::from_millis(1500)
    });
    last.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_in_one_run_lose_and_duplicate_nothing() {
    let began = Instant::now();
    let mut rig = Rig::start().await;
    rig.wait_for_batches(6);
    let mut log = String::new();
    let mut phase = |what: &str, rig: &Rig| {
        let _ = writeln!(
            log,
            "{:>6.1} s  {what}  (cloud batches so far {})",
            began.elapsed().as_secs_f64(),
            rig.cloud_batches()
        );
    };

    // 1. Cloud SIGKILL; the broker restarts while the cloud is away.
    phase(
        "cloud SIGKILL, broker restart while the cloud is away",
        &rig,
    );
    rig.cloud.take().unwrap().kill9();
    std::thread::sleep(Duration::from_secs(2));
    rig.broker.stop();
    rig.broker.start().await;
    std::thread::sleep(Duration::from_secs(4)); // agents reconnect and publish
    rig.start_cloud();
    rig.wait_for_batches(6);

    // 2. Broker SIGKILL.
    phase("broker SIGKILL", &rig);
    rig.broker.kill();
    std::thread::sleep(Duration::from_secs(2));
    rig.broker.start().await;
    rig.wait_for_batches(6);

    // 3. Agent SIGKILL, mid-flight (sealing and publishing).
    phase("agent SIGKILL (ven-2)", &rig);
    {
        let site = &mut rig.sites[1];
        let stored = pause_and_count(site);
        site.agent.take().unwrap().kill9();
        site.lives.push(stored);
        site.sim.signal(libc::SIGCONT);
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut site = rig.sites.remove(1);
    rig.start_agent(&mut site);
    rig.sites.insert(1, site);
    rig.wait_for_batches(6);

    // 4. PostgreSQL restart.
    phase("PostgreSQL restart", &rig);
    rig.postgres.stop();
    std::thread::sleep(Duration::from_secs(4));
    rig.postgres.start_again().await;
    rig.wait_for_batches(6);

    // 5. A poison message from ven-3's own certificate.
    phase("poison message (131,800 bytes) from ven-3", &rig);
    let mut options = rig.broker.client_options(&rig.pki, "ven-3");
    options.set_max_packet_size(1 << 20, 1 << 20);
    let mut poisoner = MqttTestClient::connect(options).await.unwrap();
    poisoner
        .publish("oadr/meter/ven-3", vec![b'P'; POISON_BYTES])
        .await;
    poisoner.disconnect().await;
    wait_until("the poison dropped as oversized", || {
        rig.cloud_metric("gridlink_ingest_dropped_total{reason=\"oversized\"}") == Some(1)
    });
    rig.wait_for_batches(6);

    // 6. Cloud SIGKILL while the agents publish; back after 3 s.
    phase("cloud SIGKILL", &rig);
    rig.cloud.take().unwrap().kill9();
    std::thread::sleep(Duration::from_secs(3));
    rig.start_cloud();
    rig.wait_for_batches(6);

    phase("end: acquisition paused, agents drain and stop", &rig);
    drain_and_stop(&mut rig);
    check_nothing_lost(&rig, began, &log).await;
}

/// The end: acquisition paused, every agent drains its buffer and stops
/// cleanly; each life's count is recorded.
fn drain_and_stop(rig: &mut Rig) {
    for site in &mut rig.sites {
        let stored = pause_and_count(site);
        let port = site.health_port;
        wait_until("the agent's buffer drained", || {
            http_get(port, "/metrics").and_then(|m| sample(&m, "gridlink_buffer_records"))
                == Some(0)
        });
        let (ok, text) = site
            .agent
            .take()
            .unwrap()
            .terminate(Duration::from_secs(20));
        assert!(ok, "{} stopped with an error:\n{text}", site.ven);
        site.lives.push(stored);
    }
}

/// Every reading the agents stored is in PostgreSQL once: the table for
/// README, then the verdict.
async fn check_nothing_lost(rig: &Rig, began: Instant, log: &str) {
    let expected: BTreeMap<String, u64> = rig
        .sites
        .iter()
        .map(|s| (s.ven.to_string(), s.lives.iter().sum()))
        .collect();
    let deadline = Instant::now() + WAIT;
    let stored = loop {
        let stored = rig.stored().await;
        let done = expected
            .iter()
            .all(|(ven, n)| stored.get(ven).is_some_and(|s| s.0 >= *n));
        if done || Instant::now() >= deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let duplicates = rig
        .cloud_metric("gridlink_ingest_duplicate_batches_total")
        .unwrap_or(0);

    let mut table = String::from(
        "| VEN | agent lives | readings stored by the agent | rows in PostgreSQL | lost | duplicated | batches | batch_seq range | gaps |\n|---|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    let mut failures = Vec::new();
    for site in &rig.sites {
        let want = expected[site.ven];
        let (rows, batches, lo, hi, batch_readings) =
            stored.get(site.ven).copied().unwrap_or_default();
        let span = u64::try_from(hi - lo + 1).unwrap_or(0);
        let gaps = span.saturating_sub(batches);
        let lost = want.saturating_sub(rows);
        let doubled = rows.saturating_sub(want);
        let _ = writeln!(
            table,
            "| {} | {} | {want} | {rows} | {lost} | {doubled} | {batches} | {lo}..={hi} | {gaps} |",
            site.ven,
            site.lives.len()
        );
        if lost != 0 || doubled != 0 || gaps != 0 || batch_readings != rows {
            failures.push(format!(
                "{}: want {want} rows, have {rows} ({batches} batches holding {batch_readings} readings, seq {lo}..={hi})",
                site.ven
            ));
        }
    }
    let _ = writeln!(
        table,
        "\ncloud lives {}, duplicate batches refused by the cloud in its last life {duplicates}, run {:.0} s",
        rig.cloud_lives,
        began.elapsed().as_secs_f64()
    );
    eprintln!("{log}\n{table}");
    let cloud_log = rig
        .cloud
        .as_ref()
        .map(|c| c.log_tail(40))
        .unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{log}\n{table}\ncloud log:\n{cloud_log}\nbroker log:\n{}",
        rig.broker.log_tail(40)
    );
}
